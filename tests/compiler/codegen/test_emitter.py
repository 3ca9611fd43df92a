"""compiler/codegen/emitter.py: the registry of lowerings. Every IR op that reaches `emit`
has one; an op that has none is a CompileError naming its kind and node."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from imcc.compiler.codegen.emitter import LOWERINGS, Emitter, Lowering, lowers
from imcc.compiler.driver import compile_graph
from imcc.compiler.ir import ops
from imcc.compiler.ir.cam import CamTrees
from imcc.compiler.ir.core import Graph, Op, TensorType, Value
from imcc.compiler.ir.trees import TreeEnsemble
from imcc.compiler.passes.manager import Context
from imcc.compiler.target import load_target
from imcc.isa.diagnostics import CompileError

# Ops of OPS that never reach emit, each with the pass that removes it: canonicalize drops
# Identity, folds BatchNorm into the layer before it (or a Mul and an Add) and lowers Conv to
# Im2Col -> Dense -> Transpose -> Reshape; quantize makes every Dense a QDense; acam-map makes
# every TreeEnsemble a CamTrees (which is not in OPS, but reaches emit).
REMOVED_BEFORE_EMIT = {
    "Identity": "canonicalize",
    "BatchNorm": "canonicalize",
    "Conv": "canonicalize",
    "Dense": "quantize",
    "TreeEnsemble": "acam-map",
}
# Ops made by passes rather than frontends, which reach emit too
MADE_BY_PASSES = (CamTrees,)


def emitter() -> Emitter:
    target = load_target("edge-rram")
    return Emitter(Graph("empty"), Context(target=target, options={}))


def bare(cls: type[Op]) -> Op:
    """An instance of `cls` with one operand, enough for the registry's conditions (Op's own
    constructor: CamTrees' also wants a CamPlan, which the lookup never reads)."""
    op = cls.__new__(cls)
    Op.__init__(op, [Value("x", TensorType((1, 4), "float32"))], name=f"a {cls.kind}")
    return op


def test_the_removed_ops_are_ops() -> None:
    assert set(REMOVED_BEFORE_EMIT) <= set(ops.OPS)
    assert ops.OPS["TreeEnsemble"] is TreeEnsemble


@pytest.mark.parametrize(
    "cls",
    [c for k, c in sorted(ops.OPS.items()) if k not in REMOVED_BEFORE_EMIT] + list(MADE_BY_PASSES),
    ids=lambda c: c.kind,
)
def test_every_op_that_reaches_emit_has_a_lowering(cls: type[Op]) -> None:
    entries = LOWERINGS.get(cls)
    assert entries, f"{cls.kind} has no entry in LOWERINGS"
    lowering = emitter().lowering(bare(cls))
    assert isinstance(lowering, Lowering)
    # the unconditional lowering is the one found when no condition holds
    assert lowering is next(e for e in entries if e.when is None)


@pytest.mark.parametrize("kind", sorted(REMOVED_BEFORE_EMIT))
def test_ops_removed_before_emit_have_no_lowering_of_their_own(kind: str) -> None:
    """Dense has none of its own: QDense's lowering is registered for QDense only."""
    assert ops.OPS[kind] not in LOWERINGS


def test_every_lowering_is_for_an_op_class() -> None:
    for cls, entries in LOWERINGS.items():
        assert issubclass(cls, Op)
        unconditional = [e for e in entries if e.when is None]
        assert len(unconditional) <= 1, cls.kind
        # conditional ones are tried first
        assert entries[: len(entries) - len(unconditional)] == [
            e for e in entries if e.when is not None
        ]


def test_conditional_lowering_is_tried_first() -> None:
    """QDense: the pixel-block lowering (a 2-D convolution) applies only where its condition
    holds, else the row path."""
    entries = LOWERINGS[ops.QDense]
    assert entries[0].when is not None and entries[-1].when is None
    assert entries[0].emit.__module__ == "imcc.compiler.codegen.convolution"
    assert entries[-1].emit.__module__ == "imcc.compiler.codegen.dense"


def test_a_second_unconditional_lowering_is_refused() -> None:
    class Twice(Op):
        kind = "Twice"

    def first(em: Emitter, op: Op) -> None: ...

    try:
        lowers(Twice)(first)
        with pytest.raises(ValueError, match="Twice has two unconditional lowerings"):
            lowers(Twice)(first)
    finally:
        LOWERINGS.pop(Twice, None)


class Mystery(ops.Unary):
    """An op no lowering module knows (a subclass of Unary, which has no lowering itself)."""

    kind = "Mystery"


def test_an_op_without_a_lowering_is_a_compile_error_naming_its_kind() -> None:
    assert Mystery not in LOWERINGS and ops.Unary not in LOWERINGS
    with pytest.raises(CompileError) as info:
        emitter().lowering(bare(Mystery))
    assert info.value.message == "the emitter has no lowering for Mystery"
    assert info.value.loc == bare(Mystery).loc


def test_compiling_an_op_without_a_lowering_fails_in_emit() -> None:
    graph = Graph("mystery")
    x = graph.add_input("x", TensorType((1, 4), "float32"))
    graph.outputs.append(graph.build(Mystery([x], name="odd"), "y"))
    with pytest.raises(CompileError) as info:
        compile_graph(graph, "edge-rram")
    error = info.value
    assert "the emitter has no lowering for Mystery" in error.message
    assert "emit" in str(error)  # the pass manager names the pass
    assert error.loc is not None and "odd" in str(error.loc)


def test_lowering_is_found_through_a_base_class() -> None:
    """A subclass of a lowered op class uses its base's lowering (the MRO is searched)."""

    class Rectifier(ops.Relu):
        kind: ClassVar[str] = "Rectifier"

    assert Rectifier not in LOWERINGS
    found = emitter().lowering(bare(Rectifier))
    assert found is LOWERINGS[ops.Relu][0]


def test_constants_are_stored_once() -> None:
    """Emitter.constant_addr: equal constants share one block of global memory."""
    em = emitter()
    first = em.constant_addr(np.arange(3.0))
    assert em.constant_addr(np.arange(3.0)) == first
    assert em.constant_addr(np.arange(4.0)) != first
    assert len(em.const_blocks) == 2
