"""The two simulators: functional (semantics only) and cycle-level (semantics + time + energy).

Both step cores through the same `SEMANTICS`; the cycle-level engine keeps a clock per core,
always advancing the core that is earliest, so a message's arrival time is known before any
receive that could consume it; a receive waits until its message has crossed the mesh. Before
each instruction the address ranges it touches are bounds-checked (a trap names core and pc),
and a cycle budget (instructions, for the functional engine) stops programs that never halt.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field

from imcc.isa import spec
from imcc.isa.encoding import Instr
from imcc.runtime.costs import Network, Price, price
from imcc.runtime.machine import CoreState, Machine
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


class Engine:
    def __init__(
        self,
        machine: Machine,
        max_cycles: int,
        prices: dict[tuple[int, Instr, tuple[int, int]], tuple[Price, int]] | None = None,
    ) -> None:
        self.m = machine
        self.max_cycles = max_cycles
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
            if access.space is spec.Space.BUFFER:
                c.reach(start + length, size)

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
        return SEMANTICS[instr.mnemonic](self.m, c, instr)

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
        budget = self.max_cycles
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
                    self.advance(c, outcome)
                    progressed = True
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
        max_cycles: int,
        prices: dict[tuple[int, Instr, tuple[int, int]], tuple[Price, int]] | None = None,
        iterations: list[int] | None = None,
        trace: list[tuple[int, int, int, str, str]] | None = None,
    ) -> None:
        super().__init__(machine, max_cycles, prices)
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
            if c.time > self.max_cycles:
                raise m.trap(
                    c, f"no halt after {self.max_cycles:,} cycles (cycle budget exhausted)"
                )
            m.now = c.time
            pc = c.pc
            outcome = self.step(c)
            if outcome == BLOCKED:
                blocked.add(c.index)
                continue
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
