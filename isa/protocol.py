"""The message protocol of a whole Program, checked before it runs: can every core reach its
halt? The compiler's emit pass calls `check_protocol` on the code it generated, the runtime's
loader on every program it loads; a program whose cores would wait on each other forever is an
error naming every waiting core, its pc and node, and what it waits for.

Model (the cycle-level engine's, runtime/engine.py): each (sender, receiver) pair of cores has
a queue of core.recv_queue_words words (unbounded when 0); a send waits while its message does
not fit its pair's queue; a receive names its sender and tag, waits for the oldest message of
that (sender, receiver, tag) and frees its words in the pair's queue. Only a pair's sender fills
its queue and only its receiver drains it, and a receive waits on one named channel, so a core
able to go on stays able to until it does: the cores form a bounded Kahn process network, and
whether they all halt, or which of them wait forever and on what, does not depend on timing.
One run of the cores, each in turn until it blocks or halts (a blocked core is taken up again
when the message or the room it waits for appears), decides it for every timing.

Each core's code is executed abstractly over its control instructions (ctl.*, whose registers
are set only by immediates, so control flow never depends on data) and its messages; every
other instruction is skipped without being looked at. The work is linear in the control and
message instructions executed (a loop of neither runs in one step) and never per word. A
program is skipped, with no error, when following it costs more than MAX_STEPS steps (a loop
of messages that never ends, or runs longer than the simulators' default budgets allow), when a
core's control flow leaves its code or overflows a register, or when a core spins in a loop of
no messages forever: the simulators trap those at run time.

Not modelled: a receive whose size differs from its message's (the simulators trap it), and
the cycle-level engine's back-to-back iterations of a stream (each core restarting at its
halt). The check covers one run; a run that leaves no message unreceived can be repeated,
since running every core to the end of one run before the next starts is one schedule of the
repeated program, and the outcome does not depend on the schedule.
"""

from __future__ import annotations

import logging
import operator
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from imcc.isa import spec
from imcc.isa.diagnostics import CoreLoc, Diagnostic
from imcc.isa.encoding import Instr
from imcc.isa.program import Program

__all__ = ["MAX_STEPS", "ROOM", "ProtocolError", "Wait", "check_protocol"]

log = logging.getLogger(__name__)

# Abstract steps (control and message instructions executed) after which a program is skipped:
# about a second of host time, the order of the instructions the simulators' default budgets
# (runtime/engine.py work_budget) let a core run.
MAX_STEPS = 1 << 20

_REG_MIN, _REG_MAX = -(1 << 63), (1 << 63) - 1  # registers are signed 64-bit
ROOM = -1  # the tag of a Wait for room in a queue, rather than for a message


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait:
    """A core that cannot go on: at `pc` it waits for a message from core `on` with `tag`,
    or (tag ROOM) for room in its queue to core `on`, which holds `held` of its `capacity`."""

    core: int
    pc: int
    mnemonic: str
    node: str
    on: int
    tag: int
    held: int = 0
    capacity: int = 0

    @property
    def loc(self) -> CoreLoc:
        return CoreLoc(self.core, self.pc, self.mnemonic, self.node)

    def __str__(self) -> str:
        if self.tag == ROOM:
            return (
                f"{self.loc} waits for room in its queue to core {self.on} "
                f"({self.held:,} of {self.capacity:,} words held)"
            )
        return f"{self.loc} waits for a message from core {self.on} tag {self.tag}"


class ProtocolError(Diagnostic):
    """A program whose cores cannot all reach their halt: a deadlock (`waits` lists every
    waiting core, the first is the location), or a message larger than its queue."""

    def __init__(self, message: str, loc: CoreLoc, waits: tuple[Wait, ...] = ()) -> None:
        super().__init__(message, loc)
        self.waits = waits


class _Unknown(Exception):
    """The abstract execution cannot follow the program (see the module docstring)."""


# The instructions the abstract execution follows, decoded once per pc.
_SEND, _RECV, _SET, _ADD, _LOOP, _JUMP, _BRANCH, _HALT = range(8)
_COMPARE: dict[str, Callable[[int, int], bool]] = {
    spec.CTL_BRANCH_EQ.mnemonic: operator.eq,
    spec.CTL_BRANCH_NE.mnemonic: operator.ne,
    spec.CTL_BRANCH_LT.mnemonic: operator.lt,
}
_HAS_TARGET = {
    row.mnemonic
    for row in spec.BY_MNEMONIC.values()
    if any(f.kind is spec.OperandKind.TARGET for f in row.fields)
}
Op = tuple[int, ...]


