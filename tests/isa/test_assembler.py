"""Text assembly: exact round trips with the disassembler, and errors that point at the fault.

Properties (hypothesis, derandomized): for random valid Programs, `assemble(disassemble(p))`
rebuilds p with a byte-identical container, and the disassembly is canonical
(`disassemble(assemble(t)) == t`). Every error kind pins its message, line and column.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imcc.compiler.target import load_target
from imcc.isa import container, spec
from imcc.isa.assembler import assemble, assemble_file, format_float
from imcc.isa.diagnostics import AsmError, SourceLoc, TargetError
from imcc.isa.disassembler import disassemble
from imcc.isa.encoding import Instr, make, operand_bounds
from imcc.isa.program import Binding, CamCode, CamImage, Program
from imcc.isa.target import Target
from tests.isa.test_container import (
    PROPERTY,
    float_bits,
    programs,
    same_program,
    small_program,
    target_dict,
)

TARGET = Target.from_dict(target_dict())  # 4 cores, 32 registers, 4 arrays per core
ACAM_TARGET = Target.from_dict(target_dict("tiny-acam", acam=True))  # and 2 CAM arrays
HEADER = f".target {json.dumps(target_dict())}"


def loader_for(*targets: Target):  # type: ignore[no-untyped-def]
    """A target loader that knows these targets by name, like compiler.target.load_target."""
    known = {t.name: t for t in targets}

    def load(name: str) -> Target:
        if name not in known:
            raise TargetError(f"unknown target {name!r}; presets are {', '.join(sorted(known))}")
        return known[name]

    return load


def round_trip(program: Program, loader=None) -> str:  # type: ignore[no-untyped-def]
    text = disassemble(program, loader)
    again = assemble(text, "rt.s", loader)
    assert same_program(again, program), text
    assert container.to_bytes(again) == container.to_bytes(program)
    assert disassemble(again, loader) == text
    return text


# -- round trips


@PROPERTY
@given(programs())
def test_disassembly_round_trips_with_json_target(program: Program) -> None:
    text = round_trip(program)
    assert text.startswith(".target {")


@PROPERTY
@given(programs())
def test_disassembly_round_trips_with_named_target(program: Program) -> None:
    text = round_trip(program, loader_for(program.target))
    name = program.target.name
    assert text.splitlines()[0] in (f".target {name}", f".target {json.dumps(name)}")


@PROPERTY
@given(programs())
def test_container_bytes_survive_disassembly(program: Program) -> None:
    data = container.to_bytes(program)
    text = disassemble(container.from_bytes(data))
    assert container.to_bytes(assemble(text)) == data


@pytest.mark.parametrize("row", [pytest.param(r, id=r.mnemonic) for r in spec.TABLE])
def test_every_instruction_assembles_from_its_disassembly(row: spec.InstrSpec) -> None:
    for pick in (0, 1):
        values = []
        for field in row.fields:
            lo, hi = operand_bounds(field)
            limit = {
                spec.OperandKind.ARRAY: 3,
                spec.OperandKind.CORE: 3,
                spec.OperandKind.IMAGE: 0,
                spec.OperandKind.CAM: 1,
                spec.OperandKind.CAM_IMAGE: 0,
                spec.OperandKind.CAM_CODE: 0,
            }.get(field.kind, hi)
            values.append(0 if field.kind is spec.OperandKind.TARGET else [lo, limit][pick])
        program = small_program()
        program.code[1] = [make(row.mnemonic, *values)]
        program.target = ACAM_TARGET
        program.cam_images = [
            CamImage(np.zeros((2, 3)), np.full((2, 3), 4), np.arange(4.0).reshape(2, 2))
        ]
        program.cam_bindings = [Binding(1, 1, 0)]
        program.cam_codes = [CamCode(np.array([0]), np.array([1]), np.array([2]),
                                     np.array([0, 1]), np.array([0.5]), np.array([1]))]  # fmt: skip
        round_trip(program)


CANONICAL = """\
.target tiny
.meta model "lenet"
.meta "odd key" "with \\"quotes\\""
.input {"name": "x", "shape": [1, 4], "addr": 0, "dtype": "float32", "batch_axis": true, \
"quant": {"bits": 8, "scale": 0.5}}
.output {"name": "y", "shape": [2], "addr": 16, "dtype": "float32", "batch_axis": false, \
"quant": {}}
.image 0 2 3 "AAABAAIAAwAEAAUA"
.bind c0 a1 0
.const 32 1.5 -0.0 nan inf -inf 5e-324 nan(0xfff8000000000001)
.const 40

