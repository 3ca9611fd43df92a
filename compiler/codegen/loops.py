"""Code generation's last step: one core's instruction records -> its code.

The lowerings emit straight-line records whose register operands are the addresses themselves.
Here a run of records that repeats, every address moving by the same step on each repeat,
becomes a counted loop (`ctl.loop`; the moving registers are stepped by `ctl.add`), and a run
of such loops that repeats becomes a loop around them. So a core's code grows with a layer's
structure, not with its pixels. Then registers are allocated: in a nest, by the loops that
hold them (Assembler.nest), in straight code through an LRU cache of addresses.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from imcc.isa import spec
from imcc.isa.encoding import Instr, make

# Loops are looked for over bodies of at most MAX_BODY items, at the next MAX_TRIES repeats
# of the first item's shape, in MAX_DEPTH rounds; nests go COUNTERS deep, each depth's loop
# counting in a register of its own that holds nothing else, so it is 0 on every entry and
# the loop runs its own trip count (which the runtime's default budget and the loader read).
MAX_BODY = 512
MIN_TRIPS = 3  # any two trips fit a step: a loop of two would often be a coincidence
MAX_TRIPS = (1 << spec.LOOP_TRIP_BITS) - 1
MAX_TRIES = 6
MAX_DEPTH = 4
COUNTERS = 4
SCRATCH = 4  # registers a loop body sets its fixed addresses in, when it cannot hold them
_STEP_LIMIT = 1 << (spec.CTL_ADD.field("imm").width - 1)  # a step ctl.add's immediate holds


@dataclass(frozen=True, slots=True)
class Record:
    """One instruction as a lowering emits it: register operands hold the address itself (a
    strided row's stride operand holds 0, its strides are `strides`)."""

    row: spec.InstrSpec
    operands: tuple[int, ...]
    strides: tuple[int, int, int] | None
    node: str


_ADDRESSES: dict[str, tuple[int, ...]] = {}


def addresses(row: spec.InstrSpec) -> tuple[int, ...]:
    """Indices of the operands of `row` that hold addresses (registers, but for the strides)."""
    found = _ADDRESSES.get(row.mnemonic)
    if found is None:
        found = _ADDRESSES[row.mnemonic] = tuple(
            i
            for i, f in enumerate(row.fields)
            if f.kind is spec.OperandKind.REG and not (row.strided and f.name == spec.STRIDE_FIELD)
        )
    return found


@dataclass(eq=False, slots=True)
class Loop:
    """`trips` runs of `body`. Per address position of the body (its records' addresses in
    order, an inner loop's in its first trip): `bases` in the first trip, `steps` per trip, and
    `groups`: positions with one group share a register. `counters`: how deep the nest is;
    `need`: the most address registers live while it runs (see Assembler); `size`: the
    instructions it becomes, besides setting the registers it holds; `widths`: each body
    item's positions; `level`: the round of rolling that made it, and `span`: the positions
    of that round's items it covers."""

    body: tuple[int | Loop, ...]
    trips: int
    bases: np.ndarray
    steps: np.ndarray
    groups: np.ndarray
    counters: int
    need: int
    size: int
    widths: tuple[int, ...]
    level: int
    span: int
    held: int  # the groups it holds itself when outermost (set before it)
    scratch: np.ndarray  # per group: set where it is used (it never moves)
    key: int = -1  # its shape among the items of the next round


Item = int | Loop  # an int is the index of a record


def roll(records: Sequence[Record], registers: int) -> list[Item]:
    """The records as items, runs that repeat rolled into loops; no nest needs more than
    `registers` address registers, or more than COUNTERS counters.

    Rolling goes in rounds, inner loops first: each round rolls runs of the items the last
    one left (records and loops), and the runs inside each new loop's body in turn."""
    keys: dict[object, int] = {}
    shape = [
        keys.setdefault(
            (
                r.row.mnemonic,
                tuple(v for i, v in enumerate(r.operands) if i not in addresses(r.row)),
                r.strides,
                r.node,
            ),
            len(keys),
        )
        for r in records
    ]
    widths = [len(addresses(r.row)) for r in records]
    flat = np.fromiter(
        (r.operands[i] for r in records for i in addresses(r.row)), np.int64, sum(widths)
    )
    run = _Run(list(range(len(records))), shape, flat, widths, [1] * len(records), shape)
    for level in range(1, MAX_DEPTH + 1):
        rolled = run.roll(registers, level)
        if len(rolled) == len(run.items):
            break
        run = run.next_round(rolled, keys)
    return run.items


class _Run:
    """Items of one round in order: a shape key each (equal keys: the same code but for its
    addresses), their addresses end to end, positions and code size each."""

    def __init__(
        self, items: list[Item], keys: list[int], flat: np.ndarray, widths: list[int],
        sizes: list[int], shapes: list[int],
    ) -> None:  # fmt: skip
        self.shapes = shapes  # every record's shape key
        self.items, self.key_list, self.flat = items, keys, flat
        self.widths, self.sizes = widths, sizes
        self.keys = np.asarray(keys, dtype=np.int64)
        self.offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(widths, out=self.offsets[1:])
        self.next = _next_same(keys)
        # the next item of the same shape with the same address in one operand: the period
        # of a run whose items all look alike but for their addresses (a block of adds)
        self.next_alike = []
        starts = self.offsets.tolist()
        values = flat.tolist()
        for c in range(min(3, max(widths, default=0))):
            at = [values[o + c] if c < w else -1 for o, w in zip(starts, widths, strict=False)]
            self.next_alike.append(_next_same(list(zip(keys, at, strict=True))))
        self.size_before = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(sizes, out=self.size_before[1:])
        self.owner, self.inner, self.scratch, self.counters, self.needs = _positions(items, widths)

    def part(self, i: int, p: int) -> _Run:
        lo, hi = int(self.offsets[i]), int(self.offsets[i + p])
        return _Run(self.items[i : i + p], self.key_list[i : i + p], self.flat[lo:hi],
                    self.widths[i : i + p], self.sizes[i : i + p], self.shapes)  # fmt: skip

    def next_round(self, rolled: list[tuple[Item, int]], keys: dict[object, int]) -> _Run:
        """The run of this round's result (each item with the index of the item it starts
        at here) for the next round."""
        items, new_keys, flats, widths, sizes = [], [], [], [], []
        for item, k in rolled:
            items.append(item)
            if not (isinstance(item, Loop) and item.key < 0):  # an item of this round
                new_keys.append(self.key_list[k])
                flats.append(self.flat[self.offsets[k] : self.offsets[k + 1]])
                widths.append(self.widths[k])
                sizes.append(self.sizes[k])
                continue
            new_keys.append(self.shape_of(item, keys))
            flats.append(item.bases)
            widths.append(item.bases.size)
            sizes.append(item.size)
        flat = np.concatenate(flats) if flats else np.zeros(0, np.int64)
        return _Run(items, new_keys, flat, widths, sizes, self.shapes)

    def shape_of(self, loop: Loop, keys: dict[object, int]) -> int:
        """A new loop's shape key: equal for loops alike but for their first addresses."""
        body = []
        for item in loop.body:
            if isinstance(item, Loop):
                body.append(item.key if item.key >= 0 else self.shape_of(item, keys))
            else:
                body.append(self.shapes[item])
        key = ("loop", loop.trips, tuple(body), loop.steps.tobytes(), loop.groups.tobytes())
        loop.key = keys.setdefault(key, len(keys))
        return loop.key

    def roll(self, registers: int, level: int) -> list[tuple[Item, int]]:
        """The items with every run that repeats rolled (greedily from the front, the loop
        that saves most first), and the runs inside each new loop's body rolled in turn;
        each with the index of the item it starts at."""
        n = len(self.items)
        out: list[tuple[Item, int]] = []
        i = 0
        while i < n:
            best = self.best_loop(i, registers, level)
            if best is None:
                out.append((self.items[i], i))
                i += 1
                continue
            loop, period = best
            out.append((self.nested(loop, i, period, registers, level), i))
            i += loop.trips * period
        return out

    def best_loop(self, i: int, registers: int, level: int) -> tuple[Loop, int] | None:
        """The loop starting at item i that saves the most instructions, with its period
        (see `periods` for the periods tried)."""
        best: tuple[Loop, int] | None = None
        saving = 0
        for p in self.periods(i):
            run = self.run_at(i, p)
            if run is None:
                continue
            trips, first, steps = run
            # written out, each trip is its body plus a ctl.set per moving address; rolled,
            # the body once, a step per moving register and the counted jump back
            body = int(self.size_before[i + p] - self.size_before[i])
            moving = int(np.count_nonzero(steps))
            if trips * (body + moving) - (body + 1) <= saving:
                continue  # cannot beat the best so far
            found = _loop(self.body(i, p), trips, first, steps, registers, level)
            if found is not None:
                gain = trips * (body + moving) - found.size - found.held
                if gain > saving:
                    best, saving = (found, p), gain
        return best

    def periods(self, i: int) -> list[int]:
        """The periods tried for a loop from item i, shortest first: the distances to the
        next MAX_TRIES items of the same shape, and to the next MAX_TRIES of the same shape
        with the same address in one of their first three operands."""
        found = set()
        for nxt in (self.next, *self.next_alike):
            j = nxt[i]
            for _ in range(MAX_TRIES):
                if j < 0 or j - i > MAX_BODY:
                    break
                found.add(j - i)
                j = nxt[j]
        return sorted(found)

    def run_at(self, i: int, p: int) -> tuple[int, np.ndarray, np.ndarray] | None:
        """How often items [i, i + p) recur with addresses moving by one step each time
        (if MIN_TRIPS times or more): the trips, the first trip's addresses and the steps."""
        keys, flat, offsets = self.keys, self.flat, self.offsets
        n = len(self.items)
        shapes = self.key_list  # a list compares item by item and stops at the first miss
        if i + 2 * p > n or shapes[i + p : i + 2 * p] != shapes[i : i + p]:
            return None
        lo, width = int(offsets[i]), int(offsets[i + p] - offsets[i])
        first = flat[lo : lo + width]
        steps = flat[lo + width : lo + 2 * width] - first
        if steps.size and int(np.abs(steps).max()) >= _STEP_LIMIT:
            return None
        trips = 2
        chunk = 1
        while i + (trips + 1) * p <= n:  # extend in doubling chunks while all of one agrees
            count = min(chunk, (n - i) // p - trips)
            block_keys = keys[i + trips * p : i + (trips + count) * p].reshape(count, p)
            good_keys = np.all(block_keys == keys[i : i + p], axis=1)
            if not good_keys.all():  # only blocks of the same shape have aligned addresses
                count = int(np.argmin(good_keys))
                if count == 0:
                    break
            start = lo + trips * width
            block = flat[start : start + count * width].reshape(count, width)
            expected = first + np.arange(trips, trips + count)[:, None] * steps
            good = np.all(block == expected, axis=1)
            if good.all() and count == good_keys.size:
                trips += count
                chunk *= 2
                continue
            trips += int(np.argmin(good)) if not good.all() else count
            break
        if trips < MIN_TRIPS:
            return None
        return min(trips, MAX_TRIPS), first, steps

    def nested(self, loop: Loop, i: int, p: int, registers: int, level: int) -> Loop:
        """`loop` (of items i..i+p) with the runs in its body rolled, if the outer steps
        agree over every inner loop's trips and the registers fit; else `loop` itself."""
        body = self.part(i, p).roll(registers, level)
        if len(body) == p:
            return loop
        first, steps, widths, sizes, covers = [], [], [], [], []
        at = 0
        for item, k in body:
            if isinstance(item, Loop) and item.key < 0:  # a loop made here: lift its steps
                lifted = _lift(item, loop.steps[at : at + item.span], level)
                if lifted is None:
                    return loop
                first.append(item.bases)
                steps.append(lifted)
                widths.append(item.bases.size)
                sizes.append(item.size)
                covers.append(item.span)
            else:
                width = self.widths[i + k]
                first.append(loop.bases[at : at + width])
                steps.append(loop.steps[at : at + width])
                widths.append(width)
                sizes.append(self.sizes[i + k])
                covers.append(width)
            at += covers[-1]
        items = [item for item, _ in body]
        owner, inner, scratch, counters, needs = _positions(items, widths)
        shaped = _Body(tuple(items), tuple(widths), owner, inner, scratch,
                       int(counters.max()), int(needs.max()), sum(sizes), sum(covers))  # fmt: skip
        nest = _loop(shaped, loop.trips, np.concatenate(first), np.concatenate(steps),
                     registers, level)  # fmt: skip
        return loop if nest is None else nest

    def body(self, i: int, p: int) -> _Body:
        """Items [i, i + p) as a loop body (its items are all of this round)."""
        lo, hi = int(self.offsets[i]), int(self.offsets[i + p])
        return _Body(
            tuple(self.items[i : i + p]),
            tuple(self.widths[i : i + p]),
            self.owner[lo:hi] - i,
            self.inner[lo:hi],
            self.scratch[lo:hi],
            int(self.counters[i : i + p].max()),
            int(self.needs[i : i + p].max()),
            int(self.size_before[i + p] - self.size_before[i]),
            hi - lo,
        )


def _positions(
    items: Sequence[Item], widths: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per address position of the items: the item it belongs to, its group there if that
    is a loop (-1 for a record's), and whether that group is set where it is used; per item:
    the counters and the registers it needs (0 for a record)."""
    owner = np.repeat(np.arange(len(items), dtype=np.int64), widths)
    inner = np.full(owner.size, -1, dtype=np.int64)
    scratch = np.zeros(owner.size, dtype=bool)
    counters = np.zeros(len(items), dtype=np.int64)
    needs = np.zeros(len(items), dtype=np.int64)
    at = 0
    for k, (item, width) in enumerate(zip(items, widths, strict=True)):
        if isinstance(item, Loop):
            inner[at : at + width] = item.groups
            scratch[at : at + width] = item.scratch[item.groups]
            counters[k], needs[k] = item.counters, item.need
        at += width
    return owner, inner, scratch, counters, needs


def _lift(inner: Loop, steps: np.ndarray, level: int) -> np.ndarray | None:
    """An outer loop's steps over the positions `inner` covers (`steps`, inner.span long) as
    steps of inner's own positions: None unless every trip of inner moves alike (one
    register per position then serves all its trips)."""
    trips = steps.reshape(inner.trips, -1)
    if not np.all(trips == trips[0]):
        return None
    once, parts, at = trips[0], [], 0
    for item, width in zip(inner.body, inner.widths, strict=True):
        if isinstance(item, Loop) and item.level == level:
            lifted = _lift(item, once[at : at + item.span], level)
            if lifted is None:
                return None
            parts.append(lifted)
            at += item.span
        else:
            parts.append(once[at : at + width])
            at += width
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


@dataclass(frozen=True, slots=True)
class _Body:
    """A candidate loop body: its items, each one's own address positions (`widths`), per
    position the item it belongs to (`owner`) and, for an inner loop's, its group there
    (`inner`, -1 for a record's); the most counters and registers an inner loop needs, the
    items' code size and the positions of this round they cover."""

    items: tuple[Item, ...]
    widths: tuple[int, ...]
    owner: np.ndarray
    inner: np.ndarray
    scratch: np.ndarray  # per position: set where it is used inside an inner loop
    counters: int
    need: int
    size: int
    cover: int


def _loop(
    body: _Body, trips: int, first: np.ndarray, steps: np.ndarray, registers: int, level: int
) -> Loop | None:
    """The loop of `trips` runs of `body`, made in round `level`, if its registers fit.

    Positions share a register when they are of one record (or loop of an earlier round) and
    have the same first value and step, or are of one group of an inner loop, whose steps
    must then agree. The loop holds a register for each of its records' groups and for what
    moves in it (an inner loop sets the rest of its own groups on each entry); when those do
    not fit, its records' groups that do not move are set where they are used instead, from
    SCRATCH registers, and no loop around it may move them."""
    nested = body.inner >= 0
    # a record's positions are told apart by (first value, step), a loop's by (its item, its
    # group); addresses are >= 0, so a loop's (-1 - item) never meets a record's
    groups, index = _groups(np.where(nested, -1 - body.owner, first),
                            np.where(nested, body.inner, steps))  # fmt: skip
    count = index.size
    counters = 1 + body.counters
    if counters > COUNTERS or np.any(body.scratch & (steps != 0)):
        return None
    moves = steps[index] != 0
    record = ~nested[index]
    mine = record | moves
    need = int(np.count_nonzero(mine)) + body.need
    scratch = np.zeros(count, dtype=bool)
    if need > registers:  # set the fixed addresses of the records where they are used
        scratch = record & ~moves
        mine = moves
        need = int(np.count_nonzero(moves)) + max(body.need, min(SCRATCH, int(scratch.sum())))
        if need > registers:
            return None
    if body.counters:
        low = np.full(count, np.iinfo(np.int64).max)
        high = np.full(count, np.iinfo(np.int64).min)
        np.minimum.at(low, groups, steps)
        np.maximum.at(high, groups, steps)
        if np.any(low != high):  # one register cannot move two ways
            return None
    # an inner loop's groups set where they are used stay so
    inherited = np.zeros(count, dtype=bool)
    inherited[groups[body.scratch]] = True
    # the sets of what inner loops hold (on each entry) and of the fixed addresses used,
    # body, steps, the counted jump back
    sets = int(np.count_nonzero(~mine & ~inherited)) + int(np.count_nonzero(body.scratch))
    size = 1 + sets + body.size + int(np.count_nonzero(moves))
    return Loop(body.items, trips, first, steps, groups, counters, need, size, body.widths,
                level, trips * body.cover, int(np.count_nonzero(mine)),
                scratch | inherited)  # fmt: skip


def _groups(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions numbered by their (a, b) pair, in order of first appearance, and each
    number's first position."""
    if a.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((b, a))
    sa, sb = a[order], b[order]
    new = np.ones(a.size, dtype=bool)
    new[1:] = (sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])
    sorted_id = np.cumsum(new) - 1
    firsts = np.minimum.reduceat(order, np.flatnonzero(new))  # first position of each pair
    rank = np.empty(firsts.size, dtype=np.int64)
    rank[np.argsort(firsts)] = np.arange(firsts.size)
    groups = np.empty(a.size, dtype=np.int64)
    groups[order] = rank[sorted_id]
    return groups, np.sort(firsts)


def _peer_fields(row: spec.InstrSpec) -> tuple[int, int]:
    """Operand indices of a message row's core and cr (spec.PEER_FIELD)."""
    names = [f.name for f in row.fields]
    return names.index("core"), names.index(spec.PEER_FIELD)


def _next_same(keys: Sequence[Hashable]) -> list[int]:
    """For each position, the next one with the same key (-1 if none)."""
    seen: dict[Hashable, int] = {}
    nxt = [-1] * len(keys)
    for pos in range(len(keys) - 1, -1, -1):
        nxt[pos] = seen.get(keys[pos], -1)
        seen[keys[pos]] = pos
    return nxt


class Assembler:
    """A core's items -> its code: loop nests with registers held by their loops (`nest`),
    straight records through an LRU cache of the addresses registers hold. From the top,
    STRIDE_REGS registers hold the strides of `simd.copy2d` when the core has one, and
    `counters` registers the loops' counters, one per depth; the rest hold addresses."""

    def __init__(self, records: Sequence[Record], registers: int, counters: int) -> None:
        self.records = records
        self.code: list[Instr] = []
        self.nodes: list[str] = []
        self.node = ""
        self.strided = any(r.strides is not None for r in records)
        self.stride_base = registers - spec.STRIDE_REGS
        self.counter_base = registers - (spec.STRIDE_REGS if self.strided else 0) - counters
        self.register_count = self.counter_base  # registers that hold addresses
        self.cache: OrderedDict[int, int] = OrderedDict()  # register -> address it holds
        self.holding: dict[int, int] = {}  # address -> the register holding it
        self.strides: tuple[int, int, int] | None = None  # the stride registers' values
        self.clobbered: set[int] = set()  # registers the nest being written changes

    def put(self, row: spec.InstrSpec, *operands: int) -> None:
        self.code.append(make(row, *operands))
        self.nodes.append(self.node)

    def assemble(self, items: Sequence[Item]) -> None:
        for item in items:
            if isinstance(item, Loop):
                self.nest(item)
            else:
                self.straight(self.records[item])

    # -- straight code ----------------------------------------------------------------------
    def register_for(self, address: int, pinned: set[int]) -> int:
        reg = self.holding.get(address)
        if reg is not None:
            self.cache.move_to_end(reg)
            return reg
        if len(self.cache) < self.register_count:
            reg = next(r for r in range(self.register_count) if r not in self.cache)
        else:
            reg = next(r for r in self.cache if r not in pinned)
            self.forget(reg)
        self.remember(reg, address)
        self.put(spec.CTL_SET, reg, address)
        return reg

    def remember(self, reg: int, address: int) -> None:
        self.forget(reg)
        old = self.holding.get(address)
        if old is not None:
            self.forget(old)
        self.cache[reg] = address
        self.holding[address] = reg

    def forget(self, reg: int) -> None:
        address = self.cache.pop(reg, None)
        if address is not None:
            del self.holding[address]

    def set_strides(self, strides: tuple[int, int, int]) -> int:
        base = self.stride_base
        for k, value in enumerate(strides):
            if self.strides is None or self.strides[k] != value:
                self.put(spec.CTL_SET, base + k, value)
        self.strides = strides
        return base

    def straight(self, record: Record) -> None:
        self.node = record.node
        values = list(record.operands)
        if record.row.noc is not spec.Noc.NONE:  # a fixed peer: core operand, cr holding 0
            core, reg = _peer_fields(record.row)
            values[core], values[reg] = values[core] + values[reg], 0
        pinned: set[int] = set()
        for i in addresses(record.row):
            reg = self.register_for(values[i], pinned)
            pinned.add(reg)
            values[i] = reg
        if record.strides is not None:
            values[_stride_index(record.row)] = self.set_strides(record.strides)
        self.put(record.row, *values)

    # -- loop nests -------------------------------------------------------------------------
    def nest(self, loop: Loop) -> None:
        """A loop nest. Registers follow the nest's tree: a group is held by the outermost
        loop it moves in (set on that loop's entry, stepped at the end of its trips), or, if
        it moves in none, by the loop whose records use it; registers return to the pool
        when their loop ends, so sibling loops share them (Loop.need counts the most held
        at once)."""
        self.node = self.first_node(loop)
        reuse = dict(self.holding)  # address -> register: a first value already held
        # registers the cache does not use first, then the least recently used
        free = [r for r in range(self.register_count) if r not in self.cache] + list(self.cache)
        counters = list(range(self.counter_base, self.counter_base + loop.counters))
        self.clobbered.clear()
        held = self.emit_loop(loop, [None] * loop.bases.size, free, counters, reuse)
        for reg in self.clobbered:
            self.forget(reg)
        for reg, value in held.items():  # the nest's registers end one step past its trips
            self.remember(reg, value)

    def hold(
        self,
        loop: Loop,
        regs: list[int | None],
        nested: np.ndarray,
        free: list[int],
        reuse: dict[int, int],
    ) -> dict[int, int]:
        """The groups `loop` holds (those no outer loop holds: its records' and those that
        move in it), each in a register from `free` set to its first value (unless `reuse`
        says a free register holds it already); `regs` gets them per position."""
        mine: dict[int, int] = {}  # group -> register
        steps = loop.steps
        scratch = loop.scratch
        for pos, group in enumerate(loop.groups.tolist()):
            if regs[pos] is not None or scratch[group]:
                continue
            if not (group in mine or not nested[pos] or steps[pos]):
                continue
            if group not in mine:
                value = int(loop.bases[pos])
                reg = reuse.get(value)
                if reg is not None and reg in free:
                    free.remove(reg)
                else:
                    reg = free.pop(0)
                    self.put(spec.CTL_SET, reg, value)
                self.clobbered.add(reg)  # the loop moves it: the cache cannot count on it
                mine[group] = reg
            regs[pos] = mine[group]
        return mine

    def emit_loop(
        self,
        loop: Loop,
        given: list[int | None],
        free: list[int],
        counters: list[int],
        reuse: dict[int, int] | None = None,
    ) -> dict[int, int]:
        """One loop: the registers it holds set, its counter, its body, the steps of the
        registers it and the loops around it hold, the jump back. `given`: per address
        position of its body, the register a loop around it holds there (None: this loop or
        an inner one holds it). Returns the values the registers it held end with."""
        groups = loop.groups.tolist()
        steps = loop.steps.tolist()
        nested = np.zeros(loop.bases.size, dtype=bool)
        at = 0
        for item, width in zip(loop.body, loop.widths, strict=True):
            nested[at : at + width] = isinstance(item, Loop)
            at += width
        regs = list(given)
        mine = self.hold(loop, regs, nested, free, reuse or {})
        end = _last_strides(loop, self.records)
        if end is not None and self.strides != end:
            self.set_strides(end)  # every trip then starts with the strides it ends with
        start = len(self.code)
        moved: dict[int, int] = {}  # register -> how far inner loops move it in one trip
        local: OrderedDict[int, int] = OrderedDict()  # fixed address -> free register set to it
        at = 0
        for item, width in zip(loop.body, loop.widths, strict=True):
            if isinstance(item, Loop):
                inner = regs[at : at + width]
                self.emit_loop(item, inner, free, counters[1:])
                local.clear()  # the inner loop took free registers
                for q, reg in enumerate(inner):
                    if reg is not None:
                        moved[reg] = item.trips * int(item.steps[q])
                at += width
                continue
            record = self.records[item]
            self.node = record.node
            values = list(record.operands)
            pinned: set[int] = set()
            for i in addresses(record.row):
                reg = regs[at]
                if reg is None:  # a fixed address set where it is used
                    reg = self.scratch_for(values[i], local, free, pinned)
                pinned.add(reg)
                values[i] = reg
                at += 1
            if record.strides is not None:
                values[_stride_index(record.row)] = self.set_strides(record.strides)
            self.put(record.row, *values)
        stepped: dict[int, int] = {}
        for pos, reg in enumerate(regs):
            if reg is not None:
                stepped.setdefault(reg, steps[pos] - moved.get(reg, 0))
        for reg, step in stepped.items():
            if step:
                self.put(spec.CTL_ADD, reg, reg, step)
        # the counter is 0 on entry: it holds nothing else, and the loop before leaves it so
        self.put(spec.CTL_LOOP, counters[0], loop.trips, start)
        ends = {}
        for group, reg in mine.items():
            pos = groups.index(group)
            ends[reg] = int(loop.bases[pos]) + loop.trips * steps[pos]
            free.insert(0, reg)
        return ends

    def scratch_for(
        self, value: int, local: OrderedDict[int, int], free: list[int], pinned: set[int]
    ) -> int:
        """A free register holding `value`, set now unless it already does in this trip."""
        reg = local.get(value)
        if reg is not None:
            local.move_to_end(value)
            return reg
        used = set(local.values())
        spare = [r for r in free if r not in used]
        if spare:
            reg = spare[0]
        else:  # the least recently used that this instruction does not use
            old = next(v for v, r in local.items() if r not in pinned)
            reg = local.pop(old)
        local[value] = reg
        self.clobbered.add(reg)
        self.put(spec.CTL_SET, reg, value)
        return reg

    def first_node(self, loop: Loop) -> str:
        item: Item = loop
        while isinstance(item, Loop):
            item = item.body[0]
        return self.records[item].node


def _stride_index(row: spec.InstrSpec) -> int:
    return next(i for i, f in enumerate(row.fields) if f.name == spec.STRIDE_FIELD)


def _last_strides(loop: Loop, records: Sequence[Record]) -> tuple[int, int, int] | None:
    """The strides of the last strided record in a loop's body, if any."""
    for item in reversed(loop.body):
        found = _last_strides(item, records) if isinstance(item, Loop) else records[item].strides
        if found is not None:
            return found
    return None


def assemble(
    records: Sequence[Record], registers: int, *, loops: bool = True
) -> tuple[list[Instr], list[str]]:
    """A core's code and the node of each instruction, from its records."""
    strided = any(r.strides is not None for r in records)
    addresses = registers - (spec.STRIDE_REGS if strided else 0) - COUNTERS
    items: list[Item] = roll(records, addresses) if loops else list(range(len(records)))
    deepest = max((loop.counters for loop in items if isinstance(loop, Loop)), default=0)
    assembler = Assembler(records, registers, deepest)
    assembler.assemble(items)
    return assembler.code, assembler.nodes
