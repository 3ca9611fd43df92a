"""The loader: checks a whole Program against its target before anything runs.

The container already checked the bytes (isa/container.py); here every reference is checked
against the hardware the binary names: cores, arrays, registers, images, branch targets, memory
ranges of constants and I/O, and, where a straight-line pass can know a register's value, the
address range of every buffer and memory access. What depends on values only known at run time
is checked again by the simulator before each instruction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from imcc.isa import spec
from imcc.isa.diagnostics import BinaryFormatError, SectionLoc
from imcc.isa.encoding import Instr
from imcc.isa.program import Program

TENSOR_DTYPES = ("float32", "float64", "int64", "int32")


def validate(program: Program, name: str = "<binary>") -> None:
    target = program.target
    cfg_cores, arrays = target.chip.cores, target.core.arrays
    memory = target.chip.global_memory_words

    def fail(section: str, message: str) -> BinaryFormatError:
        return BinaryFormatError(message, SectionLoc(name, section))

    if len(program.code) > cfg_cores:
        raise fail(
            "CODE",
            f"{len(program.code)} cores have code but target {target.name!r} has {cfg_cores}",
        )
    if not any(program.code):
        raise fail("CODE", "no core has any code")
    top_level = (1 << target.xbar.cell_bits) - 1
    for index, image in enumerate(program.images):
        if image.rows > target.xbar.rows or image.cols > target.xbar.cols:
            raise fail(
                f"IMAGE[{index}]",
                f"image is {image.rows}x{image.cols} but arrays are "
                f"{target.xbar.rows}x{target.xbar.cols}",
            )
        if image.levels.size and int(image.levels.max()) > top_level:
            raise fail(
                f"IMAGE[{index}]",
                f"level {int(image.levels.max())} exceeds the "
                f"{target.xbar.cell_bits}-bit cells' top level {top_level}",
            )
    cam_held = _check_cams(program, fail)
    held: dict[tuple[int, int], int] = {}
    for b in program.bindings:
        if not (0 <= b.core < cfg_cores and 0 <= b.array < arrays):
            raise fail(
                "BIND",
                f"binding names array a{b.array} of core {b.core}, which does "
                f"not exist ({cfg_cores} cores x {arrays} arrays)",
            )
        if not 0 <= b.image < len(program.images):
            raise fail(
                "BIND", f"binding names image {b.image}; the binary has {len(program.images)}"
            )
        if (b.core, b.array) in held:
            raise fail("BIND", f"array a{b.array} of core {b.core} is bound twice")
        held[(b.core, b.array)] = b.image
    for addr, values in program.constants:
        if addr < 0 or addr + len(values) > memory:
            raise fail(
                "CONST",
                f"constants at [{addr}, {addr + len(values)}) fall outside the "
                f"{memory}-word global memory",
            )
    names: set[str] = set()
    for tensor in (*program.inputs, *program.outputs):
        if tensor.dtype not in TENSOR_DTYPES:
            raise fail(
                "IO",
                f"tensor {tensor.name!r} has dtype {tensor.dtype!r}; expected one "
                f"of {', '.join(TENSOR_DTYPES)}",
            )
        if tensor.name in names:
            raise fail("IO", f"tensor name {tensor.name!r} appears twice")
        names.add(tensor.name)
        if tensor.addr < 0 or tensor.addr + tensor.size > memory:
            raise fail(
                "IO",
                f"tensor {tensor.name!r} at [{tensor.addr}, "
                f"{tensor.addr + tensor.size}) falls outside the global memory",
            )
    if not program.outputs:
        raise fail("IO", "the binary declares no outputs")
    for core, code in enumerate(program.code):
        _check_code(program, core, code, held, cam_held, fail)


def _check_cams(
    program: Program, fail: Callable[[str, str], BinaryFormatError]
) -> dict[tuple[int, int], int]:
    """CAM images, bindings and coding tables against the target's analog-CAM unit."""
    target = program.target
    acam = target.acam
    uses = any(instr.spec.unit is spec.Unit.ACAM for code in program.code for instr in code)
    if acam is None:
        if program.cam_images or program.cam_bindings or program.cam_codes or uses:
            raise fail(
                "CAM",
                f"the binary uses analog-CAM arrays but target {target.name!r} has none",
            )
        return {}
    levels = acam.levels
    for index, cam in enumerate(program.cam_images):
        section = f"CAM[{index}]"
        if cam.rows > acam.rows or cam.cols > acam.cols or cam.width > acam.leaf_words:
            raise fail(
                section,
                f"CAM image is {cam.rows}x{cam.cols} with {cam.width} leaf words but CAM arrays "
                f"are {acam.rows}x{acam.cols} with {acam.leaf_words}",
            )
        if cam.low.size and (int(cam.low.max()) > levels - 1 or int(cam.high.min()) < 1
                             or int(cam.high.max()) > levels):  # fmt: skip
            raise fail(
                section,
                f"bounds must lie in low 0..{levels - 1}, high 1..{levels} ({levels} levels)",
            )
        if not np.all(np.isfinite(cam.leaves)):
            raise fail(section, "leaf values must be finite")
    for index, table in enumerate(program.cam_codes):
        problems = table.problems(levels)
        if problems:
            raise fail(f"CAMCODE[{index}]", "; ".join(problems))
    held: dict[tuple[int, int], int] = {}
    for b in program.cam_bindings:
        if not (0 <= b.core < len(program.code) and 0 <= b.array < acam.arrays):
            raise fail(
                "CAMBIND",
                f"binding names CAM array m{b.array} of core {b.core}, which does not exist or "
                f"runs no code ({len(program.code)} cores with code x {acam.arrays} CAM arrays)",
            )
        if not 0 <= b.image < len(program.cam_images):
            raise fail(
                "CAMBIND",
                f"binding names CAM image {b.image}; the binary has {len(program.cam_images)}",
            )
        if (b.core, b.array) in held:
            raise fail("CAMBIND", f"CAM array m{b.array} of core {b.core} is bound twice")
        held[(b.core, b.array)] = b.image
    return held


