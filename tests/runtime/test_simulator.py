"""The Simulator's contract with its caller: set_time keeps the chip's compensation, memories
are sparse and bounded by the host, a runaway program stops by default with its core and pc,
and every bad argument or input is a Diagnostic located at it (issue 11)."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

import imcc
import imcc.runtime.machine as machine
from imcc.isa.diagnostics import CoreLoc, InputLoc, OptionLoc, SimulationError
from imcc.isa.program import Program, TensorInfo
from imcc.runtime.engine import (
    BOUNDED_WORK,
    INSTRUCTION_WORK,
    UNBOUNDED_TRIPS,
    UNBOUNDED_WORK,
    Mode,
    work_budget,
)
from tests.conftest import mlp_onnx
from tests.runtime.programs import program, with_io


# -- set_time keeps the drift compensation ----------------------------------------------------
@pytest.fixture(scope="module")
def pcm_model() -> tuple[imcc.Binary, np.ndarray]:
    rng = np.random.default_rng(0)
    binary = imcc.compile(mlp_onnx([32, 24, 10], ["relu", "none"]),
                          calibrate=rng.normal(size=(200, 32)))  # fmt: skip
    return binary, rng.normal(size=(16, 32))


def gains(sim: imcc.Simulator) -> list[np.ndarray]:
    return [s.gain for core in sim.machine.cores for s in core.arrays if s is not None]


@pytest.mark.parametrize("compensation", ["global", "column"])
def test_set_time_keeps_the_compensation_and_equals_a_fresh_chip(pcm_model, compensation) -> None:  # type: ignore[no-untyped-def]
    binary, x = pcm_model
    options = {"device": "pcm", "seed": 5, "mode": "functional"}
    chip = imcc.Simulator(binary, drift_compensation=compensation, **options)  # type: ignore[arg-type]
    chip.set_time("1y")
    fresh = imcc.Simulator(binary, time="1y", drift_compensation=compensation, **options)  # type: ignore[arg-type]
    assert chip.drift_compensation == compensation and chip.calibration is not None
    for a, b in zip(gains(chip), gains(fresh), strict=True):
        assert np.array_equal(a, b) and not np.all(a == 1)
    assert np.array_equal(chip.run(x).outputs["y"], fresh.run(x).outputs["y"])
    # inference reads in between change nothing of the calibration at the next time
    chip.set_time("1d")
    again = imcc.Simulator(binary, time="1d", drift_compensation=compensation, **options)  # type: ignore[arg-type]
    for a, b in zip(gains(chip), gains(again), strict=True):
        assert np.array_equal(a, b)
    chip.set_time("1y", drift_compensation=None)  # switched off only when asked
    assert chip.drift_compensation is None and chip.calibration is None
    assert all(np.all(g == 1) for g in gains(chip))


# -- memories: sparse, bounded by the host ----------------------------------------------------
HUGE = """
.target edge-rram
.input {"name": "x", "shape": [4], "addr": 0, "dtype": "float32"}
.output {"name": "y", "shape": [4], "addr": 16, "dtype": "float32"}
.core 0
    ctl.set r0, 4294967295
    ctl.set r1, 1073741820
    ctl.set r2, 1099511627000
    mem.load r1, r0, 4
    simd.relu r1, r1, 4
    mem.store r2, r1, 4
    ctl.halt
