"""The two simulators: functional (semantics only) and cycle-level (semantics + time + energy),
named by `Mode`.

Both step cores through the same `SEMANTICS`; the cycle-level engine keeps a clock per core,
always advancing the core that is earliest, so a message's arrival time is known before any
receive that could consume it; a receive waits until its message has crossed the mesh. On a
target with core.overlap a core's units work at once, timed by a `Scoreboard` of the ranges
in flight (see CycleEngine). Before each instruction the address ranges it touches are
bounds-checked (a trap names core and pc).

A budget stops programs that never halt. By default it is derived from the program
(`work_budget`): per core, the most work a halting program can do, in work units (an
instruction counts a fixed cost plus the words it touches, so a loop of wide SIMD instructions
counts its lanes), from the static trip counts of its loops, with caps of a few seconds of
host time. An explicit `max_cycles` replaces
it: cycles for the cycle-level engine, instructions for the functional one.
"""

from __future__ import annotations

import bisect
import enum
import heapq
from collections import defaultdict
from dataclasses import dataclass, field

from imcc.isa import spec
from imcc.isa.encoding import Instr
from imcc.isa.program import Program
from imcc.isa.target import Target
from imcc.runtime.costs import Network, Price, price
from imcc.runtime.machine import CoreState, Machine, MemoryLimit
from imcc.runtime.semantics import BLOCKED, HALTED, SEMANTICS


@dataclass
class Tally:
    """Counts and energy accumulated over one run of the program (one inference)."""

    energy: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    busy: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # unit -> cycles
    layer_energy: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    layer_busy: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    layer_counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    stall_cycles: int = 0
    # stall cycles by cause: "message" (a receive before its message arrived), "queue" (a
    # send while its receiver's queue was full); with core.overlap also "dependence" (an
    # instruction waiting for a range or register an earlier one uses) and "unit" (waiting
    # for its unit, or a halt for every unit, to finish earlier work)
    stalls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    cycles: int = 0

    def stall(self, cause: str, cycles: int) -> None:
        self.stall_cycles += cycles
        self.stalls[cause] += cycles

    def add(self, node: str, p: Price, macs: int) -> None:
        self.busy[p.unit] += p.cycles * p.units
        self.layer_busy[node] += p.cycles
        layer = self.layer_counts[node]
        for name, pj in p.energy:
            self.energy[name] += pj
            self.layer_energy[node] += pj
        for name, count in p.counts:
            self.counts[name] += count
            layer[name] += count
        if macs:
            self.counts["macs"] += macs
            layer["macs"] += macs


class Mode(enum.StrEnum):
    """The two simulators; a StrEnum, so "functional" and "cycle" compare equal to them."""

    FUNCTIONAL = "functional"  # semantics only (FunctionalEngine)
    CYCLE = "cycle"  # semantics plus time and energy (CycleEngine)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the engines read of a row on every execution, from its spec facts, once."""

    # (access, operand index of its register, operand index of its count or -1)
    accesses: tuple[tuple[spec.Access, int, int], ...]
    array: int  # operand index of its array (spec.ArrayUse), or -1
    span: int  # operand index of the count of arrays it runs on from that one (spec), or -1
    cam: bool  # that array is a CAM array (else a crossbar array)
    image: int  # operand index of the image it programs its array with, or -1
    coding: int  # operand index of its coding table, or -1
    strided: bool  # a strided block copy: its strides are in registers (spec.STRIDE_FIELD)
    registers: tuple[int, ...]  # operand indices of its register fields (it reads them)
    written: int  # operand index of the register its spec.Scalar effect writes, or -1


# The operand a row's spec.Scalar effect writes (ctl.set and ctl.add: d; ctl.loop: c).
_WRITTEN = {spec.Scalar.SET: "d", spec.Scalar.ADD: "d", spec.Scalar.COUNT: "c"}

_PLANS: dict[str, _Plan] = {}  # by mnemonic


def _plan(row: spec.InstrSpec) -> _Plan:
    plan = _PLANS.get(row.mnemonic)
    if plan is not None:
        return plan
    names = [f.name for f in row.fields]
    array = row.array_index
    coding = row.operand_index(spec.OperandKind.CAM_CODE)
    plan = _PLANS[row.mnemonic] = _Plan(
        accesses=tuple(
            (a, names.index(a.field), names.index(a.extent) if a.extent in names else -1)
            for a in row.accesses
        ),
        array=-1 if array is None else array,
        span=names.index(row.span) if row.span else -1,
        cam=array is not None and row.fields[array].kind is spec.OperandKind.CAM,
        image=-1 if row.image_index is None else row.image_index,
        coding=-1 if coding is None else coding,
        strided=row.strided,
        registers=tuple(i for i, f in enumerate(row.fields) if f.kind is spec.OperandKind.REG),
        written=names.index(_WRITTEN[row.scalar]) if row.scalar in _WRITTEN else -1,
    )
    return plan


