"""The two simulators: functional (semantics only) and cycle-level (semantics + time + energy).

Both step cores through the same `SEMANTICS`; the cycle-level engine keeps a clock per core,
always advancing the core that is earliest, so a message's arrival time is known before any
receive that could consume it; a receive waits until its message has crossed the mesh. Before
each instruction the address ranges it touches are bounds-checked (a trap names core and pc).

A budget stops programs that never halt. By default it is derived from the program
(`work_budget`): per core, the most work a halting program can do, in work units (an
instruction counts a fixed cost plus the words it touches, so a loop of wide SIMD instructions
counts its lanes), from the static trip counts of its loops, with caps of a few seconds of
host time. An explicit `max_cycles` replaces
it: cycles for the cycle-level engine, instructions for the functional one.
"""

from __future__ import annotations

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
    cycles: int = 0

    def add(self, node: str, p: Price, macs: int) -> None:
        self.busy[p.unit] += p.cycles
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


# mnemonic -> (access, operand index of its register, operand index of its count or -1)
_PLANS: dict[str, tuple[tuple[spec.Access, int, int], ...]] = {}


def _plan(row: spec.InstrSpec) -> tuple[tuple[spec.Access, int, int], ...]:
    names = [f.name for f in row.fields]
    return tuple(
        (a, names.index(a.field), names.index(a.extent) if a.extent in names else -1)
        for a in row.accesses
    )


# The default budget (work_budget), in work units: an instruction costs INSTRUCTION_WORK (its
# fixed host cost, about that of 16 lanes of vector work) plus the words it touches. A loop
# whose trip count the code does not fix (a backward jump or branch, a counter rewritten inside
# its loop or computed by ctl.add) may repeat UNBOUNDED_TRIPS times, and a core with such a
# loop gets at most UNBOUNDED_WORK units in all; a core whose loops all have static counts gets
# what they add up to, at most BOUNDED_WORK (a 48-bit loop count halts, but not in a
# lifetime). Straight-line code (all the compiler emits) gets exactly its own work. At about
# 2-4 us per instruction in functional mode, either cap is seconds of host time.
INSTRUCTION_WORK = 16
UNBOUNDED_TRIPS = 4096
UNBOUNDED_WORK = 1 << 24
BOUNDED_WORK = 1 << 25


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


def _core_budget(code: list[Instr], target: Target) -> CoreBudget:
    plans: dict[str, WorkPlan] = {}
    work = tuple(work_of(instr, target, plans) for instr in code)
    total = sum(work)
    # Every cycle of the control flow graph passes a backward edge: the interval [target, pc]
    # of each is a loop. With every loop a ctl.loop whose counter is only ever set by ctl.set
    # (never by ctl.add, never inside its own body) and loops nested or disjoint, an
    # instruction runs at most the product of its loops' trip counts, a trip count being the
    # largest value the counter can hold (at least 1).
    set_max: dict[int, int] = {}
    added: set[int] = set()
    writes: list[tuple[int, int]] = []  # (pc, register written)
    loops: list[tuple[int, int, int | None]] = []  # (start, end, trips or None: no static count)
    for pc, instr in enumerate(code):
        row = instr.spec
        if row is spec.CTL_SET:
            d, imm = instr.operands
            set_max[d] = max(set_max.get(d, 0), imm)
            writes.append((pc, d))
        elif row is spec.CTL_ADD:
            added.add(instr.operands[0])
            writes.append((pc, instr.operands[0]))
        elif row is spec.CTL_LOOP:
            writes.append((pc, instr.operands[0]))
        at = _TARGET_OPERAND.get(row.mnemonic)
        if at is not None and instr.operands[at] <= pc:
            loops.append((instr.operands[at], pc, None))
    if not loops:
        return CoreBudget(work, total, "its code has no loop: every instruction at most once")
    bounded: list[tuple[int, int, int | None]] = []
    for start, end, _ in loops:
        instr = code[end]
        trips: int | None = None
        if instr.spec is spec.CTL_LOOP:
            counter = instr.operands[0]
            rewritten = any(start <= pc < end and r == counter for pc, r in writes)
            if counter not in added and not rewritten:
                trips = max(1, set_max.get(counter, 0))
        bounded.append((start, end, trips))
    static = all(t is not None for _, _, t in bounded)
    cap = BOUNDED_WORK if static else UNBOUNDED_WORK
    # nested or disjoint: a stack of (end, product of trips so far) along the pcs
    bounded.sort(key=lambda loop: (loop[0], -loop[1]))
    stack: list[tuple[int, int]] = []
    runs = [1] * len(code)
    nested = True
    k = 0
    for pc in range(len(code)):
        while stack and stack[-1][0] < pc:
            stack.pop()
        while k < len(bounded) and bounded[k][0] == pc:
            start, end, trips = bounded[k]
            k += 1
            if stack and end > stack[-1][0]:
                nested = False
            outer = stack[-1][1] if stack else 1
            stack.append((end, min(cap + 1, outer * (UNBOUNDED_TRIPS if trips is None else trips))))
        runs[pc] = stack[-1][1] if stack else 1
    if not nested:  # crossing loops: no product bound; as for a loop without a static count
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