"""


def huge_memories() -> Program:
    """A program on a target with a 2^40-word global memory and 2^30-word buffers, its input
    at 2^32 - 1, its output near the top of the global memory, its buffer work near the top
    of the buffer."""
    small = program(HUGE)
    target = small.target
    big = dataclasses.replace(
        target,
        chip=dataclasses.replace(target.chip, global_memory_words=1 << 40),
        core=dataclasses.replace(target.core, buffer_words=1 << 30),
    )
    return dataclasses.replace(
        small,
        target=big,
        inputs=[TensorInfo(name="x", shape=(4,), addr=(1 << 32) - 1)],
        outputs=[TensorInfo(name="y", shape=(4,), addr=1099511627000)],
    )


def test_a_touch_past_the_host_limit_is_a_trap_naming_core_pc_and_memory(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(machine, "HOST_MEMORY_BYTES", 1 << 20)
    binary = with_io(".core 0\nctl.set r0, 0\nctl.set r1, 64\nmem.load r1, r0, 16000\nctl.halt\n")
    with pytest.raises(SimulationError) as info:
        imcc.Simulator(binary).run(np.zeros((16, 4)))
    assert info.value.loc == CoreLoc(0, 2, "mem.load")
    assert "touching words [64, 16064) of the 16384-word buffer of core 0" in str(info.value)
    assert "for a batch of 16 sample(s); the host limit is 0.00 GiB" in str(info.value)


def test_inputs_the_host_cannot_hold_are_an_error_before_running(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(machine, "HOST_MEMORY_BYTES", 1 << 16)
    binary = with_io(".core 0\nctl.halt\n")
    with pytest.raises(SimulationError) as info:
        imcc.Simulator(binary).run(np.zeros((64, 4)))
    assert info.value.loc == InputLoc("x")
    assert "of the 1048576-word global memory would hold" in str(info.value)


# -- runaway programs stop by default ---------------------------------------------------------
def test_a_loop_of_wide_simd_instructions_counts_its_lanes() -> None:
    lanes = 8192
    binary = with_io(f".core 0\nctl.set r0, 0\ntop:\n    simd.relu r0, r0, {lanes}\n"
                     "    ctl.jump top\n")  # fmt: skip
    with pytest.raises(SimulationError) as info:
        imcc.Simulator(binary, mode="functional").run(np.zeros(4))
    assert isinstance(info.value.loc, CoreLoc) and info.value.loc.core == 0
    assert f"past the default budget of {UNBOUNDED_WORK:,}" in str(info.value)
    used = int(str(info.value).split("no halt after ")[1].split(" work units")[0].replace(",", ""))
    assert used <= UNBOUNDED_WORK + lanes + INSTRUCTION_WORK  # ~2,000 passes, not 4,096


def test_a_counter_reset_inside_its_loop_has_no_static_bound() -> None:
    binary = with_io(".core 0\ntop:\n    ctl.set r0, 5\n    ctl.loop r0, 10, top\nctl.halt\n")
    with pytest.raises(SimulationError) as info:
        imcc.Simulator(binary, mode="cycle").run(np.zeros(4))
    assert info.value.loc == CoreLoc(0, 0, "ctl.set") or info.value.loc == CoreLoc(0, 1, "ctl.loop")
    assert "the backward ctl.loop at pc 1 has no static trip count" in str(info.value)


def test_a_loop_with_a_huge_static_count_stops_at_the_default_cap() -> None:
    """2^24 - 1 passes of 16,384 lanes are 2^38 work units, past EXACT_WORK: the default
    stops them at BOUNDED_WORK (after about two thousand passes)."""
    binary = with_io(".core 0\nctl.set r1, 0\ntop:\n    simd.relu r1, r1, 16384\n"
                     "    ctl.loop r0, 16777215, top\nctl.halt\n")  # fmt: skip
    with pytest.raises(SimulationError) as info:
        imcc.Simulator(binary, mode="functional").run(np.zeros(4))
    assert isinstance(info.value.loc, CoreLoc) and info.value.loc.core == 0
    assert info.value.loc.pc in (1, 2)
    assert f"past the {BOUNDED_WORK:,} the default allows" in str(info.value)


def test_loops_whose_counters_start_at_zero_get_exactly_their_work() -> None:
    """3,000 passes of 16,384 lanes, past BOUNDED_WORK: the counter is never written but by
    its loop, so it is 0 on entry and the loop runs its 3,000 trips; the default budget is
    the program's own work, and the run halts under it."""
    binary = with_io(".core 0\nctl.set r1, 0\ntop:\n    simd.relu r1, r1, 16384\n"
                     "    ctl.loop r0, 3000, top\nctl.halt\n")  # fmt: skip
    (budget, *_) = work_budget(binary.program)
    work = budget.work
    assert budget.limit == work[0] + 3000 * (work[1] + work[2]) + work[3]
    assert budget.limit > BOUNDED_WORK
    assert budget.why == "its loops run their trip counts"
    imcc.Simulator(binary, mode="functional").run(np.zeros(4))


