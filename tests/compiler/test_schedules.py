"""Scheduling modes: latency (each layer over all cores), throughput (the model replicated),
and streaming samples through the cycle-level simulator to measure both."""

from __future__ import annotations

import numpy as np
import pytest

import imcc
from imcc.isa import spec
from imcc.isa.diagnostics import CompileError, SimulationError
from imcc.isa.target import Target
from tests.conftest import big_target, mlp_onnx

# Two 512-wide layers: 128 tiles each on 16-array cores, so a layer fills 8 cores packed.
MODEL = mlp_onnx([256, 512, 512, 10], ["relu", "relu", "none"], seed=0)
X = np.random.default_rng(0).standard_normal((3, 256)).astype(np.float32)


@pytest.fixture(scope="module")
def binaries() -> dict[str, imcc.Binary]:
    # One SIMD lane per core, as PUMA's: a core's MVMs start all its arrays at once (one
    # xbar.mvm spans them), so what spreading a layer over more cores shares out is the
    # vector work of recombining the slices and adding the partial sums. With 32 lanes that
    # work is small beside the network traffic spreading adds, and packed cores are faster.
    data = big_target(cores=64, arrays=16).to_dict()
    data["core"]["simd_lanes"] = 1
    target = Target.from_dict(data, "test target")
    return {s: imcc.compile(MODEL, target, schedule=s) for s in ("packed", "latency", "throughput")}


def test_every_schedule_computes_the_same_bits(binaries: dict[str, imcc.Binary]) -> None:
    results = {s: imcc.Simulator(b, mode="functional").run(X).outputs for s, b in binaries.items()}
    for outputs in results.values():
        for name, value in outputs.items():
            assert np.array_equal(value, results["packed"][name])


def test_throughput_replicates_the_program_on_disjoint_cores(
    binaries: dict[str, imcc.Binary],
) -> None:
    packed, replicated = binaries["packed"].program, binaries["throughput"].program
    group = int(replicated.meta["replica_cores"])
    replicas = int(replicated.meta["replicas"])
    assert group == 1 + max(b.core for b in packed.bindings)
    assert replicas == 64 // group > 1
    assert len(replicated.bindings) == replicas * len(packed.bindings)
    for r in range(replicas):
        for core in range(group):
            copy = replicated.code[r * group + core]
            assert len(copy) == len(packed.code[core])
            for ours, theirs in zip(copy, packed.code[core], strict=True):
                cores = [f.kind is spec.OperandKind.CORE for f in ours.spec.fields]
                shifted = [
                    v - r * group if c else v for v, c in zip(ours.operands, cores, strict=True)
                ]
                assert tuple(shifted) == theirs.operands


def test_latency_and_throughput_modes_each_win_their_measure(
    binaries: dict[str, imcc.Binary],
) -> None:
    """Measured on the cycle-level model (not host time): one input is fastest with every
    layer over all cores; a stream of 24 is fastest with replicas, which exchange nothing."""
    x = X[:1]
    one = {s: imcc.Simulator(b).stream(x, 1) for s, b in binaries.items()}
    many = {s: imcc.Simulator(b).stream(x, 24) for s, b in binaries.items()}
    assert one["latency"].first_cycles < one["throughput"].first_cycles
    assert one["latency"].first_cycles < one["packed"].first_cycles
    assert many["throughput"].inferences_per_s > many["latency"].inferences_per_s
    assert many["throughput"].inferences_per_s > many["packed"].inferences_per_s
    # a replica's single input is the packed program's
    assert one["throughput"].first_cycles == one["packed"].first_cycles


def test_a_stream_of_one_is_a_run_and_a_stream_overlaps_samples(
    binaries: dict[str, imcc.Binary],
) -> None:
    sim = imcc.Simulator(binaries["packed"])
    single = sim.run(X[:1]).report
    assert sim.stream(X[:1], 1).first_cycles == single.cycles
    stream = sim.stream(X[:1], 8)
    assert stream.first_cycles == single.cycles  # the first sample is not slowed down
    assert list(stream.completions) == sorted(stream.completions)
    # layers on different cores work on different samples at once
    assert stream.makespan_cycles < 8 * single.cycles
    assert stream.energy_pj_per_inference == pytest.approx(single.energy_pj, rel=0.25)


def test_bad_schedules_and_streams_are_clear_errors(binaries: dict[str, imcc.Binary]) -> None:
    with pytest.raises(CompileError, match="schedule = 'fast'; expected one of packed"):
        imcc.compile(MODEL, big_target(cores=64, arrays=16), schedule="fast")
    with pytest.raises(SimulationError, match="needs the cycle-level simulator"):
        imcc.Simulator(binaries["packed"], mode="functional").stream(X[:1], 2)
    with pytest.raises(SimulationError, match="samples must be a positive integer"):
        imcc.Simulator(binaries["packed"]).stream(X[:1], 0)


def test_balanced_copies_the_slowest_convolution_and_computes_the_same_bits() -> None:
    """schedule = balanced: spare arrays hold copies of the convolution with the most MVM
    work; its blocks of output rows take turns on the copies, each copy building its own
    windows and finishing its own blocks. Same bits; one input finishes sooner."""
    from tests.e2e.test_cnn import lenet

    model = lenet()
    x = np.random.default_rng(2).standard_normal((2, 1, 12, 12)).astype(np.float32)
    target = big_target(cores=16, arrays=4)
    packed = imcc.compile(model, target)
    balanced = imcc.compile(model, target, schedule="balanced")
    assert len(balanced.program.bindings) > len(packed.program.bindings)  # the copies
    assert len(balanced.program.images) == len(packed.program.images)  # same images
    expected = imcc.Simulator(packed, mode="functional").run(x).outputs
    for name, value in imcc.Simulator(balanced, mode="functional").run(x).outputs.items():
        assert np.array_equal(value, expected[name])
    one_packed = imcc.Simulator(packed).stream(x[:1], 1).first_cycles
    one_balanced = imcc.Simulator(balanced).stream(x[:1], 1).first_cycles
    assert one_balanced < one_packed
