"""The loader rejects what cannot run, before anything runs; traps name core and pc."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import imcc
from imcc.isa import spec
from imcc.isa.diagnostics import BinaryFormatError, InputLoc, SimulationError
from imcc.isa.encoding import make
from imcc.isa.program import Binding, XbarImage
from imcc.runtime.engine import Mode
from tests.runtime.programs import binary, image_directive, with_io

LEVELS = np.ones((4, 4), dtype=np.int64)
HEAD = image_directive(0, LEVELS) + ".bind c0 a0 0\n"


def load_error(text: str, patch: tuple[int, spec.InstrSpec, tuple[int, ...]] | None = None) -> str:
    """Load `text`; `patch` = (pc, row, operands) replaces the `ctl.nop` at pc of core 0 with an
    instruction the assembler would refuse, as a hand-crafted binary could hold."""
    prog = with_io(text).program
    if patch is not None:
        pc, row, operands = patch
        prog.code[0][pc] = make(row, *operands)
    with pytest.raises(BinaryFormatError) as info:
        imcc.Simulator(imcc.Binary(prog, name="test.imcb"))
    return str(info.value)


def test_a_valid_program_loads_and_runs() -> None:
    result = imcc.Simulator(
        with_io(
            HEAD + ".core 0\nctl.set r0, 0\nctl.set r1, 16\nmem.load r0, r0, 4\n"
            "xbar.mvm a0, r0, r2, 8, 1, 1\nmem.store r1, r2, 4\nctl.halt\n"
        )
    ).run(np.array([1.0, 2.0, 3.0, 4.0]))
    assert result.outputs["y"].tolist() == [10.0] * 4


def test_rejects_an_instruction_naming_a_missing_core() -> None:
    message = load_error(
        ".core 0\nctl.set r0, 0\nctl.nop\nctl.halt\n", (1, spec.NOC_SEND, (9, 31, 0, 0, 1))
    )
    assert message == (
        "test.imcb: section CODE[0]: pc 1 (noc.send): core c9 does not exist; there are 4 cores"
    )


def test_rejects_an_instruction_naming_a_missing_array() -> None:
    instr = (0, spec.XBAR_MVM, (8, 0, 1, 8, 1, 1))
    message = load_error(HEAD + ".core 0\nctl.nop\nctl.halt\n", instr)
    assert message == (
        "test.imcb: section CODE[0]: pc 0 (xbar.mvm): array a8 does not exist; there are 8 arrays"
    )


def test_rejects_an_mvm_on_an_array_without_image() -> None:
    message = load_error(HEAD + ".core 0\nxbar.mvm a1, r0, r1, 8, 1, 1\nctl.halt\n")
    assert message.endswith("pc 0 (xbar.mvm): array a1 holds no image when this runs")


@pytest.mark.parametrize(
    ("head", "mvm", "message"),
    [
        (
            HEAD,
            "xbar.mvm a6, r0, r1, 8, 1, 3",
            "k = 3 arrays from a6 run past the last of the 8 arrays",
        ),
        (HEAD, "xbar.mvm a0, r0, r1, 8, 1, 2", "array a1 holds no image when this runs"),
        (
            HEAD + image_directive(1, np.ones((4, 2), dtype=np.int64)) + ".bind c0 a1 1\n",
            "xbar.mvmb a0, r0, r1, 8, 1, 2, 2",
            "array a1 holds a 4x2 image but a0 a 4x4 one; the arrays of one xbar.mvmb hold "
            "images of one shape",
        ),
    ],
)
def test_rejects_an_mvm_spanning_arrays_it_cannot_run_on(head: str, mvm: str, message: str) -> None:
    text = head + f".core 0\nctl.set r0, 0\nctl.set r1, 8\n{mvm}\nctl.halt\n"
    assert load_error(text).endswith(f"pc 2 ({mvm.split()[0]}): {message}")


def test_rejects_a_register_the_target_does_not_have() -> None:
    prog = with_io(".core 0\nctl.set r20, 1\nctl.halt\n").program
    prog.target = dataclasses.replace(
        prog.target, core=dataclasses.replace(prog.target.core, registers=16)
    )
    with pytest.raises(BinaryFormatError) as info:
        imcc.Simulator(imcc.Binary(prog, name="test.imcb"))
    assert str(info.value) == (
        "test.imcb: section CODE[0]: pc 0 (ctl.set): d r20 does not exist; there are 16 registers"
    )


def test_rejects_a_static_address_outside_the_buffer() -> None:
    message = load_error(".core 0\nctl.set r0, 16380\nsimd.relu r0, r0, 8\nctl.halt\n")
    assert message == (
        "test.imcb: section CODE[0]: pc 1 (simd.relu): d = r0 addresses [16380, 16388) outside "
        "the 16384-word buffer"
    )


def test_rejects_a_global_address_outside_memory() -> None:
    message = load_error(
        ".core 0\nctl.set r0, 0\nctl.set r1, 1048575\nmem.load r0, r1, 2\nctl.halt\n"
    )
    assert (
        "pc 2 (mem.load): a = r1 addresses [1048575, 1048577) outside the 1048576-word global"
        in message
    )


def test_rejects_a_branch_past_the_code() -> None:
    message = load_error(".core 0\nctl.nop\nctl.halt\n", (0, spec.CTL_JUMP, (7,)))
    assert message.endswith("pc 0 (ctl.jump): target 7 does not exist; there are 2 instructions")


def test_rejects_an_image_larger_than_the_arrays() -> None:
    big = np.zeros((129, 4), dtype=np.int64)
    prog = with_io(".core 0\nctl.halt\n").program
    prog.images.append(XbarImage(big))
    with pytest.raises(BinaryFormatError) as info:
        imcc.Simulator(imcc.Binary(prog, name="test.imcb"))
    message = str(info.value)
    assert message == "test.imcb: section IMAGE[0]: image is 129x4 but arrays are 128x128"


def test_rejects_a_level_the_cells_cannot_hold() -> None:
    prog = with_io(".core 0\nctl.halt\n").program
    prog.images.append(XbarImage(np.full((2, 2), 4)))
    with pytest.raises(BinaryFormatError) as info:
        imcc.Simulator(imcc.Binary(prog, name="test.imcb"))
    message = str(info.value)
    assert message == "test.imcb: section IMAGE[0]: level 4 exceeds the 2-bit cells' top level 3"


def test_rejects_a_binding_to_a_missing_array() -> None:
    prog = with_io(image_directive(0, LEVELS) + ".core 0\nctl.halt\n").program
    prog.bindings.append(Binding(1, 9, 0))
    with pytest.raises(BinaryFormatError) as info:
        imcc.Simulator(imcc.Binary(prog, name="test.imcb"))
    message = str(info.value)
    assert "section BIND: binding names array a9 of core 1, which does not exist" in message


def test_a_program_that_never_halts_exhausts_the_cycle_budget() -> None:
    program = with_io(".core 0\nspin:\n    ctl.jump spin\n")
    with pytest.raises(SimulationError) as info:
        imcc.Simulator(program, mode="cycle", max_cycles=1000).run(np.zeros(4))
    assert str(info.value) == (
        "core 0 pc 0 (ctl.jump): no halt after 1,000 cycles (cycle budget exhausted)"
    )
    with pytest.raises(
        SimulationError,
        match=r"core 0 pc 0 \(ctl.jump\): no halt after 1,000 "
        r"instructions \(instruction budget exhausted\)",
    ):
        imcc.Simulator(program, mode="functional", max_cycles=1000).run(np.zeros(4))


def test_running_off_the_end_without_halt_traps() -> None:
    program = with_io(".core 0\nctl.nop\n")
    with pytest.raises(SimulationError, match=r"core 0 pc 1: ran past the end of its code"):
        imcc.Simulator(program).run(np.zeros(4))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (np.zeros(3), "input 'x': shape (3,); expected (4,) or (batch, 4)"),
        (
            np.array([1.0, np.nan, 0, 0]),
            "input 'x' sample 0: nan at index (1,); inputs must be finite",
        ),
        (np.array(["a", "b", "c", "d"]), "input 'x': dtype <U1; expected a real number type"),
        ({"z": np.zeros(4)}, "input 'z': unknown input name 'z'; the model's inputs are ['x']"),
        ({}, "input 'x': missing; expected an array of shape (4,) or (batch, 4)"),
    ],
)
def test_bad_inputs_are_rejected_before_running(inputs: object, message: str) -> None:
    program = with_io(".core 0\nctl.halt\n")
    with pytest.raises(SimulationError) as info:
        imcc.Simulator(program).run(inputs)
    assert str(info.value).startswith(message)
    assert isinstance(info.value.loc, InputLoc)


def test_unknown_mode_and_device_are_clear_errors() -> None:
    program = with_io(".core 0\nctl.halt\n")
    with pytest.raises(SimulationError, match="unknown mode 'fast'; modes are functional, cycle"):
        imcc.Simulator(program, mode="fast")
    with pytest.raises(SimulationError, match="unknown device 'pcm2'; devices are ideal"):
        imcc.Simulator(program, device="pcm2")


def test_binary_round_trip_through_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    original = binary(
        '.target edge-rram\n.output {"name": "y", "shape": [1], "addr": 0, '
        '"dtype": "float32", "batch_axis": true, "quant": {}}\n'
        ".core 0\nctl.halt\n"
    )
    original.save(tmp_path / "p.imcb")
    loaded = imcc.load(tmp_path / "p.imcb")
    assert loaded.data == original.data
    assert loaded.program.same_as(original.program)


def test_an_array_bound_on_a_core_without_code_is_programmed_not_a_crash() -> None:
    """`.bind c3` with code for core 0 only: the chip still has core 3, which holds the
    array (an IndexError before)."""
    program = with_io(HEAD.replace("c0 a0", "c3 a0") + ".core 0\nctl.halt\n")
    assert len(program.program.code) == 1
    sim = imcc.Simulator(program)
    assert sim.run(np.zeros((1, 4))).outputs["y"].tolist() == [[0.0] * 4]
    assert sim.machine.cores[3].arrays[0] is not None


@pytest.mark.parametrize(
    ("strides", "message"),
    [
        ("", r"pc 1 \(simd.copy2d\): stride registers r30.. do not all exist"),
        ("ctl.set r5, 1\nctl.set r6, -4\nctl.set r7, 4\n", r"strides \(1, -4, 4\) must be >= 0"),
        ("ctl.set r5, 1\nctl.set r6, 9000\nctl.set r7, 4\n",
         r"a = r1 addresses \[0, 18004\) outside the 16384-word buffer"),
    ],
)  # fmt: skip
def test_static_strides_of_a_block_copy_are_checked(strides: str, message: str) -> None:
    register = "r30" if not strides else "r5"
    text = f".core 0\nctl.set r1, 0\n{strides}simd.copy2d r1, r1, {register}, 4, 3\nctl.halt\n"
    with pytest.raises(BinaryFormatError, match=message):
        imcc.Simulator(with_io(text))


@pytest.mark.parametrize("mode", ["functional", "cycle", Mode.FUNCTIONAL, Mode.CYCLE])
def test_modes_are_a_str_enum_that_strings_name(mode: str) -> None:
    sim = imcc.Simulator(with_io(".core 0\nctl.halt\n"), mode=mode)
    assert sim.mode is Mode(mode) and sim.mode == str(mode)
    report = sim.run(np.zeros(4)).report
    assert type(report.mode) is str and report.mode == mode
    assert (report.cycles is None) == (mode == "functional")


def test_tile_memory_on_a_target_without_tiles_is_rejected_at_load() -> None:
    program = with_io(".core 0\nctl.set r0, 0\ntile.load r0, r0, 4\nctl.halt\n")
    with pytest.raises(BinaryFormatError) as info:
        imcc.Simulator(program)
    assert str(info.value) == (
        "test.imcb: section CODE[0]: pc 1 uses a tile memory but target 'edge-rram' has no [tile]"
    )


# -- what both engines do: the cycle-level engine inherits every functional test -------------
class TestFunctional:
    """Behaviour the two engines share, on the functional engine; TestCycle runs each test
    again on the cycle-level engine, which calls the same semantics and adds time."""

    mode = Mode.FUNCTIONAL

    def test_a_receive_without_send_is_a_deadlock_rejected_at_load(self) -> None:
        # the loader's protocol check (isa/protocol.py); the run-time trap for a program that
        # skips the loader is tested in tests/runtime/test_queues.py
        program = with_io(
            ".core 0\nctl.set r0, 0\nnoc.recv c1, r31, 5, r0, 4\nctl.halt\n.core 1\nctl.halt\n"
        )
        with pytest.raises(BinaryFormatError) as info:
            imcc.Simulator(program, mode=self.mode)
        assert str(info.value) == (
            "test.imcb: section CODE[0]: deadlock: no core can go on: core 0 pc 1 (noc.recv) "
            "waits for a message from core 1 tag 5 (core 0 waits for core 1, which has halted)"
        )

    def test_a_dynamic_address_out_of_range_traps_with_core_and_pc(self) -> None:
        # r0 is changed inside a loop closed by a branch, which the loader does not follow
        # (it follows counted loops only); the simulator checks it.
        program = with_io(
            ".core 0\nctl.set r0, 16000\nctl.set r1, 16600\nagain:\n"
            "ctl.add r0, r0, 200\nsimd.relu r0, r0, 8\nctl.branch.lt r0, r1, again\n"
            "ctl.halt\n"
        )
        with pytest.raises(SimulationError) as info:
            imcc.Simulator(program, mode=self.mode).run(np.zeros(4))
        assert str(info.value) == (
            "core 0 pc 3 (simd.relu): d = r0 = 16400: range [16400, 16408) is outside the "
            "16384-word buffer"
        )


class TestCycle(TestFunctional):
    mode = Mode.CYCLE


def test_a_counted_loop_running_out_of_range_is_refused_at_load() -> None:
    """The loader follows a counted loop through its first, second and last trips: the
    third trip's address is past the buffer."""
    message = load_error(
        ".core 0\nctl.set r0, 16000\nagain:\n"
        "ctl.add r0, r0, 200\nsimd.relu r0, r0, 8\nctl.loop r1, 3, again\nctl.halt\n"
    )
    assert message == (
        "test.imcb: section CODE[0]: pc 2 (simd.relu): d = r0 addresses [16400, 16408) "
        "outside the 16384-word buffer"
    )