# -- run-time arguments and inputs ------------------------------------------------------------
TWO_INPUTS = """
.target edge-rram
.input {"name": "a", "shape": [2, 2], "addr": 0, "dtype": "float32"}
.input {"name": "b", "shape": [3], "addr": 8, "dtype": "float32"}
.output {"name": "y", "shape": [4], "addr": 16, "dtype": "float32"}
.core 0
    ctl.halt
"""


@pytest.mark.parametrize(
    ("inputs", "loc", "message"),
    [({"a": [[1, 2], [3]], "b": np.zeros(3)}, InputLoc("a"),
      "a ragged nested sequence (rows of different lengths)"),
     ({"a": np.zeros((2, 2)), "b": np.zeros(3, dtype=complex)}, InputLoc("b"),
      "dtype complex128; expected a real number type (float32)"),
     ({"a": np.array([["x", "y"], ["z", "w"]]), "b": np.zeros(3)}, InputLoc("a"), "dtype <U1"),
     ({"a": np.full((2, 2), None), "b": np.zeros(3)}, InputLoc("a"), "dtype object"),
     ({"a": np.zeros((3, 2, 2)), "b": np.array([[0, 0, 0], [0, np.inf, 0], [0, 0, 0]])},
      InputLoc("b", 1), "inf at index (1,); inputs must be finite"),
     ({"a": np.zeros((2, 2, 2)).tolist() and np.array([[[0, 0], [0, 0]], [[0, 0], [0, np.nan]]]),
       "b": np.zeros((2, 3))}, InputLoc("a", 1), "nan at index (1, 1)"),
     ({"a": np.zeros((2, 3)), "b": np.zeros(3)}, InputLoc("a"),
      "shape (2, 3); expected (2, 2) or (batch, 2, 2)"),
     ({"a": np.zeros((5, 2, 2)), "b": np.zeros((4, 3))}, InputLoc("b"),
      "batch shape (4,), but the other inputs have (5,)"),
     ({"a": np.zeros((2, 2)), "b": np.zeros(3), "c": 1}, InputLoc("c"),
      "unknown input name 'c'; the model's inputs are ['a', 'b']"),
     ({"a": np.zeros((2, 2)), "b": np.zeros(3), 7: 1}, InputLoc("7"), "unknown input name 7"),
     ({"a": np.zeros((2, 2))}, InputLoc("b"), "missing; expected an array of shape (3,)"),
     ({"a": np.zeros((0, 2, 2)), "b": np.zeros((0, 3))}, InputLoc("a"),
      "shape (0, 2, 2) is an empty batch; run needs at least one sample"),
     (np.zeros(3), OptionLoc("inputs"), "the model has 2 inputs (a, b); pass a dict")],
)  # fmt: skip
def test_bad_inputs_are_located_at_the_input(inputs: object, loc: object, message: str) -> None:
    with pytest.raises(SimulationError) as info:
        imcc.Simulator(program(TWO_INPUTS)).run(inputs)
    assert info.value.loc == loc
    assert message in str(info.value)


@pytest.mark.parametrize("call", ["trace", "stream"])
def test_an_empty_batch_to_trace_or_stream_is_an_error(call: str) -> None:
    sim = imcc.Simulator(with_io(".core 0\nctl.halt\n"))
    with pytest.raises(SimulationError) as info:
        sim.trace(np.zeros((0, 4))) if call == "trace" else sim.stream(np.zeros((0, 4)), 3)
    assert info.value.loc == InputLoc("x")
    assert f"shape (0, 4) is an empty batch; {call} needs at least one sample" in str(info.value)


