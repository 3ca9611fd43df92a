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


class Space(enum.Enum):
    """Where an address operand points."""

    BUFFER = "buffer"  # the executing core's local buffer
    GLOBAL = "global"  # the chip's global memory


# A CAM match vector is packed MATCH_BITS rows to a buffer word: row r is bit r % MATCH_BITS
# of word r // MATCH_BITS (a float64 word holds a 32-bit mask exactly).
MATCH_BITS = 32
# Extents fixed by the array's image; any other extent names a COUNT operand.
IMAGE_EXTENTS = ("1", "rows", "cols", "match")
# Extents of a strided block copy, from its n, m and its three stride registers.
STRIDED_EXTENTS = ("strided-dst", "strided-src")


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

    @property
    def strided(self) -> bool:
        return self.extent.startswith("strided")


_UNITS: dict[str, Unit] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class InstrSpec:
    """One row of the table."""

    mnemonic: str
    opcode: int
    fields: tuple[Field, ...]
    cost: CostClass
    doc: str
    accesses: tuple[Access, ...] = ()

    @property
    def unit(self) -> Unit:
        unit = _UNITS.get(self.mnemonic)
        if unit is None:  # asked once per mnemonic: the simulators ask on every instruction
            unit = _UNITS[self.mnemonic] = Unit(self.mnemonic.split(".", 1)[0])
        return unit

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
) -> InstrSpec:
    """`access` lists the memory ranges touched, e.g. "d:w:n a:r:n b:r:1 x:rg:n": field,
    r/w (read/write) plus g for global memory, and the extent."""
    accesses = []
    for item in access.split():
        name, mode, extent = item.split(":")
        space = Space.GLOBAL if "g" in mode else Space.BUFFER
        accesses.append(Access(name, space, extent, "w" in mode))
    return InstrSpec(
        mnemonic=mnemonic,
        opcode=opcode,
        fields=_pack(*operands),
        cost=cost,
        doc=doc,
        accesses=tuple(accesses),
    )


_VEC3 = (("d", R), ("a", R), ("b", R), ("n", OperandKind.COUNT))
_VEC2 = (("d", R), ("a", R), ("n", OperandKind.COUNT))

