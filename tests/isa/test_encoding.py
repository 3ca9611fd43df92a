"""The instruction table and its 64-bit encoding: exact inverses on every row, strict decoding,
and a table check that rejects malformed rows at import."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imcc.isa import container, spec
from imcc.isa.assembler import assemble
from imcc.isa.diagnostics import AsmError, BinaryFormatError, CoreLoc, EncodingError
from imcc.isa.encoding import (
    Instr,
    decode,
    decode_code,
    encode,
    encode_code,
    format_instr,
    make,
    operand_bounds,
)
from imcc.isa.program import Program
from imcc.isa.target import Target
from tests.isa.test_container import rebuilt, target_dict

ROWS = [pytest.param(row, id=row.mnemonic) for row in spec.TABLE]
WORD_MASK = (1 << spec.WORD_BITS) - 1


def operands(row: spec.InstrSpec) -> st.SearchStrategy[tuple[int, ...]]:
    return st.tuples(*(st.integers(*operand_bounds(f)) for f in row.fields))


def unused_bits(row: spec.InstrSpec) -> int:
    used = sum(f.mask for f in row.fields)
    return ((1 << spec.OPCODE_LSB) - 1) & ~used


# -- encode / decode


@pytest.mark.parametrize("row", ROWS)
@settings(derandomize=True, max_examples=40, deadline=None)
@given(data=st.data())
def test_encode_decode_identity(row: spec.InstrSpec, data: st.DataObject) -> None:
    values = data.draw(operands(row))
    instr = make(row.mnemonic, *values)
    word = encode(instr)
    assert 0 <= word <= WORD_MASK
    assert word >> spec.OPCODE_LSB == row.opcode
    assert word & unused_bits(row) == 0
    assert decode(word) == instr


@pytest.mark.parametrize("row", ROWS)
def test_encode_decode_at_the_field_limits(row: spec.InstrSpec) -> None:
    for pick in (0, 1):
        values = [operand_bounds(f)[pick] for f in row.fields]
        instr = make(row.mnemonic, *values)
        assert decode(encode(instr)) == instr
        assert instr.operands == tuple(values)


def test_fields_tile_without_overlap_or_spill() -> None:
    for row in spec.TABLE:
        used = 0
        for field in row.fields:
            assert field.mask & used == 0, row.mnemonic
            assert field.lsb >= 0 and field.lsb + field.width <= spec.OPCODE_LSB
            used |= field.mask


def test_every_row_is_reachable_by_mnemonic_and_opcode() -> None:
    for row in spec.TABLE:
        assert spec.BY_MNEMONIC[row.mnemonic] is row
        assert spec.BY_OPCODE[row.opcode] is row
        assert spec.lookup(row.mnemonic) is row
    assert len(spec.BY_MNEMONIC) == len(spec.BY_OPCODE) == len(spec.TABLE)


def test_decode_rejects_unknown_opcodes() -> None:
    unknown = [op for op in range(1 << spec.OPCODE_BITS) if op not in spec.BY_OPCODE]
    assert unknown
    for opcode in unknown:
        with pytest.raises(EncodingError) as info:
            decode(opcode << spec.OPCODE_LSB)
        assert info.value.message == (
            f"word {opcode << spec.OPCODE_LSB:#018x} has unknown opcode {opcode:#04x}"
        )


@pytest.mark.parametrize("row", [r for r in ROWS if unused_bits(r.values[0])])
def test_decode_rejects_stray_bits(row: spec.InstrSpec) -> None:
    stray = unused_bits(row)
    for bit in (stray & -stray, 1 << (stray.bit_length() - 1)):
        values = [operand_bounds(f)[0] for f in row.fields]
        word = encode(make(row.mnemonic, *values)) | bit
        with pytest.raises(EncodingError) as info:
            decode(word)
        assert info.value.message == (
            f"word {word:#018x} ({row.mnemonic}) sets unused bits {bit:#x}"
        )


def test_decode_rejects_a_zero_count() -> None:
    row = next(
        r for r in spec.TABLE
        if any(f.kind is spec.OperandKind.COUNT for f in r.fields)
        and all(f.kind is not spec.OperandKind.BITS for f in r.fields)
    )  # fmt: skip
    word = row.opcode << spec.OPCODE_LSB  # every operand zero, so the count is 0
    with pytest.raises(EncodingError, match=r"must be a count in \[1, "):
        decode(word)


def test_signed_fields_round_trip_negative_values() -> None:
    for row in spec.TABLE:
        for index, field in enumerate(row.fields):
            if not field.kind.signed:
                continue
            values = [operand_bounds(f)[1] for f in row.fields]
            values[index] = -1
            instr = make(row.mnemonic, *values)
            assert decode(encode(instr)).operands[index] == -1


def test_code_round_trip_and_partial_words() -> None:
    code = [make(row.mnemonic, *(operand_bounds(f)[1] for f in row.fields)) for row in spec.TABLE]
    blob = encode_code(code)
    assert len(blob) == 8 * len(code)
    assert decode_code(blob) == code
    with pytest.raises(EncodingError, match="not whole words"):
        decode_code(blob[:-1], core=3)


# -- make: operand checks straight from the table


def test_make_rejects_an_unknown_mnemonic() -> None:
    with pytest.raises(EncodingError, match=re.escape("unknown instruction 'simd.frobnicate'")):
        make("simd.frobnicate")


@pytest.mark.parametrize("row", ROWS)
def test_make_rejects_a_wrong_operand_count(row: spec.InstrSpec) -> None:
    values = [operand_bounds(f)[0] for f in row.fields]
    with pytest.raises(EncodingError) as info:
        make(row.mnemonic, *values, 0)
    assert info.value.message == (
        f"{row.mnemonic!r} takes {len(row.fields)} operands ({row.syntax}), "
        f"not {len(row.fields) + 1}"
    )


@pytest.mark.parametrize("row", [r for r in ROWS if r.values[0].fields])
def test_make_rejects_out_of_range_operands(row: spec.InstrSpec) -> None:
    for index, field in enumerate(row.fields):
        lo, hi = operand_bounds(field)
        for bad in (lo - 1, hi + 1):
            values = [operand_bounds(f)[0] for f in row.fields]
            values[index] = bad
            with pytest.raises(EncodingError, match=rf"operand {index + 1} \({field.name}\)"):
                make(row.mnemonic, *values)


def test_format_instr_uses_prefixes_and_labels() -> None:
    for row in spec.TABLE:
        instr = make(row.mnemonic, *(operand_bounds(f)[1] for f in row.fields))
        text = format_instr(instr)
        assert text.split(" ", 1)[0] == row.mnemonic
        for field, value in zip(row.fields, instr.operands, strict=True):
            assert f"{field.kind.prefix}{value}" in text
    jump = next(r for r in spec.TABLE if [f.kind for f in r.fields] == [spec.OperandKind.TARGET])
    assert format_instr(Instr(jump.mnemonic, (3,)), {3: "L3"}) == f"{jump.mnemonic} L3"


# -- the table check at import, on crafted tables


def row(mnemonic: str, opcode: int, *fields: spec.Field) -> spec.InstrSpec:
    return spec.InstrSpec(
        mnemonic=mnemonic, opcode=opcode, fields=fields, cost=spec.CostClass.CTL, doc="test"
    )


REG = spec.OperandKind.REG


def check(*rows: spec.InstrSpec) -> tuple[dict[str, spec.InstrSpec], dict[int, spec.InstrSpec]]:
    by_mnemonic: dict[str, spec.InstrSpec] = {}
    by_opcode: dict[int, spec.InstrSpec] = {}
    spec._check(rows, by_mnemonic, by_opcode)
    return by_mnemonic, by_opcode


def test_table_check_accepts_a_good_table_and_fills_the_dicts() -> None:
    good = row("ctl.a", 1, spec.Field("x", REG, 50, 5), spec.Field("y", REG, 45, 5))
    by_mnemonic, by_opcode = check(good, row("ctl.b", 2))
    assert by_mnemonic["ctl.a"] is good and by_opcode[1] is good
    assert set(by_opcode) == {1, 2}


def test_the_real_table_passes_the_check() -> None:
    by_mnemonic, by_opcode = check(*spec.TABLE)
    assert by_mnemonic == spec.BY_MNEMONIC and by_opcode == spec.BY_OPCODE


def test_table_check_rejects_a_duplicate_opcode() -> None:
    message = "opcode 0x05 of 'ctl.b' already belongs to 'ctl.a'"
    with pytest.raises(ValueError, match=re.escape(message)):
        check(row("ctl.a", 5), row("ctl.b", 5))


def test_table_check_rejects_a_duplicate_mnemonic() -> None:
    with pytest.raises(ValueError, match=re.escape("duplicate mnemonic 'ctl.a'")):
        check(row("ctl.a", 5), row("ctl.a", 6))


def test_table_check_rejects_overlapping_fields() -> None:
    bad = row("ctl.a", 1, spec.Field("x", REG, 50, 5), spec.Field("y", REG, 48, 5))
    with pytest.raises(ValueError, match=re.escape("field 'y' of 'ctl.a' overlaps another")):
        check(bad)


@pytest.mark.parametrize(
    ("lsb", "width"),
    [(spec.OPCODE_LSB - 4, 5), (-1, 5), (10, 0)],
    ids=["into-opcode", "below-bit-0", "empty"],
)
def test_table_check_rejects_spilling_fields(lsb: int, width: int) -> None:
    bad = row("ctl.a", 1, spec.Field("x", REG, lsb, width))
    with pytest.raises(ValueError, match=r"field 'x' of 'ctl\.a' at bits .* spills out"):
        check(bad)


def test_table_check_rejects_an_opcode_that_overflows() -> None:
    with pytest.raises(ValueError, match="overflows its field"):
        check(row("ctl.a", 1 << spec.OPCODE_BITS))


def test_table_check_rejects_an_unknown_unit() -> None:
    with pytest.raises(ValueError, match="'gpu' is not a valid Unit"):
        check(row("gpu.a", 1))


def test_table_check_rejects_a_repeated_operand_name() -> None:
    bad = row("ctl.a", 1, spec.Field("x", REG, 50, 5), spec.Field("x", REG, 45, 5))
    with pytest.raises(ValueError, match=re.escape("'ctl.a' repeats an operand name")):
        check(bad)


def test_table_check_leaves_the_real_dicts_alone() -> None:
    before = dict(spec.BY_MNEMONIC)
    with pytest.raises(ValueError):
        check(row("ctl.a", 1), row("ctl.a", 2))
    assert before == spec.BY_MNEMONIC


@pytest.mark.parametrize("row", [spec.XBAR_MVM, spec.XBAR_MVM_BLOCK, spec.SIMD_QUANT])
def test_bit_widths_above_32_are_refused_everywhere(row: spec.InstrSpec) -> None:
    """63 fits the 6-bit field but not the semantics (x mod 2^63 overflows int64, a float64
    word holds no 63-bit integer): encoder, decoder, assembler and loader all refuse it."""
    field = next(f for f in row.fields if f.kind is spec.OperandKind.BITS)
    operands = [1] * len(row.fields)
    index = row.fields.index(field)
    operands[index] = 63
    assert (field.name, operand_bounds(field)) == ("bits", (1, 32))
    expected = f"operand {index + 1} (bits) of {row.mnemonic!r} must be a bits in [1, 32], not 63"
    with pytest.raises(EncodingError) as info:
        make(row, *operands)
    assert info.value.message == expected
    operands[index] = 32
    word = encode(make(row, *operands)) | (63 << field.lsb)
    with pytest.raises(EncodingError) as info:
        decode(word, CoreLoc(0, 5))
    assert str(info.value) == f"core 0 pc 5: {expected}"
    # the loader: a binary holding that word
    program = Program(target=Target.from_dict(target_dict()), code=[[make(spec.CTL_HALT)]])
    data = rebuilt(
        container.to_bytes(program), {(container.Kind.CODE, 0): word.to_bytes(8, "little")}
    )
    with pytest.raises(BinaryFormatError) as info:
        container.from_bytes(data, "t.imcb")
    assert str(info.value) == f"t.imcb: section CODE[0]: core 0 pc 0: {expected}"
    # the assembler
    text = ", ".join(f"{f.kind.prefix}{63 if f is field else 1}" for f in row.fields)
    with pytest.raises(AsmError) as info:
        assemble(f".target {json.dumps(target_dict())}\n.core 0\n    {row.mnemonic} {text}\n")
    assert info.value.message == (
        f"operand {index + 1} of {row.mnemonic!r} must be a bit width in [1, 32], not '63'"
    )


# -- the per-row facts the loader, the engines and the cost model read instead of comparing rows

COUNT, CAM = spec.OperandKind.COUNT, spec.OperandKind.CAM
A, S, N = spec.ArrayUse, spec.Shape, spec.Noc


def fact_row(*operands: tuple[str, spec.OperandKind], access: str = "", **facts: Any) -> Any:
    return spec._row("ctl.a", 1, spec.CostClass.CTL, "test", *operands, access=access, **facts)


@pytest.mark.parametrize(
    ("operands", "access", "facts", "message"),
    [
        ((), "", {"array": A.READ}, "has an array operand exactly when it uses an array"),
        ((("x", spec.OperandKind.ARRAY),), "", {}, "has an array operand exactly when"),
        ((("x", CAM),), "", {"array": A.PROGRAM}, "programs an array but names no image"),
        ((("m", REG),), "", {"repeat": "m"}, "repeat 'm' of 'ctl.a' is not a count operand"),
        ((("n", COUNT),), "", {"macs": "rows*q"}, "macs 'rows*q' of 'ctl.a' names an unknown"),
        (
            (("x", CAM), ("n", COUNT)),
            "",
            {"array": A.READ, "leaf_width": "n"},
            "checks a leaf width but does not read leaves",
        ),
        (
            (("x", spec.OperandKind.ARRAY),),
            "",
            {"array": A.READ, "shape": S.MATCHES},
            "is priced on matches but reads no CAM array",
        ),
        ((), "", {"shape": S.HELD}, "is priced on an image it does not use"),
        ((), "", {"shape": S.CODING}, "priced on a coding table exactly when it names one"),
        ((("t", spec.OperandKind.CAM_CODE),), "", {}, "priced on a coding table exactly when"),
        (
            (("t", spec.OperandKind.CAM_CODE), ("n", COUNT)),
            "",
            {"shape": S.CODING},
            "names a coding table but no counts n and k",
        ),
        ((("d", REG), ("n", COUNT)), "d:w:rows", {}, "sized by an image it does not read"),
        (
            (("x", CAM), ("image", spec.OperandKind.CAM_IMAGE), ("d", REG)),
            "d:w:1",
            {"array": A.PROGRAM},
            "programs an array and touches memory",
        ),
        ((("tag", REG),), "", {"noc": N.SEND}, "is a message with no core and cr operands"),
        (
            (("core", spec.OperandKind.CORE),),
            "",
            {"noc": N.SEND},
            "is a message with no core and cr operands",
        ),
        (
            (("d", REG), ("a", REG), ("s", REG), ("n", COUNT), ("m", COUNT)),
            "d:w:strided-dst a:r:strided-src",
            {},
            "copies a strided block but does not repeat by m",
        ),
        (
            (("d", REG),),
            "",
            {"scalar": spec.Scalar.SET},
            "is a set of the registers with no immediate operand 'imm'",
        ),
        (
            (("c", REG),),
            "",
            {"scalar": spec.Scalar.COUNT},
            "is a count of the registers with no count operand 'trips'",
        ),
        (
            (("c", REG), ("trips", spec.OperandKind.COUNT)),
            "",
            {"scalar": spec.Scalar.COUNT},
            "is a count of the registers with no target operand 'target'",
        ),
    ],
)
def test_table_check_rejects_facts_the_readers_cannot_follow(
    operands: tuple[tuple[str, spec.OperandKind], ...],
    access: str,
    facts: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check(fact_row(*operands, access=access, **facts))


# mnemonic -> (array, shape, repeat, span, macs, leaf_width, noc, scalar), for every row with a
# fact
FACTS = {
    "ctl.set": (A.NONE, S.NONE, "", "", "", "", N.NONE, spec.Scalar.SET),
    "ctl.add": (A.NONE, S.NONE, "", "", "", "", N.NONE, spec.Scalar.ADD),
    "ctl.loop": (A.NONE, S.NONE, "", "", "", "", N.NONE, spec.Scalar.COUNT),
    "xbar.mvm": (A.READ, S.HELD, "", "k", "rows*cols*k", "", N.NONE, spec.Scalar.NONE),
    "xbar.program": (A.PROGRAM, S.PROGRAMMED, "", "", "", "", N.NONE, spec.Scalar.NONE),
    "xbar.mvmb": (A.READ, S.HELD, "m", "k", "rows*cols*m*k", "", N.NONE, spec.Scalar.NONE),
    "simd.copy2d": (A.NONE, S.NONE, "m", "", "", "", N.NONE, spec.Scalar.NONE),
    "noc.send": (A.NONE, S.NONE, "", "", "", "", N.SEND, spec.Scalar.NONE),
    "noc.recv": (A.NONE, S.NONE, "", "", "", "", N.RECV, spec.Scalar.NONE),
    "acam.encode": (A.NONE, S.CODING, "", "", "", "", N.NONE, spec.Scalar.NONE),
    "acam.search": (A.READ, S.HELD, "", "", "", "", N.NONE, spec.Scalar.NONE),
    "acam.leaf": (A.READ, S.MATCHES, "", "", "", "n", N.NONE, spec.Scalar.NONE),
    "acam.program": (A.PROGRAM, S.PROGRAMMED, "", "", "", "", N.NONE, spec.Scalar.NONE),
}


def test_every_rows_facts_are_the_expected_ones() -> None:
    none = (A.NONE, S.NONE, "", "", "", "", N.NONE, spec.Scalar.NONE)
    for row in spec.TABLE:
        facts = (
            row.array,
            row.shape,
            row.repeat,
            row.span,
            row.macs,
            row.leaf_width,
            row.noc,
            row.scalar,
        )
        assert facts == FACTS.get(row.mnemonic, none), row.mnemonic


def test_the_facts_agree_with_the_cost_classes() -> None:
    """Each fact sits exactly on the rows the cost model prices by it."""
    for row in spec.TABLE:
        assert bool(row.macs) == (row.cost is spec.CostClass.XBAR_MVM), row.mnemonic
        assert (row.noc is not N.NONE) == (row.cost is spec.CostClass.NOC), row.mnemonic
        programs = row.cost in (spec.CostClass.XBAR_PROGRAM, spec.CostClass.ACAM_PROGRAM)
        assert (row.array is A.PROGRAM) == programs, row.mnemonic
        assert (row.shape is S.CODING) == (row.cost is spec.CostClass.ACAM_ENCODE), row.mnemonic
        assert (row.shape is S.MATCHES) == (row.cost is spec.CostClass.ACAM_LEAF), row.mnemonic
        assert (row.scalar is not spec.Scalar.NONE) <= (row.unit is spec.Unit.CTL), row.mnemonic
        assert row.strided == (row.repeat == "m" and row.cost is spec.CostClass.SIMD_ARITH)


def test_array_and_image_operands_are_found_by_kind() -> None:
    assert spec.ACAM_LEAF.array_index == 0 and spec.ACAM_LEAF.image_index is None
    assert spec.XBAR_PROGRAM.image_index == 1 and spec.ACAM_PROGRAM.image_index == 1
    assert spec.SIMD_ADD.array_index is None and spec.SIMD_ADD.image_index is None
    assert spec.ACAM_ENCODE.operand_index(spec.OperandKind.CAM_CODE) == 2