@pytest.mark.parametrize(
    ("options", "option", "message"),
    [({"max_cycles": "1000"}, "max_cycles",
      "max_cycles must be a positive integer or None (a budget derived from the program), "
      "not '1000'"),
     ({"max_cycles": 0}, "max_cycles", "max_cycles must be a positive integer, not 0"),
     ({"max_cycles": 1.5}, "max_cycles", "not 1.5"),
     ({"max_cycles": True}, "max_cycles", "not True"),
     ({"seed": "3"}, "seed", "seed must be a non-negative integer, not '3'"),
     ({"seed": -1}, "seed", "seed must be a non-negative integer, not -1"),
     ({"mode": "fast"}, "mode", "unknown mode 'fast'; modes are functional, cycle"),
     ({"mode": ["cycle"]}, "mode", "unknown mode ['cycle']"),
     ({"time": [1]}, "time", "bad time [1]"),
     ({"time": np.float64(-1.0)}, "time", "time since programming must be >= 0 s"),
     ({"time": "1 fortnight"}, "time", "bad time '1 fortnight'"),
     ({"device": 3.5}, "device", "device must be a device name"),
     ({"device": "nope"}, "device", "unknown device 'nope'"),
     ({"drift_compensation": 5}, "drift_compensation", "not 5"),
     ({"drift_compensation": "sideways"}, "drift_compensation",
      "unknown drift compensation 'sideways'"),
     ({"ir_drop": 1}, "ir_drop", "unknown IR-drop mode 1"),
     ({"cam_device": object}, "cam_device", "a CAM device is a name or a sigma"),
     ({"cam_device": -1.0}, "cam_device", "sigma must be >= 0")],
)  # fmt: skip
def test_bad_simulator_arguments_are_located_at_the_argument(
    options: dict, option: str, message: str
) -> None:
    with pytest.raises(SimulationError) as info:
        imcc.Simulator(with_io(".core 0\nctl.halt\n"), **options)
    assert info.value.loc == OptionLoc(option)
    assert message in str(info.value)


def test_bad_set_time_and_stream_arguments_are_located() -> None:
    sim = imcc.Simulator(with_io(".core 0\nctl.halt\n"))
    with pytest.raises(SimulationError) as info:
        sim.set_time("soon")
    assert info.value.loc == OptionLoc("time")
    with pytest.raises(SimulationError) as info:
        sim.set_time(0, drift_compensation="sideways")
    assert info.value.loc == OptionLoc("drift_compensation")
    with pytest.raises(SimulationError) as info:
        sim.stream(np.zeros(4), "3")  # type: ignore[arg-type]
    assert info.value.loc == OptionLoc("samples")
    with pytest.raises(SimulationError) as info:
        imcc.Simulator(with_io(".core 0\nctl.halt\n"), mode="functional").stream(np.zeros(4), 2)
    assert info.value.loc == OptionLoc("mode")
    with pytest.raises(SimulationError) as info:
        imcc.Simulator({"not": "a binary"})  # type: ignore[arg-type]
    assert info.value.loc == OptionLoc("binary")


def test_the_simulator_documents_every_argument_and_method() -> None:
    doc = inspect.getdoc(imcc.Simulator) or ""
    parameters = inspect.signature(imcc.Simulator.__init__).parameters
    for name in [p for p in parameters if p != "self"] + ["run", "trace", "stream", "set_time"]:
        assert f"{name}" in doc, name
    for method in ("run", "trace", "stream", "set_time"):
        assert inspect.getdoc(getattr(imcc.Simulator, method))


