"""compiler/codegen/matmul.py: products of two activations on the vector unit (attention's
scores and context), with batch dimensions and broadcasting, against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from imcc.isa import spec
from tests.compiler.codegen.graphs import assert_matches_onnxruntime, mnemonics, onnx_model, rng

# A product sums K = 5..8 terms: onnxruntime rounds each partial sum to float32, the vector
# unit does not, so results that cancel carry up to K float32 roundings of the largest term
# (K * 2^-24 * max|a| * max|b| ~ 1e-6 for these operands, |values| < 4). MATMUL_ATOL is 4x
# that; MATMUL_RTOL is the SIMD one.
MATMUL_RTOL = 1e-6
MATMUL_ATOL = 4e-6


@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [
        ((2, 4, 5), (2, 5, 3)),
        ((2, 3, 4, 5), (2, 3, 5, 6)),
        ((2, 3, 4, 5), (2, 1, 5, 6)),
        ((2, 1, 4, 5), (2, 3, 5, 6)),
    ],
    ids=["per-sample", "batch-dims", "broadcast-b", "broadcast-a"],
)
def test_product_of_two_inputs(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    generator = rng(1)
    a = generator.normal(size=a_shape).astype(np.float32)
    b = generator.normal(size=b_shape).astype(np.float32)
    lead = np.broadcast_shapes(a_shape[:-2], b_shape[:-2])
    out = (*lead, a_shape[-2], b_shape[-1])
    model = onnx_model(
        [helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": a_shape, "b": b_shape}, {"y": out}
    )
    binary = assert_matches_onnxruntime(model, {"a": a, "b": b}, rtol=MATMUL_RTOL, atol=MATMUL_ATOL)
    counts = mnemonics(binary)
    assert counts[spec.XBAR_MVM.mnemonic] == 0  # no crossbar holds an activation
    # per product of the sample: M rows x K vector-scalar multiplies of N lanes
    products = int(np.prod(lead[1:], dtype=np.int64))
    assert counts[spec.SIMD_MUL_S.mnemonic] == products * a_shape[-2] * a_shape[-1]


def test_attention_scores_softmax_context() -> None:
    """softmax(q @ k^T / sqrt(d)) @ v: both products on the vector unit, a transpose between."""
    generator = rng(2)
    shape = (2, 4, 8)
    q, k, v = (generator.normal(size=shape).astype(np.float32) for _ in range(3))
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Div", ["s", "root_d"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ]
    model = onnx_model(
        nodes,
        {"q": shape, "k": shape, "v": shape},
        {"y": shape},
        {"root_d": np.array(np.sqrt(8.0), dtype=np.float32)},
    )
    assert_matches_onnxruntime(model, {"q": q, "k": k, "v": v}, rtol=MATMUL_RTOL, atol=MATMUL_ATOL)


def test_product_with_a_constant_three_dimensional_operand() -> None:
    """A constant b of rank 3 is no crossbar weight (canonicalize takes only 2-D ones): the
    vector unit multiplies by it as by an activation."""
    generator = rng(3)
    a = generator.normal(size=(2, 3, 4, 5)).astype(np.float32)
    b = generator.normal(size=(1, 3, 5, 2)).astype(np.float32)
    model = onnx_model(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        {"a": (2, 3, 4, 5)},
        {"y": (2, 3, 4, 2)},
        {"b": b},
    )
    binary = assert_matches_onnxruntime(model, {"a": a}, rtol=MATMUL_RTOL, atol=MATMUL_ATOL)
    assert mnemonics(binary)[spec.XBAR_MVM.mnemonic] == 0
