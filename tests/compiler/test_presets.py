"""The target presets: each loads, is listed, runs a small MLP exactly on the ideal device (with
a lossless ADC), reports its chip area; an MVM on `isaac` costs what its table says."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import imcc
from imcc.cli import main
from imcc.compiler.driver import compile_graph
from imcc.compiler.ir.interpreter import evaluate
from imcc.compiler.target import load_target, preset_names
from imcc.frontends.onnx import import_onnx
from imcc.isa.diagnostics import TargetError
from imcc.isa.target import Target
from tests.conftest import mlp_onnx
from tests.runtime.programs import binary, image_directive

NEW = ("isaac", "puma", "hermes-pcm", "sram-cim")
CROSSBAR_PRESETS = [name for name in preset_names() if load_target(name).core.arrays > 0]


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_and_survives_a_json_round_trip(name: str) -> None:
    target = load_target(name)
    assert target.name == name
    assert Target.from_json(target.to_json()) == target


def test_the_new_presets_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(NEW) <= set(preset_names())
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for name in NEW:
        assert f"\n{name}: " in out
    isaac = out.split("\nisaac: ")[1].split("\n")[1]  # ISAAC: 168 tiles x 12 IMAs of 8 arrays
    assert "2016 cores" in isaac and "8 crossbar arrays" in isaac


@pytest.mark.parametrize("name", CROSSBAR_PRESETS)
def test_a_small_mlp_runs_exactly_on_every_preset(name: str) -> None:
    """With the ideal device and an ADC wide enough to be lossless, every preset's chip gives
    the quantised model's integer arithmetic; the only rounding left is float32 output."""
    xbar = load_target(name).xbar
    lossless = math.ceil(
        math.log2(xbar.rows * (2**xbar.cell_bits - 1) * (2**xbar.dac_bits - 1) + 1)
    )
    model = mlp_onnx([40, 24, 6], ["relu", "none"], seed=3)
    x = np.random.default_rng(3).normal(size=(5, 40))
    result = compile_graph(import_onnx(model), name, adc_bits=max(lossless, xbar.adc_bits))
    expected = evaluate(result.graph, {"x": x})[0]
    run = imcc.Simulator(imcc.Binary(result.program), device="ideal", mode="cycle").run(x)
    np.testing.assert_allclose(run.outputs["y"], expected, rtol=2e-6, atol=2e-6)
    assert run.report.cycles and run.report.cycles > 0


@pytest.mark.parametrize("name", NEW)
def test_area_is_reported_and_positive(name: str) -> None:
    target = load_target(name)
    assert target.area is not None and target.area_mm2 is not None and target.area_mm2 > 0
    model = mlp_onnx([16, 4], ["none"], seed=1)
    compiled = imcc.compile(model, target=name)
    report = imcc.Simulator(compiled, device="ideal", mode="cycle").run(np.ones((2, 16))).report
    assert report.area_mm2 == pytest.approx(target.area_mm2)
    assert report.gops_per_s_per_mm2() is not None and report.gops_per_s_per_mm2() > 0
    data = json.loads(report.to_json())
    assert data["area_mm2"] == pytest.approx(target.area_mm2)
    assert data["gops_per_s_per_w"] == pytest.approx(1000 * data["tops_per_w"])
    for key in ("gops_per_s_per_mm2", "power_w", "tops_per_w", "throughput_per_s"):
        assert data[key] > 0


def test_the_isaac_area_table_sums_to_the_published_chip() -> None:
    # 168 tiles of 0.372 mm2 plus 22.88 mm2 of HyperTransport: 85.4 mm2 (imc_compilers.md sec. 2)
    assert load_target("isaac").area_mm2 == pytest.approx(85.4, rel=0.01)


def test_the_area_table_is_optional_and_checked() -> None:
    data = load_target("isaac").to_dict()
    without = {k: v for k, v in data.items() if k != "area"}
    target = Target.from_dict(without)
    assert target.area is None and target.area_mm2 is None and "area" not in target.to_dict()
    bad = dict(data, area=dict(data["area"], adc_mm2=-1.0))
    with pytest.raises(TargetError, match=r"area\.adc_mm2 must not be negative"):
        Target.from_dict(bad)
    with pytest.raises(TargetError, match=r"\[area\] is missing \['router_mm2'\]"):
        Target.from_dict(dict(data, area={k: v for k, v in data["area"].items()
                                          if k != "router_mm2"}))  # fmt: skip


def test_one_isaac_mvm_costs_what_its_table_says() -> None:
    """A full 128x128 array, 16-bit signed inputs through 1-bit DACs: 16 steps, each an array
    read, 128 conversions on the array's one ADC, one after another, and a shift-add."""
    target = load_target("isaac")
    cost, xbar = target.cost, target.xbar
    levels = np.ones((128, 128), dtype=np.int64)
    io = (
        '.target isaac\n.input {"name": "x", "shape": [128], "addr": 0, "dtype": "float32", '
        '"batch_axis": true, "quant": {}}\n.output {"name": "y", "shape": [128], "addr": 256, '
        '"dtype": "float32", "batch_axis": true, "quant": {}}\n'
    )
    program = binary(
        io + image_directive(0, levels) + ".bind c0 a0 0\n.core 0\n"
        "    ctl.set r0, 0\n    ctl.set r1, 256\n    mem.load r0, r0, 128\n"
        "    xbar.mvm a0, r0, r1, 16, 1, 1\n    mem.store r1, r1, 128\n    ctl.halt\n"
    )
    x = np.arange(128, dtype=np.float64)[None, :] - 64
    report = imcc.Simulator(program, mode="cycle").run(x).report
    steps = 16
    assert xbar.cols_per_adc == 128 and cost.adc_cycles == 1
    mvm = steps * (cost.xbar_read_cycles + 128 * cost.adc_cycles + cost.shift_add_cycles)
    assert mvm == 2080  # 16 x 130 cycles at 1.28 GHz: ISAAC's 16 steps of ~100 ns
    mem = cost.mem_cycles + math.ceil(128 / cost.mem_words_per_cycle)
    assert report.cycles == 2 * cost.ctl_cycles + mem + mvm + mem + cost.ctl_cycles
    assert report.counts["adc_conversions"] == steps * 128
    assert report.counts["dac_steps"] == steps * 128
    assert report.energy_breakdown_pj["adc"] == pytest.approx(steps * 128 * cost.adc_pj)
    assert report.energy_breakdown_pj["array"] == pytest.approx(steps * cost.xbar_read_pj)
    assert report.energy_breakdown_pj["dac"] == pytest.approx(steps * 128 * cost.dac_pj)
    leakage = report.cycles * target.chip.cores * cost.leakage_pj_per_cycle
    assert report.energy_breakdown_pj["leakage"] == pytest.approx(leakage)
