"""compiler/codegen/reductions.py: Softmax along the last and another axis, Reduce sum / mean /
max over leading and trailing axes (both instruction streams), ArgMax and LayerNorm, against
onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from imcc.isa import spec
from imcc.isa.diagnostics import CompileError
from tests.compiler.codegen.graphs import (
    assert_matches_onnxruntime,
    mnemonics,
    onnx_model,
    rng,
)

SHAPE = (2, 3, 4, 5)


@pytest.mark.parametrize("axis", [-1, 3, 1, 2], ids=["last", "last-positive", "1", "2"])
def test_softmax(axis: int) -> None:
    """The last axis by row reductions; another axis by vector max / add over its rows."""
    x = (3 * rng(1).normal(size=SHAPE)).astype(np.float32)
    node = helper.make_node("Softmax", ["x"], ["y"], axis=axis)
    binary = assert_matches_onnxruntime(onnx_model([node], {"x": SHAPE}, {"y": SHAPE}), {"x": x})
    row_path = axis % len(SHAPE) == len(SHAPE) - 1
    assert (mnemonics(binary)[spec.SIMD_RMAX.mnemonic] > 0) == row_path


def test_softmax_of_large_logits_does_not_overflow() -> None:
    """exp(x - max x): logits of 1000 would overflow exp in float64 without the shift."""
    x = (1000 + rng(2).normal(size=(2, 6))).astype(np.float32)
    node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    assert_matches_onnxruntime(onnx_model([node], {"x": (2, 6)}, {"y": (2, 6)}), {"x": x})


def _reduce_model(
    kind: str, axes: list[int], keepdims: int, shape: tuple[int, ...]
) -> onnx.ModelProto:
    """ReduceSum takes its axes as an input from opset 13, the others from 18 (we use 17)."""
    reduced = {a % len(shape) for a in axes}
    out = [1 if a in reduced else d for a, d in enumerate(shape) if keepdims or a not in reduced]
    if kind == "ReduceSum":
        node = helper.make_node(kind, ["x", "axes"], ["y"], keepdims=keepdims)
        inits = {"axes": np.array(axes, dtype=np.int64)}
    else:
        node = helper.make_node(kind, ["x"], ["y"], axes=axes, keepdims=keepdims)
        inits = {}
    return onnx_model([node], {"x": shape}, {"y": out}, inits)


REDUCTIONS = ("ReduceSum", "ReduceMean", "ReduceMax")


@pytest.mark.parametrize("kind", REDUCTIONS)
@pytest.mark.parametrize(
    ("axes", "keepdims"),
    [([-1], 1), ([2, 3], 0), ([1], 1), ([1, 2], 0), ([1, 3], 1)],
    ids=["last", "trailing-two", "leading", "leading-two", "leading-and-last"],
)
def test_reduce_per_sample(kind: str, axes: list[int], keepdims: int) -> None:
    """Axes after the batch axis: trailing ones go by groups (row reductions), leading ones
    by lanes (vector add / max), a mix by whichever stream is shorter."""
    x = rng(3).normal(size=SHAPE).astype(np.float32)
    assert_matches_onnxruntime(_reduce_model(kind, axes, keepdims, SHAPE), {"x": x})


@pytest.mark.parametrize("kind", REDUCTIONS)
def test_reduce_over_the_leading_axis_of_the_whole_tensor(kind: str) -> None:
    """Reducing axis 0 mixes the rows, so the graph has no batch axis: the whole (6, 5)
    tensor is one sample and axis 0 is reduced by lanes, one vector op per row."""
    x = rng(4).normal(size=(6, 5)).astype(np.float32)
    binary = assert_matches_onnxruntime(_reduce_model(kind, [0], 0, (6, 5)), {"x": x})
    counts = mnemonics(binary)
    combine = spec.SIMD_MAX if kind == "ReduceMax" else spec.SIMD_ADD
    assert counts[combine.mnemonic] == 5  # rows 1..5 into row 0's copy
    assert counts[spec.SIMD_RSUM.mnemonic] == counts[spec.SIMD_RMAX.mnemonic] == 0


@pytest.mark.parametrize("keepdims", [1, 0])
def test_argmax_along_the_last_axis(keepdims: int) -> None:
    x = rng(5).normal(size=(2, 3, 7)).astype(np.float32)
    x[0, 1, 2] = x[0, 1, 5] = 10.0  # a tie: the first maximum wins, as in onnxruntime
    out = (2, 3, 1) if keepdims else (2, 3)
    node = helper.make_node("ArgMax", ["x"], ["y"], axis=-1, keepdims=keepdims)
    model = onnx_model([node], {"x": (2, 3, 7)}, {"y": out}, int_outputs=["y"])
    binary = assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)
    assert mnemonics(binary)[spec.SIMD_ARGMAX.mnemonic] == 3  # one per row of the sample


def test_argmax_along_another_axis_is_a_compile_error() -> None:
    """Not supported yet; the error names the node."""
    import imcc

    node = helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=1, name="pick")
    model = onnx_model([node], {"x": (2, 3, 7)}, {"y": (2, 1, 7)}, int_outputs=["y"])
    with pytest.raises(CompileError, match="argmax along an axis other than the last") as info:
        imcc.compile(model, "edge-rram")
    assert "pick" in str(info.value)


@pytest.mark.parametrize(
    ("axis", "param_shape"),
    [(-1, (5,)), (2, (4, 5)), (1, (3, 4, 5))],
    ids=["last", "last-two", "all-but-batch"],
)
def test_layer_norm(axis: int, param_shape: tuple[int, ...]) -> None:
    generator = rng(6)
    x = (2 + 3 * generator.normal(size=SHAPE)).astype(np.float32)
    scale = generator.normal(size=param_shape).astype(np.float32)
    bias = generator.normal(size=param_shape).astype(np.float32)
    node = helper.make_node(
        "LayerNormalization", ["x", "scale", "bias"], ["y"], axis=axis, epsilon=1e-3
    )
    model = onnx_model([node], {"x": SHAPE}, {"y": SHAPE}, {"scale": scale, "bias": bias})
    assert_matches_onnxruntime(model, {"x": x})


def test_layer_norm_without_bias() -> None:
    x = rng(7).normal(size=(2, 8)).astype(np.float32)
    scale = np.linspace(0.5, 2.0, 8, dtype=np.float32)
    node = helper.make_node("LayerNormalization", ["x", "scale"], ["y"], axis=-1)
    model = onnx_model([node], {"x": (2, 8)}, {"y": (2, 8)}, {"scale": scale})
    assert_matches_onnxruntime(model, {"x": x})