# Each row is also a module constant (spec.SIMD_ADD): the rest of the code names instructions
# through these, so no mnemonic string is spelled outside this file. Opcodes are grouped by unit
# in blocks of 0x20 so a unit can grow without renumbering another.
# -- ctl: scalar control; registers are batch-uniform, so control flow never depends on data
CTL_NOP = _row("ctl.nop", 0x00, CostClass.CTL, "do nothing for one cycle")
CTL_HALT = _row("ctl.halt", 0x01, CostClass.CTL, "stop this core")
CTL_SET = _row("ctl.set", 0x02, CostClass.CTL, "r[d] = imm", ("d", R), ("imm", OperandKind.IMM, 48))
CTL_ADD = _row(
    "ctl.add",
    0x03,
    CostClass.CTL,
    "r[d] = r[a] + imm",
    ("d", R),
    ("a", R),
    ("imm", OperandKind.IMM, 32),
)
CTL_LOOP = _row(
    "ctl.loop",
    0x04,
    CostClass.CTL,
    "r[c] = r[c] - 1; jump to target while r[c] > 0",
    ("c", R),
    ("target", OperandKind.TARGET),
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
    "buf[out:out+cols] = ADC(x . G) for x = buf[in:in+rows] as `bits`-bit integers "
    "(two's complement if `signed`), applied dac_bits per step and shift-added per step",
    ("array", OperandKind.ARRAY),
    ("in", R),
    ("out", R),
    ("bits", OperandKind.BITS),
    ("signed", OperandKind.FLAG),
    access="in:r:rows out:w:cols",
)
XBAR_PROGRAM = _row(
    "xbar.program",
    0x21,
    CostClass.XBAR_PROGRAM,
    "write crossbar image `image` into `array` through the device model",
    ("array", OperandKind.ARRAY),
    ("image", OperandKind.IMAGE),
)
XBAR_MVM_BLOCK = _row(
    "xbar.mvmb",
    0x22,
    CostClass.XBAR_MVM,
    "m MVMs streamed through one array, input and output stored row by row of the array: "
    "buf[out + c*m + j] = ADC(x_j . G)[c] for x_j[i] = buf[in + i*m + j], j < m (as xbar.mvm)",
    ("array", OperandKind.ARRAY),
    ("in", R),
    ("out", R),
    ("bits", OperandKind.BITS),
    ("signed", OperandKind.FLAG),
    ("m", OperandKind.COUNT),
    access="in:r:rows*m out:w:cols*m",
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
)
SIMD_SUB = _row(
    "simd.sub",
    0x42,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] - buf[b+i]",
    *_VEC3,
    access="d:w:n a:r:n b:r:n",
)
SIMD_MUL = _row(
    "simd.mul",
    0x43,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] * buf[b+i]",
    *_VEC3,
    access="d:w:n a:r:n b:r:n",
)
SIMD_DIV = _row(
    "simd.div",
    0x44,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] / buf[b+i]",
    *_VEC3,
    access="d:w:n a:r:n b:r:n",
)
SIMD_MAX = _row(
    "simd.max",
    0x45,
    CostClass.SIMD_ARITH,
    "buf[d+i] = max(buf[a+i], buf[b+i])",
    *_VEC3,
    access="d:w:n a:r:n b:r:n",
)
SIMD_ADD_S = _row(
    "simd.add.s",
    0x46,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] + buf[b]",
    *_VEC3,
    access="d:w:n a:r:n b:r:1",
)
SIMD_SUB_S = _row(
    "simd.sub.s",
    0x47,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] - buf[b]",
    *_VEC3,
    access="d:w:n a:r:n b:r:1",
)
SIMD_MUL_S = _row(
    "simd.mul.s",
    0x48,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] * buf[b]",
    *_VEC3,
    access="d:w:n a:r:n b:r:1",
)
SIMD_DIV_S = _row(
    "simd.div.s",
    0x49,
    CostClass.SIMD_ARITH,
    "buf[d+i] = buf[a+i] / buf[b]",
    *_VEC3,
    access="d:w:n a:r:n b:r:1",
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
# -- noc: messages between cores; recv blocks until the matching send has arrived
NOC_SEND = _row(
    "noc.send",
    0x80,
    CostClass.NOC,
    "send buf[a:a+n] to core `core` with `tag`",
    ("core", OperandKind.CORE),
    ("tag", OperandKind.TAG),
    ("a", R),
    ("n", OperandKind.COUNT),
    access="a:r:n",
)
NOC_RECV = _row(
    "noc.recv",
    0x81,
    CostClass.NOC,
    "wait for the message from core `core` with `tag`; buf[d:d+n] = its data",
    ("core", OperandKind.CORE),
    ("tag", OperandKind.TAG),
    ("d", R),
    ("n", OperandKind.COUNT),
    access="d:w:n",
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
)
ACAM_PROGRAM = _row(
    "acam.program",
    0xA3,
    CostClass.ACAM_PROGRAM,
    "write CAM image `image` (row bounds and leaf RAM) into `array` through the CAM device model",
    ("array", OperandKind.CAM),
    ("image", OperandKind.CAM_IMAGE),
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
        kinds = {f.name: f.kind for f in spec.fields}
        for access in spec.accesses:
            if kinds.get(access.field) is not OperandKind.REG:
                raise ValueError(f"access {access.field!r} of {spec.mnemonic!r} is not a register")
            if access.extent in STRIDED_EXTENTS:
                if not {"n", "m", "s"} <= kinds.keys() or kinds["s"] is not OperandKind.REG:
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
        by_mnemonic[spec.mnemonic] = spec
        by_opcode[spec.opcode] = spec


_check(TABLE, BY_MNEMONIC, BY_OPCODE)


def lookup(mnemonic: str) -> InstrSpec:
    """The row for a mnemonic; KeyError if there is none."""
    return BY_MNEMONIC[mnemonic]