.core 0
.node "conv1"
    ctl.set r1, 3
L1:
    xbar.mvm a1, r2, r3, 8, 1, 1
    simd.shiftadd r3, r3, r4, -2, 16
    ctl.loop r1, 3, L1
.node -
    ctl.branch.lt r1, r2, L6
    ctl.halt
L6:

.core 1

.core 2
.node "fc"
    noc.recv c0, r31, 7, r5, 16
    ctl.halt
"""


def test_canonical_text_round_trips_unchanged() -> None:
    loader = loader_for(TARGET)
    program = assemble(CANONICAL, "c.s", loader)
    assert disassemble(program, loader) == CANONICAL
    assert len(program.code) == 3 and program.code[1] == []
    assert program.code[0][3] == make("ctl.loop", 1, 3, 1)
    assert program.code[0][4].operand("target") == 6
    assert program.debug == {(0, 0): "conv1", (0, 1): "conv1", (0, 2): "conv1", (0, 3): "conv1",
                             (2, 0): "fc", (2, 1): "fc"}  # fmt: skip
    assert program.meta == {"model": "lenet", "odd key": 'with "quotes"'}
    assert program.inputs[0].quant == (("bits", 8), ("scale", 0.5))
    assert program.images[0].levels.tolist() == [[0, 1, 2], [3, 4, 5]]
    bits = program.constants[0][1].view("<u8").tolist()
    assert bits[1] == float_bits(-0.0) and bits[-1] == 0xFFF8000000000001
    assert program.constants[1][1].size == 0


def test_free_form_text_reads_the_same_as_canonical() -> None:
    text = f"""
    {HEADER}   ; the target, as JSON
# a comment line
.core 0
start:  ctl.set r1, 0x10            # hex immediate
        ctl.add r1, r1, -0x2
        ctl.branch.ne r1, r0, start ; backward
        ctl.jump done               ; forward
.node conv-1
        ctl.nop
