"""schedule: every op -> the core that runs it."""

from __future__ import annotations

from collections import Counter

import pytest

from imcc.compiler.ir import ops
from tests.compiler.passes import golden

SPREAD = {"rows": 4, "cols": 16, "spread": True}  # tiles over all four cores


@pytest.mark.parametrize("model", sorted(golden.MODELS))
def test_golden_dump_after_schedule(model: str) -> None:
    golden.check_golden(f"schedule.{model}", golden.dump_after(model, "schedule"))


@pytest.mark.parametrize(
    ("model", "options"),
    [("mlp", {}), ("cnn", {}), ("trees", {}), ("mlp", SPREAD), ("cnn", SPREAD)],
    ids=["mlp", "cnn", "trees", "mlp-spread", "cnn-spread"],
)
def test_every_op_has_a_core_of_the_target(model: str, options: dict[str, object]) -> None:
    compiled = golden.compile_model(model, **options)
    cores = compiled.program.target.chip.cores
    graph = compiled.graphs["schedule"]
    assert graph.ops
    for op in graph.ops:
        assert 0 <= op.core < cores, op


@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_a_layer_runs_on_a_core_holding_most_of_its_tiles(model: str) -> None:
    """Its partial sums then cross the network least: no core holds more of its tiles."""
    graph = golden.compile_model(model, **SPREAD).graphs["schedule"]
    homes = set()
    for op in graph.walk(ops.QDense):
        votes = Counter(core for core, _ in op.placement)
        assert votes[op.core] == max(votes.values())
        homes.add(op.core)
    for op in graph.ops:  # the rest follow their first computed operand
        producers = [v.producer for v in op.inputs if v.producer is not None]
        if not isinstance(op, ops.QDense) and producers:
            assert op.core == producers[0].core
