"""The instruction table: the only place an opcode, a mnemonic or a bit field is spelled.

Encoder, decoder, assembler operand checks, disassembler, `imcc isa` and both simulators derive
everything from the rows below. The table is checked at import: duplicate opcodes or mnemonics,
overlapping fields and fields that spill out of the word raise immediately.

Every instruction is one 64-bit little-endian word: the opcode sits in bits [56, 64) and the
operand fields are packed downwards from bit 55 in the order they are written in assembly.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

WORD_BITS = 64
OPCODE_BITS = 8
OPCODE_LSB = WORD_BITS - OPCODE_BITS


class Unit(enum.Enum):
    """The functional units of a core; the prefix of every mnemonic."""

    XBAR = "xbar"
    ACAM = "acam"
    SIMD = "simd"
    MEM = "mem"
    TILE = "tile"
    NOC = "noc"
    CTL = "ctl"


class OperandKind(enum.Enum):
    """What an operand field holds; decides its text form and its checks.

    The assembly prefix makes a misplaced operand an error instead of a silent reinterpretation:
    `r3` is a scalar register, `a3` a crossbar array of this core, `c3` a core of the chip.
    """

    REG = "register"  # r0..r31: scalar registers holding addresses and counters
    ARRAY = "array"  # a0..: crossbar arrays of the executing core
    CORE = "core"  # c0..: cores of the chip
    IMAGE = "image"  # index into the binary's crossbar-image table
    COUNT = "count"  # element count of a vector operand, >= 1
    BITS = "bits"  # a bit width, >= 1
    FLAG = "flag"  # 0 or 1
    TAG = "tag"  # message tag matching a send with its receive
    IMM = "immediate"  # signed integer
    TARGET = "target"  # a pc of the same core; a label in assembly
    CAM = "cam array"  # m0..: analog-CAM arrays of the executing core
    CAM_IMAGE = "cam image"  # index into the binary's CAM-image table (bounds and leaf RAM)
    CAM_CODE = "cam table"  # index into the binary's input-coding tables of the CAMs

    @property
    def prefix(self) -> str:
        return {
            OperandKind.REG: "r",
            OperandKind.ARRAY: "a",
            OperandKind.CORE: "c",
            OperandKind.CAM: "m",
        }.get(self, "")

    @property
    def signed(self) -> bool:
        return self is OperandKind.IMM


class CostClass(enum.Enum):
    """How the cycle-level simulator prices an instruction (see runtime/costs.py)."""

    XBAR_MVM = "xbar-mvm"
    XBAR_PROGRAM = "xbar-program"
    SIMD_ARITH = "simd-arith"
    SIMD_TRANSCENDENTAL = "simd-transcendental"
    SIMD_REDUCE = "simd-reduce"
    MEM = "mem"
    TILE = "tile"
    NOC = "noc"
    CTL = "ctl"
    ACAM_ENCODE = "acam-encode"
    ACAM_SEARCH = "acam-search"
    ACAM_LEAF = "acam-leaf"
    ACAM_PROGRAM = "acam-program"


@dataclass(frozen=True, slots=True)
class Field:
    """One operand field: its name (as in docs), kind, and bits [lsb, lsb + width) of the word.

    `top`, if given, is the largest legal value when it is less than the bits hold: the
    encoder, decoder, assembler and loader all refuse more (see LIMITS).
    """

    name: str
    kind: OperandKind
    lsb: int
    width: int
    top: int | None = None

    @property
    def min(self) -> int:
        return -(1 << (self.width - 1)) if self.kind.signed else 0

    @property
    def max(self) -> int:
        if self.top is not None:
            return self.top
        return (1 << (self.width - 1)) - 1 if self.kind.signed else (1 << self.width) - 1

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb


class ArrayUse(enum.Enum):
    """What an instruction does with the array its ARRAY or CAM operand names."""

    NONE = "none"  # no array operand
    READ = "read"  # reads the image the array holds: the array must hold one when this runs
    PROGRAM = "program"  # writes the image its IMAGE or CAM_IMAGE operand names into the array


class Shape(enum.Enum):
    """The (rows, cols) the cost model (runtime/costs.py) prices an instruction on."""

    NONE = "none"  # (0, 0): the price depends on the operands only
    HELD = "held"  # the image the array holds
    PROGRAMMED = "programmed"  # the image being written into the array
    MATCHES = "matches"  # (rows of the CAM image held, its trees: the rows a search matches)
    CODING = "coding"  # (comparisons of the coding table operand, 1)


class Noc(enum.Enum):
    """The side of a message an instruction is, if any."""

    NONE = "none"
    SEND = "send"  # pays the network energy; the receiver may wake
    RECV = "recv"  # waits for the message to arrive


class Scalar(enum.Enum):
    """What an instruction does to the scalar registers, as the static passes (the loader's
    known register values, the default budget's loop counts) follow them."""

    NONE = "none"  # writes no register
    SET = "set"  # r[d] = imm
    ADD = "add"  # r[d] = r[a] + imm
    COUNT = "count"  # r[c] += 1, jumping to target while r[c] < trips, else r[c] = 0


# The noun of an array operand's kind in messages ("array a3", "CAM array m1"), and the kind of
# the image operand that programs it.
ARRAY_NOUNS = {OperandKind.ARRAY: "array", OperandKind.CAM: "CAM array"}
IMAGE_KINDS = {OperandKind.ARRAY: OperandKind.IMAGE, OperandKind.CAM: OperandKind.CAM_IMAGE}


class Space(enum.Enum):
    """Where an address operand points."""

    BUFFER = "buffer"  # the executing core's local buffer
    GLOBAL = "global"  # the chip's global memory
    TILE = "tile"  # the memory shared by the cores of the executing core's tile


# A message's peer is its core operand plus the register its PEER_FIELD names: an immediate
# for a fixed peer (with a register holding 0), a register stepped by a loop over peers.
PEER_FIELD = "cr"


# A CAM match vector is packed MATCH_BITS rows to a buffer word: row r is bit r % MATCH_BITS
# of word r // MATCH_BITS (a float64 word holds a 32-bit mask exactly).
MATCH_BITS = 32
# Extents fixed by the array's image; any other extent names a COUNT operand.
IMAGE_EXTENTS = ("1", "rows", "cols", "match")
# Extents of a strided block copy, from its n, m and its three stride registers.
STRIDED_EXTENTS = ("strided-dst", "strided-src")
# A strided row's register field holding the first of its STRIDE_REGS stride registers
# (inner source, outer source, outer destination).
STRIDE_FIELD = "s"
STRIDE_REGS = 3


def extent_length(extent: str, operands: dict[str, int], rows: int, cols: int) -> int:
    """The product an extent such as "rows*m" names: image rows / cols, the words of a match
    vector over the rows, 1, or count operands by name."""
    total = 1
    for term in extent.split("*"):
        if term == "rows":
            total *= rows
        elif term == "cols":
            total *= cols
        elif term == "match":
            total *= -(-rows // MATCH_BITS)
        elif term != "1":
            total *= operands.get(term, 0)
    return total


@dataclass(frozen=True, slots=True)
class Access:
    """A memory range an instruction touches: register field `field` holds the start address;
    the length is a count operand (named by `extent`, usually `n`), 1, the rows / cols of the
    array's current image, or `match`: the words of a match vector over its rows."""

    field: str
    space: Space
    extent: str  # "1" | "rows" | "cols" | "match" | the name of a COUNT operand
    writes: bool

    def length(
        self,
        operands: dict[str, int],
        rows: int,
        cols: int,
        strides: tuple[int, int, int] | None = None,
    ) -> int:
        """Words spanned, given the operands by name, the array image's shape and, for a
        strided block copy, the strides (inner source, outer source, outer destination)."""
        extent = self.extent
        if extent.startswith("strided"):
            assert strides is not None, "a strided access needs its strides"
            n, m = operands["n"], operands["m"]
            if extent == "strided-dst":
                return (m - 1) * strides[2] + n
            return (m - 1) * strides[1] + (n - 1) * strides[0] + 1
        return extent_length(extent, operands, rows, cols)

    @property
    def strided(self) -> bool:
        return self.extent.startswith("strided")


_UNITS: dict[str, Unit] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class InstrSpec:
    """One row of the table, with the facts the loader, the engines and the cost model check
    and price by (so none of them compares rows):

    `array`: what it does with its ARRAY / CAM operand; `shape`: what the cost model prices it
    on; `repeat`: the COUNT operand it repeats its work by ("" for once); `span`: the COUNT
    operand k of a row that runs on the k arrays from its array operand at once, every one
    holding an image of the shape it is priced on ("" for one array); `macs`: the extent of
    its multiply-accumulates ("" for none); `leaf_width`: the COUNT operand that must equal the
    leaf RAM width of the CAM image held; `noc`: its side of a message; `scalar`: what it does
    to the scalar registers; `function`: for an elementwise row d = f(a, b), the numpy ufunc
    f by name (the semantics apply it lane by lane; b is one word when its extent is 1).
    """

    mnemonic: str
    opcode: int
    fields: tuple[Field, ...]
    cost: CostClass
    doc: str
    accesses: tuple[Access, ...] = ()
    array: ArrayUse = ArrayUse.NONE
    shape: Shape = Shape.NONE
    repeat: str = ""
    span: str = ""
    macs: str = ""
    leaf_width: str = ""
    noc: Noc = Noc.NONE
    scalar: Scalar = Scalar.NONE
    function: str = ""

    @property
    def unit(self) -> Unit:
        unit = _UNITS.get(self.mnemonic)
        if unit is None:  # asked once per mnemonic: the simulators ask on every instruction
            unit = _UNITS[self.mnemonic] = Unit(self.mnemonic.split(".", 1)[0])
        return unit

    @property
    def strided(self) -> bool:
        """Whether an access is a strided block (its strides in registers STRIDE_FIELD on)."""
        return any(access.strided for access in self.accesses)

    def field(self, name: str) -> Field:
        """The operand field called `name` (a KeyError names it if the row has none)."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.mnemonic} has no operand {name!r}")

    def operand_index(self, kind: OperandKind) -> int | None:
        """The index of the first operand of `kind` (a jump target, the array), if any."""
        return next((i for i, f in enumerate(self.fields) if f.kind is kind), None)

    @property
    def array_index(self) -> int | None:
        """The index of its array operand (ARRAY or CAM kind), if it has one."""
        return next((i for i, f in enumerate(self.fields) if f.kind in ARRAY_NOUNS), None)

    @property
    def image_index(self) -> int | None:
        """The index of the image operand that programs its array (ArrayUse.PROGRAM rows)."""
        at = self.array_index
        return None if at is None else self.operand_index(IMAGE_KINDS[self.fields[at].kind])

    @property
    def syntax(self) -> str:
        operands = ", ".join(f.name for f in self.fields)
        return f"{self.mnemonic} {operands}".rstrip()


# Widths of each kind of field. A register file of 32, up to 64 arrays per core and 4096 cores
# cover every preset with room; counts of 2^20 elements cover any single vector operation.
WIDTH = {
    OperandKind.REG: 5,
    OperandKind.ARRAY: 6,
    OperandKind.CORE: 12,
    OperandKind.IMAGE: 16,
    OperandKind.COUNT: 20,
    OperandKind.BITS: 6,
    OperandKind.FLAG: 1,
    OperandKind.TAG: 12,
    OperandKind.TARGET: 24,
    OperandKind.CAM: 6,
    OperandKind.CAM_IMAGE: 16,
    OperandKind.CAM_CODE: 8,
}

# Legal ranges narrower than the field's bits. A bit width is at most 32: buffer words are
# float64, so a `bits`-bit integer, its DAC steps and its weights 2^(bits-1) are exact, and
# x mod 2^bits never overflows the 64-bit integers the semantics compute it with (63 would).
LIMITS = {
    OperandKind.BITS: 32,
}

R = OperandKind.REG
# The width of a counted loop's trip count: up to 2^24 - 1 trips.
LOOP_TRIP_BITS = 24
# The width of a span of arrays (InstrSpec.span): up to 127, past the 64 arrays an ARRAY
# field names; the loader refuses a span that runs past the core's last array.
SPAN_BITS = 7
# The most elements one vector instruction covers; longer work is split by the emitter.
MAX_COUNT = (1 << WIDTH[OperandKind.COUNT]) - 1


def _pack(*operands: tuple[str, OperandKind] | tuple[str, OperandKind, int]) -> tuple[Field, ...]:
    """Lay fields out from bit 55 downwards, in assembly order."""
    fields = []
    top = OPCODE_LSB
    for operand in operands:
        name, kind = operand[0], operand[1]
        width = operand[2] if len(operand) == 3 else WIDTH[kind]
        top -= width
        fields.append(Field(name, kind, top, width, LIMITS.get(kind)))
    return tuple(fields)


def _row(
    mnemonic: str,
    opcode: int,
    cost: CostClass,
    doc: str,
    *operands: tuple,  # type: ignore[type-arg]
    access: str = "",
    array: ArrayUse = ArrayUse.NONE,
    shape: Shape | None = None,
    repeat: str = "",
    span: str = "",
    macs: str = "",
    leaf_width: str = "",
    noc: Noc = Noc.NONE,
    scalar: Scalar = Scalar.NONE,
    function: str = "",
) -> InstrSpec:
    """`access` lists the memory ranges touched, e.g. "d:w:n a:r:n b:r:1 x:rg:n": field,
    r/w (read/write) plus g for global memory or t for the tile's memory, and the extent.
    The other keywords are the InstrSpec facts; `shape` defaults to what `array` implies
    (HELD for READ, PROGRAMMED for PROGRAM)."""
    accesses = []
    for item in access.split():
        name, mode, extent = item.split(":")
        space = Space.GLOBAL if "g" in mode else Space.TILE if "t" in mode else Space.BUFFER
        accesses.append(Access(name, space, extent, "w" in mode))
    return InstrSpec(
        mnemonic=mnemonic,
        opcode=opcode,
        fields=_pack(*operands),
        cost=cost,
        doc=doc,
        accesses=tuple(accesses),
        array=array,
        shape=_SHAPE_OF[array] if shape is None else shape,
        repeat=repeat,
        span=span,
        macs=macs,
        leaf_width=leaf_width,
        noc=noc,
        scalar=scalar,
        function=function,
    )


_SHAPE_OF = {
    ArrayUse.NONE: Shape.NONE,
    ArrayUse.READ: Shape.HELD,
    ArrayUse.PROGRAM: Shape.PROGRAMMED,
}


_VEC3 = (("d", R), ("a", R), ("b", R), ("n", OperandKind.COUNT))
_VEC2 = (("d", R), ("a", R), ("n", OperandKind.COUNT))

# Each row is also a module constant (spec.SIMD_ADD): the rest of the code names instructions
# through these, so no mnemonic string is spelled outside this file. Opcodes are grouped by unit
# in blocks of 0x20 so a unit can grow without renumbering another.
# -- ctl: scalar control; registers are batch-uniform, so control flow never depends on data
CTL_NOP = _row("ctl.nop", 0x00, CostClass.CTL, "do nothing for one cycle")
CTL_HALT = _row("ctl.halt", 0x01, CostClass.CTL, "stop this core")
CTL_SET = _row(
    "ctl.set",
    0x02,
    CostClass.CTL,
    "r[d] = imm",
    ("d", R),
    ("imm", OperandKind.IMM, 48),
    scalar=Scalar.SET,
)
CTL_ADD = _row(
    "ctl.add",
    0x03,
    CostClass.CTL,
    "r[d] = r[a] + imm",
    ("d", R),
    ("a", R),
    ("imm", OperandKind.IMM, 32),
    scalar=Scalar.ADD,
)
CTL_LOOP = _row(
    "ctl.loop",
    0x04,
    CostClass.CTL,
    "r[c] = r[c] + 1; jump to target while r[c] < trips, else r[c] = 0: a counter that is 0 "
    "on entry (as every register is when a core starts) runs the body `trips` times and is 0 "
    "again after",
    ("c", R),
    ("trips", OperandKind.COUNT, LOOP_TRIP_BITS),
    ("target", OperandKind.TARGET),
    scalar=Scalar.COUNT,
)
CTL_JUMP = _row("ctl.jump", 0x05, CostClass.CTL, "jump to target", ("target", OperandKind.TARGET))
CTL_BRANCH_EQ = _row(
    "ctl.branch.eq",
    0x06,
    CostClass.CTL,
    "jump to target if r[a] == r[b]",
    ("a", R),
    ("b", R),
    ("target", OperandKind.TARGET),
)
CTL_BRANCH_NE = _row(
    "ctl.branch.ne",
    0x07,
    CostClass.CTL,
    "jump to target if r[a] != r[b]",
    ("a", R),
    ("b", R),
    ("target", OperandKind.TARGET),
)
CTL_BRANCH_LT = _row(
    "ctl.branch.lt",
    0x08,
    CostClass.CTL,
    "jump to target if r[a] < r[b]",
    ("a", R),
    ("b", R),
    ("target", OperandKind.TARGET),
)
# -- xbar: analog matrix-vector multiplication on the crossbar arrays of this core
XBAR_MVM = _row(
    "xbar.mvm",
    0x20,
    CostClass.XBAR_MVM,
    "the k arrays array..array+k-1 at once (PUMA's MVM coalescing), each holding an image of "
    "one shape: buf[out + j*cols : out + (j+1)*cols] = ADC(x . G_j) for x = buf[in:in+rows] as "
    "`bits`-bit integers (two's complement if `signed`), applied dac_bits per step and "
    "shift-added per step",
    ("array", OperandKind.ARRAY),
    ("in", R),
    ("out", R),
    ("bits", OperandKind.BITS),
    ("signed", OperandKind.FLAG),
    ("k", OperandKind.COUNT, SPAN_BITS),
    access="in:r:rows out:w:cols*k",
    array=ArrayUse.READ,
    macs="rows*cols*k",
    span="k",
)
XBAR_PROGRAM = _row(
    "xbar.program",
    0x21,
    CostClass.XBAR_PROGRAM,
    "write crossbar image `image` into `array` through the device model",
    ("array", OperandKind.ARRAY),
    ("image", OperandKind.IMAGE),
    array=ArrayUse.PROGRAM,
)
XBAR_MVM_BLOCK = _row(
    "xbar.mvmb",
    0x22,
    CostClass.XBAR_MVM,
    "m MVMs streamed through each of the k arrays array..array+k-1 at once (as xbar.mvm), "
    "input and output stored row by row of the array: buf[out + j*cols*m + c*m + v] = "
    "ADC(x_v . G_j)[c] for x_v[i] = buf[in + i*m + v], v < m",
    ("array", OperandKind.ARRAY),
    ("in", R),
    ("out", R),
    ("bits", OperandKind.BITS),
    ("signed", OperandKind.FLAG),
    ("m", OperandKind.COUNT),
    ("k", OperandKind.COUNT, SPAN_BITS),
    access="in:r:rows*m out:w:cols*m*k",
    array=ArrayUse.READ,
    repeat="m",
    macs="rows*cols*m*k",
    span="k",
)
# -- simd: vector unit over the core's local buffer
SIMD_COPY = _row(
    "simd.copy", 0x40, CostClass.SIMD_ARITH, "buf[d+i] = buf[a+i]", *_VEC2, access="d:w:n a:r:n"
)
SIMD_ADD = _row(
    "simd.add",
    0x41,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] + buf[b+i]",
    *_VEC3,
    access="d:w:n a:r:n b:r:n",
    function="add",
)
SIMD_SUB = _row(
    "simd.sub",
    0x42,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] - buf[b+i]",
    *_VEC3,
    access="d:w:n a:r:n b:r:n",
    function="subtract",
)
SIMD_MUL = _row(
    "simd.mul",
    0x43,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] * buf[b+i]",
    *_VEC3,
    access="d:w:n a:r:n b:r:n",
    function="multiply",
)
SIMD_DIV = _row(
    "simd.div",
    0x44,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] / buf[b+i]",
    *_VEC3,
    access="d:w:n a:r:n b:r:n",
    function="divide",
)
SIMD_MAX = _row(
    "simd.max",
    0x45,
    CostClass.SIMD_ARITH,
    "buf[d+i] = max(buf[a+i], buf[b+i])",
    *_VEC3,
    access="d:w:n a:r:n b:r:n",
    function="maximum",
)
SIMD_MIN = _row(
    "simd.min",
    0x58,
    CostClass.SIMD_ARITH,
    "buf[d+i] = min(buf[a+i], buf[b+i])",
    *_VEC3,
    access="d:w:n a:r:n b:r:n",
    function="minimum",
)
SIMD_ADD_S = _row(
    "simd.add.s",
    0x46,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] + buf[b]",
    *_VEC3,
    access="d:w:n a:r:n b:r:1",
    function="add",
)
SIMD_SUB_S = _row(
    "simd.sub.s",
    0x47,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] - buf[b]",
    *_VEC3,
    access="d:w:n a:r:n b:r:1",
    function="subtract",
)
SIMD_MUL_S = _row(
    "simd.mul.s",
    0x48,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] * buf[b]",
    *_VEC3,
    access="d:w:n a:r:n b:r:1",
    function="multiply",
)
SIMD_DIV_S = _row(
    "simd.div.s",
    0x49,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] / buf[b]",
    *_VEC3,
    access="d:w:n a:r:n b:r:1",
    function="divide",
)
SIMD_SHIFTADD = _row(
    "simd.shiftadd",
    0x4A,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] + buf[b+i] * 2^shift (integer recombination of slices)",
    ("d", R),
    ("a", R),
    ("b", R),
    ("shift", OperandKind.IMM, 8),
    ("n", OperandKind.COUNT),
    access="d:w:n a:r:n b:r:n",
)
SIMD_QUANT = _row(
    "simd.quant",
    0x4B,
    CostClass.SIMD_ARITH,
    "buf[d+i] = clip(round_half_even(buf[a+i] / buf[s]), integer range of `bits`, `signed`);"
    " 0 where buf[s] == 0",
    ("d", R),
    ("a", R),
    ("s", R),
    ("bits", OperandKind.BITS),
    ("signed", OperandKind.FLAG),
    ("n", OperandKind.COUNT),
    access="d:w:n a:r:n s:r:1",
)
SIMD_RELU = _row(
    "simd.relu",
    0x4C,
    CostClass.SIMD_ARITH,
    "buf[d+i] = max(buf[a+i], 0)",
    *_VEC2,
    access="d:w:n a:r:n",
)
SIMD_SIGMOID = _row(
    "simd.sigmoid",
    0x4D,
    CostClass.SIMD_TRANSCENDENTAL,
    "buf[d+i] = 1 / (1 + exp(-buf[a+i]))",
    *_VEC2,
    access="d:w:n a:r:n",
)
SIMD_TANH = _row(
    "simd.tanh",
    0x4E,
    CostClass.SIMD_TRANSCENDENTAL,
    "buf[d+i] = tanh(buf[a+i])",
    *_VEC2,
    access="d:w:n a:r:n",
)
SIMD_EXP = _row(
    "simd.exp",
    0x4F,
    CostClass.SIMD_TRANSCENDENTAL,
    "buf[d+i] = exp(buf[a+i])",
    *_VEC2,
    access="d:w:n a:r:n",
)
SIMD_RMAX = _row(
    "simd.rmax",
    0x50,
    CostClass.SIMD_REDUCE,
    "buf[d] = max_i buf[a+i]",
    *_VEC2,
    access="d:w:1 a:r:n",
)
SIMD_RSUM = _row(
    "simd.rsum",
    0x51,
    CostClass.SIMD_REDUCE,
    "buf[d] = sum_i buf[a+i]",
    *_VEC2,
    access="d:w:1 a:r:n",
)
SIMD_RABSMAX = _row(
    "simd.rabsmax",
    0x52,
    CostClass.SIMD_REDUCE,
    "buf[d] = max_i |buf[a+i]|",
    *_VEC2,
    access="d:w:1 a:r:n",
)
SIMD_ARGMAX = _row(
    "simd.argmax",
    0x53,
    CostClass.SIMD_REDUCE,
    "buf[d] = the first i with buf[a+i] = max_j buf[a+j]",
    *_VEC2,
    access="d:w:1 a:r:n",
)
SIMD_ERF = _row(
    "simd.erf",
    0x54,
    CostClass.SIMD_TRANSCENDENTAL,
    "buf[d+i] = erf(buf[a+i])",
    *_VEC2,
    access="d:w:n a:r:n",
)
SIMD_SQRT = _row(
    "simd.sqrt",
    0x55,
    CostClass.SIMD_TRANSCENDENTAL,
    "buf[d+i] = sqrt(buf[a+i])",
    *_VEC2,
    access="d:w:n a:r:n",
)
SIMD_LOG = _row(
    "simd.log",
    0x57,
    CostClass.SIMD_TRANSCENDENTAL,
    "buf[d+i] = ln(buf[a+i])",
    *_VEC2,
    access="d:w:n a:r:n",
)
SIMD_COPY2D = _row(
    "simd.copy2d",
    0x56,
    CostClass.SIMD_ARITH,
    "buf[d + j*r[s+2] + i] = buf[a + j*r[s+1] + i*r[s]] for i < n, j < m: a strided block "
    "copy, every read before any write; the strides (>= 0) are in registers s, s+1, s+2",
    ("d", R),
    ("a", R),
    ("s", R),
    ("n", OperandKind.COUNT),
    ("m", OperandKind.COUNT),
    access="d:w:strided-dst a:r:strided-src",
    repeat="m",
)
# -- mem: moves between the core's local buffer and the chip's global memory
MEM_LOAD = _row(
    "mem.load",
    0x60,
    CostClass.MEM,
    "buf[d+i] = global[a+i]",
    ("d", R),
    ("a", R),
    ("n", OperandKind.COUNT),
    access="d:w:n a:rg:n",
)
MEM_STORE = _row(
    "mem.store",
    0x61,
    CostClass.MEM,
    "global[d+i] = buf[a+i]",
    ("d", R),
    ("a", R),
    ("n", OperandKind.COUNT),
    access="d:wg:n a:r:n",
)
# -- tile: moves between the core's local buffer and the memory its tile's cores share
TILE_LOAD = _row(
    "tile.load",
    0xC0,
    CostClass.TILE,
    "buf[d+i] = tile[a+i], from the memory shared by this core's tile",
    ("d", R),
    ("a", R),
    ("n", OperandKind.COUNT),
    access="d:w:n a:rt:n",
)
TILE_STORE = _row(
    "tile.store",
    0xC1,
    CostClass.TILE,
    "tile[d+i] = buf[a+i], into the memory shared by this core's tile",
    ("d", R),
    ("a", R),
    ("n", OperandKind.COUNT),
    access="d:wt:n a:r:n",
)
# -- noc: messages between cores; recv blocks until the matching send has arrived
NOC_SEND = _row(
    "noc.send",
    0x80,
    CostClass.NOC,
    "send buf[a:a+n] to core `core` + r[cr] with `tag`",
    ("core", OperandKind.CORE),
    ("cr", R),
    ("tag", OperandKind.TAG),
    ("a", R),
    ("n", OperandKind.COUNT),
    access="a:r:n",
    noc=Noc.SEND,
)
NOC_RECV = _row(
    "noc.recv",
    0x81,
    CostClass.NOC,
    "wait for the message from core `core` + r[cr] with `tag`; buf[d:d+n] = its data",
    ("core", OperandKind.CORE),
    ("cr", R),
    ("tag", OperandKind.TAG),
    ("d", R),
    ("n", OperandKind.COUNT),
    access="d:w:n",
    noc=Noc.RECV,
)
# -- acam: analog-CAM tree unit (DESIGN section 7). A feature is rank-coded against the
# thresholds of its coding table (one code per gap between thresholds, plus one for NaN) and
# the code is spread over the feature's cells: cell j gets clip(code - j (L - 1), 0, L - 1) for
# L levels per cell. A row holds per cell a range [low, high) of levels and matches when every
# cell's level lies in its range; rows are root-to-leaf paths, so one row per tree matches.
ACAM_ENCODE = _row(
    "acam.encode",
    0xA0,
    CostClass.ACAM_ENCODE,
    "buf[d:d+n] = DAC levels of the n CAM cells of coding table `table` for the k features "
    "buf[a:a+k]: per feature, its rank code (NaN has a level of its own) spread over its cells",
    ("d", R),
    ("a", R),
    ("table", OperandKind.CAM_CODE),
    ("n", OperandKind.COUNT, 12),
    ("k", OperandKind.COUNT, 12),
    access="d:w:n a:r:k",
    shape=Shape.CODING,
)
ACAM_SEARCH = _row(
    "acam.search",
    0xA1,
    CostClass.ACAM_SEARCH,
    "drive the levels buf[in:in+cols] (rounded, clipped to [0, L)) on `array`'s data lines; "
    "match vector of its rows into buf[out:out+ceil(rows/32)], 32 rows a word, ANDed with the "
    "vector already there if `chain` (a row spread over several arrays)",
    ("array", OperandKind.CAM),
    ("in", R),
    ("out", R),
    ("chain", OperandKind.FLAG),
    access="in:r:cols out:w:match",
    array=ArrayUse.READ,
)
ACAM_LEAF = _row(
    "acam.leaf",
    0xA2,
    CostClass.ACAM_LEAF,
    "buf[d+i] += leaf[r, i] of `array`'s leaf RAM for every row r set in the match vector at "
    "buf[m], one row after another in row order, for i < n (n = the leaf RAM's width); each "
    "sum rounded to float32 if `single` (a 32-bit accumulator), else float64",
    ("array", OperandKind.CAM),
    ("m", R),
    ("d", R),
    ("n", OperandKind.COUNT),
    ("single", OperandKind.FLAG),
    access="m:r:match d:w:n",
    array=ArrayUse.READ,
    shape=Shape.MATCHES,
    leaf_width="n",
)
ACAM_PROGRAM = _row(
    "acam.program",
    0xA3,
    CostClass.ACAM_PROGRAM,
    "write CAM image `image` (row bounds and leaf RAM) into `array` through the CAM device model",
    ("array", OperandKind.CAM),
    ("image", OperandKind.CAM_IMAGE),
    array=ArrayUse.PROGRAM,
)

TABLE: tuple[InstrSpec, ...] = (
    CTL_NOP,
    CTL_HALT,
    CTL_SET,
    CTL_ADD,
    CTL_LOOP,
    CTL_JUMP,
    CTL_BRANCH_EQ,
    CTL_BRANCH_NE,
    CTL_BRANCH_LT,
    XBAR_MVM,
    XBAR_PROGRAM,
    XBAR_MVM_BLOCK,
    SIMD_COPY,
    SIMD_ADD,
    SIMD_SUB,
    SIMD_MUL,
    SIMD_DIV,
    SIMD_MAX,
    SIMD_MIN,
    SIMD_ADD_S,
    SIMD_SUB_S,
    SIMD_MUL_S,
    SIMD_DIV_S,
    SIMD_SHIFTADD,
    SIMD_QUANT,
    SIMD_RELU,
    SIMD_SIGMOID,
    SIMD_TANH,
    SIMD_EXP,
    SIMD_RMAX,
    SIMD_RSUM,
    SIMD_RABSMAX,
    SIMD_ARGMAX,
    SIMD_ERF,
    SIMD_SQRT,
    SIMD_LOG,
    SIMD_COPY2D,
    MEM_LOAD,
    MEM_STORE,
    TILE_LOAD,
    TILE_STORE,
    NOC_SEND,
    NOC_RECV,
    ACAM_ENCODE,
    ACAM_SEARCH,
    ACAM_LEAF,
    ACAM_PROGRAM,
)

BY_MNEMONIC: dict[str, InstrSpec] = {}
BY_OPCODE: dict[int, InstrSpec] = {}


def _check(
    table: Iterable[InstrSpec],
    by_mnemonic: dict[str, InstrSpec],
    by_opcode: dict[int, InstrSpec],
) -> None:
    """Reject a malformed table at import: the rest of the toolchain trusts it blindly.

    Fills `by_mnemonic` and `by_opcode` as it goes (tests pass fresh dicts and crafted tables).
    """
    for spec in table:
        if spec.mnemonic in by_mnemonic:
            raise ValueError(f"duplicate mnemonic {spec.mnemonic!r} in the instruction table")
        if spec.opcode in by_opcode:
            other = by_opcode[spec.opcode].mnemonic
            raise ValueError(
                f"opcode {spec.opcode:#04x} of {spec.mnemonic!r} already belongs to {other!r}"
            )
        if not 0 <= spec.opcode < (1 << OPCODE_BITS):
            raise ValueError(f"opcode {spec.opcode:#x} of {spec.mnemonic!r} overflows its field")
        Unit(spec.mnemonic.split(".", 1)[0])  # the prefix must name a unit
        _check_fields(spec)
        kinds = {f.name: f.kind for f in spec.fields}
        _check_accesses(spec, kinds)
        _check_facts(spec, kinds)
        by_mnemonic[spec.mnemonic] = spec
        by_opcode[spec.opcode] = spec


def _check_fields(spec: InstrSpec) -> None:
    """Fields inside the operand bits, not overlapping, with distinct names."""
    used = 0
    for field in spec.fields:
        if field.width <= 0 or field.lsb < 0 or field.lsb + field.width > OPCODE_LSB:
            raise ValueError(
                f"field {field.name!r} of {spec.mnemonic!r} at bits "
                f"[{field.lsb}, {field.lsb + field.width}) spills out of the operand bits"
            )
        bits_max = (1 << (field.width - int(field.kind.signed))) - 1
        if field.top is not None and not 0 <= field.top <= bits_max:
            raise ValueError(
                f"field {field.name!r} of {spec.mnemonic!r} allows up to {field.top}, more "
                f"than its {field.width} bits hold"
            )
        if used & field.mask:
            raise ValueError(f"field {field.name!r} of {spec.mnemonic!r} overlaps another")
        used |= field.mask
    if len({f.name for f in spec.fields}) != len(spec.fields):
        raise ValueError(f"{spec.mnemonic!r} repeats an operand name")


def _check_accesses(spec: InstrSpec, kinds: dict[str, OperandKind]) -> None:
    """Every access starts at a register operand and has an extent the readers can size."""
    for access in spec.accesses:
        if kinds.get(access.field) is not OperandKind.REG:
            raise ValueError(f"access {access.field!r} of {spec.mnemonic!r} is not a register")
        if access.extent in STRIDED_EXTENTS:
            if not {"n", "m", STRIDE_FIELD} <= kinds.keys() or kinds[STRIDE_FIELD] is not R:
                raise ValueError(
                    f"{spec.mnemonic!r} has a strided access but no n, m and stride register s"
                )
            continue
        for term in access.extent.split("*"):
            if term not in IMAGE_EXTENTS and kinds.get(term) is not OperandKind.COUNT:
                raise ValueError(
                    f"{spec.mnemonic!r} has an access of extent {access.extent!r}, whose "
                    f"{term!r} is neither 1, rows, cols, match nor a count operand"
                )


def _check_facts(spec: InstrSpec, kinds: dict[str, OperandKind]) -> None:
    """The per-row facts name operands the row has, of the kinds the readers assume."""
    _check_array_facts(spec, kinds)
    if spec.span and spec.array is not ArrayUse.READ:
        raise ValueError(f"{spec.mnemonic!r} spans arrays but reads none")
    for fact in ("repeat", "span", "leaf_width"):
        name = getattr(spec, fact)
        if name and kinds.get(name) is not OperandKind.COUNT:
            raise ValueError(f"{fact} {name!r} of {spec.mnemonic!r} is not a count operand")
    if spec.macs and any(
        term not in IMAGE_EXTENTS and kinds.get(term) is not OperandKind.COUNT
        for term in spec.macs.split("*")
    ):
        raise ValueError(f"macs {spec.macs!r} of {spec.mnemonic!r} names an unknown extent")
    sized = any(set(a.extent.split("*")) & {"rows", "cols", "match"} for a in spec.accesses)
    if sized and spec.array is not ArrayUse.READ:
        raise ValueError(f"{spec.mnemonic!r} has an access sized by an image it does not read")
    if spec.accesses and spec.array is ArrayUse.PROGRAM:  # the readers size none by it
        raise ValueError(f"{spec.mnemonic!r} programs an array and touches memory")
    if spec.noc is not Noc.NONE and not (
        kinds.get("core") is OperandKind.CORE and kinds.get(PEER_FIELD) is OperandKind.REG
    ):  # the peer is core + r[cr] (the engines, the loader and isa/protocol.py read both)
        raise ValueError(f"{spec.mnemonic!r} is a message with no core and cr operands")
    if spec.strided and not (
        kinds.get(STRIDE_FIELD) is OperandKind.REG and spec.repeat == "m"
    ):  # the cost model prices a block copy as its m rows
        raise ValueError(f"{spec.mnemonic!r} copies a strided block but does not repeat by m")
    if spec.function and list(kinds) != ["d", "a", "b", "n"]:  # the semantics' d = f(a, b)
        raise ValueError(f"{spec.mnemonic!r} applies {spec.function!r} but is not d, a, b, n")
    _check_scalar_facts(spec, kinds)


# The operands (name, kind) a row needs for its Scalar effect, as the static passes read them.
_SCALAR_OPERANDS = {
    Scalar.NONE: (),
    Scalar.SET: (("d", OperandKind.REG), ("imm", OperandKind.IMM)),
    Scalar.ADD: (("d", OperandKind.REG), ("a", OperandKind.REG), ("imm", OperandKind.IMM)),
    Scalar.COUNT: (
        ("c", OperandKind.REG),
        ("trips", OperandKind.COUNT),
        ("target", OperandKind.TARGET),
    ),
}


def _check_scalar_facts(spec: InstrSpec, kinds: dict[str, OperandKind]) -> None:
    for name, kind in _SCALAR_OPERANDS[spec.scalar]:
        if kinds.get(name) is not kind:
            raise ValueError(
                f"{spec.mnemonic!r} is a {spec.scalar.value} of the registers with no "
                f"{kind.value} operand {name!r}"
            )


def _check_array_facts(spec: InstrSpec, kinds: dict[str, OperandKind]) -> None:
    """ARRAY / CAM operands against `array` and `shape`, and coding tables against `shape`."""
    arrays = [f for f in spec.fields if f.kind in ARRAY_NOUNS]
    if (spec.array is ArrayUse.NONE) != (not arrays) or len(arrays) > 1:
        raise ValueError(f"{spec.mnemonic!r} has an array operand exactly when it uses an array")
    if spec.array is ArrayUse.PROGRAM and spec.image_index is None:
        raise ValueError(f"{spec.mnemonic!r} programs an array but names no image for it")
    if spec.leaf_width and spec.shape is not Shape.MATCHES:
        raise ValueError(f"{spec.mnemonic!r} checks a leaf width but does not read leaves")
    if spec.shape is Shape.MATCHES and not (
        spec.array is ArrayUse.READ and arrays[0].kind is OperandKind.CAM
    ):
        raise ValueError(f"{spec.mnemonic!r} is priced on matches but reads no CAM array")
    if spec.shape in (Shape.HELD, Shape.PROGRAMMED) and spec.shape is not _SHAPE_OF[spec.array]:
        raise ValueError(f"{spec.mnemonic!r} is priced on an image it does not use")
    coding = OperandKind.CAM_CODE in kinds.values()
    if (spec.shape is Shape.CODING) != coding:
        raise ValueError(f"{spec.mnemonic!r} is priced on a coding table exactly when it names one")
    if coding and not (kinds.get("n") is kinds.get("k") is OperandKind.COUNT):
        # the loader checks the table fills n cells from features below k
        raise ValueError(f"{spec.mnemonic!r} names a coding table but no counts n and k")


_check(TABLE, BY_MNEMONIC, BY_OPCODE)


def lookup(mnemonic: str) -> InstrSpec:
    """The row for a mnemonic; KeyError if there is none."""
    return BY_MNEMONIC[mnemonic]
