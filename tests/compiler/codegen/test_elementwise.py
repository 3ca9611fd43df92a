"""compiler/codegen/elementwise.py: every unary op, and the binary ops with a vector, a
one-word (vector-scalar row) and a broadcast second operand, against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from imcc.compiler.codegen.elementwise import BINARY, UNARY
from imcc.compiler.ir import ops
from tests.compiler.codegen.graphs import (
    assert_matches_onnxruntime,
    mnemonics,
    onnx_model,
    rng,
    simulate,
)

SHAPE = (2, 3, 5)
# op -> the inputs it is defined on: Sqrt and Log need positive ones
UNARY_CASES = {
    "Relu": lambda x: x,
    "Sigmoid": lambda x: 3 * x,
    "Tanh": lambda x: 2 * x,
    "Exp": lambda x: x,
    "Erf": lambda x: x,
    "Sqrt": lambda x: np.abs(x) + 0.1,
    "Log": lambda x: np.abs(x) + 0.1,
}
BINARY_OPS = ("Add", "Sub", "Mul", "Div", "Min")
# the ops with a vector-scalar row; the others broadcast a one-word operand to a vector
SCALAR_ROW_OPS = tuple(k for k in BINARY_OPS if BINARY[ops.OPS[k]][1] is not None)


def test_every_unary_lowering_is_covered() -> None:
    assert {cls.kind for cls in UNARY} == set(UNARY_CASES)
    assert {cls.kind for cls in BINARY} == set(BINARY_OPS)
    assert all(issubclass(cls, ops.Unary) for cls in UNARY)


@pytest.mark.parametrize("kind", UNARY_CASES)
def test_unary(kind: str) -> None:
    x = UNARY_CASES[kind](rng(1).normal(size=SHAPE)).astype(np.float32)
    model = onnx_model([helper.make_node(kind, ["x"], ["y"])], {"x": SHAPE}, {"y": SHAPE})
    binary = assert_matches_onnxruntime(model, {"x": x})
    row = UNARY[ops.OPS[kind]]
    assert mnemonics(binary)[row.mnemonic] == 1  # one instruction over the whole sample


def _divisor_safe(kind: str, b: np.ndarray) -> np.ndarray:
    """Divisors kept away from zero, so the quotient is well conditioned."""
    return np.sign(b) * (np.abs(b) + 0.5) if kind == "Div" else b


@pytest.mark.parametrize("kind", BINARY_OPS)
def test_binary_of_two_vectors(kind: str) -> None:
    """Both operands computed at run time, of the result's shape: the vector row."""
    generator = rng(2)
    a = generator.normal(size=SHAPE).astype(np.float32)
    b = _divisor_safe(kind, generator.normal(size=SHAPE)).astype(np.float32)
    model = onnx_model(
        [helper.make_node(kind, ["a", "b"], ["y"])], {"a": SHAPE, "b": SHAPE}, {"y": SHAPE}
    )
    assert_matches_onnxruntime(model, {"a": a, "b": b})


@pytest.mark.parametrize("kind", SCALAR_ROW_OPS)
def test_binary_with_a_scalar_constant(kind: str) -> None:
    """A one-word second operand: the vector-scalar row, the word read by every lane."""
    a = rng(3).normal(size=SHAPE).astype(np.float32)
    model = onnx_model(
        [helper.make_node(kind, ["a", "s"], ["y"])],
        {"a": SHAPE},
        {"y": SHAPE},
        {"s": np.array(-1.75, dtype=np.float32)},
    )
    binary = assert_matches_onnxruntime(model, {"a": a})
    vector_row, scalar_row = BINARY[ops.OPS[kind]]
    assert scalar_row is not None
    assert mnemonics(binary)[scalar_row.mnemonic] == 1
    assert mnemonics(binary)[vector_row.mnemonic] == 0


@pytest.mark.parametrize("kind", SCALAR_ROW_OPS)
def test_binary_with_a_computed_scalar(kind: str) -> None:
    """A one-word operand computed at run time (per sample: shape (N, 1, 1))."""
    generator = rng(4)
    a = generator.normal(size=SHAPE).astype(np.float32)
    s = _divisor_safe(kind, generator.normal(size=(2, 1, 1))).astype(np.float32)
    model = onnx_model(
        [helper.make_node(kind, ["a", "s"], ["y"])],
        {"a": SHAPE, "s": (2, 1, 1)},
        {"y": SHAPE},
    )
    binary = assert_matches_onnxruntime(model, {"a": a, "s": s})
    _, scalar_row = BINARY[ops.OPS[kind]]
    assert scalar_row is not None and mnemonics(binary)[scalar_row.mnemonic] == 1


