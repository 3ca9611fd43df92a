"""The instruction trace behind the timeline, and both report plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import imcc
from tests.conftest import big_target, mlp_onnx

MODEL = mlp_onnx([64, 200, 10], ["relu", "none"], seed=1)
X = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)


def test_the_trace_is_the_run_instruction_for_instruction() -> None:
    binary = imcc.compile(MODEL, big_target(cores=4, arrays=8), spread=True)
    sim = imcc.Simulator(binary)
    report = sim.run(X).report
    records = sim.trace(X)
    assert len(records) == report.counts["instructions"]
    assert max(start + cycles for _, start, cycles, _, _ in records) == report.cycles
    busy: dict[str, int] = {}
    for _, _, cycles, unit, _ in records:
        busy[unit] = busy.get(unit, 0) + cycles
    cores = binary.program.target.chip.cores
    for unit, fraction in report.utilisation.items():
        assert busy[unit] == pytest.approx(fraction * report.cycles * cores)


def test_a_replicated_binary_runs_one_inference_on_one_replica() -> None:
    target = big_target(cores=8, arrays=8)
    packed = imcc.Simulator(imcc.compile(MODEL, target)).run(X)
    replicated = imcc.compile(MODEL, target, schedule="throughput")
    assert int(replicated.program.meta["replicas"]) > 1
    result = imcc.Simulator(replicated).run(X)
    assert result.report.counts == packed.report.counts
    assert result.report.cycles == packed.report.cycles
    for name, value in packed.outputs.items():
        assert np.array_equal(result.outputs[name], value)


def test_timeline_and_placement_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from imcc import plots

    binary = imcc.compile(MODEL, big_target(cores=4, arrays=8), spread=True)
    plots.timeline(imcc.Simulator(binary).trace(X), tmp_path / "timeline.png")
    plots.placement(binary.program, tmp_path / "placement.png")
    for name in ("timeline.png", "placement.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5_000