def test_a_sparse_store_reads_and_writes_as_a_dense_array() -> None:
    """Random slices and index arrays (within a page, across pages, far apart) against a
    dense numpy array of the same words: the same values, bit for bit."""
    rng = np.random.default_rng(3)
    words, batch = 40 * machine.PAGE_WORDS, 3
    store = machine.Store("test memory", words, batch, machine.Usage())
    dense = np.zeros((words, batch))
    for _ in range(400):
        n = int(rng.choice([1, 5, 300, 3000]))
        if rng.random() < 0.5:
            start = int(rng.integers(0, words - n))
            if rng.random() < 0.5:
                values = rng.normal(size=(n, batch))
                store[start : start + n] = values
                dense[start : start + n] = values
            else:
                assert np.array_equal(store[start : start + n], dense[start : start + n])
        else:
            addresses = rng.integers(0, words, size=n)
            if rng.random() < 0.5:
                addresses = np.sort(addresses)[: max(1, n // 2)]
            if rng.random() < 0.5:
                values = rng.normal(size=(addresses.size, batch))
                store[addresses] = values
                dense[addresses] = values
            else:
                assert np.array_equal(store[addresses], dense[addresses])
    assert np.array_equal(store[0:words], dense)
    assert store.usage.held == store.held_words * batch * 8
    assert store.starts == sorted(store.starts)
    assert all(a < b for a, b in zip(store.stops, store.starts[1:], strict=False))


def test_a_binary_path_that_cannot_be_read_is_located_at_the_argument(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(imcc.Diagnostic) as info:
        imcc.Simulator(tmp_path / "missing.imcb")
    assert info.value.loc == OptionLoc("binary") and "cannot read" in str(info.value)


# -- what both engines do: the cycle-level engine inherits every functional test -------------
class TestFunctional:
    """Behaviour the two engines share, on the functional engine; TestCycle runs each test
    again on the cycle-level engine, which calls the same semantics and adds time."""

    mode = Mode.FUNCTIONAL

    def test_memories_are_sparse_even_at_the_top_of_huge_address_spaces(self) -> None:
        sim = imcc.Simulator(huge_memories(), mode=self.mode)
        x = np.array([[1.0, -2.0, 3.0, -4.0], [-1.0, 2.0, -3.0, 4.0]])
        y = sim.run(x).outputs["y"]
        assert np.array_equal(y, np.maximum(x, 0).astype(np.float32))
        held = sim.machine.usage.held
        assert 0 < held <= 8 * machine.PAGE_WORDS * 2 * 8  # a few pages x 2 samples x 8 bytes

    def test_a_spin_loop_traps_under_the_default_budget_with_core_and_pc(self) -> None:
        binary = with_io(".core 0\nctl.halt\n.core 1\nctl.set r0, 0\nspin:\n    ctl.jump spin\n")
        with pytest.raises(SimulationError) as info:
            imcc.Simulator(binary, mode=self.mode).run(np.zeros(4))
        # ctl.set once, then the jump at most 4,096 times: the 4,097th pass traps
        budget = (1 + UNBOUNDED_TRIPS) * INSTRUCTION_WORK
        assert str(info.value).startswith(
            f"core 1 pc 1 (ctl.jump): no halt after {budget + INSTRUCTION_WORK:,} work units, past "
            f"the default budget of {budget:,} for this core"
        )
        assert info.value.loc == CoreLoc(1, 1, "ctl.jump")
        assert f"may repeat {UNBOUNDED_TRIPS:,} times" in str(info.value)
        assert "pass max_cycles" in str(info.value)

    def test_halting_loops_run_to_their_static_counts_under_the_default(self) -> None:
        """Nested static loops of 100 x 60 passes (12,000+ instructions, past the budget of an
        unbounded loop) halt; the same with max_cycles is the explicit budget."""
        text = (".core 0\nouter:\n    ctl.nop\ninner:\n    ctl.nop\n"
                "    ctl.loop r1, 60, inner\n    ctl.loop r0, 100, outer\nctl.halt\n")  # fmt: skip
        sim = imcc.Simulator(with_io(text), mode=self.mode)
        sim.run(np.zeros(4))
        with pytest.raises(SimulationError, match="budget exhausted"):
            imcc.Simulator(with_io(text), mode=self.mode, max_cycles=500).run(np.zeros(4))


class TestCycle(TestFunctional):
    mode = Mode.CYCLE
