"""Devices through the simulator: the exact baseline is untouched by `ideal`, seeds give chips
bit for bit, drift compensation is an operation with a cost in the report, and Monte Carlo
runs independently programmed chips."""

from __future__ import annotations

import numpy as np
import pytest

import imcc
from imcc.isa.diagnostics import SimulationError
from imcc.runtime.devices.compensation import calibration_cost
from imcc.runtime.devices.physical import PhysicalArrayState
from imcc.runtime.devices.presets import load_preset
from imcc.runtime.montecarlo import trials
from tests.conftest import mlp_onnx

QUIET = {"scales.programming": 0.0, "scales.drift": 0.0, "scales.read": 0.0,
         "periphery.wire_ohm": 0.0}  # fmt: skip


@pytest.fixture(scope="module")
def model() -> tuple[imcc.Binary, np.ndarray]:
    """A 32-24-10 MLP with static input scales (3 crossbar images), and 48 inputs."""
    rng = np.random.default_rng(0)
    binary = imcc.compile(mlp_onnx([32, 24, 10], ["relu", "none"]),
                          calibrate=rng.normal(size=(200, 32)))  # fmt: skip
    return binary, rng.normal(size=(48, 32))


def outputs(binary: imcc.Binary, x: np.ndarray, **options: object) -> np.ndarray:
    options.setdefault("mode", "functional")
    return imcc.Simulator(binary, **options).run(x).outputs["y"]  # type: ignore[arg-type]


def relative_error(y: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(y - reference) / np.linalg.norm(reference))


def test_ideal_baseline_is_untouched_by_time_compensation_and_ir_drop(model) -> None:  # type: ignore[no-untyped-def]
    binary, x = model
    baseline = outputs(binary, x)
    for device in ("ideal", "sram"):
        for mode in ("functional", "cycle"):
            got = outputs(binary, x, device=device, mode=mode, time="1y",
                          drift_compensation="column", ir_drop="exact")  # fmt: skip
            assert np.array_equal(got, baseline)


def test_a_quiet_physical_device_gives_the_exact_integers(model) -> None:  # type: ignore[no-untyped-def]
    """PCM with every effect scaled to zero reads exact levels through the whole step-by-step
    path (DAC steps, reads, ADC, shift-add): bit for bit the ideal run."""
    binary, x = model
    quiet = load_preset("pcm").with_overrides(**QUIET)
    assert np.array_equal(outputs(binary, x, device=quiet, time="1y"), outputs(binary, x))


def test_same_seed_same_chip_bit_for_bit_and_different_seeds_differ(model) -> None:  # type: ignore[no-untyped-def]
    binary, x = model
    first = outputs(binary, x, device="pcm", seed=3, time="1d")
    assert np.array_equal(first, outputs(binary, x, device="pcm", seed=3, time="1d"))
    # each array reads from its own stream: the cycle engine's other core order changes nothing
    assert np.array_equal(first, outputs(binary, x, device="pcm", seed=3, time="1d", mode="cycle"))
    assert not np.array_equal(first, outputs(binary, x, device="pcm", seed=4, time="1d"))


def test_set_time_moves_one_chip_along_its_trajectory(model) -> None:  # type: ignore[no-untyped-def]
    binary, _ = model
    chip = imcc.Simulator(binary, device="pcm", seed=7, mode="functional")
    fresh = imcc.Simulator(binary, device="pcm", seed=7, mode="functional", time="1d")
    chip.set_time("1h")
    chip.set_time(86400)

    def states(sim: imcc.Simulator) -> list[np.ndarray]:
        return [s.conductance for core in sim.machine.cores for s in core.arrays if s is not None]

    for a, b in zip(states(chip), states(fresh), strict=True):
        assert np.array_equal(a, b)  # the same programmed cells, evaluated at the same time
    assert chip.time_s == 86400.0


def test_drift_degrades_and_compensation_restores(model) -> None:  # type: ignore[no-untyped-def]
    """PCM one year after programming, averaged over 2 chips: global compensation removes most
    of the drift error (aihwkit's GDC: 0.51 -> 0.15 on its benchmark, device_models.md 1.5)."""
    binary, x = model
    ideal = outputs(binary, x)
    error = {
        comp: np.mean([relative_error(outputs(binary, x, device="pcm", seed=s, time="1y",
                                              drift_compensation=comp), ideal)
                       for s in (0, 1)])
        for comp in (None, "global", "column")
    }  # fmt: skip
    at_start = relative_error(outputs(binary, x, device="pcm", seed=0), ideal)
    assert error[None] > 2 * at_start  # drift is the dominant error after a year
    assert error["global"] < 0.6 * error[None]
    assert error["column"] < 0.7 * error[None]


