"""compiler/codegen/movement.py: Transpose, Select (Slice, Pad, Gather, Split, Expand, Tile),
MaxPool and AveragePool, Reshape, Concat and a materialised Im2Col, against onnxruntime.
Data movement copies words, so the results are exact."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import imcc
from imcc.compiler.driver import compile_graph
from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, TensorType
from imcc.compiler.ir.interpreter import evaluate
from imcc.isa import spec
from imcc.tools import zoo
from tests.compiler.codegen.graphs import (
    CONV_REL_TOL,
    EXACT_RTOL,
    assert_matches_onnxruntime,
    compile_onnx,
    mnemonics,
    onnx_model,
    reference,
    rng,
    simulate,
)

# Copies are exact; pools add or compare a few float32 inputs in float64 and divide once,
# which one float32 rounding of the output (2^-24) covers; 1e-6 is the SIMD tolerance.
EXACT = {"rtol": 0.0, "atol": 0.0}
POOL_RTOL = 1e-6

SHAPE = (2, 3, 4, 5)


def x_of(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("perm", [(0, 2, 1, 3), (0, 3, 2, 1), (0, 1, 3, 2), (0, 2, 3, 1)], ids=str)
def test_transpose(perm: tuple[int, ...]) -> None:
    out = tuple(SHAPE[p] for p in perm)
    model = onnx_model(
        [helper.make_node("Transpose", ["x"], ["y"], perm=list(perm))], {"x": SHAPE}, {"y": out}
    )
    binary = assert_matches_onnxruntime(model, {"x": x_of(SHAPE)}, **EXACT)
    assert mnemonics(binary)[spec.SIMD_COPY.mnemonic] > 0


@pytest.mark.parametrize(
    ("starts", "ends", "axes", "steps"),
    [([1], [3], [2], [1]), ([0, 4], [3, 0], [1, 3], [1, -2]), ([-3], [100], [-1], [2])],
    ids=["one-axis", "two-axes-reversed", "negative-clamped"],
)
def test_slice(starts: list[int], ends: list[int], axes: list[int], steps: list[int]) -> None:
    x = x_of(SHAPE, 1)
    index = [slice(None)] * 4
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        index[axis] = slice(start, end, step)
    out = x[tuple(index)].shape
    ints = {
        "starts": np.array(starts, np.int64),
        "ends": np.array(ends, np.int64),
        "axes": np.array(axes, np.int64),
        "steps": np.array(steps, np.int64),
    }
    node = helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])
    model = onnx_model([node], {"x": SHAPE}, {"y": out}, ints)
    assert_matches_onnxruntime(model, {"x": x}, **EXACT)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad(mode: str) -> None:
    """Pads on the two trailing axes; constant mode fills with 1.5 (copied from a constant
    vector of fills)."""
    x = x_of(SHAPE, 2)
    pads = [0, 0, 1, 2, 0, 0, 2, 1]
    out = (2, 3, 7, 8)
    inputs = ["x", "pads"]
    inits: dict[str, np.ndarray] = {"pads": np.array(pads, np.int64)}
    if mode == "constant":
        inputs.append("value")
        inits["value"] = np.array(1.5, np.float32)
    node = helper.make_node("Pad", inputs, ["y"], mode=mode)
    model = onnx_model([node], {"x": SHAPE}, {"y": out}, inits, opset=19)
    assert_matches_onnxruntime(model, {"x": x}, **EXACT)


def test_gather_split_expand_tile() -> None:
    """Gather with constant indices, Split into two, Expand and Tile: each one Select."""
    x = x_of((2, 3, 4), 3)
    nodes = [
        helper.make_node("Gather", ["x", "idx"], ["g"], axis=2),
        helper.make_node("Split", ["x", "sizes"], ["s0", "s1"], axis=1),
        helper.make_node("Expand", ["s0", "shape"], ["e"]),
        helper.make_node("Tile", ["s1", "reps"], ["t"]),
    ]
    inits = {
        "idx": np.array([3, 0, 0, 2], np.int64),
        "sizes": np.array([1, 2], np.int64),
        "shape": np.array([2, 3, 4], np.int64),
        "reps": np.array([1, 2, 1], np.int64),
    }
    model = onnx_model(
        nodes,
        {"x": (2, 3, 4)},
        {"g": (2, 3, 4), "e": (2, 3, 4), "t": (2, 4, 4)},
        inits,
    )
    assert_matches_onnxruntime(model, {"x": x}, **EXACT)


@pytest.mark.parametrize(
    ("axis", "shapes"),
    [(1, [(2, 3, 4), (2, 1, 4), (2, 2, 4)]), (2, [(2, 3, 4), (2, 3, 1)]), (-1, [(2, 3, 2)] * 3)],
    ids=["channels", "last-axis", "negative-axis"],
)
def test_concat(axis: int, shapes: list[tuple[int, ...]]) -> None:
    names = [f"x{i}" for i in range(len(shapes))]
    arrays = {n: x_of(s, i) for i, (n, s) in enumerate(zip(names, shapes, strict=True))}
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    model = onnx_model(
        [helper.make_node("Concat", names, ["y"], axis=axis)],
        dict(zip(names, shapes, strict=True)),
        {"y": out},
    )
    assert_matches_onnxruntime(model, arrays, **EXACT)


def test_concat_of_an_input_and_a_constant() -> None:
    x = x_of((2, 3), 4)
    constant = np.arange(2, dtype=np.float32).reshape(1, 2)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Concat", ["r", "c", "x"], ["y"], axis=1),
    ]
    model = onnx_model(nodes, {"x": (1, 3)}, {"y": (1, 8)}, {"c": constant})
    assert_matches_onnxruntime(model, {"x": x[:1]}, **EXACT)


def test_reshape_is_an_alias_without_code() -> None:
    """Reshape (and Flatten) emits no instruction of its own: the words are reread."""
    x = x_of(SHAPE, 5)
    nodes = [
        helper.make_node("Exp", ["x"], ["e"]),
        helper.make_node("Reshape", ["e", "shape"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Sqrt", ["f"], ["y"]),
    ]
    model = onnx_model(
        nodes, {"x": SHAPE}, {"y": (2, 60)}, {"shape": np.array([2, 12, 5], np.int64)}
    )
    binary = assert_matches_onnxruntime(model, {"x": x})
    counts = mnemonics(binary)
    assert counts[spec.SIMD_COPY.mnemonic] == counts[spec.SIMD_COPY2D.mnemonic] == 0


# (kind, attributes, id); opset 17's AveragePool has no dilations (they came with opset 19)
POOLS = [
    (kind, attrs, f"{kind}-{name}")
    for kind in ("MaxPool", "AveragePool")
    for attrs, name in (
        ({"kernel_shape": [2, 2], "strides": [2, 2]}, "plain"),
        ({"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, "padded"),
        ({"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 0, 1]}, "asymmetric"),
        ({"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, "ceil-mode"),
    )
] + [("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2]}, "MaxPool-dilated")]


@pytest.mark.parametrize(("kind", "attrs"), [p[:2] for p in POOLS], ids=[p[2] for p in POOLS])
def test_2d_pool(kind: str, attrs: dict[str, object]) -> None:
    """Each kernel offset's view is one strided `simd.copy2d` per plane."""
    x = x_of((2, 3, 7, 6), 6)
    node = helper.make_node(kind, ["x"], ["y"], **attrs)
    model = onnx_model([node], {"x": (2, 3, 7, 6)}, {"y": None})
    binary = assert_matches_onnxruntime(model, {"x": x}, rtol=POOL_RTOL)
    assert mnemonics(binary)[spec.SIMD_COPY2D.mnemonic] > 0