def _decode(instr: Instr) -> tuple[Op, Callable[[int, int], bool] | None] | None:
    """(kind and operands, comparison of a branch) of an instruction the execution follows;
    None for one that neither moves control nor messages."""
    row = instr.spec
    if row.noc is not spec.Noc.NONE:  # the peer is core + r[cr]: known when it runs
        kind = _SEND if row.noc is spec.Noc.SEND else _RECV
        core, reg = instr.operand("core"), instr.operand(spec.PEER_FIELD)
        return (kind, core, reg, instr.operand("tag"), instr.operand("n")), None
    if row is spec.CTL_HALT:
        return (_HALT,), None
    if row.scalar is spec.Scalar.SET:
        return (_SET, instr.operand("d"), instr.operand("imm")), None
    if row.scalar is spec.Scalar.ADD:
        return (_ADD, instr.operand("d"), instr.operand("a"), instr.operand("imm")), None
    if row.scalar is spec.Scalar.COUNT:
        return (_LOOP, instr.operand("c"), instr.operand("trips"), instr.operand("target")), None
    if row is spec.CTL_JUMP:
        return (_JUMP, instr.operand("target")), None
    compare = _COMPARE.get(row.mnemonic)
    if compare is not None:
        a, b, target = instr.operand("a"), instr.operand("b"), instr.operand("target")
        return (_BRANCH, a, b, target), compare
    if row.mnemonic in _HAS_TARGET:  # a control instruction this check does not know
        raise _Unknown(f"{row.mnemonic} is not followed")
    return None


class _Core:
    """One core's abstract state: pc, registers, and what it waits for."""

    def __init__(self, index: int, code: list[Instr]) -> None:
        self.index = index
        self.code = code
        self.ops: dict[int, Op] = {}
        self.compare: dict[int, Callable[[int, int], bool]] = {}
        for pc, instr in enumerate(code):
            decoded = _decode(instr)
            if decoded is not None:
                self.ops[pc], compare = decoded
                if compare is not None:
                    self.compare[pc] = compare
        # next_stop[pc]: the first pc >= pc the execution follows (len(code) if none), so a
        # run of other instructions is skipped in one step
        self.next_stop = [len(code)] * (len(code) + 1)
        for pc in range(len(code) - 1, -1, -1):
            self.next_stop[pc] = pc if pc in self.ops else self.next_stop[pc + 1]
        self.pc = 0
        self.regs: dict[int, int] = defaultdict(int)
        self.halted = not code
        self.wait: tuple[int, int] | None = None  # (core, tag or ROOM)

    def pure(self, start: int, end: int) -> bool:
        """Whether [start, end) holds no instruction the execution follows."""
        return self.next_stop[start] >= end

    def control(self, pc: int, op: Op) -> None:
        """Execute a control instruction (not halt): set the registers and the next pc."""
        kind, regs = op[0], self.regs
        self.pc = pc + 1
        if kind == _SET:
            regs[op[1]] = op[2]
        elif kind == _ADD:
            value = regs[op[2]] + op[3]
            if not _REG_MIN <= value <= _REG_MAX:
                raise _Unknown(f"core {self.index} pc {pc} overflows a register")
            regs[op[1]] = value
        elif kind == _LOOP:
            self.loop(pc, op[1], op[2], op[3])
        elif kind == _JUMP or self.compare[pc](regs[op[1]], regs[op[2]]):
            self.jump(pc, op[-1])

    def loop(self, pc: int, counter: int, trips: int, target: int) -> None:
        """r[c] += 1, jumping to target while r[c] < trips, else r[c] = 0; a backward loop
        of no followed instruction runs all its trips at once (its body changes nothing
        followed)."""
        value = self.regs[counter] + 1
        if value > _REG_MAX:
            raise _Unknown(f"core {self.index} pc {pc} overflows a register")
        if value >= trips or (target <= pc and self.pure(target, pc)):
            self.regs[counter] = 0
            return
        self.regs[counter] = value
        self.pc = target

    def jump(self, pc: int, target: int) -> None:
        """A taken jump or branch; one back over no followed instruction repeats forever."""
        if target <= pc and self.pure(target, pc):
            raise _Unknown(f"core {self.index} pc {pc} loops forever without a message")
        self.pc = target


