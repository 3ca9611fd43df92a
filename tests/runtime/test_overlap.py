"""Units of a core working at once (core.overlap): the front end issues in program order, one
instruction per ctl_cycles, each to its unit (every array its own); an instruction starts once
its unit is free and the ranges and registers it uses are ready (a scoreboard), and a wait is a
stall by cause. Expected cycles are worked out by hand from the cost table (costs.price); the
outputs stay the functional simulator's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import imcc
from imcc.compiler.target import load_target
from imcc.isa.diagnostics import TargetError
from imcc.isa.program import Program
from imcc.isa.target import Target
from imcc.runtime.costs import price
from tests.conftest import mlp_onnx
from tests.e2e.test_cnn import lenet
from tests.runtime.programs import image_directive, program

# x: 8 words at 0 (8-bit unsigned integers, as the MVMs read them), y: 8 words at 16
IO = """
.target edge-rram
.input {"name": "x", "shape": [8], "addr": 0, "dtype": "float32", "batch_axis": true, "quant": {}}
.output {"name": "y", "shape": [8], "addr": 16, "dtype": "float32", "batch_axis": true, "quant": {}}
"""
IMAGES = (
    image_directive(0, np.eye(4, dtype=np.int64))
    + image_directive(1, 2 * np.eye(4, dtype=np.int64))
    + ".bind c0 a0 0\n.bind c0 a1 1\n"
)
SETUP = """
.core 0
    ctl.set r0, 0
    ctl.set r1, 4
    ctl.set r2, 200
    ctl.set r3, 204
    ctl.set r4, 16
    mem.load r0, r0, 8
"""
X = np.arange(1.0, 9.0)[None, :]

# pc 6 and 7: MVMs on arrays 0 and 1, of x[0:4] into buf[200:204] and of x[4:8] into
# buf[204:208]; y = (x[0:4], 2 x[4:8])
INDEPENDENT = (
    IO
    + IMAGES
    + SETUP
    + """
    xbar.mvm a0, r0, r2, 8, 0, 1
    xbar.mvm a1, r1, r3, 8, 0, 1
    mem.store r4, r2, 8
    ctl.halt
"""
)
# pc 7 reads pc 6's output: y[0:4] = 2 x[0:4]
DEPENDENT = (
    IO
    + IMAGES
    + SETUP
    + """
    xbar.mvm a0, r0, r2, 8, 0, 1
    xbar.mvm a1, r2, r3, 8, 0, 1
    mem.store r4, r3, 4
    ctl.halt
"""
)
# pc 7, a SIMD op on words the MVM does not touch, runs beside it; pc 8 writes x[0:4], which
# the MVM reads, so it waits for the MVM to finish (WAR); y[0:4] is still x[0:4], as the
# semantics run in program order
SIMD_BESIDE = (
    IO
    + IMAGES
    + SETUP
    + """
    xbar.mvm a0, r0, r2, 8, 0, 1
    simd.add r3, r3, r3, 4
    simd.relu r0, r0, 4
    mem.store r4, r2, 4
    ctl.halt
"""
)


def overlapped(text: str, overlap: bool = True) -> Program:
    p = program(text)
    core = dataclasses.replace(p.target.core, overlap=overlap)
    return dataclasses.replace(p, target=dataclasses.replace(p.target, core=core))


def cycles(p: Program) -> list[int]:
    """Each pc's latency on core 0, from the cost table (the images are 4x4)."""
    return [price(p.target, instr, 4, 4).cycles for instr in p.code[0]]


def run(p: Program) -> tuple[list[tuple[int, int]], imcc.RunReport, np.ndarray]:
    """(start, cycles) of core 0's instructions in pc order, the report and the outputs, after
    checking the outputs against the functional simulator's."""
    sim = imcc.Simulator(p, mode="cycle")
    trace = [(s, n) for c, s, n, _, _, _ in sim.trace(X) if c == 0]
    result = sim.run(X)
    functional = imcc.Simulator(p, mode="functional").run(X)
    assert np.array_equal(result.outputs["y"], functional.outputs["y"])
    return trace, result.report, result.outputs["y"]


CTL = load_target().cost.ctl_cycles