def _check_code(
    program: Program,
    core: int,
    code: list[Instr],
    held: dict[tuple[int, int], int],
    cam_held: dict[tuple[int, int], int],
    fail: Callable[[str, str], BinaryFormatError],
) -> None:
    target = program.target
    limits = {
        spec.OperandKind.REG: (target.core.registers, "registers", "r"),
        spec.OperandKind.ARRAY: (target.core.arrays, "arrays", "a"),
        spec.OperandKind.CORE: (target.chip.cores, "cores", "c"),
        spec.OperandKind.IMAGE: (len(program.images), "images", ""),
        spec.OperandKind.TARGET: (len(code), "instructions", ""),
        spec.OperandKind.CAM: (target.acam.arrays if target.acam else 0, "CAM arrays", "m"),
        spec.OperandKind.CAM_IMAGE: (len(program.cam_images), "CAM images", ""),
        spec.OperandKind.CAM_CODE: (len(program.cam_codes), "coding tables", ""),
    }
    section = f"CODE[{core}]"
    # per mnemonic: operand names, and (index, kind) of the operands with a limit
    layout: dict[str, tuple[tuple[str, ...], tuple[tuple[int, spec.OperandKind], ...]]] = {}
    for row in {instr.spec for instr in code}:
        limited = tuple((i, f.kind) for i, f in enumerate(row.fields) if f.kind in limits)
        layout[row.mnemonic] = (tuple(f.name for f in row.fields), limited)
    targets = {
        instr.operands[i]
        for instr in code
        for i, kind in layout[instr.mnemonic][1]
        if kind is spec.OperandKind.TARGET
    }
    known: dict[int, int] = {}  # register -> value, along straight-line code
    shapes = {array: program.images[image] for (c, array), image in held.items() if c == core}
    cams = {array: program.cam_images[i] for (c, array), i in cam_held.items() if c == core}
    for pc, instr in enumerate(code):
        row = instr.spec
        where = f"pc {pc} ({row.mnemonic})"
        if pc in targets:
            known.clear()  # control may arrive from elsewhere
        names, limited = layout[instr.mnemonic]
        ops = dict(zip(names, instr.operands, strict=True))
        for i, kind in limited:
            count, what, prefix = limits[kind]
            if instr.operands[i] >= count:
                raise fail(
                    section,
                    f"{where}: {names[i]} {prefix}{instr.operands[i]} does not exist; "
                    f"there are {count} {what}",
                )
        if row.cost is spec.CostClass.NOC and ops["core"] == core:
            raise fail(section, f"{where}: core {core} sends to or receives from itself")
        reads_array = row.unit is spec.Unit.XBAR and row is not spec.XBAR_PROGRAM
        if reads_array and ops["array"] not in shapes:
            raise fail(section, f"{where}: array a{ops['array']} holds no image when this runs")
        if row is spec.XBAR_PROGRAM:
            shapes[ops["array"]] = program.images[ops["image"]]
        cam = None
        if row is spec.ACAM_SEARCH or row is spec.ACAM_LEAF:
            cam = cams.get(ops["array"])
            if cam is None:
                raise fail(
                    section, f"{where}: CAM array m{ops['array']} holds no image when this runs"
                )
            if row is spec.ACAM_LEAF and ops["n"] != cam.width:
                raise fail(
                    section,
                    f"{where}: n = {ops['n']} but the leaf RAM of m{ops['array']} is "
                    f"{cam.width} wide",
                )
        if row is spec.ACAM_PROGRAM:
            cams[ops["array"]] = program.cam_images[ops["image"]]
        if row is spec.ACAM_ENCODE:
            table = program.cam_codes[ops["table"]]
            if table.n_cells != ops["n"] or int(table.features.max(initial=-1)) >= ops["k"]:
                raise fail(
                    section,
                    f"{where}: coding table {ops['table']} fills {table.n_cells} cells from "
                    f"features up to {int(table.features.max(initial=-1))}, not n = {ops['n']} "
                    f"from k = {ops['k']}",
                )
        strides = None
        if row is spec.SIMD_COPY2D:
            regs = [known.get(ops["s"] + i) for i in range(3)]
            if ops["s"] + 3 > target.core.registers:
                raise fail(section, f"{where}: stride registers r{ops['s']}.. do not all exist")
            if all(v is not None for v in regs):
                strides = (int(regs[0]), int(regs[1]), int(regs[2]))  # type: ignore[arg-type]
                if min(strides) < 0:
                    raise fail(section, f"{where}: strides {strides} must be >= 0")
        for access in row.accesses:
            start = known.get(ops[access.field])
            if start is None or (access.strided and strides is None):
                continue
            if row.unit is spec.Unit.ACAM:
                shape = (cam.rows, cam.cols) if cam is not None else (0, 0)
            else:
                image = shapes.get(ops.get("array", -1))
                shape = (image.rows, image.cols) if image else (0, 0)
            length = access.length(ops, *shape, strides)
            size = target.words(access.space)
            if start < 0 or start + length > size:
                raise fail(
                    section,
                    f"{where}: {access.field} = r{ops[access.field]} addresses "
                    f"[{start}, {start + length}) outside the {size}-word "
                    f"{access.space.value}",
                )
        if row is spec.CTL_SET:
            known[ops["d"]] = ops["imm"]
        elif row is spec.CTL_ADD:
            base = known.get(ops["a"])
            known.pop(ops["d"], None)
            if base is not None:
                known[ops["d"]] = base + ops["imm"]
        elif row is spec.CTL_LOOP:
            known.pop(ops["c"], None)