class _Network:
    """The cores and the per-(sender, receiver) queues, run until all halt or none can go on."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.capacity = program.target.core.recv_queue_words  # 0: unbounded
        self.cores = [_Core(i, code) for i, code in enumerate(program.code)]
        # (sender, receiver, tag) -> sizes of the messages sent and not yet received
        self.mailboxes: dict[tuple[int, int, int], deque[int]] = defaultdict(deque)
        self.queued: dict[tuple[int, int], int] = defaultdict(int)  # (sender, receiver) -> words
        self.ready = deque(c for c in self.cores if not c.halted)
        self.steps = 0

    def run(self) -> None:
        while self.ready:
            self.advance(self.ready.popleft())
        waiting = [c for c in self.cores if not c.halted]
        if waiting:
            raise self.deadlock(waiting)

    def advance(self, c: _Core) -> None:
        """Run core c until it halts or blocks (c.wait then says on what)."""
        end = len(c.code)
        while True:
            pc = c.pc
            if pc < end:
                pc = c.pc = c.next_stop[pc]
            if pc >= end:
                raise _Unknown(f"core {c.index} runs past the end of its code")
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise _Unknown(f"more than {MAX_STEPS:,} steps")
            op = c.ops[pc]
            kind = op[0]
            if kind == _HALT:
                c.halted = True
                return
            if kind == _SEND:
                if not self.send(c, pc, self.peer(c, pc, op), op[3], op[4]):
                    return
            elif kind == _RECV:
                if not self.receive(c, self.peer(c, pc, op), op[3]):
                    return
            else:
                c.control(pc, op)

    def peer(self, c: _Core, pc: int, op: Op) -> int:
        """A message's peer: its core operand plus register cr, as the registers hold now."""
        peer = op[1] + c.regs[op[2]]
        if not 0 <= peer < self.program.target.chip.cores or peer == c.index:
            raise _Unknown(f"core {c.index} pc {pc} names core {peer}")  # the engines trap
        return peer

    def send(self, c: _Core, pc: int, receiver: int, tag: int, n: int) -> bool:
        """Send n words to receiver, if they fit its queue from c (else c waits for room)."""
        capacity = self.capacity
        if capacity and n > capacity:
            where = CoreLoc(c.index, pc, c.code[pc].mnemonic, self.node(c.index, pc))
            raise ProtocolError(
                f"core {c.index} pc {pc} sends a message of {n:,} words, larger than its "
                f"{capacity:,}-word queue to core {receiver}",
                where,
            )
        pair = (c.index, receiver)
        if capacity and self.queued[pair] + n > capacity:
            c.wait = (receiver, ROOM)
            return False
        self.queued[pair] += n
        self.mailboxes[(c.index, receiver, tag)].append(n)
        c.wait = None
        c.pc = pc + 1
        self.wake(receiver, (c.index, tag))
        return True

    def receive(self, c: _Core, sender: int, tag: int) -> bool:
        """Take the oldest message from sender with tag, if there is one (else c waits)."""
        box = self.mailboxes.get((sender, c.index, tag))
        if not box:
            c.wait = (sender, tag)
            return False
        self.queued[(sender, c.index)] -= box.popleft()
        c.wait = None
        c.pc += 1
        self.wake(sender, (c.index, ROOM))
        return True

    def wake(self, index: int, wait: tuple[int, int]) -> None:
        """Make core `index` ready again if it waits for `wait`."""
        if index < len(self.cores) and self.cores[index].wait == wait:
            core = self.cores[index]
            core.wait = None
            self.ready.append(core)

    def node(self, core: int, pc: int) -> str:
        return self.program.debug.get((core, pc), "")

    def deadlock(self, waiting: list[_Core]) -> ProtocolError:
        waits = []
        for c in waiting:
            assert c.wait is not None  # a core that is neither halted nor ready waits
            on, tag = c.wait
            waits.append(
                Wait(
                    core=c.index,
                    pc=c.pc,
                    mnemonic=c.code[c.pc].mnemonic,
                    node=self.node(c.index, c.pc),
                    on=on,
                    tag=tag,
                    held=self.queued[(c.index, on)] if tag == ROOM else 0,
                    capacity=self.capacity if tag == ROOM else 0,
                )
            )
        listed = "; ".join(str(w) for w in waits)
        message = f"deadlock: no core can go on: {listed} ({self.chain(waits)})"
        return ProtocolError(message, waits[0].loc, tuple(waits))

    def chain(self, waits: list[Wait]) -> str:
        """The cycle of waits if there is one ("core 3 waits for core 5, which waits for core
        3"), else the chain from the first waiting core to the core it ends at."""
        on = {w.core: w.on for w in waits}
        seen: set[int] = set()
        for start in on:
            path: list[int] = []
            index = start
            while index in on and index not in seen:
                seen.add(index)
                path.append(index)
                index = on[index]
            if index in path:  # back on this path: a cycle
                cycle = path[path.index(index) :]
                return _describe([*cycle, cycle[0]], "")
        path = [waits[0].core]
        while path[-1] in on:  # no cycle: the chain ends at a core that does not wait
            path.append(on[path[-1]])
        last = path[-1]
        has_code = last < len(self.cores) and bool(self.cores[last].code)
        return _describe(path, "which has halted" if has_code else "which runs no code")


def _describe(path: list[int], end: str) -> str:
    """ "core a waits for core b, which waits for core c[, <end>]"."""
    text = f"core {path[0]} waits for core {path[1]}"
    text += "".join(f", which waits for core {index}" for index in path[2:])
    return f"{text}, {end}" if end else text


def check_protocol(program: Program) -> None:
    """Raise ProtocolError if the program's cores cannot all reach their halt (see the module
    docstring); return quietly when they can, or when the program is one the check skips."""
    try:
        _Network(program).run()
    except _Unknown as why:
        log.debug("message protocol not checked: %s", why)