def test_average_pool_counting_the_padding() -> None:
    x = x_of((1, 2, 5, 5), 7)
    node = helper.make_node(
        "AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1
    )
    model = onnx_model([node], {"x": (1, 2, 5, 5)}, {"y": (1, 2, 5, 5)})
    assert_matches_onnxruntime(model, {"x": x}, rtol=POOL_RTOL)


@pytest.mark.parametrize("kind", ["MaxPool", "AveragePool"])
def test_1d_pool(kind: str) -> None:
    """Not 2-D: each offset's view gathered by runs of copies."""
    x = x_of((2, 3, 11), 8)
    node = helper.make_node(kind, ["x"], ["y"], kernel_shape=[3], strides=[2], pads=[1, 1])
    model = onnx_model([node], {"x": (2, 3, 11)}, {"y": (2, 3, 6)})
    assert_matches_onnxruntime(model, {"x": x}, rtol=POOL_RTOL)


def test_global_average_pool_is_one_reduction_per_channel() -> None:
    x = x_of((2, 4, 3, 5), 9)
    node = helper.make_node("GlobalAveragePool", ["x"], ["y"])
    model = onnx_model([node], {"x": (2, 4, 3, 5)}, {"y": (2, 4, 1, 1)})
    binary = assert_matches_onnxruntime(model, {"x": x}, rtol=POOL_RTOL)
    assert mnemonics(binary)[spec.SIMD_RSUM.mnemonic] == 4


