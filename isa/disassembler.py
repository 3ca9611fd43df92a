"""isa.Program -> text assembly: the `imcc disasm` path, and the inverse of assembler.assemble.

The text is canonical: `assemble(disassemble(p))` rebuilds `p` (byte-identical container) and
`disassemble(assemble(t)) == t` for any text this module wrote. Branch targets get labels
`L<pc>`, instructions are indented one per line, `.node` lines mark where the model node changes.
"""

from __future__ import annotations

import base64
import json

import numpy as np

from imcc.isa import spec
from imcc.isa.assembler import TargetLoader, format_float, is_bare_word
from imcc.isa.diagnostics import Diagnostic
from imcc.isa.encoding import Instr, format_instr
from imcc.isa.program import Program, TensorInfo

__all__ = ["disassemble"]

INDENT = "    "


def disassemble(program: Program, target_loader: TargetLoader | None = None) -> str:
    """The assembly text of a whole program.

    The target is written by name when `target_loader` turns that name back into the same
    target (equal fingerprints), otherwise as its full JSON.
    """
    lines = [_target_line(program, target_loader)]
    for key, value in program.meta.items():
        lines.append(f".meta {_word(key)} {json.dumps(value)}")
    lines += [f".input {_tensor(info)}" for info in program.inputs]
    lines += [f".output {_tensor(info)}" for info in program.outputs]
    for index, image in enumerate(program.images):
        levels = base64.b64encode(image.levels.astype("<u2").tobytes()).decode("ascii")
        lines.append(f'.image {index} {image.rows} {image.cols} "{levels}"')
    core_prefix, array_prefix = spec.OperandKind.CORE.prefix, spec.OperandKind.ARRAY.prefix
    for binding in program.bindings:
        lines.append(
            f".bind {core_prefix}{binding.core} {array_prefix}{binding.array} {binding.image}"
        )
    for index, cam in enumerate(program.cam_images):
        parts = [
            base64.b64encode(array.tobytes()).decode("ascii")
            for array in (cam.low.astype("<u2"), cam.high.astype("<u2"), cam.leaves.astype("<f8"))
        ]
        quoted = " ".join(f'"{part}"' for part in parts)
        lines.append(f".cam {index} {cam.rows} {cam.cols} {cam.width} {cam.trees} {quoted}")
    cam_prefix = spec.OperandKind.CAM.prefix
    for binding in program.cam_bindings:
        lines.append(
            f".cambind {core_prefix}{binding.core} {cam_prefix}{binding.array} {binding.image}"
        )
    for index, table in enumerate(program.cam_codes):
        lines.append(f'.camcode {index} "{base64.b64encode(table.to_bytes()).decode("ascii")}"')
    for index, ranges in sorted(program.adc_ranges.items()):
        bits = np.ascontiguousarray(ranges, dtype="<f8").reshape(-1).view("<u8")
        lines.append(" ".join([f".adc {index}", *(format_float(int(b)) for b in bits)]))
    for addr, values in program.constants:
        bits = np.ascontiguousarray(values, dtype="<f8").reshape(-1).view("<u8")
        lines.append(" ".join([f".const {addr}", *(format_float(int(b)) for b in bits)]))
    shown: set[tuple[int, int]] = set()
    for core, code in enumerate(program.code):
        lines.append("")
        lines += _core(core, code, program.debug, shown)
    # A debug entry without an instruction (or with an empty name) has no text form: keep it
    # visible rather than drop it silently. The assembler reads these lines as comments.
    stray = sorted(set(program.debug) - shown)
    if stray:
        lines.append("")
        lines += [
            f"; debug entry without an instruction: core {core} pc {pc} "
            f"{json.dumps(program.debug[(core, pc)])}"
            for core, pc in stray
        ]
    return "\n".join(lines) + "\n"


def _target_line(program: Program, target_loader: TargetLoader | None) -> str:
    target = program.target
    if target_loader is not None:
        try:
            same = target_loader(target.name).fingerprint == target.fingerprint
        except (Diagnostic, OSError, ValueError, KeyError, TypeError, AttributeError):
            same = False
        if same:
            return f".target {_word(target.name)}"
    return f".target {json.dumps(target.to_dict(), sort_keys=True)}"


def _word(text: str) -> str:
    """A name as itself where it reads back unchanged, otherwise as a JSON string."""
    return text if is_bare_word(text) else json.dumps(text)


def _tensor(info: TensorInfo) -> str:
    return json.dumps(info.to_dict())


def _core(
    core: int, code: list[Instr], debug: dict[tuple[int, int], str], shown: set[tuple[int, int]]
) -> list[str]:
    """`.core N`, then the instructions with their labels and `.node` changes."""
    end = len(code)
    targets = {
        value
        for instr in code
        for field, value in zip(instr.spec.fields, instr.operands, strict=True)
        if field.kind is spec.OperandKind.TARGET and 0 <= value <= end
    }
    labels = {pc: f"L{pc}" for pc in sorted(targets)}
    lines = [f".core {core}"]
    node: str | None = None
    for pc, instr in enumerate(code):
        if pc in labels:
            lines.append(f"{labels[pc]}:")
        here = debug.get((core, pc)) or None
        if here != node:
            lines.append(f".node {json.dumps(here)}" if here is not None else ".node -")
            node = here
        if here is not None:
            shown.add((core, pc))
        lines.append(INDENT + format_instr(instr, labels))
    if end in labels:
        lines.append(f"{labels[end]}:")
    return lines