class Engine:
    def __init__(
        self,
        machine: Machine,
        max_cycles: int | None,
        prices: dict[tuple[int, Instr, tuple[int, int]], tuple[Price, int]] | None = None,
        budgets: list[CoreBudget] | None = None,
    ) -> None:
        """`max_cycles` None: the per-core `budgets` (work_budget), else that many cycles
        (cycle-level) or instructions (functional) in all."""
        self.m = machine
        self.max_cycles = max_cycles
        self.budgets = budgets if budgets is not None else work_budget(machine.program)
        self.used = [0] * len(machine.cores)
        # (core, instr, image shape) -> price; static, so a simulator keeps it across runs
        self.prices = {} if prices is None else prices

    # -- shared per-instruction work --------------------------------------------------------
    def check(self, c: CoreState, instr: Instr) -> None:
        """Bounds of every range the instruction touches, and arrays that must hold images."""
        row = instr.spec
        plan = _PLANS.get(row.mnemonic)
        if plan is None:
            plan = _PLANS[row.mnemonic] = _plan(row)
        if not plan:
            return
        operands = instr.operands
        target = self.m.target
        rows, cols = 0, 0
        strides = None
        if row.unit is spec.Unit.XBAR:
            state = c.arrays[operands[0]]
            if row is not spec.XBAR_PROGRAM and state is None:
                raise self.m.trap(c, f"array a{operands[0]} holds no image")
            rows, cols = (state.rows, state.cols) if state is not None else (0, 0)
        elif row is spec.ACAM_SEARCH or row is spec.ACAM_LEAF:
            cam = c.cams[operands[0]]
            if cam is None:
                raise self.m.trap(c, f"CAM array m{operands[0]} holds no image")
            rows, cols = cam.rows, cam.cols
        elif row is spec.SIMD_COPY2D:
            strides = self.strides(c, instr)
        for access, reg_index, count_index in plan:
            start = int(c.regs[operands[reg_index]])
            extent = access.extent
            if count_index >= 0:
                length = operands[count_index]
            elif extent == "1":
                length = 1
            else:
                names = (f.name for f in row.fields)
                length = access.length(dict(zip(names, operands, strict=True)), rows, cols, strides)
            size = target.words(access.space)
            if start < 0 or start + length > size:
                raise self.m.trap(
                    c,
                    f"{access.field} = r{operands[reg_index]} = {start}: range "
                    f"[{start}, {start + length}) is outside the {size}-word {access.space.value}",
                )
            if not access.strided and length > 0:
                # allocate now, so no view the semantics hold goes stale (Store.touch)
                store = c.buffer if access.space is spec.Space.BUFFER else self.m.memory
                try:
                    store.touch(start, start + length)
                except MemoryLimit as exc:
                    raise self.m.trap(c, str(exc)) from None

    def strides(self, c: CoreState, instr: Instr) -> tuple[int, int, int]:
        """The three stride registers of a strided copy; they must exist and be >= 0."""
        first = instr.operand("s")
        if first + 3 > len(c.regs):
            raise self.m.trap(c, f"stride registers r{first}..r{first + 2} do not all exist")
        values = tuple(int(v) for v in c.regs[first : first + 3])
        if min(values) < 0:
            raise self.m.trap(c, f"strides r{first}..r{first + 2} = {values} must be >= 0")
        return values[0], values[1], values[2]

    def price_of(self, c: CoreState, instr: Instr) -> tuple[Price, int]:
        """(price, crossbar MACs) of `instr` on core c. A price depends on the instruction, the
        core and the shape of the image it uses, never on data; cached by those, so a program
        of repeated instructions is priced once per distinct one."""
        row = instr.spec
        if row.unit is spec.Unit.ACAM:
            return self.acam_price_of(c, instr)
        state = c.arrays[instr.operands[0]] if row.unit is spec.Unit.XBAR else None
        if row is spec.XBAR_PROGRAM:
            state = None
            image = self.m.program.images[instr.operands[1]]
            shape = (image.rows, image.cols)
        else:
            shape = (state.rows, state.cols) if state is not None else (0, 0)
        key = (c.index, instr, shape)
        cached = self.prices.get(key)
        if cached is None:
            p = price(self.m.target, instr, shape[0], shape[1], c.index)
            macs = shape[0] * shape[1] if row is spec.XBAR_MVM else 0
            if row is spec.XBAR_MVM_BLOCK:
                macs = shape[0] * shape[1] * instr.operand("m")
            cached = self.prices[key] = (p, macs)
        return cached

    def acam_price_of(self, c: CoreState, instr: Instr) -> tuple[Price, int]:
        """The price of a CAM instruction, from the CAM image or coding table it uses."""
        row, program = instr.spec, self.m.program
        if row is spec.ACAM_ENCODE:
            table = program.cam_codes[instr.operands[2]]
            shape = (table.comparisons, 1)
        elif row is spec.ACAM_PROGRAM:
            image = program.cam_images[instr.operands[1]]
            shape = (image.rows, image.cols)
        else:
            cam = c.cams[instr.operands[0]]
            assert cam is not None  # checked before the instruction ran
            trees = program.cam_images[cam.image].trees
            shape = (cam.rows, trees if row is spec.ACAM_LEAF else cam.cols)
        key = (c.index, instr, shape)
        cached = self.prices.get(key)
        if cached is None:
            p = price(self.m.target, instr, shape[0], shape[1], c.index)
            cached = self.prices[key] = (p, 0)
        return cached

    def step(self, c: CoreState) -> int | None:
        if c.pc >= len(c.code):
            raise self.m.trap(c, f"ran past the end of its code without {spec.CTL_HALT.mnemonic}")
        instr = c.code[c.pc]
        self.check(c, instr)
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
        others = ", ".join(
            f"core {w.index} pc {w.pc} waits for core {w.code[w.pc].operands[0]} tag "
            f"{w.code[w.pc].operands[1]}"
            for w in waiting
        )
        return self.m.trap(c, f"deadlock: every running core waits for a message ({others})")


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


