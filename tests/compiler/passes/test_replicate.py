"""replicate (schedule = throughput): copies of the program on disjoint groups of cores."""

from __future__ import annotations

import numpy as np
import pytest

import imcc
from imcc.isa import spec
from tests.compiler.passes import golden


@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_golden_dump_after_replicate(model: str) -> None:
    """The graph is as `emit` left it: replicate rewrites only the program."""
    dump = golden.dump_after(model, "replicate", schedule="throughput")
    golden.check_golden(f"replicate.{model}", dump)
    assert dump == golden.dump_after(model, "emit")


# edge-rram's 4 cores: the default arrays hold each model on one core (4 replicas); 8 x 16
# arrays need two cores, which talk to each other (2 replicas, core operands shifted); 4 x 16
# arrays need three or four (1 replica)
SIZES = {"one-core": {}, "two-core": {"rows": 8, "cols": 16}, "most-cores": {"rows": 4, "cols": 16}}


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_replicas_fill_the_free_cores_and_multiply_the_bindings(model: str, size: str) -> None:
    options = SIZES[size]
    packed = golden.compile_model(model, **options).program
    replicated = golden.compile_model(model, schedule="throughput", **options).program
    cores = packed.target.chip.cores
    used = {c for c, code in enumerate(packed.code) if code} | {b.core for b in packed.bindings}
    group = max(used) + 1
    replicas = int(replicated.meta["replicas"])
    assert int(replicated.meta["replica_cores"]) == group
    assert replicas == cores // group and replicas * group <= cores
    assert len(replicated.bindings) == replicas * len(packed.bindings)
    expected = sorted(
        (b.core + r * group, b.array, b.image) for r in range(replicas) for b in packed.bindings
    )
    assert sorted((b.core, b.array, b.image) for b in replicated.bindings) == expected
    crossing = 0  # instructions whose core operands moved
    for r in range(replicas):  # the same code, core operands shifted by r * group
        for core in range(group):
            mine, theirs = replicated.code[core + r * group], packed.code[core]
            assert [i.spec for i in mine] == [i.spec for i in theirs]
            for a, b in zip(mine, theirs, strict=True):
                shifted = [
                    y + r * group if f.kind is spec.OperandKind.CORE else y
                    for f, y in zip(b.spec.fields, b.operands, strict=True)
                ]
                assert list(a.operands) == shifted
                crossing += shifted != list(b.operands)
    if size == "two-core":
        assert replicas == 2 and crossing  # the second replica talks to its own cores


@pytest.mark.parametrize("size", ["one-core", "two-core"])
@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_replicated_binary_computes_the_same_outputs(model: str, size: str) -> None:
    x = golden.inputs(model, count=3)
    packed = golden.compile_model(model, **SIZES[size]).binary
    binary = golden.compile_model(model, schedule="throughput", **SIZES[size]).binary
    packed_run = imcc.Simulator(packed, mode="functional").run(x)
    replicated = imcc.Simulator(binary, mode="functional").run(x)
    assert int(binary.program.meta["replicas"]) > 1
    for name, value in packed_run.outputs.items():
        np.testing.assert_array_equal(replicated.outputs[name], value)


def test_tree_replicas_bind_their_own_cam_arrays() -> None:
    """The forest fits one xtime core: 256 replicas, each binding the CAM images on its core."""
    packed = golden.compile_model("trees").program
    replicated = golden.compile_model("trees", schedule="throughput").program
    cores = packed.target.chip.cores
    replicas = int(replicated.meta["replicas"])
    assert replicated.meta["replica_cores"] == "1" and replicas == cores
    expected = sorted(
        (b.core + r, b.array, b.image) for r in range(replicas) for b in packed.cam_bindings
    )
    assert sorted((b.core, b.array, b.image) for b in replicated.cam_bindings) == expected