@pytest.mark.parametrize("kind", SCALAR_ROW_OPS)
def test_binary_with_a_scalar_first_operand(kind: str) -> None:
    """A one-word first operand has no vector-scalar row: it is broadcast to a vector."""
    b = _divisor_safe(kind, rng(5).normal(size=SHAPE)).astype(np.float32)
    model = onnx_model(
        [helper.make_node(kind, ["s", "b"], ["y"])],
        {"b": SHAPE},
        {"y": SHAPE},
        {"s": np.array(2.5, dtype=np.float32)},
    )
    binary = assert_matches_onnxruntime(model, {"b": b})
    vector_row, scalar_row = BINARY[ops.OPS[kind]]
    assert scalar_row is not None
    assert mnemonics(binary)[vector_row.mnemonic] == 1
    assert mnemonics(binary)[scalar_row.mnemonic] == 0


@pytest.mark.parametrize("kind", BINARY_OPS)
def test_binary_broadcasts_a_constant_row(kind: str) -> None:
    """A constant of the trailing axis, broadcast at compile time."""
    generator = rng(6)
    a = generator.normal(size=SHAPE).astype(np.float32)
    row = _divisor_safe(kind, generator.normal(size=SHAPE[-1:])).astype(np.float32)
    model = onnx_model(
        [helper.make_node(kind, ["a", "row"], ["y"])], {"a": SHAPE}, {"y": SHAPE}, {"row": row}
    )
    assert_matches_onnxruntime(model, {"a": a})


@pytest.mark.parametrize("kind", BINARY_OPS)
@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [((2, 3, 5), (2, 1, 5)), ((2, 3, 5), (2, 3, 1)), ((2, 1, 5), (2, 3, 1))],
    ids=["middle-axis", "last-axis", "both-operands"],
)
def test_binary_broadcasts_computed_operands(
    kind: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...]
) -> None:
    """Computed operands broadcast by copies of runs: a repeated row, a repeated element, and
    both operands growing to a shape neither has."""
    generator = rng(7)
    a = generator.normal(size=a_shape).astype(np.float32)
    b = _divisor_safe(kind, generator.normal(size=b_shape)).astype(np.float32)
    out = tuple(int(d) for d in np.broadcast_shapes(a_shape, b_shape))
    model = onnx_model(
        [helper.make_node(kind, ["a", "b"], ["y"])], {"a": a_shape, "b": b_shape}, {"y": out}
    )
    assert_matches_onnxruntime(model, {"a": a, "b": b})


def test_chain_of_elementwise_ops() -> None:
    """Results feed the next op from the buffer: y = sqrt(exp(x) + 1) * tanh(x) - x / 3."""
    x = rng(8).normal(size=SHAPE).astype(np.float32)
    nodes = [
        helper.make_node("Exp", ["x"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["e1"]),
        helper.make_node("Sqrt", ["e1"], ["r"]),
        helper.make_node("Tanh", ["x"], ["t"]),
        helper.make_node("Mul", ["r", "t"], ["p"]),
        helper.make_node("Div", ["x", "three"], ["q"]),
        helper.make_node("Sub", ["p", "q"], ["y"]),
    ]
    constants = {"one": np.array(1.0, np.float32), "three": np.array(3.0, np.float32)}
    model = onnx_model(nodes, {"x": SHAPE}, {"y": SHAPE}, constants)
    assert_matches_onnxruntime(model, {"x": x})


def test_min_of_a_scalar_broadcasts_it_to_the_vector_row() -> None:
    """Min has no vector-scalar row: its one-word operand is broadcast, one simd.min."""
    a = rng(9).normal(size=SHAPE).astype(np.float32)
    model = onnx_model(
        [helper.make_node("Min", ["a", "s"], ["y"])],
        {"a": SHAPE},
        {"y": SHAPE},
        {"s": np.array(0.25, dtype=np.float32)},
    )
    binary = assert_matches_onnxruntime(model, {"a": a})
    vector_row, scalar_row = BINARY[ops.Min]
    assert scalar_row is None and mnemonics(binary)[vector_row.mnemonic] == 1


def test_variadic_min_is_a_chain_and_nan_wins_as_in_onnxruntime() -> None:
    """Min of three operands (one a broadcast constant, one with NaNs made at run time by the
    square root of negatives): the result is NaN where an operand is, as onnxruntime gives."""
    generator = rng(10)
    a, b = (generator.normal(size=SHAPE).astype(np.float32) for _ in range(2))
    c = generator.normal(size=SHAPE[-1:]).astype(np.float32)
    model = onnx_model(
        [
            helper.make_node("Sqrt", ["b"], ["root"]),  # NaN where b < 0
            helper.make_node("Min", ["a", "root", "c"], ["y"]),
        ],
        {"a": SHAPE, "b": SHAPE},
        {"y": SHAPE},
        {"c": c},
    )
    binary = assert_matches_onnxruntime(model, {"a": a, "b": b})
    assert np.isnan(simulate(binary, {"a": a, "b": b})["y"]).sum() == (b < 0).sum() > 0
    assert mnemonics(binary)[BINARY[ops.Min][0].mnemonic] == 2
