"""Instructions as values, and their 64-bit encoding; both derived from isa/spec.py.

`Instr` is what the compiler emits, the assembler builds and the simulators execute.
`encode` and `decode` are exact inverses on every valid instruction (property-tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcc.isa import spec
from imcc.isa.diagnostics import EncodingError, Loc


@dataclass(frozen=True, slots=True)
class Instr:
    """One instruction: a mnemonic from the table and one integer per operand field."""

    mnemonic: str
    operands: tuple[int, ...] = ()

    @property
    def spec(self) -> spec.InstrSpec:
        return spec.BY_MNEMONIC[self.mnemonic]

    def operand(self, name: str) -> int:
        for field, value in zip(self.spec.fields, self.operands, strict=True):
            if field.name == name:
                return value
        raise KeyError(f"{self.mnemonic} has no operand {name!r}")

    def __str__(self) -> str:
        return format_instr(self)


def make(mnemonic: str | spec.InstrSpec, *operands: int, loc: Loc = None) -> Instr:
    """Build an instruction, checking the mnemonic and every operand against the table.

    Code outside isa/ passes a row (`spec.SIMD_ADD`), never a mnemonic string.
    """
    if isinstance(mnemonic, spec.InstrSpec):
        mnemonic = mnemonic.mnemonic
    try:
        row = spec.lookup(mnemonic)
    except KeyError:
        raise EncodingError(f"unknown instruction {mnemonic!r}", loc) from None
    if len(operands) != len(row.fields):
        raise EncodingError(
            f"{mnemonic!r} takes {len(row.fields)} operands ({row.syntax}), not {len(operands)}",
            loc,
        )
    values = tuple(int(v) for v in operands)
    bounds = _ROW_BOUNDS.get(mnemonic)
    if bounds is None:
        bounds = _ROW_BOUNDS[mnemonic] = tuple(operand_bounds(f) for f in row.fields)
    for i, (value, (lo, hi)) in enumerate(zip(values, bounds, strict=True)):
        if not lo <= value <= hi:
            check_operand(row, i, row.fields[i], value, loc)
    return Instr(mnemonic, values)


_ROW_BOUNDS: dict[str, tuple[tuple[int, int], ...]] = {}


def operand_bounds(field: spec.Field) -> tuple[int, int]:
    """The values a field accepts: its bit range, and at least 1 for counts and bit widths."""
    lo, hi = field.min, field.max
    if field.kind in (spec.OperandKind.COUNT, spec.OperandKind.BITS):
        lo = 1
    return lo, hi


def check_operand(row: spec.InstrSpec, index: int, field: spec.Field, value: int, loc: Loc) -> None:
    lo, hi = operand_bounds(field)
    if not lo <= value <= hi:
        raise EncodingError(
            f"operand {index + 1} ({field.name}) of {row.mnemonic!r} must be a {field.kind.value} "
            f"in [{lo}, {hi}], not {value}",
            loc,
        )


def format_operand(field: spec.Field, value: int) -> str:
    return f"{field.kind.prefix}{value}"


def format_instr(instr: Instr, labels: dict[int, str] | None = None) -> str:
    """Assembly text of one instruction; branch targets become labels where given."""
    parts = []
    for field, value in zip(instr.spec.fields, instr.operands, strict=True):
        if field.kind is spec.OperandKind.TARGET and labels and value in labels:
            parts.append(labels[value])
        else:
            parts.append(format_operand(field, value))
    return f"{instr.mnemonic} {', '.join(parts)}".rstrip()


def encode(instr: Instr) -> int:
    """The 64-bit word of an instruction; operands are assumed checked by `make`."""
    row = instr.spec
    word = row.opcode << spec.OPCODE_LSB
    for field, value in zip(row.fields, instr.operands, strict=True):
        word |= (value & ((1 << field.width) - 1)) << field.lsb
    return word


def decode(word: int, loc: Loc = None) -> Instr:
    """The instruction of a 64-bit word; unknown opcodes, stray bits and bad operands raise."""
    opcode = word >> spec.OPCODE_LSB
    row = spec.BY_OPCODE.get(opcode)
    if row is None:
        raise EncodingError(f"word {word:#018x} has unknown opcode {opcode:#04x}", loc)
    used = sum(f.mask for f in row.fields)
    stray = word & ((1 << spec.OPCODE_LSB) - 1) & ~used
    if stray:
        raise EncodingError(f"word {word:#018x} ({row.mnemonic}) sets unused bits {stray:#x}", loc)
    operands = []
    for i, field in enumerate(row.fields):
        raw = (word >> field.lsb) & ((1 << field.width) - 1)
        if field.kind.signed and raw >> (field.width - 1):
            raw -= 1 << field.width
        check_operand(row, i, field, raw, loc)
        operands.append(raw)
    return Instr(row.mnemonic, tuple(operands))


def encode_code(code: tuple[Instr, ...] | list[Instr]) -> bytes:
    """A core's program as little-endian 64-bit words."""
    return np.array([encode(i) for i in code], dtype="<u8").tobytes()


def decode_code(blob: bytes, core: int = 0, where: str = "") -> list[Instr]:
    """Inverse of `encode_code`; the error names the core and pc of a bad word."""
    from imcc.isa.diagnostics import CoreLoc

    if len(blob) % 8:
        raise EncodingError(f"{where}code of core {core} is {len(blob)} bytes, not whole words")
    words = np.frombuffer(blob, dtype="<u8")
    return [decode(int(w), CoreLoc(core, pc)) for pc, w in enumerate(words)]
