"""The loader: checks a whole Program against its target before anything runs.

The container already checked the bytes (isa/container.py); here every reference is checked
against the hardware the binary names: cores, arrays, registers, images, branch targets, memory
ranges of constants and I/O, and, where a straight-line pass can know a register's value, the
address range of every buffer and memory access; then that the cores' messages let every core
reach its halt (isa/protocol.py). What depends on values only known at run time is checked
again by the simulator before each instruction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from imcc.isa import spec
from imcc.isa.diagnostics import BinaryFormatError, CoreLoc, SectionLoc
from imcc.isa.encoding import Instr
from imcc.isa.program import Program
from imcc.isa.protocol import ProtocolError, check_protocol
from imcc.isa.target import AcamSpec

TENSOR_DTYPES = ("float32", "float64", "int64", "int32")


def validate(program: Program, name: str = "<binary>") -> None:
    target = program.target

    def fail(section: str, message: str) -> BinaryFormatError:
        return BinaryFormatError(message, SectionLoc(name, section))

    if len(program.code) > target.chip.cores:
        raise fail(
            "CODE",
            f"{len(program.code)} cores have code but target {target.name!r} has "
            f"{target.chip.cores}",
        )
    if not any(program.code):
        raise fail("CODE", "no core has any code")
    capacity = target.core.instruction_words
    for core, code in enumerate(program.code):
        if capacity and len(code) > capacity:
            raise fail(
                f"CODE[{core}]",
                f"core {core} has {len(code):,} instructions but target {target.name!r}'s "
                f"instruction memory holds {capacity:,}",
            )
    _check_images(program, fail)
    cam_held = _check_cams(program, fail)
    held = _check_bindings(program, fail)
    _check_memory(program, fail)
    for core, code in enumerate(program.code):
        _check_code(program, core, code, held, cam_held, fail)
    # every operand is known good now: prove the cores can all reach their halt; a program
    # that would deadlock is rejected here, in the code section of the first waiting core,
    # naming each waiting core, its pc and what it waits for (the ProtocolError is the cause)
    try:
        check_protocol(program)
    except ProtocolError as exc:
        core = exc.loc.core if isinstance(exc.loc, CoreLoc) else 0
        raise fail(f"CODE[{core}]", exc.message) from exc


def _check_images(program: Program, fail: Callable[[str, str], BinaryFormatError]) -> None:
    """Crossbar images against the arrays' shape and cell levels."""
    xbar = program.target.xbar
    top_level = (1 << xbar.cell_bits) - 1
    for index, image in enumerate(program.images):
        if image.rows > xbar.rows or image.cols > xbar.cols:
            raise fail(
                f"IMAGE[{index}]",
                f"image is {image.rows}x{image.cols} but arrays are {xbar.rows}x{xbar.cols}",
            )
        if image.levels.size and int(image.levels.max()) > top_level:
            raise fail(
                f"IMAGE[{index}]",
                f"level {int(image.levels.max())} exceeds the "
                f"{xbar.cell_bits}-bit cells' top level {top_level}",
            )


def _check_bindings(
    program: Program, fail: Callable[[str, str], BinaryFormatError]
) -> dict[tuple[int, int], int]:
    """(core, array) -> the image it holds at start, every binding checked."""
    cores, arrays = program.target.chip.cores, program.target.core.arrays
    held: dict[tuple[int, int], int] = {}
    for b in program.bindings:
        if not (0 <= b.core < cores and 0 <= b.array < arrays):
            raise fail(
                "BIND",
                f"binding names array a{b.array} of core {b.core}, which does "
                f"not exist ({cores} cores x {arrays} arrays)",
            )
        if not 0 <= b.image < len(program.images):
            raise fail(
                "BIND", f"binding names image {b.image}; the binary has {len(program.images)}"
            )
        if (b.core, b.array) in held:
            raise fail("BIND", f"array a{b.array} of core {b.core} is bound twice")
        held[(b.core, b.array)] = b.image
    return held


def _check_memory(program: Program, fail: Callable[[str, str], BinaryFormatError]) -> None:
    """Constants and I/O tensors inside the global memory; tensors named once, of a known
    dtype; at least one output."""
    memory = program.target.chip.global_memory_words
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
    if program.target.tile is None:
        for core, code in enumerate(program.code):
            pc = next((pc for pc, i in enumerate(code) if i.spec.unit is spec.Unit.TILE), None)
            if pc is not None:
                raise fail(
                    f"CODE[{core}]",
                    f"pc {pc} uses a tile memory but target {program.target.name!r} has no [tile]",
                )


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
    _check_cam_images(program, acam, fail)
    for index, table in enumerate(program.cam_codes):
        problems = table.problems(acam.levels)
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


