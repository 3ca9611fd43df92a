"""Code generation: the scheduled graph -> isa.Program (code, crossbar images, constants, I/O).

Before: every op has `core`; every QDense has tiles and placement. After: the emit pass
(compiler/passes/emit.py) holds the Program. Global memory holds the constants the SIMD code needs,
then the model inputs, then the outputs. Values live in the local buffers of the cores that
compute them; a value needed on another core is sent over the network once and cached there,
copies fanning out as a tree (each holder forwards). A value too large for a buffer rests in
a tile's shared memory or in global memory instead (`rest`, `Resident`), and the lowerings
that read it take it in parts; cores that share a memory are ordered by one-word tokens.
Every send is emitted before its receive in one global order, so the code cannot deadlock.
Each core's instructions are recorded with addresses for operands; compiler/codegen/loops.py
rolls what repeats into loops and allocates the registers. Arrays are
bound to their images at load, or, when the model runs in phases, programmed in the code
before each use.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from imcc.compiler.codegen.loops import Record, assemble
from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, Op, Value
from imcc.isa import spec
from imcc.isa.acam import CamCode, CamImage
from imcc.isa.diagnostics import CompileError
from imcc.isa.encoding import Instr
from imcc.isa.program import Binding, Program, TensorInfo, XbarImage
from imcc.isa.target import Target

if TYPE_CHECKING:  # the emit pass passes its Context; the emitter imports no pass
    from imcc.compiler.passes.manager import Context

_IO_DTYPES = ("int64", "int32", "float64")


class Buffer:
    """First-fit allocator over one memory: a core's local buffer, a tile's shared memory or
    the global memory (`owner` names it in errors)."""

    def __init__(self, words: int, owner: str, word_bytes: int = 0) -> None:
        self.words, self.owner, self.word_bytes = words, owner, word_bytes
        self.free: list[tuple[int, int]] = [(0, words)]  # (start, size), sorted
        self.peak = 0

    def alloc(self, size: int, what: str) -> int:
        if size == 0:  # an empty tensor occupies nothing
            return 0
        for i, (start, free) in enumerate(self.free):
            if free >= size:
                self.free[i] = (start + size, free - size)
                if self.free[i][1] == 0:
                    del self.free[i]
                self.peak = max(self.peak, start + size)
                return start
        in_bytes = f" = {size * self.word_bytes:,} bytes" if self.word_bytes else ""
        raise CompileError(
            f"{self.owner} cannot hold {size:,} more words{in_bytes} for {what} (the largest "
            f"free run is {self.largest():,} words); use a target with more memory there, or "
            "more cores"
        )

    def largest(self) -> int:
        """The largest run of free words."""
        return max((n for _, n in self.free), default=0)

    def release(self, start: int, size: int) -> None:
        if size == 0:
            return
        assert all(start + size <= s or s + n <= start for s, n in self.free), (
            f"{self.owner}: words [{start}, {start + size}) released twice"
        )
        self.free.append((start, size))
        self.free.sort()
        merged: list[tuple[int, int]] = []
        for s, n in self.free:
            if merged and merged[-1][0] + merged[-1][1] == s:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((s, n))
        self.free = merged


class CoreCode:
    """One core's program under construction: its buffer and its instruction records, which
    compiler/codegen/loops.py turns into code (loops rolled, registers allocated)."""

    def __init__(self, core: int, target: Target) -> None:
        self.core = core
        self.records: list[Record] = []
        self.buffer = Buffer(
            target.core.buffer_words,
            f"core {core}'s {target.core.buffer_words:,}-word buffer",
            target.core.word_bytes,
        )
        self.node = ""

    def copy2d(self, dst: int, src: int, n: int, m: int, strides: tuple[int, int, int]) -> None:
        """buf[dst + j*strides[2] + i] = buf[src + j*strides[1] + i*strides[0]], i < n, j < m."""
        if n and m:
            self.emit(spec.SIMD_COPY2D, dst, src, 0, n, m, strides=strides)

    def emit(
        self, row: spec.InstrSpec, *operands: int, strides: tuple[int, int, int] | None = None
    ) -> None:
        """Append `row` with its operands; REG operands are given as addresses, but for the
        stride operand `s` of a strided copy, whose `strides` are given instead. An
        instruction over zero elements does nothing and is left out; an elementwise one over
        more elements than a count field holds becomes several over consecutive chunks."""
        counts = [i for i, f in enumerate(row.fields) if f.kind is spec.OperandKind.COUNT]
        over = next((i for i in counts if operands[i] > row.fields[i].max), None)
        if over is not None and strides is None:
            self.emit_chunked(row, operands, over)
            return
        if any(operands[i] == 0 for i in counts):
            return
        self.records.append(Record(row, tuple(int(v) for v in operands), strides, self.node))

    def emit_chunked(self, row: spec.InstrSpec, operands: tuple[int, ...], count: int) -> None:
        """`row` over n > spec.MAX_COUNT elements as instructions over chunks: every n-long range
        moves with the chunk, one-word operands stay. Only elementwise rows split so."""
        names = [f.name for f in row.fields]
        count_name = names[count]
        moving = {a.field for a in row.accesses if a.extent == count_name}
        fixed = {a.field for a in row.accesses if a.extent == "1"}
        if (
            not moving
            or any(a.writes for a in row.accesses if a.field in fixed)
            or (moving | fixed != {a.field for a in row.accesses})
        ):
            raise CompileError(
                f"{row.mnemonic} over {operands[count]:,} elements exceeds the "
                f"{spec.MAX_COUNT:,}-element count field, and it is not elementwise"
            )
        total = operands[count]
        for start in range(0, total, spec.MAX_COUNT):
            chunk = list(operands)
            chunk[count] = min(spec.MAX_COUNT, total - start)
            for i, name in enumerate(names):
                if name in moving:
                    chunk[i] += start
            self.emit(row, *chunk)


@dataclass
class Local:
    addr: int
    size: int


@dataclass(eq=False, slots=True)
class Resident:
    """Where a value rests outside the core buffers: a tile's shared memory (space TILE,
    reached by that tile's cores) or the global memory (space GLOBAL, tile -1). A value rests
    there when it is too large to keep in a buffer; lowerings move the parts they work on.

    Cores reach memory without messages, so the emitter orders them with tokens (one-word
    messages, Emitter.move): a core reads only after every other core that wrote the value
    has sent it a token, and writes only after every core that used the words before (a
    freed value's readers and writers, `waits`) has."""

    space: spec.Space
    tile: int
    addr: int
    size: int
    writers: set[int] = dataclass_field(default_factory=set)
    users: set[int] = dataclass_field(default_factory=set)  # cores that read or wrote it
    waits: set[int] = dataclass_field(default_factory=set)  # users of the words before
    can_read: set[int] = dataclass_field(default_factory=set)  # cores past their tokens
    can_write: set[int] = dataclass_field(default_factory=set)


# Where a lowering reads a value's words from: memory (where it rests), or a core's buffer
# (core, address), for lowerings that take a value in parts either way (Emitter.fetch).
Source = Resident | tuple[int, int]


class Memory(Buffer):
    """A Buffer shared by cores (a tile's memory, values resting in global memory): it
    remembers who used freed words, so the next value there waits for them."""

    def __init__(self, words: int, owner: str, word_bytes: int = 0) -> None:
        super().__init__(words, owner, word_bytes)
        self.used: list[tuple[int, int, set[int]]] = []  # freed (start, size, its users)

    def take(self, size: int, what: str) -> tuple[int, set[int]]:
        """(start, the cores that used those words before)."""
        start = self.alloc(size, what)
        waits = set()
        for s, n, users in self.used:
            if s < start + size and start < s + n:
                waits |= users
        return start, waits

    def give_back(self, start: int, size: int, users: set[int]) -> None:
        self.release(start, size)
        if users:
            self.used.append((start, size, users))


@dataclass
class Sections:
    """The parts of the Program that lowerings add to, beside the code: crossbar images and
    their bindings (and ADC ranges), and the analog-CAM unit's images, bindings and coding
    tables."""

    images: list[XbarImage] = dataclass_field(default_factory=list)
    bindings: list[Binding] = dataclass_field(default_factory=list)
    adc_ranges: dict[int, np.ndarray] = dataclass_field(default_factory=dict)
    cam_images: list[CamImage] = dataclass_field(default_factory=list)
    cam_bindings: list[Binding] = dataclass_field(default_factory=list)
    cam_codes: list[CamCode] = dataclass_field(default_factory=list)


LoweringFn = Callable[["Emitter", Any], None]
F = TypeVar("F", bound=LoweringFn)


@dataclass(frozen=True, slots=True)
class Lowering:
    """How one IR op class becomes code: `emit(emitter, op)`. A lowering with `when` applies
    only where when(emitter, op) holds, and is tried before the op's unconditional one; an op
    for which `defer(graph, op)` holds emits nothing itself: the lowering of its user gathers
    it (Emitter.deferred)."""

    emit: LoweringFn
    when: Callable[[Emitter, Any], bool] | None = None
    defer: Callable[[Graph, Any], bool] | None = None


# IR op class -> its lowerings, conditional ones first. Filled by @lowers in the lowering
# modules of this package (imported by compiler/codegen/__init__.py).
LOWERINGS: dict[type[Op], list[Lowering]] = {}


def lowers(
    *kinds: type[Op],
    when: Callable[[Emitter, Any], bool] | None = None,
    defer: Callable[[Graph, Any], bool] | None = None,
) -> Callable[[F], F]:
    """Register the decorated function as the lowering of the op classes `kinds`."""

    def decorate(emit: F) -> F:
        for kind in kinds:
            entries = LOWERINGS.setdefault(kind, [])
            entry = Lowering(emit, when, defer)
            if when is None:
                if any(e.when is None for e in entries):
                    raise ValueError(f"{kind.__name__} has two unconditional lowerings")
                entries.append(entry)
            else:
                entries.insert(0, entry)
        return emit

    return decorate


class Emitter:
    """The services lowerings use (compiler/codegen/*.py, one module per op family): each
    core's code and buffer, global memory and its constants, values and their copies on
    cores, transfers, and the Program's sections. It imports no lowering and no pass."""

    def __init__(self, graph: Graph, ctx: Context, *, loops: bool = True) -> None:
        self.graph, self.target, self.options = graph, ctx.target, ctx.options
        self.loops = loops
        self.cores = [CoreCode(c, ctx.target) for c in range(ctx.target.chip.cores)]
        self.copies: dict[int, dict[int, Local]] = {}  # id(value) -> core -> location
        self.global_addr: dict[int, int] = {}  # id(value) -> global memory address
        self.const_blocks: list[tuple[int, np.ndarray]] = []
        self.const_index: dict[bytes, int] = {}
        words = ctx.target.chip.global_memory_words
        # Global memory holds constants and the model's inputs and outputs from the bottom up
        # (never freed: the loader writes the constants before the run) and values resting
        # there from the top down (freed after their last use), so the two never meet.
        size = ctx.target.core.word_bytes
        self.globals = Buffer(words, f"the {words:,}-word global memory", size)
        self.spills = Memory(words, f"the {words:,}-word global memory", size)
        tile = ctx.target.tile
        self.tile_memory = [
            Memory(tile.memory_words, f"tile {t}'s {tile.memory_words:,}-word shared memory", size)
            for t in range(ctx.target.tiles)
            if tile is not None
        ]
        self.resident: dict[int, Resident] = {}  # id(value) -> where it rests in memory
        self.token_words: dict[int, int] = {}  # core -> the buffer word tokens arrive in
        # id(value) -> the value whose words it names (Emitter.alias), for shared liveness
        self.alias_of: dict[int, int] = {}
        self.sections = Sections()
        self.remaining_uses: dict[int, int] = {}
        self.pinned: set[int] = {id(v) for v in graph.outputs}  # never released
        self.const_cache: dict[tuple[int, bytes], int] = {}
        # id(result) -> the op whose code its user emits (Lowering.defer: a streamed Im2Col)
        self.deferred: dict[int, Op] = {}
        self.fanout: dict[int, dict[int, int]] = {}  # id(value) -> holder -> its transfers
        # (id(op), tile) -> the image programmed right before that tile's MVM
        self.program_before_mvm: dict[tuple[int, int], int] = {}
        # (core, array) -> how many tiles it serves: more than one when the model runs in phases
        self.slot_uses = Counter(
            slot
            for op in graph.walk(ops.QDense)
            for placement in (op.placement, *op.copies)
            for slot in placement
        )
        # ids of convolution results held channel-major (O, P), as their Transpose wants them
        self.channel_major: set[int] = set()

    # -- global memory ----------------------------------------------------------------------
    def global_alloc(self, size: int, what: str = "constants") -> int:
        addr = self.globals.alloc(size, what)
        self.check_global(what)
        return addr

    def check_global(self, what: str) -> None:
        words = self.target.chip.global_memory_words
        if self.globals.peak + self.spills.peak > words:
            need = (self.globals.peak + self.spills.peak) * self.target.core.word_bytes
            raise CompileError(
                f"the {words:,}-word global memory cannot hold {what}: constants and model I/O "
                f"take {self.globals.peak:,} words and values resting there "
                f"{self.spills.peak:,} at the most ({need:,} bytes in all)"
            )

    # -- memory levels beyond the buffers ---------------------------------------------------
    def large(self, value: Value, core: int | None = None) -> bool:
        """Whether `value` is too large to keep in a core's buffer while a layer works on
        it: more than a quarter of the buffer, or, made on `core`, more than half of what
        that buffer has free in one run. Lowerings that move parts of values rest such
        values in memory (Emitter.rest)."""
        size = value.type.size
        if size > self.target.core.buffer_words // 4:
            return True
        return core is not None and size > self.cores[core].buffer.largest() // 2

    def rest(self, value: Value, cores: set[int]) -> Resident:
        """Room for `value` in memory, read and written by `cores`: the shared memory of
        their tile when they all sit in one and it has room, else the global memory."""
        size = value.type.size
        tiles = {self.target.tile_of(c) for c in cores}
        res = None
        if self.tile_memory and len(tiles) == 1:
            (tile,) = tiles
            memory = self.tile_memory[tile]
            if memory.largest() >= size:
                start, waits = memory.take(size, value.name)
                res = Resident(spec.Space.TILE, tile, start, size, waits=waits)
        if res is None:
            what = f"{value.name!r} (too large for a buffer)"
            start, waits = self.spills.take(size, what)
            self.check_global(what)
            words = self.target.chip.global_memory_words
            res = Resident(spec.Space.GLOBAL, -1, words - start - size, size, waits=waits)
        self.resident[id(value)] = res
        return res

    def resting(self, value: Value) -> Resident | None:
        """Where `value` rests in memory: a rested value's place, or a model input's."""
        key = self.root(id(value))
        if key in self.resident:
            return self.resident[key]
        if key in self.global_addr:
            return Resident(spec.Space.GLOBAL, -1, self.global_addr[key], value.type.size)
        return None

    def readers(self, value: Value) -> set[int]:
        """The cores whose code reads `value`: its users' cores, through the ops that only
        rename its words (Reshape, a convolution's Transpose), and the first cores of the
        weights' copies of a crossbar layer that reads it."""
        cores: set[int] = set()
        for user in self.graph.users(value):
            if isinstance(user, ops.Reshape | ops.Transpose | ops.Im2Col):
                cores |= self.readers(user.outputs[0])
            cores.add(user.core)
            if isinstance(user, ops.QDense):
                cores |= {core for core, _ in user.placement}
                cores |= {core for copy in user.copies for core, _ in copy}
        return cores

    def move(self, core: int, res: Resident, offset: int, addr: int, n: int, *, load: bool) -> None:
        """Words [offset, offset + n) of a resting value to (load) or from core's buffer at
        `addr`: a tile access for a value in the core's tile, else a global one."""
        if res.space is spec.Space.TILE:
            assert self.target.tile_of(core) == res.tile, (core, res)
            row = spec.TILE_LOAD if load else spec.TILE_STORE
        else:
            row = spec.MEM_LOAD if load else spec.MEM_STORE
        ready = res.can_read if load else res.can_write
        if core not in ready:  # tokens from the cores this one must follow, once
            for other in sorted((res.writers if load else res.waits) - {core}):
                self.token(other, core)
            ready.add(core)
        res.users.add(core)
        if not load:
            res.writers.add(core)
        if load:
            self.cores[core].emit(row, addr, res.addr + offset, n)
        else:
            self.cores[core].emit(row, res.addr + offset, addr, n)

    def holder(self, value: Value) -> int:
        """A core whose buffer holds `value` (the lowest), or the core of its producer."""
        here = self.copies.get(self.root(id(value)))
        if here:
            return min(here)
        return value.producer.core if value.producer is not None else 0

    def source(self, value: Value, core: int) -> Source:
        """Where `core` reads `value` in parts: where it rests, if `core` reaches that
        memory, else its own buffer (loading or receiving the value whole)."""
        res = self.resting(value)
        if res is not None and (res.space is spec.Space.GLOBAL or res.tile == self.tile(core)):
            return res
        return (core, self.local(value, core))

    def fetch(self, core: int, source: Source, offset: int, dst: int, n: int) -> None:
        """Words [offset, offset + n) of a value into core's buffer at dst."""
        if isinstance(source, Resident):
            self.move(core, source, offset, dst, n, load=True)
        else:
            holder, addr = source
            assert holder == core, (holder, core)
            self.cores[core].emit(spec.SIMD_COPY, dst, addr + offset, n)

    def token(self, src: int, dst: int) -> None:
        """A one-word message from src to dst: dst's later code runs after src's earlier."""
        word = self.token_words.get(dst)
        if word is None:
            word = self.token_words[dst] = self.cores[dst].buffer.alloc(1, "tokens")
        self.transfer(src, self.const_local(src, 0.0), dst, word, 1)

    def root(self, key: int) -> int:
        """The value (by id) whose words `key` names: itself, or what it aliases."""
        while key in self.alias_of:
            key = self.alias_of[key]
        return key

    def constant_addr(self, values: np.ndarray) -> int:
        flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        key = flat.tobytes()
        if key not in self.const_index:
            addr = self.global_alloc(flat.size)
            self.const_blocks.append((addr, flat))
            self.const_index[key] = addr
        return self.const_index[key]

    # -- values -----------------------------------------------------------------------------
    def local(self, value: Value, core: int) -> int:
        """Address of `value` in `core`'s buffer, loading or receiving it if needed."""
        key = self.root(id(value))
        here = self.copies.setdefault(key, {})
        if core in here:
            return here[core].addr
        size = value.type.size
        cc = self.cores[core]
        addr = cc.buffer.alloc(size, f"{value.name!r}")
        constant = self.graph.constant(value)
        res = self.resting(value)
        if constant is not None:
            cc.emit(spec.MEM_LOAD, addr, self.constant_addr(constant), size)
        elif res is not None and (res.space is spec.Space.GLOBAL or res.tile == self.tile(core)):
            self.move(core, res, 0, addr, size, load=True)
        elif res is not None:  # in another tile's memory: a core of that tile fetches it
            proxy = min(c for c in range(len(self.cores)) if self.tile(c) == res.tile)
            staged = self.cores[proxy].buffer.alloc(size, f"{value.name!r}")
            self.move(proxy, res, 0, staged, size, load=True)
            self.transfer(proxy, staged, core, addr, size)
            self.cores[proxy].buffer.release(staged, size)
        else:
            # Copies fan out as a tree: the sender is the holder that is free first, counting
            # in transfers of this value (each copy forwards too: 1, 2, 4, ... holders).
            busy = self.fanout.setdefault(key, {})
            src = min(here, key=lambda c: (busy.get(c, 0), c))
            self.transfer(src, here[src].addr, core, addr, size)
            busy[src] = busy[core] = busy.get(src, 0) + 1
        here[core] = Local(addr, size)
        return addr

    def transfer(self, src: int, src_addr: int, dst: int, dst_addr: int, size: int) -> None:
        # One tag serves every message: a (sender, receiver, tag) mailbox is first in, first
        # out, and a pair's receives are emitted in the order of its sends. So a loop of
        # transfers repeats the same instructions (compiler/codegen/loops.py). The peer is
        # recorded in register cr, as an address is, so transfers to consecutive cores roll
        # into a loop stepping it; straight code names it by the core operand instead.
        self.cores[src].emit(spec.NOC_SEND, 0, dst, 0, src_addr, size)
        self.cores[dst].emit(spec.NOC_RECV, 0, src, 0, dst_addr, size)

    def define(self, value: Value, core: int, addr: int) -> None:
        self.copies[id(value)] = {core: Local(addr, value.type.size)}

    def tile(self, core: int) -> int:
        return self.target.tile_of(core)

    def release_dead(self, op: Op) -> None:
        """Free buffers and memory of operands whose last user was `op` (outputs stay until
        stored); names of one value's words (Emitter.alias) share one count of uses."""
        for value in op.inputs:
            key = self.root(id(value))
            self.remaining_uses[key] -= 1
            if self.remaining_uses[key] == 0 and key not in self.pinned:
                for core, loc in self.copies.pop(key, {}).items():
                    self.cores[core].buffer.release(loc.addr, loc.size)
                res = self.resident.pop(key, None)
                if res is not None and res.tile >= 0:
                    self.tile_memory[res.tile].give_back(res.addr, res.size, res.users)
                elif res is not None:  # spills count from the top of global memory
                    words = self.target.chip.global_memory_words
                    self.spills.give_back(words - res.addr - res.size, res.size, res.users)

    # -- services for lowerings ---------------------------------------------------------
    def broadcast(
        self, value: Value, core: int, shape: tuple[int, ...], temps: list[tuple[int, int]]
    ) -> int:
        """`value` as a full `shape` vector in `core`'s buffer (numpy broadcasting rules).
        A constant is broadcast at compile time; a computed value by copying the runs of
        consecutive elements that the broadcast repeats. Scratch buffers go on `temps`."""
        size = int(np.prod(shape, dtype=np.int64))
        if value.type.size == size:
            return self.local(value, core)
        cc = self.cores[core]
        addr = cc.buffer.alloc(size, f"{value.name!r} broadcast")
        temps.append((addr, size))
        constant = self.graph.constant(value)
        if constant is not None:
            cc.emit(spec.MEM_LOAD, addr, self.constant_addr(np.broadcast_to(constant, shape)), size)
            return addr
        source = self.local(value, core)
        index = np.broadcast_to(np.arange(value.type.size).reshape(value.shape), shape).ravel()
        # runs where the source index goes up by one: each is one vector copy
        breaks = np.flatnonzero(np.diff(index) != 1) + 1
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, size], strict=True):
            cc.emit(
                spec.SIMD_COPY, addr + int(start), source + int(index[start]), int(stop - start)
            )
        return addr

    def reduce(self, core: int, row: spec.InstrSpec, dst: int, src: int, n: int) -> None:
        """buf[dst] = the reduction `row` (rsum, rmax, rabsmax) of n words, in chunks that fit
        a count field, then the same reduction over the chunks' results."""
        cc = self.cores[core]
        if n <= spec.MAX_COUNT:
            cc.emit(row, dst, src, n)
            return
        chunks = -(-n // spec.MAX_COUNT)
        partial = cc.buffer.alloc(chunks, "partial reductions")
        for i in range(chunks):
            cc.emit(
                row,
                partial + i,
                src + i * spec.MAX_COUNT,
                min(spec.MAX_COUNT, n - i * spec.MAX_COUNT),
            )
        cc.emit(row, dst, partial, chunks)
        cc.buffer.release(partial, chunks)

    def const_local(self, core: int, value: float) -> int:
        return self.vector_local(core, np.array([value], dtype=np.float64))

    def vector_local(self, core: int, values: np.ndarray) -> int:
        """A constant vector in `core`'s buffer, loaded once per program and kept."""
        flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        key = (core, flat.tobytes())
        cache = self.const_cache
        if key not in cache:
            cc = self.cores[core]
            addr = cc.buffer.alloc(flat.size, "constants")
            cc.emit(spec.MEM_LOAD, addr, self.constant_addr(flat), flat.size)
            cache[key] = addr
        return cache[key]

    def alias(self, op: Op) -> None:
        """`op`'s result is its input's words under another shape: no code, one buffer (or
        one place in memory). Both names share the copies and one count of uses, so the
        words are freed after the last use of either."""
        key, out = self.root(id(op.inputs[0])), id(op.outputs[0])
        if key not in self.copies and key not in self.resident and key not in self.global_addr:
            self.local(op.inputs[0], op.core)
        self.alias_of[out] = key  # copies, residence and uses are all kept under `key`
        self.remaining_uses[key] += self.remaining_uses.pop(out, 0)
        if out in self.pinned:
            self.pinned.add(key)

    # -- the program ------------------------------------------------------------------------
    def run(self) -> Program:
        graph = self.graph
        for op in graph.ops:
            for value in op.inputs:
                self.remaining_uses[id(value)] = self.remaining_uses.get(id(value), 0) + 1
        for op in graph.ops:  # constants first: addresses in global memory are fixed early
            for value in op.inputs:
                constant = graph.constant(value)
                if constant is not None and not isinstance(op, ops.QDense):
                    self.constant_addr(constant)
        inputs = []
        for value in graph.inputs:
            addr = self.global_alloc(value.type.size)
            self.global_addr[id(value)] = addr
            inputs.append(self.tensor_info(value, addr))
        outputs = []
        names = graph.output_names or [v.name for v in graph.outputs]
        for value, name in zip(graph.outputs, names, strict=True):
            info = self.tensor_info(value, self.global_alloc(value.type.size))
            outputs.append(dataclasses.replace(info, name=name))

        for op in graph.ops:
            for cc in self.cores:
                cc.node = op.name
            self.lower(op)

        for value, info in zip(graph.outputs, outputs, strict=True):
            for cc in self.cores:
                cc.node = value.name
            self.store_output(value, info)
        registers = self.target.core.registers
        code: list[list[Instr]] = []
        debug: dict[tuple[int, int], str] = {}
        for cc in self.cores:
            cc.node = ""
            if cc.records or cc.core == 0:  # core 0 always runs, even when nothing is computed
                cc.emit(spec.CTL_HALT)
            instrs, nodes = assemble(cc.records, registers, loops=self.loops)
            code.append(instrs)
            debug.update(((cc.core, pc), node) for pc, node in enumerate(nodes) if node)
            self.check_code_size(cc.core, nodes)
        last = max((core for core, instrs in enumerate(code) if instrs), default=0)
        code = code[: last + 1]
        meta = self.meta()
        return Program(
            target=self.target,
            code=code,
            constants=self.const_blocks,
            inputs=inputs,
            outputs=outputs,
            debug=debug,
            meta=meta,
            **{f.name: getattr(self.sections, f.name) for f in dataclasses.fields(Sections)},
        )

    def meta(self) -> dict[str, str]:
        """The binary's meta: the model, the options, and the most words the allocators ever
        held: a core's buffer (the fullest core's), a tile's memory and the global memory,
        for the report's occupancy per memory level."""
        graph = self.graph
        meta = {**graph.meta, "model": graph.name, "producer": "imcc"}
        meta.update({f"option.{k}": str(v) for k, v in sorted(self.options.items())})
        fullest = max(self.cores, key=lambda cc: cc.buffer.peak)
        meta["peak.buffer_words"] = str(fullest.buffer.peak)
        meta["peak.buffer_core"] = str(fullest.core)
        meta["peak.global_words"] = str(self.globals.peak + self.spills.peak)
        resting = self.spills.peak + sum(memory.peak for memory in self.tile_memory)
        if resting:  # words of values resting in shared memories, which replicas would share
            meta["peak.resting_words"] = str(resting)
        if self.tile_memory:
            meta["peak.tile_words"] = str(max(memory.peak for memory in self.tile_memory))
        return meta

    def store_output(self, value: Value, info: TensorInfo) -> None:
        """A model output into its place in global memory: from a buffer that holds it, or,
        for a value resting in memory, through a core's buffer in chunks."""
        here = self.copies.get(self.root(id(value))) or {}
        res = self.resting(value)
        if here or res is None:
            core = next(iter(here)) if here else 0
            self.cores[core].emit(spec.MEM_STORE, info.addr, self.local(value, core), info.size)
            return
        core = value.producer.core if value.producer is not None else 0
        if res.space is spec.Space.TILE and self.tile(core) != res.tile:
            core = min(c for c in range(len(self.cores)) if self.tile(c) == res.tile)
        cc = self.cores[core]
        chunk = max(1, min(info.size, spec.MAX_COUNT, cc.buffer.largest() // 2))
        scratch = cc.buffer.alloc(chunk, f"{value.name!r} chunks")
        for start in range(0, info.size, chunk):
            n = min(chunk, info.size - start)
            self.move(core, res, start, scratch, n, load=True)
            cc.emit(spec.MEM_STORE, info.addr + start, scratch, n)
        cc.buffer.release(scratch, chunk)

    def check_code_size(self, core: int, nodes: list[str]) -> None:
        """A core's code (the node of each instruction) fits the target's instruction memory
        (core.instruction_words, 0 for unbounded); else a CompileError naming the core and
        the node with most code there."""
        capacity = self.target.core.instruction_words
        if capacity and len(nodes) > capacity:
            largest, count = Counter(nodes).most_common(1)[0]
            message = (
                f"core {core} needs {len(nodes):,} instructions but target "
                f"{self.target.name!r}'s instruction memory holds {capacity:,}; this "
                f"node emits {count:,} of them there"
            )
            op = next((op for op in self.graph.ops if op.name == largest), None)
            raise op.error(message) if op is not None else CompileError(message)

    def lower(self, op: Op) -> None:
        """Emit `op` by its lowering (or defer it to its user's), then free what died."""
        lowering = self.lowering(op)
        if lowering.defer is not None and lowering.defer(self.graph, op):
            self.deferred[id(op.outputs[0])] = op
            return
        try:
            lowering.emit(self, op)
        except CompileError as exc:  # a memory that cannot hold it: say which layer
            if exc.loc is not None:
                raise
            raise op.error(exc.message) from None
        self.release_dead(op)

    def lowering(self, op: Op) -> Lowering:
        """The lowering that applies to `op`: the first registered for its class (or a base
        class) whose condition holds."""
        for kind in type(op).__mro__:
            for entry in LOWERINGS.get(kind, ()):
                if entry.when is None or entry.when(self, op):
                    return entry
        raise op.error(f"the emitter has no lowering for {op.kind}")

    def tensor_info(self, value: Value, addr: int) -> TensorInfo:
        shape = value.shape[1:] if self.graph.batch_axis and value.shape else value.shape
        quant: dict[str, Any] = {}
        for user in self.graph.users(value):
            if isinstance(user, ops.QDense):
                scale = user.attrs["input_scale"]
                quant = {
                    "bits": user.attrs["input_bits"],
                    "signed": int(user.attrs["input_signed"]),
                    "scale": "dynamic" if scale is None else float(scale),
                }
        return TensorInfo(
            name=value.name,
            shape=tuple(shape),
            addr=addr,
            # float64 models keep float64 outputs (the SIMD unit computes in float64), integer
            # outputs (indices, folded integer constants) their integer type
            dtype=value.type.dtype if value.type.dtype in _IO_DTYPES else "float32",
            batch_axis=self.graph.batch_axis,
            quant=tuple(sorted(quant.items())),
        )
