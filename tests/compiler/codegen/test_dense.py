"""compiler/codegen/dense.py: crossbar layers (QDense) on the row path: one tile and many,
differential and offset sign encodings, tiles spread over cores, the fused activations.

With the ideal device and a lossless ADC (edge-rram: 9 bits >= log2(128 * 3 * 1 + 1)), every
MVM is exact integer arithmetic, so the simulator must equal the IR interpreter's reading of
the compiled (quantised) graph up to the float32 rounding of the output; against the float
model (onnxruntime) the departure is the quantisation error, bounded below from the steps.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph
from imcc.compiler.ir.interpreter import evaluate
from imcc.isa import spec
from imcc.isa.numerics import qmax
from imcc.isa.target import SignEncoding
from tests.compiler.codegen.graphs import (
    EXACT_RTOL,
    compile_onnx,
    executed,
    mnemonics,
    onnx_model,
    reference,
    rng,
    simulate,
)

# Slack on the quantisation bound below for float32 (onnxruntime's sums, the rounded output).
FLOAT32_SLACK = 1e-5

WEIGHT_BITS = INPUT_BITS = 8  # edge-rram's defaults


def quantisation_bound(
    x: np.ndarray, w: np.ndarray, activation_lipschitz: float = 1.0
) -> np.ndarray:
    """Worst-case |y_quantised - y| per sample and output for y = x @ w (+ b), with x rounded
    to steps s_x = max|x_row| / qmax (per input row, signed: the larger step of the two) and
    column n of w to s_w[n] = max|w[:, n]| / qmax: each operand is off by at most half a
    step, so |dy_n| <= sum_k |x_k| s_w[n]/2 + |w_kn| s_x/2 + s_x s_w[n] / 4. Relu, tanh and
    sigmoid are 1-Lipschitz, so the bound holds after them too."""
    s_x = np.max(np.abs(x), axis=-1, keepdims=True) / qmax(INPUT_BITS, signed=True)
    s_w = np.max(np.abs(w), axis=0) / qmax(WEIGHT_BITS, signed=True)
    k = w.shape[0]
    bound = (
        np.abs(x).sum(axis=-1, keepdims=True) * s_w / 2
        + s_x * np.abs(w).sum(axis=0) / 2
        + k * s_x * s_w / 4
    )
    return bound


def gemm_model(
    k: int, n: int, seed: int, activation: str | None = None, batch: int | str = "N"
) -> tuple[onnx.ModelProto, np.ndarray]:
    """y = act(x @ w + b) as a Gemm with transB = 1 (w stored (n, k), as torch exports it)."""
    generator = rng(seed)
    w = (generator.normal(size=(k, n)) / np.sqrt(k)).astype(np.float32)
    b = generator.normal(0, 0.1, size=n).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "wt", "b"], ["h" if activation else "y"], transB=1)]
    if activation:
        nodes.append(helper.make_node(activation, ["h"], ["y"]))
    model = onnx_model(
        nodes, {"x": [batch, k]}, {"y": [batch, n]}, {"wt": np.ascontiguousarray(w.T), "b": b}
    )
    return model, w


def the_qdense(graph: Graph) -> ops.QDense:
    (qdense,) = [op for op in graph.ops if isinstance(op, ops.QDense)]
    return qdense


def check_exact_and_bounded(
    model: onnx.ModelProto, w: np.ndarray, x: np.ndarray, **options: object
) -> tuple[np.ndarray, Graph]:
    """Simulate; compare with the interpreter (exact) and onnxruntime (bounded); return the
    simulated output and the compiled graph."""
    binary, graph = compile_onnx(model, **options)
    got = simulate(binary, {"x": x})["y"]
    exact = evaluate(graph, {"x": x.astype(np.float64)})[0]
    np.testing.assert_allclose(got, exact, rtol=0, atol=EXACT_RTOL * np.max(np.abs(exact)))
    expected = reference(model, {"x": x})["y"]
    assert got.shape == expected.shape
    bound = quantisation_bound(x.astype(np.float64), w.astype(np.float64))
    excess = np.abs(got - expected) - bound - FLOAT32_SLACK * np.max(np.abs(expected))
    assert np.all(excess <= 0), f"error exceeds the quantisation bound by {excess.max():g}"
    return got, graph


@pytest.mark.parametrize("activation", [None, "Relu", "Sigmoid", "Tanh"])
def test_one_tile_layer(activation: str | None) -> None:
    """20 x 10 weights fit one array; the activation runs in the epilogue, fused."""
    model, w = gemm_model(20, 10, seed=1, activation=activation)
    x = rng(2).normal(size=(5, 20)).astype(np.float32)
    _, graph = check_exact_and_bounded(model, w, x)
    qdense = the_qdense(graph)
    assert len(qdense.tiles) == 1
    assert qdense.attrs["activation"] == (activation or "none").lower()
    assert not [op for op in graph.ops if isinstance(op, ops.Unary)]  # folded into the layer


def test_the_bound_fails_at_fewer_bits() -> None:
    """The bound is no formality: 5-bit weights and inputs on the same layer exceed it."""
    model, w = gemm_model(20, 10, seed=1)
    x = rng(2).normal(size=(5, 20)).astype(np.float32)
    binary, _ = compile_onnx(model, weight_bits=5, input_bits=5)
    error = np.abs(simulate(binary, {"x": x})["y"] - reference(model, {"x": x})["y"])
    assert np.any(error > quantisation_bound(x.astype(np.float64), w.astype(np.float64)))


def test_matmul_with_a_constant_weight_and_an_add() -> None:
    """MatMul by a constant 2-D weight then Add of a constant bias: one crossbar layer."""
    generator = rng(3)
    w = (generator.normal(size=(12, 7)) / np.sqrt(12)).astype(np.float32)
    b = generator.normal(size=7).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["y"]),
    ]
    model = onnx_model(nodes, {"x": ["N", 12]}, {"y": ["N", 7]}, {"w": w, "b": b})
    x = generator.normal(size=(3, 12)).astype(np.float32)
    _, graph = check_exact_and_bounded(model, w, x)
    assert [op.kind for op in graph.ops] == ["QDense"]


def test_a_layer_larger_than_the_chip_runs_in_tiles_and_phases() -> None:
    """300 x 200 weights on edge-rram: 3 row blocks of 128 and 200 outputs x 8 columns
    (4 two-bit slices, G+ and G-) over 128-column arrays, 39 tiles for 32 arrays: partial sums
    added across row blocks, and arrays reprogrammed between phases."""
    model, w = gemm_model(300, 200, seed=4)
    x = rng(5).normal(size=(3, 300)).astype(np.float32)
    _, graph = check_exact_and_bounded(model, w, x)
    qdense = the_qdense(graph)
    assert len({t.row0 for t in qdense.tiles}) == 3
    assert len(qdense.tiles) == 39


def test_offset_encoding_equals_the_differential_one() -> None:
    """sign_encoding = offset stores w + 2^(b-1) on one device per cell and subtracts
    offset * sum(x_int) digitally; both encodings give the exact integer product, so the
    outputs are the same bit for bit, on one tile and on many."""
    for k, n, seed in ((20, 10, 6), (300, 60, 7)):
        model, w = gemm_model(k, n, seed=seed, activation="Tanh")
        x = rng(seed).normal(size=(4, k)).astype(np.float32)
        differential, _ = check_exact_and_bounded(model, w, x)
        offset, graph = check_exact_and_bounded(model, w, x, sign_encoding="offset")
        slicing = the_qdense(graph).slicing
        assert slicing.signs == 1 and slicing.offset == 2 ** (WEIGHT_BITS - 1)
        np.testing.assert_array_equal(offset, differential)


def test_offset_encoding_is_recorded_in_the_binary() -> None:
    model, _ = gemm_model(20, 10, seed=8)
    binary, _ = compile_onnx(model, sign_encoding="offset")
    assert binary.program.target.xbar.sign_encoding == SignEncoding.OFFSET


def test_spread_tiles_over_cores_changes_nothing_but_the_cores() -> None:
    """spread = True deals the 8 tiles of a 200 x 60 layer round-robin over the 4 cores;
    partial sums travel to the home core. Exact both ways, so equal bit for bit."""
    model, w = gemm_model(200, 60, seed=9)
    x = rng(10).normal(size=(4, 200)).astype(np.float32)
    packed, packed_graph = check_exact_and_bounded(model, w, x)
    spread, spread_graph = check_exact_and_bounded(model, w, x, spread=True)
    assert len({core for core, _ in the_qdense(packed_graph).placement}) == 1
    assert len({core for core, _ in the_qdense(spread_graph).placement}) == 4
    np.testing.assert_array_equal(spread, packed)
    binary, _ = compile_onnx(model, spread=True)
    sends = mnemonics(binary)[spec.NOC_SEND.mnemonic]
    assert sends > 0  # inputs out and partial sums back


def test_tiles_of_one_row_block_go_out_as_one_mvm_spanning_their_arrays() -> None:
    """200 x 60 packed on one core: 2 row blocks of 4 column tiles (60 outputs x 8 columns
    over 128-column arrays) on arrays a0..a7. The tiles of a row block read one input and,
    but for the last, have one shape, so each block's MVMs go out as one spanning its
    arrays (PUMA's MVM coalescing); every array still runs once per input, and the result is
    exact."""
    model, w = gemm_model(200, 60, seed=9)
    x = rng(10).normal(size=(1, 200)).astype(np.float32)
    _, graph = check_exact_and_bounded(model, w, x)  # exact against the interpreter
    qdense = the_qdense(graph)
    binary, _ = compile_onnx(model)
    mvms = [
        instr
        for code in binary.program.code
        for _, instr, _ in executed(code)
        if instr.spec is spec.XBAR_MVM
    ]
    spans = sorted(instr.operand("k") for instr in mvms)
    assert sum(spans) == len(qdense.tiles) == 8
    assert max(spans) > 1 and len(mvms) < len(qdense.tiles)
    for instr in mvms:  # a span's tiles read one input and have one shape
        first, k = instr.operand("array"), instr.operand("k")
        placed = zip(qdense.tiles, qdense.placement, strict=True)
        spanned = [t for t, (_, a) in placed if first <= a < first + k]
        assert len({(t.row0, t.rows, t.outputs) for t in spanned}) == 1


def test_two_layers_in_a_row() -> None:
    """A QDense whose input is another QDense's result: its scale is set at run time."""
    generator = rng(11)
    w0 = (generator.normal(size=(16, 24)) / 4).astype(np.float32)
    w1 = (generator.normal(size=(24, 5)) / 5).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w1"], ["y"]),
    ]
    model = onnx_model(nodes, {"x": ["N", 16]}, {"y": ["N", 5]}, {"w0": w0, "w1": w1})
    x = generator.normal(size=(6, 16)).astype(np.float32)
    binary, graph = compile_onnx(model)
    got = simulate(binary, {"x": x})["y"]
    exact = evaluate(graph, {"x": x.astype(np.float64)})[0]
    np.testing.assert_allclose(got, exact, rtol=0, atol=EXACT_RTOL * np.max(np.abs(exact)))
    assert len([op for op in graph.ops if isinstance(op, ops.QDense)]) == 2