def test_a_counted_loop_inside_the_buffer_loads() -> None:
    """Nested counted loops (4 x 8 trips) stepping r0 by 16 a trip and 4,096 an outer trip:
    the last write, at 3,968 + 3 x 4,096 + 7 x 16 = 16,368, ends at the buffer's end."""
    imcc.Simulator(
        with_io(
            ".core 0\nctl.set r0, 3968\nouter:\ninner:\n"
            "simd.relu r0, r0, 16\nctl.add r0, r0, 16\nctl.loop r3, 8, inner\n"
            "ctl.add r0, r0, 3968\nctl.loop r2, 4, outer\nctl.halt\n"
        )
    )


def test_the_last_trip_of_a_nested_loop_is_checked() -> None:
    """The same nest one word further: only the last inner trip of the last outer trip is
    out of range, and the loader finds it."""
    message = load_error(
        ".core 0\nctl.set r0, 3969\nouter:\ninner:\n"
        "simd.relu r0, r0, 16\nctl.add r0, r0, 16\nctl.loop r3, 8, inner\n"
        "ctl.add r0, r0, 3968\nctl.loop r2, 4, outer\nctl.halt\n"
    )
    assert message == (
        "test.imcb: section CODE[0]: pc 1 (simd.relu): d = r0 addresses [16369, 16385) "
        "outside the 16384-word buffer"
    )