# The default budget (work_budget), in work units: an instruction costs INSTRUCTION_WORK (its
# fixed host cost, about that of 16 lanes of vector work) plus the words it touches. A loop
# whose trip count the code does not fix (a backward jump or branch, a counter rewritten inside
# its loop or stepped by ctl.add) may repeat UNBOUNDED_TRIPS times, and a core with such a
# loop gets at most UNBOUNDED_WORK units in all; a core whose loops all have static counts gets
# what they add up to, at most BOUNDED_WORK. Straight-line code gets exactly its own work,
# and so does code whose loops each run their own trip count from a counter at 0 (what the
# compiler emits), up to EXACT_WORK
# (hours of host time: a 224x224 CNN, not a hand-made 2^40-trip loop). At about 2-4 us per
# instruction in functional mode, either other cap is seconds of host time.
INSTRUCTION_WORK = 16
UNBOUNDED_TRIPS = 4096
UNBOUNDED_WORK = 1 << 24
BOUNDED_WORK = 1 << 25
EXACT_WORK = 1 << 34


WorkPlan = tuple[tuple[int, tuple[int, ...]], ...]


def work_of(instr: Instr, target: Target, plans: dict[str, WorkPlan] | None = None) -> int:
    """Work units of one instruction: the most words any of its accesses touches (arrays at
    the target's full size), plus INSTRUCTION_WORK. Static: the same on every execution.
    `plans` caches each mnemonic's plan for one target."""
    plans = {} if plans is None else plans
    plan = plans.get(instr.mnemonic)
    if plan is None:
        plan = plans[instr.mnemonic] = _work_plan(instr.spec, target)
    most = 0
    for const, factors in plan:
        words = const
        for index in factors:
            words *= instr.operands[index]
        most = max(most, words)
    return INSTRUCTION_WORK + most


