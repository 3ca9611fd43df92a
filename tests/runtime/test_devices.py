"""Device layer units: time strings, presets and their validation, the level-to-conductance
mapping with its reference column, IR drop (fast against exact), ADC mismatch and faults."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from imcc.compiler.target import load_target
from imcc.isa import presets
from imcc.isa.diagnostics import SimulationError
from imcc.isa.presets import DeviceKind
from imcc.runtime.devices import (
    IdealDevice,
    device_kinds,
    device_names,
    lookup,
    make_cam_device,
    make_device,
)
from imcc.runtime.devices.circuit import ir_drop_exact, ir_drop_fast
from imcc.runtime.devices.physical import PhysicalDevice
from imcc.runtime.devices.presets import load_preset, parse_override, preset_names
from imcc.runtime.devices.units import format_time, parse_time

QUIET = {"scales.programming": 0.0, "scales.drift": 0.0, "scales.read": 0.0,
         "periphery.wire_ohm": 0.0}  # fmt: skip


def device(name: str, cell_bits: int = 2, seed: int = 0, **overrides: object) -> PhysicalDevice:
    preset = load_preset(name).with_overrides(**overrides) if overrides else load_preset(name)
    xbar = load_target().xbar
    built = make_device(preset, xbar.__class__(**{**_fields(xbar), "cell_bits": cell_bits}),
                        seed=seed)  # fmt: skip
    assert isinstance(built, PhysicalDevice)
    return built


def _fields(xbar: object) -> dict[str, object]:
    return {name: getattr(xbar, name) for name in xbar.__dataclass_fields__}  # type: ignore[attr-defined]


# -- time ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("30min", 1800.0), ("1h", 3600.0), ("1d", 86400.0), ("1w", 604800.0),
     ("1y", 31536000.0), ("2.5h", 9000.0), ("86400", 86400.0), ("1e3", 1000.0), (5, 5.0),
     ("0", 0.0)],
)  # fmt: skip
def test_times_parse(text: str | int, seconds: float) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [("1x", "bad time '1x': expected a number of seconds or a number with a unit"),
     ("-5", "bad time '-5': time since programming must be >= 0 s"),
     ("", "bad time ''"), ("d", "bad time 'd'")],
)  # fmt: skip
def test_bad_times_are_diagnostics_naming_them(text: str, message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        parse_time(text)


def test_times_format_in_the_largest_whole_unit() -> None:
    assert [format_time(t) for t in (0, 1, 60, 3600, 86400, 30 * 86400, 31536000, 90)] == [
        "0s", "1s", "1min", "1h", "1d", "30d", "1y", "90s"]  # fmt: skip


# -- presets ---------------------------------------------------------------------------------
def test_every_technology_of_the_issue_has_a_preset() -> None:
    names = preset_names()
    for required in ("pcm", "pcm-hermes", "rram-wan", "rram-milo", "rram-hp", "mram", "fefet",
                     "nor-flash", "sram", "sram-analog"):  # fmt: skip
        assert required in names
    assert device_names()[0] == "ideal"


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_and_cites_a_source_for_every_section(name: str) -> None:
    preset = load_preset(name)
    text = preset.describe()
    assert preset.cell.source and "source" in text
    for section in ("programming", "variation", "drift", "read_noise", "faults", "periphery"):
        value = getattr(preset, section)
        if value is not None:
            assert value.source, f"{name} [{section}] has no source"
    assert preset.summary()


def test_high_precision_rram_has_thousands_of_levels_and_mram_two() -> None:
    assert load_preset("rram-hp").cell.levels == 2048
    mram = load_preset("mram").cell
    assert mram.levels == 2 and 2 <= mram.on_off <= 4  # roadmap: ratio 2-3 (~4)


def test_overrides_and_their_errors() -> None:
    preset = load_preset("pcm").with_overrides(**{"scales.programming": 2.0})
    assert preset.scales.programming == 2.0 and preset.name == "pcm"
    assert parse_override("faults.stuck_on=1e-3") == ("faults.stuck_on", 0.001)
    with pytest.raises(SimulationError, match="unknown keys \\['bogus'\\] in \\[scales\\]"):
        load_preset("pcm", [("scales.bogus", 1.0)])
    with pytest.raises(SimulationError, match=re.escape("cannot override 'nope.x'")):
        load_preset("pcm", [("nope.x", 1.0)])
    with pytest.raises(SimulationError, match=re.escape("faults.stuck_on must be a fraction")):
        load_preset("pcm", [("faults.stuck_on", 2.0)])
    with pytest.raises(SimulationError, match="bad device override 'x'"):
        parse_override("x")


def test_a_user_toml_file_is_a_device(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "runtime/devices/presets/pcm.toml").read_text()
    path = tmp_path / "mine.toml"
    path.write_text(text.replace('name = "pcm"', 'name = "my-pcm"').replace("25.0", "20.0"))
    preset = load_preset(str(path))
    assert preset.name == "my-pcm" and preset.cell.g_max_us == 20.0
    path.write_text("name = [")
    with pytest.raises(SimulationError, match="invalid TOML"):
        load_preset(str(path))
    path.write_text(text.replace('kind = "power-law"', 'kind = "sideways"'))
    with pytest.raises(SimulationError, match="\\[drift\\] kind 'sideways' is unknown"):
        load_preset(str(path))


def test_unknown_device_lists_ideal_first() -> None:
    with pytest.raises(SimulationError, match="unknown device 'pcm2'; devices are ideal, "):
        make_device("pcm2")


# -- the registry ----------------------------------------------------------------------------
def test_one_registry_holds_crossbar_and_cam_devices_with_their_kinds() -> None:
    kinds = device_kinds()
    assert kinds["ideal"] == (DeviceKind.XBAR, DeviceKind.ACAM)
    assert all(kinds[name] == (DeviceKind.XBAR,) for name in preset_names())
    assert list(kinds) == ["ideal", *preset_names()]
    assert device_names() == device_names(DeviceKind.XBAR) == list(kinds)
    assert device_names(DeviceKind.ACAM) == ["ideal"]
    # the compiler's copy (isa/presets.py, which may not import the runtime) is the same
    assert presets.device_kinds() == kinds
    assert presets.device_names(DeviceKind.ACAM) == ["ideal"]


def test_lookup_by_name_gives_the_device_whatever_its_kind() -> None:
    ideal = lookup("ideal")
    assert ideal is not None and ideal.xbar is not None and ideal.acam is not None
    assert isinstance(ideal.xbar(None, seed=0, ir_drop=None), IdealDevice)
    assert ideal.acam() == make_cam_device("ideal") and ideal.acam().exact
    pcm = lookup("pcm")
    assert pcm is not None and pcm.kinds == (DeviceKind.XBAR,) and pcm.acam is None
    xbar = load_target("edge-rram").xbar
    assert pcm.xbar(xbar, seed=0, ir_drop=None).name == make_device("pcm", xbar).name == "pcm"
    assert lookup("pcm2") is None
    # a crossbar-only device is not a CAM device: the CAM error, as for an unknown name
    with pytest.raises(SimulationError, match=re.escape(
            "unknown CAM device 'pcm'; CAM devices are ideal (or give a programming-noise sigma "
            "in level steps)")):  # fmt: skip
        make_cam_device("pcm")


def test_binary_cells_refuse_multi_bit_levels() -> None:
    with pytest.raises(
        SimulationError,
        match="'mram' stores 2 levels per cell, but the binary's "
        "arrays use 2-bit cells \\(4 levels\\); compile with --cell-bits 1",
    ):
        device("mram", cell_bits=2)
    device("mram", cell_bits=1)  # fine


# -- levels, conductances and the reference column -------------------------------------------
@pytest.mark.parametrize("name", ["pcm", "rram-milo", "rram-cmo", "nor-flash", "fefet"])
def test_a_quiet_device_reads_levels_exactly(name: str) -> None:
    """With every effect off, a read of level L under input 1 is exactly L, whatever g_min:
    the reference column of g_min cells removes the offset (CrossSim's unit column)."""
    dev = device(name, **QUIET)
    levels = np.random.default_rng(0).integers(0, 4, size=(64, 32))
    state = dev.program(levels, 0, np.random.default_rng(1))
    x = np.random.default_rng(2).integers(0, 2, size=(64, 9)).astype(np.float64)
    assert np.array_equal(dev.read(state, np.eye(64), np.random.default_rng(3)), levels.T)
    assert np.array_equal(dev.read(state, x, np.random.default_rng(3)), levels.T @ x)


def test_levels_map_linearly_between_g_min_and_g_max() -> None:
    dev = device("rram-milo", **QUIET)
    target, ideal = dev.targets(np.array([0, 1, 2, 3]))
    assert np.allclose(target, [50.0, 108.333333, 166.666667, 225.0]) and np.array_equal(
        target, ideal
    )
    # a device grid that does not hold the binary's levels snaps to its nearest level
    fefet = device("fefet", **QUIET, **{"cell.levels": 8})
    snapped, ideal = fefet.targets(np.array([0, 1, 2, 3]))
    step = (10.0 - 0.1) / 7
    assert np.allclose((snapped - 0.1) / step, [0, 2, 5, 7]) and not np.allclose(snapped, ideal)
    # 2048 levels hold 2-bit levels only to within half a device level (2047 is not 3 k)
    hp = device("rram-hp", **QUIET)
    snapped, ideal = hp.targets(np.array([0, 1, 2, 3]))
    assert 0 < np.abs(snapped - ideal).max() <= 0.5 * 2.0 + 1e-9


def test_the_reference_column_is_made_of_real_devices() -> None:
    """Its cells drift and are noisy too: a shared error on every column of a row."""
    dev = device("pcm", **{"periphery.wire_ohm": 0.0, "scales.read": 0.0})
    state = dev.program(np.zeros((32, 8), dtype=np.int64), 0, np.random.default_rng(0))
    weights = state.conductance
    assert not np.allclose(weights, 0.0)
    rows_common = weights - weights.mean(axis=1, keepdims=True)
    assert np.abs(rows_common).mean() < np.abs(weights).mean()  # a shared part per row


# -- IR drop --------------------------------------------------------------------------------
def test_exact_ir_drop_solves_small_circuits_in_closed_form() -> None:
    r = 1000.0  # Ohm, large enough to matter
    g = np.array([[40.0]])
    # one cell between a driver segment and a ground segment: I = V / (1/g + 2 r)
    assert ir_drop_exact(g, r)[0, 0] == pytest.approx(1e6 / (1 / 40e-6 + 2 * r))
    # two cells on one row, each to its own column: the second shares the first row segment
    g2 = np.array([[40.0, 40.0]])
    exact = ir_drop_exact(g2, r)[0] * 1e-6
    # node voltages by hand: series r to node a, cell 1 (g + r) to ground, r to node b, cell 2
    branch = 1 / (1 / 40e-6 + r)
    b_over_a = branch / (branch + 1 / r) * 0 + (1 / r) / (1 / r + branch)  # divider at node b
    load = branch + 1 / (r + 1 / branch)  # what node a sees
    a = (1 / r) / (1 / r + load)
    assert exact[0] == pytest.approx(a * branch, rel=1e-9)
    assert exact[1] == pytest.approx(a * b_over_a * branch, rel=1e-9)


@pytest.mark.parametrize(("rows", "cols", "g_max", "wire"), [(16, 16, 25.0, 0.35),
                         (32, 33, 40.0, 0.35), (32, 33, 225.0, 1.0)])  # fmt: skip
def test_fast_ir_drop_agrees_with_the_exact_solve(
    rows: int, cols: int, g_max: float, wire: float
) -> None:
    """The fast model's column currents deviate from the exact solve by under 5 % of the IR
    drop itself, on random conductances and binary inputs (measured 0.1-0.5 % at PCM/RRAM
    conductances and 128-row arrays, 3 % at 22 % drop)."""
    rng = np.random.default_rng(0)
    g = rng.uniform(0, g_max, (rows, cols))
    x = rng.integers(0, 2, (rows, 100)).astype(np.float64)
    ideal, exact, fast = (m.T @ x for m in (g, ir_drop_exact(g, wire), ir_drop_fast(g, wire)))
    drop = np.linalg.norm(exact - ideal)
    assert drop > 1e-4 * np.linalg.norm(ideal)  # there is a drop to model
    assert np.linalg.norm(fast - exact) < 0.05 * drop
    assert np.all(exact <= ideal + 1e-9)  # wires only take current away


def test_ir_drop_grows_with_wire_resistance_and_modes_agree_on_a_device() -> None:
    levels = np.full((32, 16), 3)
    errors = {}
    for mode in ("fast", "exact"):
        dev = device("rram-milo", **{"scales.programming": 0.0})
        dev.ir_drop = mode
        state = dev.program(levels, 0, np.random.default_rng(0))
        errors[mode] = 1 - state.conductance.mean() / 3
    assert 0.005 < errors["exact"] < 0.5
    assert errors["fast"] == pytest.approx(errors["exact"], rel=0.05)
    off = device("rram-milo", **{"scales.programming": 0.0})
    off.ir_drop = "off"
    assert np.array_equal(off.program(levels, 0, np.random.default_rng(0)).conductance, levels)


# -- ADC mismatch and faults ------------------------------------------------------------------
def test_adc_offset_and_gain_mismatch_have_the_asked_spread() -> None:
    dev = device("pcm", **QUIET, **{"periphery.adc_offset_lsb": 0.5,
                                    "periphery.adc_gain_sigma": 0.02})  # fmt: skip
    state = dev.program(np.zeros((16, 4000), dtype=np.int64), 0, np.random.default_rng(0))
    # 4000 columns: standard errors of the std 1.1 %; tolerance 5 %
    assert np.std(state.adc_gain) == pytest.approx(0.02, rel=0.05)
    assert np.std(state.adc_offset) == pytest.approx(0.5 * dev.adc_lsb, rel=0.05)
    y = dev.read(state, np.zeros((16, 1)), np.random.default_rng(1))[:, 0]
    assert np.array_equal(y, state.adc_offset)  # zero input: the offset alone


def test_stuck_at_faults_hit_the_asked_fraction() -> None:
    dev = device("rram-milo", **QUIET, **{"faults.stuck_on": 0.01, "faults.stuck_off": 0.02})
    levels = np.full((200, 500), 2)
    state = dev.program(levels, 0, np.random.default_rng(0))
    cells = state.cells
    n = cells.g_target.size
    # binomial: n = 100,200 cells, standard errors 0.03 % and 0.04 %; tolerance 0.15 %
    assert cells.stuck_on.mean() == pytest.approx(0.01, abs=0.0015)  # type: ignore[union-attr]
    assert cells.stuck_off.mean() == pytest.approx(0.02, abs=0.0015)  # type: ignore[union-attr]
    assert np.all(cells.g_prog[cells.stuck_on] == 225.0)  # type: ignore[index]
    assert n == 200 * 501  # the reference column has cells too
    assert not math.isnan(float(state.conductance.sum()))
