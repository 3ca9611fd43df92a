"""The simulated chip's state: cores (registers, buffer, arrays, pc), global memory, mailboxes.

Execution is batched: every buffer and memory word holds one value per sample of the batch
(arrays of shape (words, batch)), while registers and control flow are shared by all samples.
That is exact because no instruction moves data into a register: control flow never depends
on data, so each sample would take the same path anyway.

Memories are sparse (`Store`): a 2^40-word global memory or a 2^30-word buffer holds only the
pages a program touches, and what all of them hold together is bounded by the host (a
`MemoryLimit` that the engine turns into a trap naming the core and pc, the simulator into an
error naming the input or section).
"""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from imcc.isa import spec
from imcc.isa.diagnostics import CoreLoc, SimulationError
from imcc.isa.encoding import Instr
from imcc.isa.program import Program
from imcc.runtime.acam import CamDevice, CamState
from imcc.runtime.devices import ArrayState, Device, make_cam_device
from imcc.runtime.periphery import Adc, full_scale


@dataclass
class Message:
    data: np.ndarray  # (n, batch)
    sent_at: int  # cycle the send issued (0 in functional mode)
    arrival: int = 0  # cycle its last word reaches the receiver (cycle mode: the network model)


def _host_bytes() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return 16 << 30


# What the simulated memories of one machine may hold together: half the host's memory, so a
# program or batch that would need more is a clear error instead of a MemoryError or swapping.
HOST_MEMORY_BYTES = _host_bytes() // 2
PAGE_WORDS = 1024  # memories are allocated in pages of this many words (x batch values)


class MemoryLimit(Exception):
    """Internal: touching a range would take the simulated memories past HOST_MEMORY_BYTES.
    Never reaches a user: the engine and the simulator re-raise it as a located Diagnostic."""

    def __init__(self, store: Store, start: int, stop: int, needed: int) -> None:
        super().__init__(
            f"touching words [{start}, {stop}) of the {store.words}-word {store.name} would "
            f"hold {needed / 2**30:,.2f} GiB of simulated memory for a batch of {store.batch} "
            f"sample(s); the host limit is {HOST_MEMORY_BYTES / 2**30:,.2f} GiB (use a "
            "smaller batch, or fewer words)"
        )


class Usage:
    """Bytes held by the stores of one machine, against HOST_MEMORY_BYTES."""

    def __init__(self) -> None:
        self.held = 0