def _work_plan(row: spec.InstrSpec, target: Target) -> WorkPlan:
    """Per access of `row`: a constant factor (array sizes) and the operands multiplied in."""
    names = [f.name for f in row.fields]
    rows, cols = target.xbar.rows, target.xbar.cols
    if row.unit is spec.Unit.ACAM and target.acam is not None:
        rows, cols = target.acam.rows, target.acam.cols
    sizes = {"rows": rows, "cols": cols, "match": -(-rows // spec.MATCH_BITS), "1": 1}
    terms = []
    for access in row.accesses:
        const, factors = 1, []
        for part in ["n", "m"] if access.strided else access.extent.split("*"):
            if part in sizes:
                const *= sizes[part]
            elif part in names:
                factors.append(names.index(part))
        terms.append((const, tuple(factors)))
    return tuple(terms)


@dataclass(frozen=True, slots=True)
class CoreBudget:
    work: tuple[int, ...]  # work units of each pc
    limit: int  # the most work units the core may take (per run of its program)
    why: str  # how the limit was derived, for the trap's message


def work_budget(program: Program) -> list[CoreBudget]:
    """The default budget of every core of the chip (see the module docstring)."""
    budgets = [_core_budget(code, program.target) for code in program.code]
    empty = CoreBudget((), 1, "it has no code")
    return budgets + [empty] * (program.target.chip.cores - len(budgets))


# mnemonic -> index of its jump-target operand, for the rows that have one
_TARGET_OPERAND = {
    row.mnemonic: i
    for row in spec.BY_MNEMONIC.values()
    for i, f in enumerate(row.fields)
    if f.kind is spec.OperandKind.TARGET
}


@dataclass
class _Registers:
    """How a core's code writes its registers (spec.Scalar), for the loops' trip counts."""

    set_min: dict[int, int] = field(default_factory=dict)  # register -> least imm it is set to
    set_max: dict[int, int] = field(default_factory=dict)  # register -> largest imm it is set to
    added: set[int] = field(default_factory=set)  # registers an ADD writes
    writes: list[tuple[int, int]] = field(default_factory=list)  # (pc, register written)
    pcs: dict[int, list[int]] | None = None  # register -> the pcs writing it, once followed

    def follow(self, pc: int, instr: Instr) -> None:
        scalar = instr.spec.scalar
        if scalar is spec.Scalar.SET:
            d, imm = instr.operand("d"), instr.operand("imm")
            self.set_min[d] = min(self.set_min.get(d, 0), imm)
            self.set_max[d] = max(self.set_max.get(d, 0), imm)
            self.writes.append((pc, d))
        elif scalar is spec.Scalar.ADD:
            self.added.add(instr.operand("d"))
            self.writes.append((pc, instr.operand("d")))
        elif scalar is spec.Scalar.COUNT:
            self.writes.append((pc, instr.operand("c")))

    def rewritten(self, counter: int, start: int, end: int) -> bool:
        """Whether anything in [start, end) writes `counter` (the loop closed at `end`)."""
        if self.pcs is None:
            self.pcs = defaultdict(list)
            for pc, r in self.writes:  # in pc order
                self.pcs[r].append(pc)
        pcs = self.pcs[counter]
        i = bisect.bisect_left(pcs, start)
        return i < len(pcs) and pcs[i] < end

    def trips(self, code: list[Instr], start: int, end: int) -> int | None:
        """The most trips of the loop [start, end], closed by code[end], if the code bounds
        them: a counted loop whose counter is never stepped by ADD, never set below 0 and
        never written inside its body enters at 0 or more, so it runs `trips` times at most."""
        instr = code[end]
        if instr.spec.scalar is not spec.Scalar.COUNT:
            return None
        counter = instr.operand("c")
        if counter in self.added or self.set_min.get(counter, 0) < 0:
            return None
        if self.rewritten(counter, start, end):
            return None
        return int(instr.operand("trips"))

    def exact_trips(self, code: list[Instr], loops: list[tuple[int, int]]) -> list[int] | None:
        """Every loop's trip count when the code fixes each: its counter is never stepped by
        ADD or set but to 0, and nothing in its body writes it but the loop's own closing jump,
        so it is 0 on every entry (registers start at 0 and a loop leaves its counter at 0) and the
        loop runs its `trips`; None if one is not so fixed or two loops cross."""
        spans = sorted(loops, key=lambda loop: (loop[0], -loop[1]))
        stack: list[int] = []
        for start, end in spans:  # nested or disjoint
            while stack and stack[-1] < start:
                stack.pop()
            if stack and end > stack[-1]:
                return None
            stack.append(end)
        trips = []
        for start, end in loops:
            instr = code[end]
            if instr.spec.scalar is not spec.Scalar.COUNT:
                return None
            counter = instr.operand("c")
            if counter in self.added or self.set_max.get(counter, 0) != 0:
                return None
            if self.set_min.get(counter, 0) != 0 or self.rewritten(counter, start, end):
                return None
            trips.append(int(instr.operand("trips")))
        return trips


def _core_budget(code: list[Instr], target: Target) -> CoreBudget:
    plans: dict[str, WorkPlan] = {}
    work = tuple(work_of(instr, target, plans) for instr in code)
    total = sum(work)
    # Every cycle of the control flow graph passes a backward edge: the interval [target, pc]
    # of each is a loop. With every loop a ctl.loop whose counter cannot enter below 0 (never
    # stepped by ctl.add, never set below 0, never written inside its own body) and loops
    # nested or disjoint, an instruction runs at most the product of its loops' trips.
    registers = _Registers()
    loops: list[tuple[int, int]] = []  # (start, end)
    for pc, instr in enumerate(code):
        registers.follow(pc, instr)
        at = _TARGET_OPERAND.get(instr.mnemonic)
        if at is not None and instr.operands[at] <= pc:
            loops.append((instr.operands[at], pc))
    if not loops:
        return CoreBudget(work, total, "its code has no loop: every instruction at most once")
    counts = registers.exact_trips(code, loops)
    if counts is not None:  # as for straight code: exactly its work, if not past EXACT_WORK
        exact: list[tuple[int, int, int | None]] = sorted(
            ((s, e, t) for (s, e), t in zip(loops, counts, strict=True)),
            key=lambda loop: (loop[0], -loop[1]),
        )
        runs = _runs(len(code), exact, EXACT_WORK)
        assert runs is not None  # exact_trips found no crossing loops
        derived = sum(w * r for w, r in zip(work, runs, strict=True))
        if derived <= EXACT_WORK:
            return CoreBudget(work, derived, "its loops run their trip counts")
    # (start, end, trips or None: no static count)
    bounded = [(start, end, registers.trips(code, start, end)) for start, end in loops]
    bounded.sort(key=lambda loop: (loop[0], -loop[1]))  # outer loops first
    static = all(t is not None for _, _, t in bounded)
    cap = BOUNDED_WORK if static else UNBOUNDED_WORK
    runs = _runs(len(code), bounded, cap)
    if runs is None:  # crossing loops: no product bound; as for a loop without a static count
        why = f"its loops cross, so each may repeat {UNBOUNDED_TRIPS:,} times"
        return CoreBudget(work, min(UNBOUNDED_WORK, total * UNBOUNDED_TRIPS), why)
    derived = sum(w * r for w, r in zip(work, runs, strict=True))
    limit = min(cap, derived)
    if static and derived > cap:
        why = (
            f"its loops at their static counts may take {derived:,} or more, past the "
            f"{cap:,} the default allows"
        )
    elif static:
        why = "its loops run at most their static counts"
    else:
        pc = next(end for _, end, t in bounded if t is None)
        why = (
            f"the backward {code[pc].mnemonic} at pc {pc} has no static trip count, so its "
            f"loop may repeat {UNBOUNDED_TRIPS:,} times"
        )
    return CoreBudget(work, limit, why)


def _runs(length: int, loops: list[tuple[int, int, int | None]], cap: int) -> list[int] | None:
    """How often each pc may run: the product of its loops' trip counts (UNBOUNDED_TRIPS for
    a loop without one), at most cap + 1; None if two loops cross (neither nested nor
    disjoint). `loops` are (start, end, trips), sorted by start, the outer loop first."""
    # nested or disjoint: a stack of (end, product of trips so far) along the pcs
    stack: list[tuple[int, int]] = []
    runs = [1] * length
    nested = True
    k = 0
    for pc in range(length):
        while stack and stack[-1][0] < pc:
            stack.pop()
        while k < len(loops) and loops[k][0] == pc:
            _, end, trips = loops[k]
            k += 1
            if stack and end > stack[-1][0]:
                nested = False
            outer = stack[-1][1] if stack else 1
            stack.append((end, min(cap + 1, outer * (UNBOUNDED_TRIPS if trips is None else trips))))
        runs[pc] = stack[-1][1] if stack else 1
    return runs if nested else None


# What `Engine.check` found an instruction touches: (access, first word, words) per access.
Ranges = tuple[tuple[spec.Access, int, int], ...]


class Engine:
    touched: Ranges = ()  # the ranges of the instruction `step` ran last (its `check`)
    # the ranges `hold` checked for the instruction `step` runs next, so it checks them once
    checked: Ranges | None = None

    def __init__(
        self,
        machine: Machine,
        max_cycles: int | None,
        prices: dict[tuple[int, Instr, tuple[int, int], int], tuple[Price, int]] | None = None,
        budgets: list[CoreBudget] | None = None,
    ) -> None:
        """`max_cycles` None: the per-core `budgets` (work_budget), else that many cycles
        (cycle-level) or instructions (functional) in all."""
        self.m = machine
        self.max_cycles = max_cycles
        self.budgets = budgets if budgets is not None else work_budget(machine.program)
        self.used = [0] * len(machine.cores)
        # (core, instr, image shape, message peer) -> price; static, so a simulator keeps it
        self.prices = {} if prices is None else prices
        # finite receive queues (cycle mode, core.recv_queue_words > 0), one per (sender,
        # receiver) pair as PUMA's receive buffer has FIFO entries per sender: words sent on
        # each pair and not yet received, and the senders waiting for room, by their receiver.
        # Per pair, only the sender fills a queue and only the receiver drains it, so whether
        # a program deadlocks does not depend on timing (isa/protocol.py checks it at load).
        self.capacity = machine.target.core.recv_queue_words  # 0: unbounded, no accounting
        self.queued: dict[tuple[int, int], int] = defaultdict(int)  # (sender, receiver) -> words
        self.room: dict[int, int] = {}  # blocked sender -> its receiver

    # -- shared per-instruction work --------------------------------------------------------
    def check(self, c: CoreState, instr: Instr) -> Ranges:
        """Bounds of every range the instruction touches, and arrays that must hold images;
        returns those ranges (a strided copy's: its whole span), for the cycle engine's
        scoreboard."""
        row = instr.spec
        plan = _PLANS.get(row.mnemonic) or _plan(row)
        if not plan.accesses:
            return ()
        operands = instr.operands
        rows, cols = 0, 0
        strides = None
        if plan.array >= 0:  # a row with accesses reads its array (spec.ArrayUse.READ)
            rows, cols = self.held_shape(c, row, plan, operands)
        if plan.strided:
            strides = self.strides(c, instr)
        ranges = []
        for access, reg_index, count_index in plan.accesses:
            start = int(c.regs[operands[reg_index]])
            if count_index >= 0:
                length = operands[count_index]
            elif access.extent == "1":
                length = 1
            else:
                names = (f.name for f in row.fields)
                length = access.length(dict(zip(names, operands, strict=True)), rows, cols, strides)
            self.touch(c, access, operands[reg_index], start, length)
            ranges.append((access, start, length))
        return tuple(ranges)

    def held_shape(
        self, c: CoreState, row: spec.InstrSpec, plan: _Plan, operands: tuple[int, ...]
    ) -> tuple[int, int]:
        """The (rows, cols) of the image its array holds; a row spanning k arrays needs all k
        to hold images of that one shape (spec.InstrSpec.span)."""
        first = operands[plan.array]
        k = operands[plan.span] if plan.span >= 0 else 1
        arrays = c.cams if plan.cam else c.arrays
        kind = row.fields[plan.array].kind
        noun, prefix = spec.ARRAY_NOUNS[kind], kind.prefix
        if first + k > len(arrays):  # the loader refuses it first
            raise self.m.trap(c, f"{noun}s {prefix}{first}..{prefix}{first + k - 1} do not exist")
        shape = None
        for array in range(first, first + k):
            held = arrays[array]
            if held is None:
                raise self.m.trap(c, f"{noun} {prefix}{array} holds no image")
            if shape is None:
                shape = (held.rows, held.cols)
            elif (held.rows, held.cols) != shape:
                raise self.m.trap(
                    c,
                    f"{noun} {prefix}{array} holds a {held.rows}x{held.cols} image but "
                    f"{prefix}{first} a {shape[0]}x{shape[1]} one; the arrays of one "
                    f"{row.mnemonic} hold images of one shape",
                )
        assert shape is not None
        return shape

    def touch(self, c: CoreState, access: spec.Access, reg: int, start: int, length: int) -> None:
        """Trap if [start, start + length) of register r`reg` is outside its memory; else
        allocate it now, so no view the semantics hold goes stale (Store.touch)."""
        size = self.m.target.words(access.space)
        if start < 0 or start + length > size:
            raise self.m.trap(
                c,
                f"{access.field} = r{reg} = {start}: range "
                f"[{start}, {start + length}) is outside the {size}-word {access.space.value}",
            )
        if not access.strided and length > 0:
            space = access.space
            store = (
                c.buffer
                if space is spec.Space.BUFFER
                else self.m.memory
                if space is spec.Space.GLOBAL
                else self.m.tile_store(c.index)
            )
            try:
                store.touch(start, start + length)
            except MemoryLimit as exc:
                raise self.m.trap(c, str(exc)) from None

    def strides(self, c: CoreState, instr: Instr) -> tuple[int, int, int]:
        """The stride registers of a strided copy; they must exist and be >= 0."""
        first = instr.operand(spec.STRIDE_FIELD)
        last = first + spec.STRIDE_REGS - 1
        if last >= len(c.regs):
            raise self.m.trap(c, f"stride registers r{first}..r{last} do not all exist")
        values = tuple(int(v) for v in c.regs[first : last + 1])
        if min(values) < 0:
            raise self.m.trap(c, f"strides r{first}..r{last} = {values} must be >= 0")
        return values[0], values[1], values[2]

    def price_of(self, c: CoreState, instr: Instr) -> tuple[Price, int]:
        """(price, crossbar MACs) of `instr` on core c. A price depends on the instruction, the
        core and the shape it is priced on (spec.Shape), never on data; cached by those, so a
        program of repeated instructions is priced once per distinct one."""
        row = instr.spec
        shape = (0, 0) if row.shape is spec.Shape.NONE else self.shape_of(c, row, instr)
        peer = self.m.peer(c, instr) if row.noc is not spec.Noc.NONE else -1
        key = (c.index, instr, shape, peer)
        cached = self.prices.get(key)
        if cached is None:
            p = price(self.m.target, instr, shape[0], shape[1], c.index, peer)
            macs = 0
            if row.macs:
                ops = dict(zip((f.name for f in row.fields), instr.operands, strict=True))
                macs = spec.extent_length(row.macs, ops, *shape)
            cached = self.prices[key] = (p, macs)
        return cached

    def shape_of(self, c: CoreState, row: spec.InstrSpec, instr: Instr) -> tuple[int, int]:
        """The (rows, cols) the cost model prices `instr` (of row `row`) on (spec.Shape)."""
        shape = row.shape
        if shape is spec.Shape.NONE:
            return (0, 0)
        plan, program, operands = _plan(row), self.m.program, instr.operands
        if shape is spec.Shape.CODING:
            return (program.cam_codes[operands[plan.coding]].comparisons, 1)
        if shape is spec.Shape.PROGRAMMED:
            images = program.cam_images if plan.cam else program.images
            image = images[operands[plan.image]]
            return (image.rows, image.cols)
        held = (c.cams if plan.cam else c.arrays)[operands[plan.array]]
        if held is None:  # the loader and `check` trap first; (0, 0) as for no image
            return (0, 0)
        if shape is spec.Shape.MATCHES:  # one matched row per tree of the image
            return (held.rows, program.cam_images[held.image].trees)
        return (held.rows, held.cols)

    def step(self, c: CoreState) -> int | None:
        if c.pc >= len(c.code):
            raise self.m.trap(c, f"ran past the end of its code without {spec.CTL_HALT.mnemonic}")
        instr = c.code[c.pc]
        if self.checked is None:
            self.touched = self.check(c, instr)
        else:
            self.touched, self.checked = self.checked, None
        try:
            return SEMANTICS[instr.mnemonic](self.m, c, instr)
        except MemoryLimit as exc:  # a strided copy touches its pages as it runs
            raise self.m.trap(c, str(exc)) from None

    def spend(self, c: CoreState, pc: int, runs: int = 1) -> None:
        """Charge the default budget for the instruction at pc (when no max_cycles is set)."""
        budget = self.budgets[c.index]
        self.used[c.index] += budget.work[pc]
        if self.used[c.index] > budget.limit * runs:
            raise self.m.trap(
                c,
                f"no halt after {self.used[c.index]:,} work units, past the default budget of "
                f"{budget.limit * runs:,} for this core ({budget.why}); pass max_cycles for a "
                "larger budget",
            )

    def advance(self, c: CoreState, outcome: int | None) -> None:
        if outcome == HALTED:
            c.halted = True
        elif outcome is None:
            c.pc += 1
        else:
            c.pc = outcome

    def deadlock(self, waiting: list[CoreState]) -> Exception:
        c = waiting[0]
        others = ", ".join(self.waits_for(w) for w in waiting)
        what = "a message" if all(w.index not in self.room for w in waiting) else "the network"
        return self.m.trap(c, f"deadlock: every running core waits for {what} ({others})")

    def waits_for(self, w: CoreState) -> str:
        """What a blocked core waits for: a message, or room in its queue to its receiver."""
        instr = w.code[w.pc]
        if w.index in self.room:
            receiver = self.room[w.index]
            return (
                f"core {w.index} pc {w.pc} waits for room in its queue to core {receiver} "
                f"({self.queued[(w.index, receiver)]} of {self.capacity} words held)"
            )
        return (
            f"core {w.index} pc {w.pc} waits for core {self.m.peer(w, instr)} tag "
            f"{instr.operand('tag')}"
        )


class FunctionalEngine(Engine):
    """Runs each core until it blocks or halts, round robin; no time."""

    def run(self, tally: Tally | None) -> None:
        m = self.m
        explicit = self.max_cycles is not None
        budget = self.max_cycles or 0
        running = [c for c in m.cores if not c.halted]
        while running:
            progressed = False
            for c in running:
                while not c.halted:
                    before = c.pc
                    outcome = self.step(c)
                    if outcome == BLOCKED:
                        break
                    if tally is not None:
                        p, macs = self.price_of(c, c.code[before])
                        tally.add(m.program.debug.get((c.index, before), ""), p, macs)
                    if not explicit:
                        self.spend(c, before)
                    self.advance(c, outcome)
                    progressed = True
                    if not explicit:
                        continue
                    budget -= 1
                    if budget < 0:
                        raise m.trap(
                            c,
                            f"no halt after {self.max_cycles:,} instructions "
                            "(instruction budget exhausted)",
                        )
            if not progressed:
                raise self.deadlock([c for c in running if not c.halted])
            running = [c for c in running if not c.halted]


# A unit of a core for the scoreboard: (unit, array operand); -1 for a unit without arrays.
UnitKey = tuple[spec.Unit, int]


@dataclass
class Scoreboard:
    """What a core's units are doing, for a core whose units work at once (core.overlap).

    An instruction starts once its unit is free, every range it reads has been written (RAW),
    every range it writes has been read and written (WAR, WAW), and the registers it reads
    have been written by the control unit. Ranges are intervals, not words: an entry that
    completes before the core's front end has reached it can delay nothing and is pruned, so
    the lists hold only the work in flight (at most a few entries per unit)."""

    free: dict[UnitKey, int] = field(default_factory=dict)  # unit -> first cycle it is free
    # (space, first word, end word, cycle the access completes)
    reads: list[tuple[spec.Space, int, int, int]] = field(default_factory=list)
    writes: list[tuple[spec.Space, int, int, int]] = field(default_factory=list)
    registers: dict[int, int] = field(default_factory=dict)  # register -> cycle it is written

    def prune(self, now: int) -> None:
        """Forget the accesses complete by `now`: nothing that starts at `now` waits for them."""
        if self.reads:
            self.reads = [entry for entry in self.reads if entry[3] > now]
        if self.writes:
            self.writes = [entry for entry in self.writes if entry[3] > now]

    def dependence(self, ranges: Ranges, registers: list[int]) -> int:
        """The first cycle `ranges` and `registers` are free to use (0: no dependence)."""
        ready = max((self.registers.get(r, 0) for r in registers), default=0)
        for access, start, length in ranges:
            end = start + length
            earlier = (*self.writes, *self.reads) if access.writes else self.writes
            for space, first, last, until in earlier:
                if until > ready and first < end and start < last and space is access.space:
                    ready = until
        return ready

    def record(self, units: tuple[UnitKey, ...], ranges: Ranges, written: int, end: int) -> None:
        """An instruction runs on `units` until `end`, using `ranges`, writing register
        `written` (-1: none)."""
        for unit in units:
            self.free[unit] = end
        for access, start, length in ranges:
            entries = self.writes if access.writes else self.reads
            entries.append((access.space, start, start + length, end))
        if written >= 0:
            self.registers[written] = end

    def drained(self) -> int:
        """The first cycle every unit is free."""
        return max(self.free.values(), default=0)


class CycleEngine(Engine):
    """Advances the earliest core one instruction at a time, adding latency and energy.

    `iterations[core]` (default 1) runs a core's program that many times back to back, as for
    a stream of samples: at its halt the core starts over (pc 0, registers cleared), so
    layers on different cores overlap consecutive samples. `finished[core]` lists the cycle of
    each halt; `trace`, if given, receives every instruction's interval (for timelines).

    On a target with core.overlap the units of a core work at once (ISAAC's and PUMA's cores
    keep several arrays, the vector unit and the memory busy together): the front end issues
    in program order, one instruction per ctl_cycles, each to its unit (every crossbar and CAM
    array its own), where it starts once its unit is free and its operands are ready (a
    `Scoreboard`); an instruction that must wait holds the front end, as in an in-order
    pipeline, and its wait is a stall ("unit" or "dependence"). `c.time` is then the cycle
    the front end issues the core's next instruction, and a halt waits for every unit to
    drain. The semantics still run at issue, in program order: only the times change."""

    def __init__(
        self,
        machine: Machine,
        max_cycles: int | None,
        prices: dict[tuple[int, Instr, tuple[int, int], int], tuple[Price, int]] | None = None,
        iterations: list[int] | None = None,
        trace: list[tuple[int, int, int, str, str, int]] | None = None,
        budgets: list[CoreBudget] | None = None,
    ) -> None:
        super().__init__(machine, max_cycles, prices, budgets)
        self.iterations = iterations or [1] * len(machine.cores)
        self.finished: list[list[int]] = [[] for _ in machine.cores]
        # if given: (core, start cycle, cycles, unit, node, units kept busy) per instruction
        self.trace = trace
        self.network = Network(machine.target)
        # Ready cores in a heap by (time, index); a blocked core leaves it until a send to it.
        self.ready: list[tuple[int, int]] = []
        self.blocked: set[int] = set()
        self.overlap = machine.target.core.overlap
        self.boards = [Scoreboard() for _ in machine.cores]

    def run(self, tally: Tally) -> None:
        m = self.m
        self.network = Network(m.target)
        self.boards = [Scoreboard() for _ in m.cores]
        self.ready = [(c.time, c.index) for c in m.cores if not c.halted]
        heapq.heapify(self.ready)
        self.blocked = set()
        while self.ready:
            _, index = heapq.heappop(self.ready)
            c = m.cores[index]
            if self.max_cycles is not None and c.time > self.max_cycles:
                raise m.trap(
                    c, f"no halt after {self.max_cycles:,} cycles (cycle budget exhausted)"
                )
            m.now = c.time
            pc = c.pc
            if self.full(c):  # back-pressure: wait until the receiver takes a message
                continue
            if self.overlap and self.hold(c, tally):  # back in the heap at its start cycle
                continue
            outcome = self.step(c)
            if outcome == BLOCKED:
                self.blocked.add(c.index)
                continue
            if self.max_cycles is None:
                self.spend(c, pc, max(1, self.iterations[c.index]))
            instr = c.code[pc]
            p, macs = self.price_of(c, instr)
            if self.overlap:
                start = self.overlapped(c, instr, p, outcome, tally)
            else:
                start = self.message(c, instr, tally, c.time)
                c.time = start + p.cycles
                self.queue(c, instr, tally)
            node = m.program.debug.get((c.index, pc), "")
            tally.add(node, p, macs)
            if self.trace is not None:
                self.trace.append((c.index, start, p.cycles, p.unit, node, p.units))
            self.advance(c, outcome)
            if c.halted:
                self.finish(c)
            if not c.halted:
                heapq.heappush(self.ready, (c.time, c.index))
        waiting = [c for c in m.cores if not c.halted]
        if waiting:
            raise self.deadlock(waiting)
        tally.cycles = max((c.time for c in m.cores), default=0)

    def units_of(self, instr: Instr) -> tuple[UnitKey, ...]:
        """The units `instr` runs on: its row's, per array it runs on if it has an array
        operand (the k of a span, spec.InstrSpec.span)."""
        row = instr.spec
        plan = _PLANS.get(row.mnemonic) or _plan(row)
        if plan.array < 0:
            return ((row.unit, -1),)
        first = instr.operands[plan.array]
        k = instr.operands[plan.span] if plan.span >= 0 else 1
        return tuple((row.unit, array) for array in range(first, first + k))

    def registers_read(self, c: CoreState, instr: Instr) -> list[int]:
        """The registers `instr` reads: its register operands, and a strided copy's strides."""
        row = instr.spec
        plan = _PLANS.get(row.mnemonic) or _plan(row)
        registers = [instr.operands[i] for i in plan.registers]
        if plan.strided:
            first = instr.operand(spec.STRIDE_FIELD)
            registers += range(first + 1, first + spec.STRIDE_REGS)
        return registers

    def hold(self, c: CoreState, tally: Tally) -> bool:
        """(core.overlap) Whether c's next instruction must wait for its unit or its operands:
        then the front end waits with it, c goes back in the heap at the cycle it can start
        (so cores still step in time order, and messages take the network in the order they
        are sent) and the wait is a stall, "dependence" if its operands are the later."""
        if c.pc >= len(c.code):
            return False  # `step` traps
        instr = c.code[c.pc]
        board = self.boards[c.index]
        board.prune(c.time)
        ranges = self.check(c, instr)
        ready = board.dependence(ranges, self.registers_read(c, instr))
        free = max(board.free.get(unit, 0) for unit in self.units_of(instr))
        start = max(ready, free)
        if start <= c.time:
            self.checked = ranges  # `step` runs it now, on the same registers
            return False
        tally.stall("dependence" if ready >= free else "unit", start - c.time)
        c.time = start
        heapq.heappush(self.ready, (c.time, c.index))
        return True

    def overlapped(
        self, c: CoreState, instr: Instr, p: Price, outcome: int | None, tally: Tally
    ) -> int:
        """(core.overlap) Time an instruction that `hold` let issue at c.time: a halt first
        waits for the core's units to drain, a receive for its message. Returns its start;
        c.time becomes the cycle the front end issues the next one."""
        board = self.boards[c.index]
        start = c.time
        if outcome == HALTED:
            drained = board.drained()
            if drained > start:
                tally.stall("unit", drained - start)
                start = drained
        start = self.message(c, instr, tally, start)
        end = start + p.cycles
        plan = _PLANS[instr.mnemonic]
        written = instr.operands[plan.written] if plan.written >= 0 else -1
        board.record(self.units_of(instr), self.touched, written, end)
        c.time = end  # `queue` wakes the senders waiting on a receive when it completes
        self.queue(c, instr, tally)
        if outcome != HALTED:  # a halt's end is the core's finish (`finish`)
            c.time = start + self.m.target.cost.ctl_cycles
        return start

    def message(self, c: CoreState, instr: Instr, tally: Tally, start: int) -> int:
        """The cycle the instruction starts on core c (spec.Noc), were it to start at `start`
        otherwise: a send times its message on the network and wakes its receiver; a receive
        waits (stalls) for its arrival."""
        noc = instr.spec.noc
        if noc is spec.Noc.SEND:
            receiver, tag = self.m.peer(c, instr), instr.operand("tag")
            message = self.m.mailboxes[(c.index, receiver, tag)][-1]
            message.arrival = self.network.send(c.index, receiver, instr.operand("n"), start)
            if receiver in self.blocked:  # the receiver may now proceed
                self.blocked.discard(receiver)
                heapq.heappush(self.ready, (self.m.cores[receiver].time, receiver))
        elif noc is spec.Noc.RECV and c.received is not None:
            arrival = c.received.arrival
            if arrival > start:
                tally.stall("message", arrival - start)
                start = arrival
        return start

    def full(self, c: CoreState) -> bool:
        """Whether c's next instruction is a send whose message does not fit its queue to its
        receiver now; then c waits (leaves the ready heap) until the receiver takes one of
        its messages. Other senders' queues to that receiver do not matter."""
        capacity = self.capacity
        if not capacity or c.pc >= len(c.code) or c.code[c.pc].spec.noc is not spec.Noc.SEND:
            return False
        instr = c.code[c.pc]
        receiver, n = self.m.peer(c, instr), instr.operand("n")
        if n > capacity:
            raise self.m.trap(
                c,
                f"a message of {n:,} words cannot fit its queue to core {receiver} of "
                f"{capacity:,} words",
            )
        if self.queued[(c.index, receiver)] + n <= capacity:
            return False
        self.room[c.index] = receiver
        return True

    def queue(self, c: CoreState, instr: Instr, tally: Tally) -> None:
        """A send fills its queue to its receiver; a receive empties the queue from the sender
        it names and wakes that sender if it waits for room there, at the cycle the receive
        completes (the sender's stall)."""
        if not self.capacity:
            return
        noc = instr.spec.noc
        if noc is spec.Noc.SEND:
            self.queued[(c.index, self.m.peer(c, instr))] += instr.operand("n")
        elif noc is spec.Noc.RECV:
            sender = self.m.peer(c, instr)
            self.queued[(sender, c.index)] -= instr.operand("n")
            if self.room.get(sender) == c.index:
                del self.room[sender]
                waiter = self.m.cores[sender]
                if waiter.time < c.time:
                    tally.stall("queue", c.time - waiter.time)
                    waiter.time = c.time
                heapq.heappush(self.ready, (waiter.time, sender))

    def finish(self, c: CoreState) -> None:
        """At a halt: record its cycle, and start the core's next sample if it has one."""
        self.finished[c.index].append(c.time)
        if len(self.finished[c.index]) < self.iterations[c.index]:
            c.halted, c.pc = False, 0
            c.regs[:] = 0