done:
.const 0, 1, 2.5, +3
.meta version 2
"""
    program = assemble(text)
    assert program.code[0] == [
        make("ctl.set", 1, 16),
        make("ctl.add", 1, 1, -2),
        make("ctl.branch.ne", 1, 0, 0),
        make("ctl.jump", 5),
        make("ctl.nop"),
    ]
    assert program.debug == {(0, 4): "conv-1"}
    assert program.constants[0][1].tolist() == [1.0, 2.5, 3.0]
    assert program.meta == {"version": "2"}
    round_trip(program)


def test_labels_named_like_numbers_are_still_labels() -> None:
    program = assemble(f"{HEADER}\n.core 0\nnan: ctl.jump inf\ninf: ctl.jump nan\n")
    assert program.code[0] == [make("ctl.jump", 1), make("ctl.jump", 0)]


def test_node_clears_with_dash_or_empty_string() -> None:
    body = '.core 0\n.node "a"\nctl.nop\n.node ""\nctl.nop\n.node a\nctl.nop\n.node -\nctl.nop\n'
    text = f"{HEADER}\n{body}"
    assert assemble(text).debug == {(0, 0): "a", (0, 2): "a"}


def test_node_does_not_carry_into_the_next_core() -> None:
    text = f'{HEADER}\n.core 1\n.node "a"\nctl.nop\n.core 0\nctl.nop\n'
    program = assemble(text)
    assert program.debug == {(1, 0): "a"}
    assert [len(c) for c in program.code] == [1, 1]


def test_target_by_name_needs_the_same_fingerprint() -> None:
    program = small_program()
    changed = Target.from_dict({**target_dict(cores=2), "description": "another chip"})
    assert program.target.name == changed.name
    assert disassemble(program, loader_for(changed)).startswith(".target {")
    assert disassemble(program, loader_for()).startswith(".target {")
    assert disassemble(program, loader_for(program.target)).startswith(".target tiny\n")


def test_target_names_that_are_not_words_are_quoted() -> None:
    target = Target.from_dict(target_dict(name="my chip"))
    program = Program(target=target, code=[[make("ctl.halt")]])
    text = round_trip(program, loader_for(target))
    assert text.startswith('.target "my chip"\n')


def test_unrepresentable_debug_entries_stay_visible_as_comments() -> None:
    program = small_program()
    program.debug[(0, 2)] = ""
    program.debug[(5, 0)] = "ghost"
    text = disassemble(program)
    assert text.endswith(
        '\n; debug entry without an instruction: core 0 pc 2 ""\n'
        '; debug entry without an instruction: core 5 pc 0 "ghost"\n'
    )
    assert assemble(text).debug == {(0, 0): "conv1", (0, 1): "conv1"}


def test_out_of_range_branch_targets_disassemble_as_numbers() -> None:
    program = Program(target=TARGET, code=[[make("ctl.jump", 9)]])
    assert "    ctl.jump 9\n" in disassemble(program)


@pytest.mark.parametrize(
    ("bits", "text"),
    [
        (float_bits(1.5), "1.5"),
        (float_bits(-0.0), "-0.0"),
        (float_bits(float("inf")), "inf"),
        (float_bits(float("-inf")), "-inf"),
        (0x7FF8000000000000, "nan"),
        (0xFFF8000000000000, "nan(0xfff8000000000000)"),
        (0x7FF0000000000001, "nan(0x7ff0000000000001)"),
        (1, "5e-324"),
    ],
)
def test_format_float_is_exact(bits: int, text: str) -> None:
    assert format_float(bits) == text
    program = assemble(f"{HEADER}\n.const 0 {text}\n")
    assert program.constants[0][1].view("<u8").tolist() == [bits]


def test_long_constant_lists_fit_on_one_line() -> None:
    values = np.linspace(-1.0, 1.0, 5000)
    program = Program(target=TARGET, code=[], constants=[(0, values)])
    text = round_trip(program)
    assert len(text.splitlines()) == 2


# -- errors: message, line and column


def asm_error(text: str, loader=None) -> AsmError:  # type: ignore[no-untyped-def]
    with pytest.raises(AsmError) as info:
        assemble(text, "t.s", loader)
    return info.value


ERRORS = [
    # unknown mnemonics, with near misses
    (".core 0\n    simd.ad r1, r2, r3, 4",
     "unknown instruction 'simd.ad'; did you mean 'simd.add', 'simd.add.s' or 'simd.max'?", 3, 5),
    (".core 0\nhalt", "unknown instruction 'halt'; did you mean 'ctl.halt'?", 3, 1),
    (".core 0\n    gpu.launch r1", "unknown instruction 'gpu.launch'", 3, 5),
    # operand counts, showing the syntax
    (".core 0\n    xbar.mvm a1, r2",
     "'xbar.mvm' takes 6 operands (xbar.mvm array, in, out, bits, signed, k), not 2", 3, 5),
    (".core 0\n    ctl.halt r1", "'ctl.halt' takes no operands (ctl.halt), not 1", 3, 14),
    (".core 0\n    ctl.jump 1, 2", "'ctl.jump' takes 1 operand (ctl.jump target), not 2", 3, 17),
    # operand kinds
    (".core 0\n    xbar.mvm a1, a4, r2, 8, 0, 1",
     "operand 2 of 'xbar.mvm' must be a register (r0..r31), not 'a4'", 3, 18),
    (".core 0\n    simd.add r1, r2, r3, r4",
     "operand 4 of 'simd.add' must be a count in [1, 1048575], not 'r4'", 3, 26),
    (".core 0\n    ctl.jump r4",
     "operand 1 of 'ctl.jump' must be a target (a label or a pc in [0, 16777215]), not 'r4'",
     3, 14),
    (".core 0\n    ctl.set r1, 2.5",
     "operand 2 of 'ctl.set' must be an immediate in [-140737488355328, 140737488355327], "
     "not '2.5'", 3, 17),
    (".core 0\n    ctl.set R1, 2", "operand 1 of 'ctl.set' must be a register (r0..r31), not 'R1'",
     3, 13),
    # out-of-range values: the table's field ranges, then the target's sizes
    (".core 0\n    simd.add r1, r2, r3, 0",
     "operand 4 of 'simd.add' must be a count in [1, 1048575], not '0'", 3, 26),
    (".core 0\n    ctl.set r32, 1",
     "operand 1 of 'ctl.set' must be a register (r0..r31), not 'r32'", 3, 13),
    (".core 0\n    simd.shiftadd r1, r2, r3, 128, 4",
     "operand 4 of 'simd.shiftadd' must be an immediate in [-128, 127], not '128'", 3, 31),
    (".core 0\n    xbar.mvm a1, r1, r2, 8, 2, 1",
     "operand 5 of 'xbar.mvm' must be a flag in [0, 1], not '2'", 3, 29),
    (".core 0\n    xbar.program a4, 0",
     "operand 1 of 'xbar.program' must be an array (a0..a3), not 'a4'", 3, 18),
    (".core 0\n    noc.send c4, r31, 1, r1, 2",
     "operand 1 of 'noc.send' must be a core (c0..c3), not 'c4'", 3, 14),
    (".core 0\n    xbar.program a0, 2",
     "image 2 is not defined (the program has no images)", 3, 22),
    (".core 0\n    ctl.jump 5\n    ctl.halt",
     "operand 1 of 'ctl.jump' jumps to pc 5, past the end of core 0's code (pc 0..2)", 3, 14),
    # labels
    (".core 0\nloop:\n    ctl.jump lop",
     "undefined label 'lop' in the code of core 0; did you mean 'loop'?", 4, 14),
    (".core 0\nhere:\n    ctl.halt\n.core 1\n    ctl.jump here",
     "undefined label 'here' in the code of core 1", 6, 14),
    (".core 0\nloop: ctl.nop\nloop: ctl.halt",
     "duplicate label 'loop' (first defined at line 3)", 4, 1),
    (".core 0\nr5: ctl.halt", "label 'r5' would read as a register; choose another name", 3, 1),
    ("start:\n.core 0",
     "label 'start' before the first `.core`: labels belong to a core's code", 2, 1),
    # instructions outside a core
    ("    ctl.halt", "instruction 'ctl.halt' before the first `.core` directive", 2, 5),
    # syntax, from the grammar
    (".core 0\n    ctl.set r1 5", "unexpected '5'; expected ',' or end of line", 3, 16),
    (".core 0\n    ctl.set r1, $5", "unexpected character '$'", 3, 17),
    (".core 0\n    ctl.set r1,", "unexpected end of line; expected a value", 3, 16),
    (".core 0\n    ctl.halt:", "unexpected ':'; expected a value or end of line", 3, 13),
    ('.meta model "abc', "unterminated string", 2, 13),
    ('.input {"a" 1}', "unexpected '1'; expected ':'", 2, 13),
    ("5: ctl.halt",
     "unexpected '5'; expected a directive, a mnemonic, a name or end of line", 2, 1),
    # directives
    (".cores 0", "unknown directive '.cores'; did you mean '.core' or '.const'?", 2, 1),
    (".frobnicate", "unknown directive '.frobnicate'", 2, 1),
    (".core", "`.core` takes 1 argument (.core N), not 0", 2, 1),
    (".core 0 ctl.halt", "`.core` takes 1 argument (.core N), not 2", 2, 9),
    (".core 4", "expected a core index (0..3), not '4'", 2, 7),
    (".core 0\n.core c0", "core 0 already has code (its `.core` is at line 2)", 3, 7),
    ('.node "x"', "`.node` before the first `.core`", 2, 1),
    (".core 0\n.node {}", "expected a node name (\"name\") or -, not '{}'", 3, 7),
    ('.image 1 1 1 "AAA="',
     "expected image index 0 (images are numbered in order from 0), not '1'", 2, 8),
    ('.image 0 2 2 "AAAA"', "image levels hold 3 bytes, but 2x2 uint16 levels need 8", 2, 14),
    ('.image 0 0 1 ""', "an image needs at least one row and column, not 0", 2, 10),
    (".image 0 1 1 AAA", "image levels must be a quoted base64 string, not 'AAA'", 2, 14),
    (".bind c0 a0 3", "image 3 is not defined (the program has no images)", 2, 13),
    (".bind c0 a9 0", "expected an array (0..3), not 'a9'", 2, 10),
    ('.image 0 1 1 "AAA="\n.bind c0 a1 0\n.bind 0 1 0',
     "array a1 of core c0 is already bound (line 3)", 4, 7),
    (".const x 1.0", "expected a global address in [0, 18446744073709551615], not 'x'", 2, 8),
    (".const 0 1.0 abc", "expected a number, not 'abc'", 2, 14),
    (".const 0 nan(0x1)", "'nan(0x1)' is not a NaN: nan(0x...) takes the 64 bits of a NaN", 2, 10),
    (".const", "`.const` takes an address and values (.const ADDR v1 v2 ...)", 2, 1),
    ('.input {"name": "x"}', "`.input` is missing 'shape'", 2, 8),
    ('.input {"name": "x", "shape": [0], "addr": 0}',
     "'shape' of `.input` must be a list of positive integers, not [0]", 2, 8),
    ('.input {"name": "x", "shape": [2], "addr": -1}',
     "'addr' of `.input` must be an integer in [0, 18446744073709551615], not -1", 2, 8),
    ('.output {"name": "y", "shape": [1], "addr": 0, "colour": 1}',
     "unknown key 'colour' in `.output`; expected name, shape, addr, dtype, batch_axis, quant",
     2, 9),
    ('.input {"name": tru}', "malformed JSON (Expecting value)", 2, 17),
    ('.input {"name": "x", "name": "y"}', "malformed JSON (duplicate key 'name')", 2, 8),
    (".input 5", "expected a JSON object or list, not '5'", 2, 8),
    ('.input [1]', "`.input` takes a JSON object, not '[1]'", 2, 8),
    ('.meta a "x"\n.meta a "y"', "duplicate `.meta` key 'a' (first given at line 2)", 3, 7),
    (".meta a", '`.meta` takes 2 arguments (.meta KEY "value"), not 1', 2, 1),
    # the target
    (".target {}", "duplicate `.target` (the target is already given at line 1)", 2, 1),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message", "line", "col"), ERRORS)
def test_error_message_and_location(body: str, message: str, line: int, col: int) -> None:
    error = asm_error(f"{HEADER}\n{body}\n")
    assert error.message == message
    assert error.loc is not None
    assert (error.loc.line, error.loc.col) == (line, col)  # type: ignore[union-attr]
    assert str(error).startswith(f"t.s:{line}:{col}: {message}\n")


def test_error_shows_the_line_with_a_caret() -> None:
    error = asm_error(f"{HEADER}\n.core 0\n\txbar.mvm a1, a4, r2, 8, 0, 1\n")
    assert str(error) == (
        "t.s:3:15: operand 2 of 'xbar.mvm' must be a register (r0..r31), not 'a4'\n"
        "    \txbar.mvm a1, a4, r2, 8, 0, 1\n"
        "    \t             ^"
    )


def test_missing_target() -> None:
    error = asm_error(".core 0\n    ctl.halt\n")
    assert error.message == (
        "missing `.target` directive: name the target (`.target NAME`) or give its JSON "
        "(`.target {...}`)"
    )
    assert (error.loc.line, error.loc.col) == (1, 1)  # type: ignore[union-attr]
    assert asm_error("").message == error.message


def test_target_name_without_a_loader() -> None:
    error = asm_error(".target tiny\n")
    assert error.message == (
        "cannot resolve target 'tiny' here: no target loader was given (assemble through the "
        "imcc CLI, or give the target's JSON: `.target {...}`)"
    )
    assert (error.loc.line, error.loc.col) == (1, 9)  # type: ignore[union-attr]


def test_target_name_the_loader_does_not_know() -> None:
    error = asm_error("; header\n.target tinyy\n", loader_for(TARGET))
    assert error.message == "unknown target 'tinyy'; presets are tiny"
    assert (error.loc.line, error.loc.col) == (2, 9)  # type: ignore[union-attr]


def test_invalid_target_json() -> None:
    error = asm_error('.target {"name": "x"}\n')
    assert error.message == "target: [chip] is missing or not a table"
    assert (error.loc.line, error.loc.col) == (1, 9)  # type: ignore[union-attr]


def test_target_with_two_arguments() -> None:
    error = asm_error(".target tiny extra\n", loader_for(TARGET))
    assert error.message == (
        "`.target` takes one argument: a target name or the target's JSON (`.target {...}`), not 2"
    )


def test_registers_are_checked_against_the_target() -> None:
    small = json.dumps(target_dict(registers=8))
    error = asm_error(f".target {small}\n.core 0\n    ctl.set r8, 1\n")
    assert error.message == "operand 1 of 'ctl.set' must be a register (r0..r7), not 'r8'"


def test_deeply_nested_json_is_an_error_not_a_crash() -> None:
    deep = "[" * 3000 + "]" * 3000
    for text in (f"{HEADER}\n.input {deep}\n", f".target {deep}\n"):
        error = asm_error(text)
        assert error.message == "malformed JSON (nested too deeply)"
        assert error.loc.col in (8, 9)  # type: ignore[union-attr]


def test_enormous_numbers_are_range_errors() -> None:
    error = asm_error(f"{HEADER}\n.core 0\n    ctl.set r1, {'9' * 5000}\n")
    assert error.message == (
        "operand 2 of 'ctl.set' must be an immediate in [-140737488355328, 140737488355327], "
        "not '9999999999999999999999999999999999999...'"
    )
    assert asm_error(f"{HEADER}\n.const 0 1e999\n").message == "'1e999' is too large for a float64"
    assert asm_error(f"{HEADER}\n.const 0 {'9' * 400}\n").message == (
        "'9999999999999999999999999999999999999...' is too large for a float64"
    )


def test_a_byte_order_mark_is_a_blank() -> None:
    program = assemble(f"\ufeff{HEADER}\n.core 0\nctl.halt\n")
    assert program.code == [[make("ctl.halt")]]
    error = asm_error(f"\ufeff{HEADER}\n.core 9\n")
    assert (error.loc.line, error.loc.col) == (2, 7)  # type: ignore[union-attr]


def test_windows_line_ends_are_fine() -> None:
    text = CANONICAL.replace("\n", "\r\n")
    program = assemble(text, "c.s", loader_for(TARGET))
    assert disassemble(program, loader_for(TARGET)) == CANONICAL
    error = asm_error(f"{HEADER}\r\n.core 0\r\n  ctl.set r1 5\r\n")
    assert (error.loc.line, error.loc.col, error.loc.source_line) == (  # type: ignore[union-attr]
        3,
        14,
        "  ctl.set r1 5",
    )


# -- no input text ever escapes as anything but an AsmError

VOCABULARY = [
    *(row.mnemonic for row in spec.TABLE),
    *(f".{d}" for d in ("target", "core", "node", "input", "output", "image", "bind", "const")),
    ".meta", "r1", "a2", "c3", "r99", "loop", "loop:", "0", "-7", "0x1f", "1.5", "nan", "-inf",
    "nan(0x1)", '"s"', '"', "{", "}", "[", "]", ":", ",", "-", "; c", "\n", "\n", " ", "\t",
    '{"name": "x", "shape": [1], "addr": 0}', "tiny", "@", "\r\n", '"AAA="',
]  # fmt: skip


def assemble_or_error(text: str) -> None:
    try:
        assemble(text, "f.s", loader_for(TARGET))
    except AsmError as error:
        assert error.loc is not None
        str(error)


@PROPERTY
@given(st.text(max_size=200))
def test_random_text_gives_only_asm_errors(text: str) -> None:
    assemble_or_error(text)
    assemble_or_error(f"{HEADER}\n.core 0\n{text}")


@PROPERTY
@given(st.lists(st.sampled_from(VOCABULARY), max_size=40))
def test_random_token_soup_gives_only_asm_errors(tokens: list[str]) -> None:
    assemble_or_error(f"{HEADER}\n.core 0\n" + " ".join(tokens))


@PROPERTY
@given(st.integers(0, len(CANONICAL) - 1), st.integers(0, 8), st.text(max_size=3))
def test_damaged_canonical_text_gives_only_asm_errors(start: int, cut: int, insert: str) -> None:
    assemble_or_error(CANONICAL[:start] + insert + CANONICAL[start + cut :])


def test_disassembly_of_a_single_instruction_matches_format_instr() -> None:
    instr = Instr("ctl.set", (3, -5))
    program = Program(target=TARGET, code=[[instr]])
    assert "\n    ctl.set r3, -5\n" in disassemble(program)


# -- .adc ranges (issue 3)

ADC_HEAD = (
    ".target edge-rram\n"
    '.image 0 1 2 "AQACAA=="\n'  # levels [[1, 2]]
)


def test_adc_directive_sets_ranges_per_column() -> None:
    program = assemble(ADC_HEAD + ".adc 0 3.5 8\n.core 0\nctl.halt\n", "a.s", load_target)
    assert program.adc_ranges[0].tolist() == [3.5, 8.0]


@pytest.mark.parametrize(
    ("line", "message", "col"),
    [
        (".adc 1 3 4", "expected an image defined above (0..0), not '1'", 6),
        (".adc 0 3", "image 0 has 2 columns, so `.adc` needs 2 ranges, not 1", 1),
        (".adc 0 3 -1", "an ADC range must be finite and positive, not -1", 10),
        (".adc 0 3 inf", "an ADC range must be finite and positive, not inf", 10),
    ],
)
def test_adc_directive_errors(line: str, message: str, col: int) -> None:
    with pytest.raises(AsmError) as info:
        assemble(ADC_HEAD + line + "\n.core 0\nctl.halt\n", "a.s", load_target)
    assert info.value.message == message
    assert info.value.loc is not None
    assert (info.value.loc.line, info.value.loc.col) == (3, col)  # type: ignore[union-attr]


# -- analog-CAM directives (issue 6)


@pytest.mark.parametrize(
    ("text", "message", "col"),
    [
        (".target edge-rram\n.cambind c0 m0 0",
         "expected a CAM array (none on target 'edge-rram'), not 'm0'", 13),
        ('.target xtime\n.cam 0 1 1 0 1 "AAA=" "AQA=" ""',
         "low bounds hold 2 bytes, expected 2", 0),
        ('.target xtime\n.cam 0 1 1 0 1 "AAA=" "AQA=" "AAAA"',
         "leaf values hold 3 bytes, expected 0", 30),
        ('.target xtime\n.camcode 0 "AAAA"',
         "malformed coding table (3 bytes is shorter than the 8-byte head)", 12),
        (".target xtime\n.core 0\nacam.search m0, r0, r1, 0\nacam.program m1, 2\nctl.halt",
         "CAM image 2 is not defined (the program has no CAM images)", 18),
    ],
)  # fmt: skip
def test_cam_directive_errors(text: str, message: str, col: int) -> None:
    if col == 0:  # a well-formed line: it assembles
        assemble(text + "\n", "c.s", load_target)
        return
    with pytest.raises(AsmError) as info:
        assemble(text + "\n", "c.s", load_target)
    assert info.value.message == message
    assert info.value.loc is not None and info.value.loc.col == col  # type: ignore[union-attr]


# -- reading files


def test_assemble_file_reads_utf8(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "p.s"
    path.write_bytes(f'{HEADER}\n.core 0\n.node "café"\n    ctl.halt\n'.encode())
    program = assemble_file(path)
    assert program.debug == {(0, 0): "café"}


@pytest.mark.parametrize(
    ("tail", "line", "col", "byte"),
    [
        (b"\xff\n", 2, 1, 0xFF),
        (b'.core 0\n.node "caf\xc3\xa9 \xe9t\xe9"\n', 3, 13, 0xE9),  # latin-1 after UTF-8
        (b".core 0\n    ctl.halt ; \x80\r\n", 3, 16, 0x80),
        (b".core 0\n\xc3", 3, 1, 0xC3),  # cut inside a character at the end
    ],
)
def test_a_byte_that_is_not_utf8_is_an_error_at_its_place(  # type: ignore[no-untyped-def]
    tmp_path, tail: bytes, line: int, col: int, byte: int
) -> None:
    path = tmp_path / "bad.s"
    path.write_bytes(HEADER.encode() + b"\n" + tail)
    with pytest.raises(AsmError) as info:
        assemble_file(path)
    error = info.value
    assert error.loc == SourceLoc(
        str(path), line, col, tail.split(b"\n")[line - 2].decode("utf-8", "replace").rstrip("\r")
    )
    assert error.message == f"byte 0x{byte:02x} is not UTF-8 text (assembly files are UTF-8)"
    assert str(error).startswith(f"{path}:{line}:{col}: byte 0x{byte:02x} is not UTF-8")


def test_a_file_that_cannot_be_read_is_an_asm_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AsmError) as info:
        assemble_file(tmp_path / "missing.s")
    assert info.value.message == (
        f"cannot read {str(tmp_path / 'missing.s')!r}: No such file or directory"
    )


@pytest.mark.parametrize(
    ("body", "message", "line", "col"),
    [
        (
            '.input {"name": "x", "shape": [1099511627776, 1099511627776], "addr": 0}',
            "`.input` cannot be stored: entry shape: found [1099511627776, 1099511627776], "
            f"{1 << 80} elements; expected at most {1 << 62}",
            2,
            8,
        ),
        (
            '.output {"name": "y", "shape": [1], "addr": 0, "quant": {"s": Infinity}}',
            "`.output` cannot be stored: entry quant.s: found Infinity, expected a string, a "
            "64-bit integer or a finite number",
            2,
            9,
        ),
        (
            f'.input {{"name": "x", "shape": [1], "addr": 0, "quant": {{"b": {1 << 64}}}}}',
            f"`.input` cannot be stored: entry quant.b: found {1 << 64}, expected a string, a "
            "64-bit integer or a finite number",
            2,
            8,
        ),
        (
            '.core 0\n.node "conv\\udcff"\nctl.halt',
            "string '\"conv\\\\udcff\"' holds a lone surrogate at character 4; expected Unicode "
            "text",
            3,
            7,
        ),
        (
            '.meta key "\\ud800"',
            "string '\"\\\\ud800\"' holds a lone surrogate at character 0; expected Unicode text",
            2,
            11,
        ),
    ],
)
def test_what_the_container_cannot_hold_is_an_asm_error(
    body: str, message: str, line: int, col: int
) -> None:
    error = asm_error(f"{HEADER}\n{body}\n")
    assert error.message == message
    assert (error.loc.file, error.loc.line, error.loc.col) == ("t.s", line, col)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            '{"name": ' + "9" * 5000 + "}",
            "malformed JSON (Exceeds the limit (4300 digits) for integer string conversion: "
            "value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit)",
        ),
        ('{"name": "a", "name": "b"}', "malformed JSON (duplicate key 'name')"),
    ],
)
def test_target_json_that_python_cannot_read_is_an_asm_error(target: str, message: str) -> None:
    error = asm_error(f".target {target}\n.core 0\nctl.halt\n")
    assert error.message == message
    assert (error.loc.line, error.loc.col) == (1, 9)  # type: ignore[union-attr]