class Store:
    """One address space of `words` words x `batch` samples, sparse: sorted, disjoint dense
    segments (page-aligned) allocated on first touch and merged when they meet, so that every
    contiguous range is one segment and a slice of it is a numpy view the semantics read and
    write in place. Indexing takes what the semantics use: a slice, or an array of addresses
    (a strided copy). Untouched words read as zeros."""

    def __init__(self, name: str, words: int, batch: int, usage: Usage) -> None:
        self.name = name
        self.words = words
        self.batch = batch
        self.usage = usage
        self.starts: list[int] = []
        self.stops: list[int] = []
        self.segments: list[np.ndarray] = []

    @property
    def shape(self) -> tuple[int, int]:
        return (self.words, self.batch)

    @property
    def held_words(self) -> int:
        return sum(b - a for a, b in zip(self.starts, self.stops, strict=True))

    def release(self) -> None:
        self.usage.held -= self.held_words * self.batch * 8
        self.starts, self.stops, self.segments = [], [], []

    def touch(self, start: int, stop: int) -> int:
        """Make one segment cover [start, stop) (callers checked 0 <= start <= stop <= words);
        returns its index. Raises MemoryLimit past the host limit, allocating nothing."""
        i = bisect_right(self.starts, start) - 1
        if i >= 0 and stop <= self.stops[i]:
            return i
        lo = start - start % PAGE_WORDS
        hi = max(stop, min(self.words, -(-stop // PAGE_WORDS) * PAGE_WORDS))
        first = bisect_left(self.stops, lo)  # segments that end at or after lo ...
        last = bisect_right(self.starts, hi)  # ... and start at or before hi merge with it
        if first < last:
            lo, hi = min(lo, self.starts[first]), max(hi, self.stops[last - 1])
        kept = sum(self.stops[k] - self.starts[k] for k in range(first, last))
        grow = (hi - lo - kept) * self.batch * 8
        if self.usage.held + grow > HOST_MEMORY_BYTES:
            raise MemoryLimit(self, start, stop, self.usage.held + grow)
        merged = np.zeros((hi - lo, self.batch))
        for k in range(first, last):
            merged[self.starts[k] - lo : self.stops[k] - lo] = self.segments[k]
        self.starts[first:last] = [lo]
        self.stops[first:last] = [hi]
        self.segments[first:last] = [merged]
        self.usage.held += grow
        return first

    def touch_all(self, addresses: np.ndarray) -> None:
        """Cover every address of an index array, page by page (runs of pages together)."""
        if addresses.size == 0:
            return
        pages = np.unique(addresses // PAGE_WORDS)
        breaks = np.nonzero(np.diff(pages) != 1)[0] + 1
        for run in np.split(pages, breaks):
            self.touch(int(run[0]) * PAGE_WORDS,
                       min(self.words, (int(run[-1]) + 1) * PAGE_WORDS))  # fmt: skip

    def view(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.zeros((0, self.batch))
        i = self.touch(start, stop)
        base = self.starts[i]
        return self.segments[i][start - base : stop - base]

    def _one_segment(self, addresses: np.ndarray) -> int | None:
        """The segment that holds every address of a (non-empty) index array, if one does or
        the span is dense enough to make one (a strided copy's usual case); else None."""
        lo, hi = int(addresses.min()), int(addresses.max()) + 1
        i = bisect_right(self.starts, lo) - 1
        if i >= 0 and hi <= self.stops[i]:
            return i
        if hi - lo <= 4 * addresses.size + PAGE_WORDS:
            return self.touch(lo, hi)
        return None

    def _where(self, addresses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segment, offset in it) of every address of an index array, touching them first."""
        self.touch_all(addresses)
        starts = np.asarray(self.starts)
        segment = np.searchsorted(starts, addresses, side="right") - 1
        return segment, addresses - starts[segment]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            return self.view(*self._bounds(key))
        addresses = np.asarray(key, dtype=np.int64)
        if addresses.ndim == 0:
            word: np.ndarray = self.view(int(addresses), int(addresses) + 1)[0]
            return word
        flat = addresses.reshape(-1)
        one = self._one_segment(flat) if flat.size else None
        if one is not None:
            picked: np.ndarray = self.segments[one][flat - self.starts[one]]
            return picked.reshape((*addresses.shape, self.batch))
        segment, offset = self._where(flat)
        out = np.empty((flat.size, self.batch))
        for k in np.unique(segment):
            pick = segment == k
            out[pick] = self.segments[int(k)][offset[pick]]
        return out.reshape((*addresses.shape, self.batch))

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(key, slice):
            self.view(*self._bounds(key))[...] = value
            return
        addresses = np.asarray(key, dtype=np.int64)
        if addresses.ndim == 0:
            self.view(int(addresses), int(addresses) + 1)[0] = value
            return
        flat = addresses.reshape(-1)
        values = np.broadcast_to(np.asarray(value, dtype=np.float64), (flat.size, self.batch))
        one = self._one_segment(flat) if flat.size else None
        if one is not None:
            self.segments[one][flat - self.starts[one]] = values
            return
        segment, offset = self._where(flat)
        for k in np.unique(segment):
            pick = segment == k
            self.segments[int(k)][offset[pick]] = values[pick]

    def _bounds(self, key: slice) -> tuple[int, int]:
        assert key.step in (None, 1), "stores take contiguous slices"
        start = 0 if key.start is None else int(key.start)
        stop = self.words if key.stop is None else int(key.stop)
        assert start >= 0 and stop <= self.words, "ranges are checked before they are touched"
        return start, stop

    def dense(self, start: int, stop: int) -> np.ndarray:
        """A copy of [start, stop), for tests and reports."""
        return self.view(start, stop).copy()


class CoreState:
    def __init__(
        self, index: int, code: list[Instr], registers: int, arrays: int, cams: int = 0
    ) -> None:
        self.index = index
        self.code = code
        self.regs = np.zeros(registers, dtype=np.int64)
        self.arrays: list[ArrayState | None] = [None] * arrays
        self.cams: list[CamState | None] = [None] * cams  # analog-CAM arrays
        self.buffer = Store(f"buffer of core {index}", 0, 0, Usage())
        self.pc = 0
        self.halted = not code
        self.time = 0  # cycle at which the core may issue its next instruction
        self.received: Message | None = None  # the message the last noc.recv consumed

    def reset(self, buffer_words: int, batch: int, usage: Usage) -> None:
        self.regs[:] = 0
        # The buffer is sparse (Store): a large buffer that a program uses little of costs
        # nothing, so a batch of thousands of samples stays affordable.
        self.buffer.release()
        self.buffer = Store(f"buffer of core {self.index}", buffer_words, batch, usage)
        self.pc = 0
        self.halted = not self.code
        self.time = 0
        self.received = None


_PEER_FIELDS: dict[str, tuple[int, int]] = {}


def _peer_fields(row: spec.InstrSpec) -> tuple[int, int]:
    """Operand indices of a message row's core and cr (spec.PEER_FIELD)."""
    found = _PEER_FIELDS.get(row.mnemonic)
    if found is None:
        names = [f.name for f in row.fields]
        found = _PEER_FIELDS[row.mnemonic] = (names.index("core"), names.index(spec.PEER_FIELD))
    return found


class Machine:
    def __init__(
        self,
        program: Program,
        device: Device,
        seed: int,
        cam_device: str | float | CamDevice | None = None,
    ) -> None:
        self.program = program
        self.target = program.target
        self.device = device
        self.rng = np.random.default_rng(seed)
        # CAM programming draws from its own stream: adding CAMs never changes the crossbars.
        # The CAM device: as asked, else the target's default for its CAM arrays.
        acam = program.target.acam
        self.cam_device = make_cam_device(
            cam_device if cam_device is not None or acam is None else acam.device
        )
        self.cam_rng = np.random.default_rng([seed, 0xCA])
        cfg = self.target
        cams = cfg.acam.arrays if cfg.acam else 0
        # every core of the chip: one without code may still hold arrays (a binding)
        codes = [*program.code, *([] for _ in range(cfg.chip.cores - len(program.code)))]
        self.cores = [
            CoreState(i, code, cfg.core.registers, cfg.core.arrays, cams)
            for i, code in enumerate(codes)
        ]
        self.adcs: dict[int, tuple[Adc, bool]] = {}  # image -> (its ADC, lossless for it)
        self.usage = Usage()
        self.memory = Store("global memory", self.target.chip.global_memory_words, 0, self.usage)
        self.tiles = self.tile_memories(0)  # one per tile, on a target with tiles
        self.mailboxes: dict[tuple[int, int, int], deque[Message]] = {}
        self.now = 0
        for binding in program.bindings:
            self.program_array(binding.core, binding.array, binding.image)
        for binding in program.cam_bindings:
            self.program_cam(binding.core, binding.array, binding.image)

    def program_array(self, core: int, array: int, image: int) -> None:
        levels = self.program.images[image].levels.astype(np.int64)
        self.cores[core].arrays[array] = self.device.program(levels, image, self.rng)

    def program_cam(self, core: int, array: int, image: int) -> None:
        assert self.target.acam is not None  # the loader rejects CAM work without a CAM unit
        self.cores[core].cams[array] = self.cam_device.program(
            self.program.cam_images[image], image, self.target.acam.levels, self.cam_rng
        )

    def adc_for(self, image: int) -> tuple[Adc, bool]:
        """The ADC settings an image was compiled with (the full scale when it names none),
        and whether they are lossless for its levels (then an exact device needs one matmul)."""
        cached = self.adcs.get(image)
        if cached is None:
            xbar = self.target.xbar
            levels = self.program.images[image].levels
            ranges = self.program.adc_ranges.get(image)
            if ranges is None:
                ranges = np.full(
                    levels.shape[1], full_scale(xbar.rows, xbar.cell_bits, xbar.dac_bits)
                )
            adc = Adc(xbar.adc_bits, ranges)
            cached = self.adcs[image] = (adc, adc.lossless_for(levels, xbar.dac_bits))
        return cached

    def reset(self, batch: int) -> None:
        """Fresh buffers and memory for a batch; arrays keep what was programmed. Raises
        MemoryLimit if the constants alone would take the memories past the host limit."""
        for core in self.cores:
            core.reset(self.target.core.buffer_words, batch, self.usage)
        self.memory.release()
        self.memory = Store("global memory", self.target.chip.global_memory_words, batch,
                            self.usage)  # fmt: skip
        for addr, values in self.program.constants:
            self.memory[addr : addr + len(values)] = values[:, None]
        for store in self.tiles:
            store.release()
        self.tiles = self.tile_memories(batch)
        self.mailboxes.clear()
        self.now = 0

    def tile_memories(self, batch: int) -> list[Store]:
        tile = self.target.tile
        words = tile.memory_words if tile is not None else 0
        return [Store(f"memory of tile {t}", words, batch, self.usage)
                for t in range(self.target.tiles)]  # fmt: skip

    def tile_store(self, core: int) -> Store:
        """The memory of the tile `core` belongs to (the target has tiles: the loader says)."""
        return self.tiles[self.target.tile_of(core)]

    def tile_range(self, core: int, start: int, n: int) -> np.ndarray:
        """A view of the memory of `core`'s tile (bounds checked by the caller)."""
        return self.tile_store(core).view(start, start + n)

    def global_range(self, start: int, n: int) -> np.ndarray:
        """A view of global memory (allocated on first touch; bounds checked by the caller)."""
        return self.memory.view(start, start + n)

    def peer(self, c: CoreState, instr: Instr) -> int:
        """The core a message instruction of core c sends to or receives from: its core
        operand plus register cr (spec.PEER_FIELD); a trap unless that is another core."""
        core, reg = _peer_fields(instr.spec)
        operands = instr.operands
        peer = operands[core] + int(c.regs[operands[reg]])
        if not 0 <= peer < self.target.chip.cores or peer == c.index:
            raise self.trap(
                c,
                f"c{operands[core]} + r{operands[reg]} = core {peer}, which is "
                + ("this core" if peer == c.index else "not a core of the chip"),
            )
        return peer

    def trap(self, core: CoreState, message: str) -> SimulationError:
        instr = core.code[core.pc] if core.pc < len(core.code) else None
        node = self.program.debug.get((core.index, core.pc), "")
        return SimulationError(
            message, CoreLoc(core.index, core.pc, instr.mnemonic if instr else "", node)
        )