def test_compensation_reads_are_in_the_report(model) -> None:  # type: ignore[no-untyped-def]
    binary, x = model
    plain = imcc.Simulator(binary, device="pcm", time="1d").run(x).report
    sim = imcc.Simulator(binary, device="pcm", time="1d", drift_compensation="column")
    report = sim.run(x).report
    arrays = len(binary.program.bindings)
    assert "drift_compensation" not in plain.energy_breakdown_pj
    assert report.counts["drift_compensation_reads"] == arrays
    shapes = [(b.core, *binary.program.images[b.image].levels.shape)
              for b in binary.program.bindings]  # fmt: skip
    cost = calibration_cost(binary.program.target, shapes, "column")
    assert report.energy_breakdown_pj["drift_compensation"] == pytest.approx(cost.energy_pj)
    assert report.counts["drift_compensation_adc_conversions"] == sum(c for _, _, c in shapes)
    assert plain.cycles is not None and report.cycles == plain.cycles + cost.cycles
    assert cost.cycles > 0 and report.layers[-1].node == "(drift compensation)"
    # an exact device needs no correction, but the calibration reads are still made and paid
    exact = imcc.Simulator(binary, time="1d", drift_compensation="global").run(x).report
    assert exact.counts["drift_compensation_reads"] == arrays


def test_gains_follow_the_drift(model) -> None:  # type: ignore[no-untyped-def]
    binary, _ = model
    sim = imcc.Simulator(binary, device="pcm", seed=0, time="1y", drift_compensation="global")
    gains = [s.gain for core in sim.machine.cores for s in core.arrays if s is not None]
    assert all(isinstance(s, PhysicalArrayState) for core in sim.machine.cores
               for s in core.arrays if s is not None)  # fmt: skip
    # drift to ~0.5 of the conductance after a year (nu ~ 0.05): gains near 2
    assert all(1.5 < float(g[0]) < 2.6 and np.all(g == g[0]) for g in gains)
    sim.set_time(0, drift_compensation=None)
    assert all(np.all(s.gain == 1) for core in sim.machine.cores for s in core.arrays if s)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"drift_compensation": "sideways"}, "unknown drift compensation 'sideways'"),
     ({"ir_drop": "slow"}, "unknown IR-drop mode 'slow'; modes are fast, exact, off"),
     ({"time": "1 fortnight"}, "bad time '1 fortnight'"),
     ({"seed": -1}, "seed must be a non-negative integer, not -1"),
     ({"device": "nope"}, "unknown device 'nope'; devices are ideal, ")],
)  # fmt: skip
def test_simulator_options_are_checked(model, options: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SimulationError, match=message):
        imcc.Simulator(model[0], **options)


def test_monte_carlo_runs_independent_chips(model) -> None:  # type: ignore[no-untyped-def]
    binary, x = model
    labels = np.argmax(outputs(binary, x), axis=-1)  # the ideal chip's classes
    result = trials(binary, x, device="pcm", time="1d", trials=4, seed=10, labels=labels)
    error = result["y: relative error"]
    assert result.seeds == (10, 11, 12, 13) and len(error.values) == 4
    assert len(set(error.values)) == 4  # different chips
    assert error.mean == pytest.approx(np.mean(error.values))
    assert error.std == pytest.approx(np.std(error.values, ddof=1))
    assert 0 < error.min <= error.mean <= error.max
    assert result["accuracy"].values == result["y: top-1 agreement"].values
    # trial i is the chip of seed + i, as a single run would program it
    ideal = outputs(binary, x)
    single = relative_error(outputs(binary, x, device="pcm", seed=11, time="1d"), ideal)
    assert error.values[1] == pytest.approx(single, rel=1e-6)
    again = trials(binary, x, device="pcm", time="1d", trials=4, seed=10, labels=labels)
    assert again["y: relative error"].values == error.values  # same seeds, same chips
    assert "accuracy" in result.table() and result.to_dict()["seeds"] == [10, 11, 12, 13]


def test_monte_carlo_errors_name_the_problem(model) -> None:  # type: ignore[no-untyped-def]
    binary, x = model
    for bad in (0, -3):
        with pytest.raises(SimulationError, match=f"trials must be a positive integer, not {bad}"):
            trials(binary, x, device="pcm", trials=bad)
    with pytest.raises(SimulationError, match="3 labels for 48 samples"):
        trials(binary, x, device="pcm", trials=1, labels=np.zeros(3))
    custom = trials(binary, x, lambda out: {"max": float(out["y"].max())}, device="rram-wan",
                    trials=2)  # fmt: skip
    assert [m.name for m in custom.metrics] == ["max"]


@pytest.mark.parametrize("name", ["pcm-hermes", "rram-wan", "rram-cmo", "rram-milo", "fefet",
                                  "nor-flash", "rram-hp"])  # fmt: skip
def test_every_multi_level_preset_runs_a_model(model, name: str) -> None:  # type: ignore[no-untyped-def]
    binary, x = model
    y = outputs(binary, x, device=name, time="1d", drift_compensation="global")
    assert np.all(np.isfinite(y)) and y.shape == (48, 10)


def test_binary_devices_run_one_bit_cells() -> None:
    rng = np.random.default_rng(1)
    binary = imcc.compile(mlp_onnx([16, 8], ["none"]), cell_bits=1,
                          calibrate=rng.normal(size=(50, 16)))  # fmt: skip
    x = rng.normal(size=(8, 16))
    ideal = outputs(binary, x)
    for name in ("mram", "sram-analog"):
        y = outputs(binary, x, device=name)
        assert 0 < relative_error(y, ideal) < 1.0