def _check_cam_images(
    program: Program, acam: AcamSpec, fail: Callable[[str, str], BinaryFormatError]
) -> None:
    """CAM images against the CAM arrays' shape, leaf RAM and levels."""
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


def _check_code(
    program: Program,
    core: int,
    code: list[Instr],
    held: dict[tuple[int, int], int],
    cam_held: dict[tuple[int, int], int],
    fail: Callable[[str, str], BinaryFormatError],
) -> None:
    checker = _CodeCheck(program, core, code, fail)
    checker.images[spec.OperandKind.ARRAY].update(
        (array, program.images[image]) for (c, array), image in held.items() if c == core
    )
    checker.images[spec.OperandKind.CAM].update(
        (array, program.cam_images[i]) for (c, array), i in cam_held.items() if c == core
    )
    # every register is 0 when a core starts (and when a streamed core starts over)
    checker.known = dict.fromkeys(range(program.target.core.registers), 0)
    loops = _counted_loops(code)
    if loops is None:  # other control flow: a straight-line pass, forgetting at each target
        for pc, instr in enumerate(code):
            checker.check(pc, instr)
    else:
        checker.targets = set()
        checker.walk(0, len(code), loops)


def _counted_loops(code: list[Instr]) -> dict[int, list[int]] | None:
    """{first pc of a body: pcs of the counted jumps closing the loops that start there, the
    outermost first} when the only control flow is counted loops (ctl.loop back to a pc
    before it) that nest properly, and in their bodies registers are only set or stepped;
    else None."""
    loops: dict[int, list[int]] = {}
    open_ends: list[int] = []  # ends of the loops whose bodies enclose the pc reached
    for pc, instr in enumerate(code):
        row = instr.spec
        if row.operand_index(spec.OperandKind.TARGET) is None:
            continue
        target = instr.operand("target")
        if row.scalar is not spec.Scalar.COUNT or target > pc:
            return None
        loops.setdefault(target, []).insert(0, pc)  # a later close encloses the earlier
    for start in sorted(loops):  # bodies nest: each one ends before any body enclosing it
        while open_ends and open_ends[-1] < start:
            open_ends.pop()
        for close in loops[start]:
            if open_ends and close > open_ends[-1]:
                return None
            open_ends.append(close)
    # in a body, a register may only be set or stepped by itself, so every trip moves it
    # alike (a copy between registers could make it alternate)
    depth = np.zeros(len(code) + 1, dtype=np.int64)
    for start, closes in loops.items():
        depth[start] += 1
        depth[closes[0] + 1] -= 1
    inside = np.cumsum(depth) > 0
    for pc, instr in enumerate(code):
        row = instr.spec
        if (
            row.scalar is spec.Scalar.ADD
            and instr.operand("d") != instr.operand("a")
            and inside[pc]
        ):
            return None
    return loops


