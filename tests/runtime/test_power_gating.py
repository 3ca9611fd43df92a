"""Power that follows use (issue 13): on a chip with `power_gating`, leakage is charged for the
cores a program uses, not for every core of the chip; without it, for every core, as before."""

from __future__ import annotations

import dataclasses
import textwrap

import numpy as np
import pytest

import imcc
from imcc.compiler.target import load_target
from imcc.isa.diagnostics import TargetError
from imcc.isa.program import Program
from imcc.isa.target import Target
from tests.conftest import mlp_onnx


def gated(target: Target) -> Target:
    return dataclasses.replace(target, chip=dataclasses.replace(target.chip, power_gating=True))


def used_cores(program: Program) -> set[int]:
    """Counted here from the program itself: cores with more than their final halt, or a
    bound array."""
    cores = {core for core, code in enumerate(program.code) if len(code) > 1}
    return cores | {b.core for b in (*program.bindings, *program.cam_bindings)}


@pytest.fixture(scope="module")
def small_model() -> tuple[object, np.ndarray]:
    rng = np.random.default_rng(0)
    return mlp_onnx([32, 16, 10], ["relu", "none"]), rng.normal(size=(2, 32))


def test_leakage_is_charged_for_the_used_cores_only(small_model) -> None:  # type: ignore[no-untyped-def]
    model, x = small_model
    chip = load_target("isaac")  # 2,016 cores: a small MLP uses a handful
    reports = {}
    for name, target in (("all", chip), ("gated", gated(chip))):
        binary = imcc.compile(model, target)
        reports[name] = imcc.Simulator(binary, mode="cycle").run(x).report
    used = used_cores(binary.program)
    assert 0 < len(used) < chip.chip.cores // 100
    per_core = chip.cost.leakage_pj_per_cycle
    for name, cores in (("all", chip.chip.cores), ("gated", len(used))):
        report = reports[name]
        assert report.cycles is not None
        assert report.energy_breakdown_pj["leakage"] == pytest.approx(
            report.cycles * cores * per_core, rel=1e-12
        )
    # the same code and the same time: only the leakage differs
    assert reports["gated"].cycles == reports["all"].cycles
    dynamic = {k: v for k, v in reports["all"].energy_breakdown_pj.items() if k != "leakage"}
    assert dynamic == {
        k: v for k, v in reports["gated"].energy_breakdown_pj.items() if k != "leakage"
    }
    share = reports["all"].energy_breakdown_pj["leakage"] / reports["all"].energy_pj
    gated_share = reports["gated"].energy_breakdown_pj["leakage"] / reports["gated"].energy_pj
    assert share > 0.9 > gated_share  # no longer the leakage of 2,000 idle cores


def test_streamed_energy_charges_the_used_cores_only(small_model) -> None:  # type: ignore[no-untyped-def]
    model, x = small_model
    target = load_target("edge-rram")
    streams = {}
    for name, chip in (("all", target), ("gated", gated(target))):
        binary = imcc.compile(model, chip)
        streams[name] = imcc.Simulator(binary).stream(x, 4)
    used = len(used_cores(binary.program))
    assert used < target.chip.cores
    leak = target.cost.leakage_pj_per_cycle
    difference = streams["all"].energy_pj_per_inference - streams["gated"].energy_pj_per_inference
    makespan = streams["all"].makespan_cycles
    assert difference == pytest.approx(makespan * (target.chip.cores - used) * leak / 4)


def test_the_option_is_recorded_only_when_on() -> None:
    """Off (the default), the target's JSON and fingerprint are what they were before the
    option existed; on, it is part of both and survives the binary."""
    target = load_target("edge-rram")
    assert "power_gating" not in target.to_json()
    on = gated(target)
    assert '"power_gating":true' in on.to_json() and on.fingerprint != target.fingerprint
    assert Target.from_json(on.to_json()) == on
    binary = imcc.compile(mlp_onnx([8, 4], ["none"]), on)
    again = imcc.Binary.from_bytes(binary.data)
    assert again.program.target.chip.power_gating


def test_a_non_boolean_power_gating_is_a_target_error_naming_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = load_target("edge-rram").to_dict()  # a valid target, as TOML with one bad key
    path = tmp_path / "gated.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name = "gated"
            description = "edge-rram with a bad power_gating"
            [chip]
            cores = {text["chip"]["cores"]}
            mesh_cols = {text["chip"]["mesh_cols"]}
            global_memory_words = {text["chip"]["global_memory_words"]}
            clock_ghz = {text["chip"]["clock_ghz"]}
            power_gating = 1
            """
        )
        + _tables(text)
    )
    with pytest.raises(TargetError, match=r"power_gating = 1 must be of type bool") as info:
        load_target(path)
    assert "gated.toml:8:" in str(info.value.loc)


def _tables(data: dict[str, object]) -> str:
    """The [core], [xbar] and [cost] tables of a target dict as TOML."""
    lines = []
    for table in ("core", "xbar", "cost"):
        lines.append(f"[{table}]")
        values = data[table]
        assert isinstance(values, dict)
        for key, value in values.items():
            lines.append(
                f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"'
            )
    return "\n".join(lines) + "\n"
