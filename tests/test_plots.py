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
    assert max(start + cycles for _, start, cycles, _, _, _ in records) == report.cycles
    busy: dict[str, int] = {}
    for _, _, cycles, unit, _, units in records:  # an MVM spanning k arrays keeps k busy
        busy[unit] = busy.get(unit, 0) + cycles * units
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
    from imcc.tools import plots

    binary = imcc.compile(MODEL, big_target(cores=4, arrays=8), spread=True)
    plots.timeline(imcc.Simulator(binary).trace(X), tmp_path / "timeline.png")
    plots.placement(binary.program, tmp_path / "placement.png")
    for name in ("timeline.png", "placement.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5_000


def test_run_plot_writes_both_pngs_into_a_new_folder(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    from imcc.cli import main

    imcc.compile(MODEL, big_target(cores=4, arrays=8), spread=True).save(tmp_path / "m.imcb")
    np.save(tmp_path / "x.npy", X)
    folder = tmp_path / "plots" / "run1"  # two levels created
    argv = ["run", str(tmp_path / "m.imcb"), "--input", str(tmp_path / "x.npy"), "--plot",
            str(folder)]  # fmt: skip
    assert main(argv) == 0
    assert f"wrote {folder / 'timeline.png'}" in capsys.readouterr().out
    for name in ("timeline.png", "placement.png"):
        assert (folder / name).read_bytes().startswith(b"\x89PNG")
