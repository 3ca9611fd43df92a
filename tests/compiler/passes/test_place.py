"""place: every tile -> its own (core, array) of the target."""

from __future__ import annotations

import pytest

from imcc.compiler.ir import ops
from tests.compiler.passes import golden

# small arrays: the MLP needs 30 tiles, the CNN 24, of the 4 x 8 arrays of edge-rram
SMALL = {"rows": 4, "cols": 16}
PLACEMENTS = {
    "packed": {},
    "spread": {"spread": True},
    "latency": {"schedule": "latency"},
    "balanced": {"schedule": "balanced"},
}


@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_golden_dump_after_place(model: str) -> None:
    golden.check_golden(f"place.{model}", golden.dump_after(model, "place"))


@pytest.mark.parametrize("placement", sorted(PLACEMENTS))
@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_every_tile_gets_a_distinct_array_of_the_target(model: str, placement: str) -> None:
    """Over the whole model (copies of schedule = balanced included), no two tiles share an
    array, and every (core, array) exists on the chip."""
    compiled = golden.compile_model(model, **SMALL, **PLACEMENTS[placement])
    target = compiled.program.target
    slots = []
    for op in compiled.graphs["place"].walk(ops.QDense):
        assert len(op.placement) == len(op.tiles)
        slots += list(op.placement)
        for copy in op.copies:
            assert len(copy) == len(op.tiles)
            slots += list(copy)
    assert len(set(slots)) == len(slots)
    for core, array in slots:
        assert 0 <= core < target.chip.cores and 0 <= array < target.core.arrays
    if placement != "packed":
        assert len({core for core, _ in slots}) > 1  # the tiles do spread over cores


def test_balanced_gives_the_convolution_copies_on_spare_arrays() -> None:
    graph = golden.compile_model("cnn", **SMALL, schedule="balanced").graphs["place"]
    conv, fc = graph.walk(ops.QDense)
    assert conv.copies and not fc.copies  # only a convolution takes turns by output row