def im2col_reference(x: np.ndarray, kernel: tuple[int, int], pads: tuple[int, ...]) -> np.ndarray:
    """(N, C, H, W) -> (N, P, C * kh * kw), stride 1: row p holds output position p's window,
    channel by channel, kernel offsets row-major, zeros in the padding."""
    top, left, bottom, right = pads
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    kh, kw = kernel
    out_h, out_w = padded.shape[2] - kh + 1, padded.shape[3] - kw + 1
    rows = [
        padded[:, :, i : i + kh, j : j + kw].reshape(x.shape[0], -1)
        for i in range(out_h)
        for j in range(out_w)
    ]
    return np.stack(rows, axis=1)


def test_im2col_that_no_crossbar_layer_streams_is_materialised() -> None:
    """An Im2Col whose result is a graph output has no QDense to stream into: it is gathered
    whole (lower_im2col). No ONNX op makes one, so the graph is built in the IR."""
    graph = Graph("im2col")
    x = graph.add_input("x", TensorType((1, 2, 4, 5), "float32"))
    windows = ops.Im2Col([x], name="windows", kernel=(2, 3), pads=(1, 0, 0, 1))
    graph.outputs.append(graph.build(windows, "y"))
    binary = imcc.Binary(compile_graph(graph, "edge-rram").program)
    data = x_of((3, 2, 4, 5), 10)
    got = simulate(binary, {"x": data})["y"]
    np.testing.assert_array_equal(got, im2col_reference(data, (2, 3), (1, 0, 0, 1)))


def test_transpose_of_a_convolution_result() -> None:
    """The conv's own Transpose is free (its result is channel-major); a further one copies.
    The conv is quantised: within CONV_REL_TOL of onnxruntime."""
    generator = rng(11)
    w = generator.normal(size=(2, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["c"], ["y"], perm=[0, 2, 3, 1]),
    ]
    model = onnx_model(nodes, {"x": (1, 3, 4, 4)}, {"y": (1, 4, 4, 2)}, {"w": w})
    x = generator.normal(size=(1, 3, 4, 4)).astype(np.float32)
    got = simulate(imcc.compile(model, "edge-rram"), {"x": x})["y"]
    want = reference(model, {"x": x})["y"]
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= CONV_REL_TOL * np.max(np.abs(want))


def test_a_pool_whose_padded_map_does_not_fit_beside_the_rest_runs_in_bands() -> None:
    """ResNet-18 at 16x16 on `isaac`: when the stem's max pool runs, its padded map (64 x
    10 x 10 words) does not fit what the 16,384-word buffer has left, so the pool runs in
    bands; exact against the interpreter (it was a compile error)."""
    model = zoo.resnet18(size=16, classes=10)
    x = rng(5).normal(size=(1, 3, 16, 16)).astype(np.float32)
    binary, graph = compile_onnx(model, "isaac", adc_bits=9)  # a lossless ADC: exact
    got = simulate(binary, {"image": x})["logits"]
    want = evaluate(graph, {"image": x.astype(np.float64)})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=EXACT_RTOL * np.max(np.abs(want)))
