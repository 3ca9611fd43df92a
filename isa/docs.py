"""The ISA reference that `imcc isa` prints, generated from the instruction table (spec.py).

Nothing here is written by hand per instruction: a new row in spec.TABLE shows up here, in the
assembler and in the disassembler at once.
"""

from __future__ import annotations

import textwrap

from imcc.isa import spec
from imcc.isa.encoding import operand_bounds

__all__ = ["isa_reference"]

_WIDTH = 100


def isa_reference() -> str:
    """A readable table of every instruction, grouped by unit, in opcode order."""
    out = [
        f"imcc ISA: {len(spec.TABLE)} instructions in {spec.WORD_BITS}-bit little-endian words.",
        f"The opcode sits in bits [{spec.WORD_BITS - 1}:{spec.OPCODE_LSB}]; operand fields are "
        "packed downwards from",
        f"bit {spec.OPCODE_LSB - 1} in assembly order; unused bits are zero. Bits are written "
        "[msb:lsb].",
        "Operands: rN register, aN crossbar array of this core, mN analog-CAM array of this core,",
        "cN core of the chip, a label or a pc for targets, plain integers for the rest.",
    ]
    for unit in spec.Unit:
        rows = sorted((r for r in spec.TABLE if r.unit is unit), key=lambda r: r.opcode)
        if not rows:
            continue
        out += ["", f"{unit.value} ({len(rows)} instruction{'s' * (len(rows) != 1)})", ""]
        out.append(f"  {'opcode':<8}{'instruction':<44}cost")
        out.append(f"{'':10}{'operand':<8}{'kind':<11}{'bits':<10}values")
        for row in rows:
            out.append(f"  {row.opcode:#04x}    {row.syntax:<44}{row.cost.value}")
            out += textwrap.wrap(
                row.doc, _WIDTH, initial_indent=" " * 10, subsequent_indent=" " * 12
            )
            for field in row.fields:
                out.append(_field_line(field))
            if row.accesses:
                touched = ", ".join(_access(access) for access in row.accesses)
                out += textwrap.wrap(
                    f"memory: {touched}",
                    _WIDTH,
                    initial_indent=" " * 10,
                    subsequent_indent=" " * 18,
                )
    return "\n".join(out) + "\n"


def _access(access: spec.Access) -> str:
    mode = "writes" if access.writes else "reads"
    where = access.field
    span = where if access.extent == "1" else f"{where}:{where}+{access.extent}"
    return f"{mode} {access.space.value}[{span}]"


def _field_line(field: spec.Field) -> str:
    kind = field.kind
    msb = field.lsb + field.width - 1
    bits = f"[{msb}]" if msb == field.lsb else f"[{msb}:{field.lsb}]"
    lo, hi = operand_bounds(field)
    if kind.prefix:
        values = f"{kind.prefix}{lo}..{kind.prefix}{hi}"
    elif kind is spec.OperandKind.TARGET:
        values = f"label or pc {lo}..{hi}"
    else:
        values = f"{lo}..{hi}"
    return f"{'':10}{field.name:<8}{kind.value:<11}{bits:<10}{values}"