class CycleEngine(Engine):
    """Advances the earliest core one instruction at a time, adding latency and energy.

    `iterations[core]` (default 1) runs a core's program that many times back to back, as for
    a stream of samples: at its halt the core starts over (pc 0, registers cleared), so
    layers on different cores overlap consecutive samples. `finished[core]` lists the cycle of
    each halt; `trace`, if given, receives every instruction's interval (for timelines)."""

    def __init__(
        self,
        machine: Machine,
        max_cycles: int | None,
        prices: dict[tuple[int, Instr, tuple[int, int]], tuple[Price, int]] | None = None,
        iterations: list[int] | None = None,
        trace: list[tuple[int, int, int, str, str]] | None = None,
        budgets: list[CoreBudget] | None = None,
    ) -> None:
        super().__init__(machine, max_cycles, prices, budgets)
        self.iterations = iterations or [1] * len(machine.cores)
        self.finished: list[list[int]] = [[] for _ in machine.cores]
        self.trace = trace  # if given: (core, start cycle, cycles, unit, node) per instruction

    def run(self, tally: Tally) -> None:
        m = self.m
        target = m.target
        network = Network(target)
        # Ready cores in a heap by (time, index); a blocked core leaves it until a send to it.
        ready = [(c.time, c.index) for c in m.cores if not c.halted]
        heapq.heapify(ready)
        blocked: set[int] = set()
        while ready:
            _, index = heapq.heappop(ready)
            c = m.cores[index]
            if self.max_cycles is not None and c.time > self.max_cycles:
                raise m.trap(
                    c, f"no halt after {self.max_cycles:,} cycles (cycle budget exhausted)"
                )
            m.now = c.time
            pc = c.pc
            outcome = self.step(c)
            if outcome == BLOCKED:
                blocked.add(c.index)
                continue
            if self.max_cycles is None:
                self.spend(c, pc, max(1, self.iterations[c.index]))
            instr = c.code[pc]
            p, macs = self.price_of(c, instr)
            start = c.time
            if instr.spec is spec.NOC_SEND:
                receiver, tag = instr.operands[0], instr.operands[1]
                message = m.mailboxes[(c.index, receiver, tag)][-1]
                message.arrival = network.send(c.index, receiver, instr.operands[3], start)
                if receiver in blocked:  # the receiver may now proceed
                    blocked.discard(receiver)
                    heapq.heappush(ready, (m.cores[receiver].time, receiver))
            elif instr.spec is spec.NOC_RECV and c.received is not None:
                arrival = c.received.arrival
                if arrival > start:
                    tally.stall_cycles += arrival - start
                    start = arrival
            c.time = start + p.cycles
            node = m.program.debug.get((c.index, pc), "")
            tally.add(node, p, macs)
            if self.trace is not None:
                self.trace.append((c.index, start, p.cycles, p.unit, node))
            self.advance(c, outcome)
            if c.halted:
                self.finished[c.index].append(c.time)
                if len(self.finished[c.index]) < self.iterations[c.index]:  # the next sample
                    c.halted, c.pc = False, 0
                    c.regs[:] = 0
            if not c.halted:
                heapq.heappush(ready, (c.time, c.index))
        waiting = [c for c in m.cores if not c.halted]
        if waiting:
            raise self.deadlock(waiting)
        tally.cycles = max((c.time for c in m.cores), default=0)