def test_mvms_on_two_arrays_overlap() -> None:
    p = overlapped(INDEPENDENT)
    t = cycles(p)
    load, mvm, store = t[5], t[6], t[8]
    assert t[6] == t[7] and mvm > 2 * CTL  # both MVMs are 8 steps of a 4x4 array
    trace, report, y = run(p)
    assert y[0].tolist() == [1, 2, 3, 4, 10, 12, 14, 16]
    # five ctl.set, then the load at 5 (its registers are written by then)
    assert [s for s, _ in trace[:6]] == [pc * CTL for pc in range(6)]
    first = 5 * CTL + load  # the first MVM waits for the load's data
    assert trace[6] == (first, mvm)
    assert trace[7] == (first + CTL, mvm)  # the second starts one issue cycle later
    assert trace[8] == (first + CTL + mvm, store)  # the store waits for the later one
    halt = first + CTL + mvm + store  # the halt waits for the store to drain
    assert trace[9] == (halt, CTL)
    assert report.cycles == halt + CTL
    # the load's wait for the registers: none; the MVM's for the load: load - CTL; the
    # store's for the second MVM: mvm - CTL; the halt's for the memory unit: store - CTL
    assert report.stalls == {"dependence": load - CTL + mvm - CTL, "unit": store - CTL}
    assert report.stall_cycles == sum(report.stalls.values())
    assert "dependence" in report.table()


def test_without_overlap_the_mvms_run_one_after_another() -> None:
    p = overlapped(INDEPENDENT, overlap=False)
    t = cycles(p)
    trace, report, y = run(p)
    assert y[0].tolist() == [1, 2, 3, 4, 10, 12, 14, 16]
    assert [n for _, n in trace] == t
    starts = [sum(t[:pc]) for pc in range(len(t))]
    assert [s for s, _ in trace] == starts  # each starts when the one before ends
    assert report.cycles == sum(t)
    assert not report.stalls
    # overlap saves the second MVM's time but for the one cycle it issues later
    assert run(overlapped(INDEPENDENT))[1].cycles == sum(t) - t[7] + CTL


def test_an_mvm_reading_the_output_of_another_waits_for_it() -> None:
    p = overlapped(DEPENDENT)
    t = cycles(p)
    load, mvm, store = t[5], t[6], t[8]
    trace, report, y = run(p)
    assert y[0, :4].tolist() == [2, 4, 6, 8]
    first = 5 * CTL + load
    assert trace[6] == (first, mvm)
    assert trace[7] == (first + mvm, mvm)  # RAW on buf[200:204]: no overlap
    assert trace[8] == (first + 2 * mvm, store)
    assert report.cycles == first + 2 * mvm + store + CTL
    # the first MVM's wait for the load, the second's for the first, the store's for the
    # second; the halt's for the memory unit
    assert report.stalls == {"dependence": load - CTL + 2 * (mvm - CTL), "unit": store - CTL}


def test_simd_work_on_other_words_overlaps_an_mvm_and_a_write_waits_for_its_readers() -> None:
    p = overlapped(SIMD_BESIDE)
    t = cycles(p)
    load, mvm, add, relu, store = t[5], t[6], t[7], t[8], t[9]
    assert add < mvm
    trace, report, y = run(p)
    assert y[0, :4].tolist() == [1, 2, 3, 4]  # the MVM's input before the relu rewrote it
    first = 5 * CTL + load
    assert trace[6] == (first, mvm)
    assert trace[7] == (first + CTL, add)  # beside the MVM, on the SIMD unit
    assert trace[8] == (first + mvm, relu)  # WAR: x[0:4] is the MVM's input until it ends
    assert trace[9] == (first + mvm + CTL, store)  # buf[200:204] is written by then
    assert report.cycles == first + mvm + CTL + store + CTL
    # the load -> MVM wait and the relu's wait for the MVM; the halt's for the store
    assert report.stalls == {
        "dependence": load - CTL + mvm - 2 * CTL,
        "unit": store - CTL,
    }


def test_a_halt_waits_for_every_unit_to_drain() -> None:
    # the last MVM feeds nothing: only the halt waits for it
    text = IO + IMAGES + SETUP + "    xbar.mvm a0, r0, r2, 8, 0, 1\n    ctl.halt\n"
    p = overlapped(text)
    t = cycles(p)
    trace, report, _ = run(p)
    end = max(s + n for s, n in trace[:-1])
    assert end == 5 * CTL + t[5] + t[6]
    assert trace[-1] == (end, CTL)
    assert report.cycles == end + CTL
    assert report.stalls["unit"] == end - (5 * CTL + t[5] + CTL)


def test_a_streamed_core_starts_its_next_sample_once_drained() -> None:
    p = overlapped(INDEPENDENT)
    one = run(p)[1].cycles
    assert one is not None
    stream = imcc.Simulator(p, mode="cycle").stream(X, 3)
    assert stream.completions == (one, 2 * one, 3 * one)


@pytest.mark.parametrize("preset", ["isaac", "puma"])
def test_the_presets_overlap_and_other_targets_do_not(preset: str) -> None:
    assert load_target(preset).core.overlap
    assert '"overlap":true' in load_target(preset).to_json()
    assert not load_target().core.overlap
    assert "overlap" not in load_target().to_json()  # absent when off: the fingerprint holds


def test_overlap_must_be_a_boolean() -> None:
    data = load_target().to_dict()
    data["core"]["overlap"] = 1
    with pytest.raises(TargetError, match=r"overlap = 1 must be of type bool"):
        Target.from_dict(data)


