"""compiler/codegen/convolution.py: 2-D convolutions in pixel blocks (`xbar.mvmb`, one block
instruction per tile), against the IR interpreter (exact: ideal device, lossless ADC) and
onnxruntime (within the quantisation error); and a 1-D convolution, which keeps the row
path of codegen/dense.py (one `xbar.mvm` per output pixel and tile)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from imcc.compiler.ir import ops
from imcc.compiler.ir.interpreter import evaluate
from imcc.isa import spec
from tests.compiler.codegen.graphs import (
    CONV_REL_TOL,
    EXACT_RTOL,
    compile_onnx,
    mnemonics,
    onnx_model,
    reference,
    rng,
    simulate,
)


def conv_model(
    x_shape: tuple[int, ...],
    out_channels: int,
    kernel: tuple[int, ...],
    seed: int,
    activation: str | None = None,
    **attrs: object,
) -> tuple[onnx.ModelProto, np.ndarray]:
    generator = rng(seed)
    channels = x_shape[1] // int(attrs.get("group", 1))  # type: ignore[call-overload]
    w = generator.normal(size=(out_channels, channels, *kernel)).astype(np.float32)
    b = generator.normal(0, 0.1, size=out_channels).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["h" if activation else "y"], **attrs)]
    if activation:
        nodes.append(helper.make_node(activation, ["h"], ["y"]))
    batched = ["N", *x_shape[1:]]
    model = onnx_model(nodes, {"x": batched}, {"y": None}, {"w": w, "b": b})
    x = generator.normal(size=x_shape).astype(np.float32)
    return model, x


def check(model: onnx.ModelProto, x: np.ndarray, **options: object) -> dict[str, int]:
    """Exact against the interpreter, within CONV_REL_TOL of onnxruntime; the code's
    mnemonic counts."""
    binary, graph = compile_onnx(model, **options)
    got = simulate(binary, {"x": x})["y"]
    exact = evaluate(graph, {"x": x.astype(np.float64)})[0]
    assert got.shape == exact.shape
    np.testing.assert_allclose(got, exact, rtol=0, atol=EXACT_RTOL * np.max(np.abs(exact)))
    expected = reference(model, {"x": x})["y"]
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= CONV_REL_TOL * np.max(np.abs(expected))
    assert [op for op in graph.ops if isinstance(op, ops.QDense)]
    return mnemonics(binary)


@pytest.mark.parametrize(
    ("attrs", "activation"),
    [
        ({"pads": [1, 1, 1, 1]}, None),
        ({"pads": [1, 1, 1, 1], "strides": [2, 2]}, "Relu"),
        ({"pads": [0, 1, 2, 0], "strides": [1, 2]}, None),
        ({"pads": [2, 2, 2, 2], "dilations": [2, 2]}, "Tanh"),
        ({}, None),
    ],
    ids=["same", "stride-2-relu", "asymmetric", "dilated-tanh", "valid"],
)
def test_2d_conv_in_pixel_blocks(attrs: dict[str, object], activation: str | None) -> None:
    model, x = conv_model((2, 3, 9, 8), 4, (3, 3), seed=1, activation=activation, **attrs)
    counts = check(model, x)
    assert counts[spec.XBAR_MVM_BLOCK.mnemonic] > 0
    assert counts[spec.XBAR_MVM.mnemonic] == 0


def test_2d_conv_over_two_row_blocks() -> None:
    """16 channels x 3 x 3 = 144 window rows: two tiles of 128 and 16 rows."""
    model, x = conv_model((1, 16, 6, 6), 8, (3, 3), seed=2, pads=[1, 1, 1, 1])
    counts = check(model, x)
    assert counts[spec.XBAR_MVM_BLOCK.mnemonic] >= 2


def test_2d_conv_with_offset_encoding_equals_differential() -> None:
    """The offset encoding subtracts offset * sum(x) per pixel; both exact, so equal."""
    model, x = conv_model((1, 3, 7, 7), 5, (3, 3), seed=3, pads=[1, 1, 1, 1], strides=[2, 2])
    check(model, x, sign_encoding="offset")
    outputs = [
        simulate(compile_onnx(model, sign_encoding=encoding)[0], {"x": x})["y"]
        for encoding in ("differential", "offset")
    ]
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_grouped_2d_conv() -> None:
    """group = 2: a block-diagonal weight, still one crossbar layer in pixel blocks."""
    model, x = conv_model((1, 4, 6, 6), 6, (3, 3), seed=4, pads=[1, 1, 1, 1], group=2)
    assert check(model, x)[spec.XBAR_MVM_BLOCK.mnemonic] > 0


def test_2d_conv_spread_over_cores() -> None:
    """spread = True: the two tiles on two cores, windows sent to the second; same result."""
    model, x = conv_model((1, 16, 6, 6), 8, (3, 3), seed=2, pads=[1, 1, 1, 1])
    counts = check(model, x, spread=True)
    assert counts[spec.NOC_SEND.mnemonic] > 0
    packed = simulate(compile_onnx(model)[0], {"x": x})["y"]
    spread = simulate(compile_onnx(model, spread=True)[0], {"x": x})["y"]
    np.testing.assert_array_equal(spread, packed)


@pytest.mark.parametrize(
    "attrs",
    [{}, {"pads": [2, 1], "strides": [2]}, {"dilations": [2]}],
    ids=["valid", "padded-stride-2", "dilated"],
)
def test_1d_conv_takes_the_row_path(attrs: dict[str, object]) -> None:
    """A 1-D convolution is no pixel-block case: its Im2Col streams one window row per
    `xbar.mvm` (dense.py)."""
    model, x = conv_model((2, 3, 12), 4, (3,), seed=5, **attrs)
    counts = check(model, x)
    assert counts[spec.XBAR_MVM_BLOCK.mnemonic] == 0
    assert counts[spec.XBAR_MVM.mnemonic] > 0


def test_conv_batch_norm_relu() -> None:
    """BatchNormalization folds into the convolution's weights and bias (canonicalize)."""
    generator = rng(6)
    channels = 4
    params = {
        "w": generator.normal(size=(channels, 2, 3, 3)).astype(np.float32),
        "b": generator.normal(size=channels).astype(np.float32),
        "gamma": generator.uniform(0.5, 1.5, channels).astype(np.float32),
        "beta": generator.normal(size=channels).astype(np.float32),
        "mean": generator.normal(size=channels).astype(np.float32),
        "var": generator.uniform(0.5, 2.0, channels).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"]),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    model = onnx_model(nodes, {"x": ["N", 2, 5, 5]}, {"y": None}, params)
    x = generator.normal(size=(2, 2, 5, 5)).astype(np.float32)
    assert check(model, x)[spec.XBAR_MVM_BLOCK.mnemonic] > 0