class _CodeCheck:
    """One core's code, instruction by instruction: operands that exist, arrays that hold an
    image when they are read, and the address ranges of accesses whose start registers are
    known. Code whose only control flow is counted loops is walked through them (`walk`);
    other code in pc order, forgetting every register at a jump target."""

    def __init__(
        self,
        program: Program,
        core: int,
        code: list[Instr],
        fail: Callable[[str, str], BinaryFormatError],
    ) -> None:
        target = program.target
        self.program, self.core, self.fail, self.code = program, core, fail, code
        self.section = f"CODE[{core}]"
        self.limits = {
            spec.OperandKind.REG: (target.core.registers, "registers", "r"),
            spec.OperandKind.ARRAY: (target.core.arrays, "arrays", "a"),
            spec.OperandKind.CORE: (target.chip.cores, "cores", "c"),
            spec.OperandKind.IMAGE: (len(program.images), "images", ""),
            spec.OperandKind.TARGET: (len(code), "instructions", ""),
            spec.OperandKind.CAM: (target.acam.arrays if target.acam else 0, "CAM arrays", "m"),
            spec.OperandKind.CAM_IMAGE: (len(program.cam_images), "CAM images", ""),
            spec.OperandKind.CAM_CODE: (len(program.cam_codes), "coding tables", ""),
        }
        # per mnemonic: operand names, and (index, kind) of the operands with a limit
        self.layout: dict[str, tuple[tuple[str, ...], tuple[tuple[int, spec.OperandKind], ...]]]
        self.layout = {}
        for row in {instr.spec for instr in code}:
            limited = tuple((i, f.kind) for i, f in enumerate(row.fields) if f.kind in self.limits)
            self.layout[row.mnemonic] = (tuple(f.name for f in row.fields), limited)
        self.targets = {
            instr.operands[i]
            for instr in code
            for i, kind in self.layout[instr.mnemonic][1]
            if kind is spec.OperandKind.TARGET
        }
        self.known: dict[int, int] = {}  # register -> value, along straight-line code
        # per kind of array (crossbar, CAM): array -> the image it holds
        self.images: dict[spec.OperandKind, dict[int, Any]] = {
            kind: {} for kind in spec.ARRAY_NOUNS
        }
        self.where = ""

    def error(self, message: str) -> BinaryFormatError:
        return self.fail(self.section, f"{self.where}: {message}")

    def check(self, pc: int, instr: Instr) -> None:
        row = instr.spec
        self.where = f"pc {pc} ({row.mnemonic})"
        if pc in self.targets:
            self.known.clear()  # control may arrive from elsewhere
        names, limited = self.layout[instr.mnemonic]
        ops = dict(zip(names, instr.operands, strict=True))
        for i, kind in limited:
            count, what, prefix = self.limits[kind]
            if instr.operands[i] >= count:
                raise self.error(
                    f"{names[i]} {prefix}{instr.operands[i]} does not exist; "
                    f"there are {count} {what}"
                )
        if row.noc is not spec.Noc.NONE:
            self.peer(ops)
        image = self.array(row, instr)
        if row.operand_index(spec.OperandKind.CAM_CODE) is not None:
            self.coding(ops)
        self.accesses(row, ops, image)
        self.follow(row, ops)

    def peer(self, ops: dict[str, int]) -> None:
        """A message's peer, core + r[cr], is another core of the chip, if cr is known."""
        offset = self.known.get(ops[spec.PEER_FIELD])
        if offset is None:
            return  # the engines check it when it runs
        peer = ops["core"] + offset
        cores = self.program.target.chip.cores
        if peer == self.core:
            raise self.error(f"core {self.core} sends to or receives from itself")
        if not 0 <= peer < cores:
            raise self.error(
                f"c{ops['core']} + r{ops[spec.PEER_FIELD]} = core {peer} does not exist; "
                f"there are {cores} cores"
            )

    def array(self, row: spec.InstrSpec, instr: Instr) -> Any:
        """The image the array operand holds, for a row that reads it (else None); a row that
        programs it makes it hold the new image."""
        at = row.array_index
        if at is None:
            return None
        kind, array = row.fields[at].kind, instr.operands[at]
        held = self.images[kind]
        if row.array is spec.ArrayUse.PROGRAM:
            assert row.image_index is not None  # spec._check_facts
            images: Sequence[Any] = self.program.images
            if kind is spec.OperandKind.CAM:
                images = self.program.cam_images
            held[array] = images[instr.operands[row.image_index]]
            return None
        k = instr.operand(row.span) if row.span else 1
        if array + k > self.limits[kind][0]:
            raise self.error(
                f"k = {k} arrays from {kind.prefix}{array} run past the last of the "
                f"{self.limits[kind][0]} {spec.ARRAY_NOUNS[kind]}s"
            )
        image: Any = None
        for other in range(array, array + k):  # a span's k arrays hold images of one shape
            also = held.get(other)
            if also is None:
                raise self.error(
                    f"{spec.ARRAY_NOUNS[kind]} {kind.prefix}{other} holds no image when this runs"
                )
            image = also if image is None else image
            if (also.rows, also.cols) != (image.rows, image.cols):
                raise self.error(
                    f"{spec.ARRAY_NOUNS[kind]} {kind.prefix}{other} holds a "
                    f"{also.rows}x{also.cols} image but {kind.prefix}{array} a "
                    f"{image.rows}x{image.cols} one; the arrays of one {row.mnemonic} hold "
                    "images of one shape"
                )
        if row.leaf_width and instr.operand(row.leaf_width) != image.width:
            raise self.error(
                f"{row.leaf_width} = {instr.operand(row.leaf_width)} but the leaf RAM of "
                f"{kind.prefix}{array} is {image.width} wide"
            )
        return image

    def coding(self, ops: dict[str, int]) -> None:
        """A coding table fills the n cells from features below k (spec._check_facts)."""
        table = self.program.cam_codes[ops["table"]]
        top = int(table.features.max(initial=-1))
        if table.n_cells != ops["n"] or top >= ops["k"]:
            raise self.error(
                f"coding table {ops['table']} fills {table.n_cells} cells from "
                f"features up to {top}, not n = {ops['n']} from k = {ops['k']}"
            )

    def strides(self, ops: dict[str, int]) -> tuple[int, int, int] | None:
        """The strides of a strided copy, if the straight-line pass knows them."""
        first = ops[spec.STRIDE_FIELD]
        values = [self.known.get(first + i) for i in range(spec.STRIDE_REGS)]
        if first + spec.STRIDE_REGS > self.program.target.core.registers:
            raise self.error(f"stride registers r{first}.. do not all exist")
        if any(v is None for v in values):
            return None
        strides = (int(values[0]), int(values[1]), int(values[2]))  # type: ignore[arg-type]
        if min(strides) < 0:
            raise self.error(f"strides {strides} must be >= 0")
        return strides

    def accesses(self, row: spec.InstrSpec, ops: dict[str, int], image: Any) -> None:
        """Every access whose start register is known stays inside its memory."""
        strides = self.strides(ops) if row.strided else None
        rows, cols = (image.rows, image.cols) if image is not None else (0, 0)
        target = self.program.target
        for access in row.accesses:
            start = self.known.get(ops[access.field])
            if start is None or (access.strided and strides is None):
                continue
            length = access.length(ops, rows, cols, strides)
            size = target.words(access.space)
            if start < 0 or start + length > size:
                raise self.error(
                    f"{access.field} = r{ops[access.field]} addresses "
                    f"[{start}, {start + length}) outside the {size}-word "
                    f"{access.space.value}"
                )

    def walk(self, start: int, end: int, loops: dict[int, list[int]], entered: int = 0) -> None:
        """Check pcs [start, end) (inside the `entered` loops that start at `start`), each
        counted loop through its first, second and last trips: a register stepped by the
        same amount every trip is affine in the trip from the second on, so every access's
        range is widest at one of these three."""
        pc = start
        while pc < end:
            closes = loops.get(pc, ())
            depth = entered if pc == start else 0
            if depth >= len(closes):
                self.check(pc, self.code[pc])
                pc += 1
                continue
            self.trips(pc, closes[depth], loops, depth + 1)
            pc = closes[depth] + 1

    def trips(self, start: int, close: int, loops: dict[int, list[int]], entered: int) -> None:
        """The loop of body [start, close), closed by the counted jump back at `close`: a
        counter entering at e runs max(1, trips - e) trips, holding e + j in trip j."""
        closing = self.code[close]
        counter, limit = closing.operand("c"), closing.operand("trips")
        entry = self.known.get(counter)
        if entry is None:  # the trips are unknown: check one with nothing known
            self.known.clear()
            self.walk(start, close, loops, entered)
            self.check(close, closing)
            self.known.clear()
            self.known[counter] = 0
            return
        trips = max(1, limit - entry)  # the body runs once before the count is tested

        def run(state: dict[int, int], trip: int) -> dict[int, int]:
            """The registers at the end of trip `trip`'s body, from those at its start."""
            self.known = {**state, counter: entry + trip}
            self.walk(start, close, loops, entered)
            return dict(self.known)

        end = first = run(self.known, 0)
        if trips >= 2:
            end = second = run(first, 1)
            if trips >= 3:  # trip j starts with first + (j - 1) * (second - first)
                moved = {r: first[r] + (trips - 2) * (second[r] - first[r])
                         for r in first.keys() & second.keys()}  # fmt: skip
                end = run(moved, trips - 1)
        self.known = end
        self.check(close, closing)  # leaves the counter at 0, as the loop does

    def follow(self, row: spec.InstrSpec, ops: dict[str, int]) -> None:
        """The registers' known values after the instruction (spec.Scalar)."""
        if row.scalar is spec.Scalar.SET:
            self.known[ops["d"]] = ops["imm"]
        elif row.scalar is spec.Scalar.ADD:
            base = self.known.get(ops["a"])
            self.known.pop(ops["d"], None)
            if base is not None:
                self.known[ops["d"]] = base + ops["imm"]
        elif row.scalar is spec.Scalar.COUNT:  # reached by falling through: the loop is done
            self.known[ops["c"]] = 0