def with_overlap(binary: imcc.Binary, overlap: bool) -> Program:
    target = binary.program.target
    core = dataclasses.replace(target.core, overlap=overlap)
    return dataclasses.replace(binary.program, target=dataclasses.replace(target, core=core))


@pytest.mark.parametrize(
    ("model", "shape", "target"),
    [
        (mlp_onnx([40, 24, 10], ["relu", "none"]), (3, 40), "isaac"),
        (lenet(), (2, 1, 12, 12), "edge-rram"),
    ],
    ids=["mlp-isaac", "lenet-edge-rram"],
)
def test_compiled_models_give_the_functional_outputs_with_overlap(
    model: object, shape: tuple[int, ...], target: str
) -> None:
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    binary = imcc.compile(model, load_target(target))
    on, off = with_overlap(binary, True), with_overlap(binary, False)
    functional = imcc.Simulator(on, mode="functional").run(x)
    overlapping = imcc.Simulator(on, mode="cycle").run(x)
    sequential = imcc.Simulator(off, mode="cycle").run(x)
    assert np.array_equal(overlapping.outputs["y"], functional.outputs["y"])
    assert np.array_equal(sequential.outputs["y"], functional.outputs["y"])
    # the same work, sooner: counts and dynamic energy do not depend on time
    assert overlapping.report.counts == sequential.report.counts
    dynamic = {k: v for k, v in overlapping.report.energy_breakdown_pj.items() if k != "leakage"}
    assert dynamic == {
        k: v for k, v in sequential.report.energy_breakdown_pj.items() if k != "leakage"
    }
    assert overlapping.report.cycles is not None and sequential.report.cycles is not None
    assert overlapping.report.cycles <= sequential.report.cycles
    # every instruction ends by the run's last cycle: the halts wait for their units
    trace = imcc.Simulator(on, mode="cycle").trace(x[:1])
    assert max(s + n for _, s, n, _, _, _ in trace) == overlapping.report.cycles


# pc 6: one MVM spanning a0 and a1 (k = 2) on x[0:4], into buf[200:204] and buf[204:208]:
# y = (x[0:4], 2 x[0:4]), as two MVMs on one input give
SPAN = (
    IO
    + IMAGES
    + SETUP
    + "    xbar.mvm a0, r0, r2, 8, 0, 2\n    mem.store r4, r2, 8\n    ctl.halt\n"
)
TWO = (
    IO
    + IMAGES
    + SETUP
    + "    xbar.mvm a0, r0, r2, 8, 0, 1\n    xbar.mvm a1, r0, r3, 8, 0, 1\n"
    + "    mem.store r4, r2, 8\n    ctl.halt\n"
)


@pytest.mark.parametrize("overlap", [False, True])
def test_one_mvm_spanning_two_arrays_runs_them_at_once(overlap: bool) -> None:
    """PUMA's MVM coalescing: the k arrays of a span read one input at once, so the span
    costs one MVM's cycles and k arrays' energy; with or without overlap, it gives the two
    MVMs' outputs and energy, in less time."""
    span, two = overlapped(SPAN, overlap), overlapped(TWO, overlap)
    t = cycles(two)
    mvm = t[6]
    trace, report, y = run(span)
    assert y[0].tolist() == [1, 2, 3, 4, 2, 4, 6, 8]
    _, report_two, y_two = run(two)
    assert np.array_equal(y, y_two)
    assert trace[6][1] == mvm  # the span takes one MVM's time
    # without overlap the second MVM's cycles are saved; with it, the MVMs overlapped
    # already, and what is saved is the cycle the second one issued later
    saved = CTL if overlap else mvm
    assert report.cycles == report_two.cycles - saved
    one = dict(price(span.target, two.code[0][6], 4, 4).counts)
    both = dict(price(span.target, span.code[0][6], 4, 4).counts)
    assert both["adc_conversions"] == 2 * one["adc_conversions"]
    assert both["buffer_words"] == one["buffer_words"] + 4  # the input is read once
    # the arrays' energy is the two MVMs'; the buffer's less the input read once more
    energy, energy_two = report.energy_breakdown_pj, report_two.energy_breakdown_pj
    for component in ("adc", "array", "dac", "shift_add"):
        assert energy[component] == pytest.approx(energy_two[component])
    saved_buffer = 4 * span.target.cost.buffer_pj_per_word
    assert energy["buffer"] == pytest.approx(energy_two["buffer"] - saved_buffer)
    assert report.counts["macs"] == report_two.counts["macs"] == 2 * 4 * 4
    # both arrays are busy for the span's cycles
    cores = span.target.chip.cores
    assert report.utilisation["xbar"] == pytest.approx(2 * mvm / (report.cycles * cores))
