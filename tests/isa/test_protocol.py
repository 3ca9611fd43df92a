"""The static message-protocol check (isa/protocol.py): hand-written programs whose cores can or
cannot all reach their halt, with unbounded and finite per-(sender, receiver) queues and with
loops of messages; then the compiler's schedules, and the compile-time error for one that
would deadlock."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

import imcc
from imcc.compiler.codegen.emitter import Emitter
from imcc.compiler.target import load_target
from imcc.isa import spec
from imcc.isa.diagnostics import BinaryFormatError, CompileError, CoreLoc, NodeLoc
from imcc.isa.encoding import make
from imcc.isa.program import Program
from imcc.isa.protocol import ROOM, ProtocolError, Wait, check_protocol
from imcc.isa.target import Target
from tests.compiler.codegen.graphs import executed
from tests.conftest import mlp_onnx
from tests.runtime.programs import IO, program


def with_queue(p: Program, words: int) -> Program:
    core = dataclasses.replace(p.target.core, recv_queue_words=words)
    return dataclasses.replace(p, target=dataclasses.replace(p.target, core=core))


def deadlock(p: Program) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        check_protocol(p)
    return info.value


def waits(error: ProtocolError) -> list[tuple[int, int, int, int]]:
    """(core, pc, core waited for, tag or ROOM) of every waiting core."""
    return [(w.core, w.pc, w.on, w.tag) for w in error.waits]


# -- messages ---------------------------------------------------------------------------------
# Each core receives from the other before it sends: neither can go on, whatever the queues.
RECEIVE_FIRST = (
    IO
    + """
.core 0
    ctl.set r1, 64
    noc.recv c1, r31, 3, r1, 4
    noc.send c1, r31, 3, r1, 4
    ctl.halt
.core 1
    ctl.set r1, 64
    noc.recv c0, r31, 3, r1, 4
    noc.send c0, r31, 3, r1, 4
    ctl.halt
"""
)


def test_two_cores_that_receive_before_they_send_deadlock_naming_the_cycle() -> None:
    p = dataclasses.replace(program(RECEIVE_FIRST), debug={(0, 1): "fc0", (1, 1): "fc1"})
    error = deadlock(p)
    assert error.loc == CoreLoc(0, 1, "noc.recv", "fc0")
    assert error.message == (
        "deadlock: no core can go on: core 0 pc 1 (noc.recv) [node 'fc0'] waits for a message "
        "from core 1 tag 3; core 1 pc 1 (noc.recv) [node 'fc1'] waits for a message from core "
        "0 tag 3 (core 0 waits for core 1, which waits for core 0)"
    )
    assert error.waits == (
        Wait(core=0, pc=1, mnemonic="noc.recv", node="fc0", on=1, tag=3),
        Wait(core=1, pc=1, mnemonic="noc.recv", node="fc1", on=0, tag=3),
    )
    # the same with finite queues: no send ever runs
    assert waits(deadlock(with_queue(p, 4))) == [(0, 1, 1, 3), (1, 1, 0, 3)]


def test_a_cycle_of_three_cores_is_named_in_order() -> None:
    text = IO + "".join(
        f".core {c}\n    ctl.set r1, 64\n    noc.recv c{(c + 1) % 3}, r31, 0, r1, 4\n"
        f"    noc.send c{(c + 2) % 3}, r31, 0, r1, 4\n    ctl.halt\n"
        for c in range(3)
    )
    error = deadlock(program(text))
    assert waits(error) == [(0, 1, 1, 0), (1, 1, 2, 0), (2, 1, 0, 0)]
    assert error.message.endswith(
        "(core 0 waits for core 1, which waits for core 2, which waits for core 0)"
    )


def test_a_wait_on_a_halted_core_or_one_without_code_names_the_chain() -> None:
    halted = IO + ".core 0\n    ctl.set r1, 64\n    noc.recv c1, r31, 5, r1, 4\n    ctl.halt\n"
    halted += ".core 1\n    ctl.halt\n"
    error = deadlock(program(halted))
    assert error.message == (
        "deadlock: no core can go on: core 0 pc 1 (noc.recv) waits for a message from core 1 "
        "tag 5 (core 0 waits for core 1, which has halted)"
    )
    # core 2 is on the chip (edge-rram has 4 cores) but the program gives it no code; core 0
    # waits for core 1, which waits for core 2
    idle = IO + ".core 0\n    ctl.set r1, 64\n    noc.recv c1, r31, 5, r1, 4\n    ctl.halt\n"
    idle += ".core 1\n    ctl.set r1, 64\n    noc.recv c2, r31, 5, r1, 4\n    ctl.halt\n"
    error = deadlock(program(idle))
    assert error.message.endswith(
        "(core 0 waits for core 1, which waits for core 2, which runs no code)"
    )


# Core 0 sends two 4-word messages to core 1 (tags 0 then 1), then waits for core 1's reply;
# core 1 takes tag 1 first, replies, then takes tag 0. Tags are separate channels, so with
# room for both messages it runs; with a 4-word queue per sender, core 0's second send waits
# for room that only core 1's receive of tag 0 could make, after its receive of tag 1.
TAGS_OUT_OF_ORDER = (
    IO
    + """
.core 0
    ctl.set r1, 64
    noc.send c1, r31, 0, r1, 4
    noc.send c1, r31, 1, r1, 4
    noc.recv c1, r31, 2, r1, 4
    ctl.halt
.core 1
    ctl.set r1, 64
    noc.recv c0, r31, 1, r1, 4
    noc.send c0, r31, 2, r1, 4
    noc.recv c0, r31, 0, r1, 4
    ctl.halt
"""
)


def test_a_finite_queue_can_deadlock_what_a_larger_one_runs() -> None:
    p = program(TAGS_OUT_OF_ORDER)
    check_protocol(p)  # unbounded
    check_protocol(with_queue(p, 8))  # room for both messages
    error = deadlock(with_queue(p, 4))
    assert waits(error) == [(0, 2, 1, ROOM), (1, 1, 0, 1)]
    assert error.message == (
        "deadlock: no core can go on: core 0 pc 2 (noc.send) waits for room in its queue to "
        "core 1 (4 of 4 words held); core 1 pc 1 (noc.recv) waits for a message from core 0 "
        "tag 1 (core 0 waits for core 1, which waits for core 0)"
    )
    # the cycle-level engine agrees: the loader rejects it, and it runs with room for both
    with pytest.raises(BinaryFormatError, match="waits for room in its queue to core 1"):
        imcc.Simulator(with_queue(p, 4), mode="cycle")
    imcc.Simulator(with_queue(p, 8), mode="cycle").run(np.zeros(4))


def test_queues_are_per_sender_so_another_senders_messages_take_no_room() -> None:
    # cores 0 and 2 each send core 1 one 4-word message; core 1 takes core 2's last. With one
    # 4-word queue per sender nothing waits; a queue shared by both would hold only one.
    text = IO + ".core 0\n    ctl.set r1, 64\n    noc.send c1, r31, 0, r1, 4\n    ctl.halt\n"
    text += ".core 1\n    ctl.set r1, 64\n    noc.recv c0, r31, 0, r1, 4\n"
    text += "    noc.recv c2, r31, 0, r1, 4\n    ctl.halt\n"
    text += ".core 2\n    ctl.set r1, 64\n    noc.send c1, r31, 0, r1, 4\n    ctl.halt\n"
    check_protocol(with_queue(program(text), 4))


def test_a_message_larger_than_its_queue_is_an_error_at_its_send() -> None:
    p = with_queue(program(TAGS_OUT_OF_ORDER), 3)
    error = deadlock(p)
    assert error.loc == CoreLoc(0, 1, "noc.send")
    assert error.message == (
        "core 0 pc 1 sends a message of 4 words, larger than its 3-word queue to core 1"
    )
    assert error.waits == ()


# -- loops --------------------------------------------------------------------------------
def looped(outer: int, inner: int, receives: int, queue: int = 0) -> Program:
    """Core 0 sends outer x inner 4-word messages from two nested ctl.loops; core 1 takes
    `receives` of them in one loop counted down by ctl.add and ctl.branch.lt."""
    text = f"""
.core 0
    ctl.set r1, 64
outer:
    ctl.nop
inner:
    noc.send c1, r31, 7, r1, 4
    ctl.loop r3, {inner}, inner
    ctl.loop r2, {outer}, outer
    ctl.halt
.core 1
    ctl.set r1, 64
    ctl.set r2, 0
    ctl.set r3, {receives}
again:
    noc.recv c0, r31, 7, r1, 4
    ctl.add r2, r2, 1
    ctl.branch.lt r2, r3, again
    ctl.halt
"""
    return with_queue(program(IO + text), queue)


@pytest.mark.parametrize("queue", [0, 4, 8])
def test_loops_of_messages_are_followed_at_their_trip_counts(queue: int) -> None:
    check_protocol(looped(3, 4, 12, queue))  # 3 x 4 sends, 12 receives
    # one receive too many: core 1 waits at its receive (pc 3) for a 13th message
    error = deadlock(looped(3, 4, 13, queue))
    assert waits(error) == [(1, 3, 0, 7)]
    assert error.message.endswith("(core 1 waits for core 0, which has halted)")
    if not queue:  # an unbounded queue keeps every message never received: no deadlock
        check_protocol(looped(3, 4, 1, queue))
        return
    # messages left unreceived: as many as the queue holds is fine, one more waits for room
    held = queue // 4
    check_protocol(looped(3, 4, 12 - held, queue))
    error = deadlock(looped(3, 4, 12 - held - 1, queue))
    assert waits(error) == [(0, 2, 1, ROOM)]
    assert f"({queue} of {queue} words held)" in error.message


def test_a_loop_without_messages_runs_its_trips_at_once() -> None:
    # 2^24 - 1 trips of a vector op, then a receive nothing sends: the check follows the loop
    # in one step (else it would give up, unchecked, at MAX_STEPS) and finds the deadlock
    text = (
        IO
        + f"""
.core 0
    ctl.set r1, 64
spin:
    simd.relu r1, r1, 4
    ctl.loop r2, {(1 << 24) - 1}, spin
    noc.recv c1, r31, 0, r1, 4
    ctl.halt
.core 1
    ctl.halt
"""
    )
    assert waits(deadlock(program(text))) == [(0, 3, 1, 0)]


def test_a_program_the_check_cannot_follow_to_its_end_is_skipped() -> None:
    # core 0 sends forever: with unbounded queues the check gives up (MAX_STEPS) without an
    # error, as the simulators' budgets stop such a program at run time; with a finite queue
    # core 0 waits for room once it is full, which is a deadlock
    text = (
        IO
        + """
.core 0
    ctl.set r1, 64
forever:
    noc.send c1, r31, 0, r1, 4
    ctl.jump forever
.core 1
    ctl.halt
"""
    )
    check_protocol(program(text))
    error = deadlock(with_queue(program(text), 8))
    assert waits(error) == [(0, 1, 1, ROOM)]
    assert "(8 of 8 words held)" in error.message
    # a core spinning in a loop of no messages is skipped at once
    spin = IO + ".core 0\nagain:\n    ctl.jump again\n.core 1\n    ctl.halt\n"
    check_protocol(program(spin))


# -- the compiler's schedules -----------------------------------------------------------------
MODEL = mlp_onnx([300, 200, 100, 10], ["relu", "relu", "none"])  # 4 cores on edge-rram


def with_target_queue(target: Target, words: int) -> Target:
    return dataclasses.replace(
        target, core=dataclasses.replace(target.core, recv_queue_words=words)
    )


def peers_of(p: Program) -> dict[tuple[int, int], int]:
    """(core, pc) -> the core each message instruction names (core + r[cr]) when it first
    runs, the code's control followed."""
    peers: dict[tuple[int, int], int] = {}
    for core, code in enumerate(p.code):
        for pc, instr, regs in executed(code, p.target.core.registers):
            if instr.spec.noc is not spec.Noc.NONE:
                peer = instr.operand("core") + regs[instr.operand(spec.PEER_FIELD)]
                peers.setdefault((core, pc), peer)
    return peers


def sends_of(p: Program) -> list[tuple[int, int, int]]:
    """(core, pc, words) of every send."""
    return [
        (core, pc, instr.operand("n"))
        for core, code in enumerate(p.code)
        for pc, instr in enumerate(code)
        if instr.spec.noc is spec.Noc.SEND
    ]


def test_a_compiled_schedule_runs_with_a_queue_of_its_largest_message() -> None:
    target = load_target("edge-rram")
    unbounded = imcc.compile(MODEL, target)
    sends = sends_of(unbounded.program)
    assert len({core for core, _, _ in sends}) > 1  # messages between several cores
    largest = max(n for _, _, n in sends)
    tight = imcc.compile(MODEL, with_target_queue(target, largest))  # checked by emit
    assert tight.program.code == unbounded.program.code  # the queue changes no code
    x = np.random.default_rng(0).normal(size=(2, 300))
    y = imcc.Simulator(tight, mode="cycle").run(x)
    assert np.array_equal(y.outputs["y"], imcc.Simulator(unbounded).run(x).outputs["y"])


def test_a_compiled_message_larger_than_the_queue_is_a_compile_error_at_its_node() -> None:
    target = load_target("edge-rram")
    p = imcc.compile(MODEL, target).program
    largest = max(n for _, _, n in sends_of(p))
    with pytest.raises(CompileError) as info:
        imcc.compile(MODEL, with_target_queue(target, largest - 1))
    message = info.value.message
    # the error names the core and pc of one of the largest sends, and is located at its node
    ((core, pc),) = [
        (c, i) for c, i, n in sends_of(p) if n == largest and f"core {c} pc {i} sends" in message
    ]
    assert message == (  # the pass manager names the pass
        f"in pass 'emit': core {core} pc {pc} sends a message of {largest:,} words, larger "
        f"than its {largest - 1:,}-word queue to core {peers_of(p)[(core, pc)]}"
    )
    loc = info.value.loc
    assert isinstance(loc, NodeLoc) and loc.node == p.debug[(core, pc)]


def test_a_compiled_schedule_that_deadlocks_is_a_compile_error_at_the_waiting_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broken emitter (one receive's tag changed, so it waits for a message never sent)
    must not produce a binary: the emit pass names that receive and its node among the waits,
    located at the node of the first waiting core."""
    original = Emitter.run
    broken: list[tuple[int, int, int, int]] = []  # (core, pc, sender, tag)

    def retag(self: Emitter) -> Program:
        p = original(self)
        peers = peers_of(p)
        core, pc = next(
            (c, i)
            for c, code in enumerate(p.code)
            for i, instr in enumerate(code)
            if instr.spec.noc is spec.Noc.RECV
        )
        src = peers[(core, pc)]
        base, cr, _, d, n = p.code[core][pc].operands
        used = {
            instr.operand("tag")
            for i, instr in enumerate(p.code[src])
            if instr.spec.noc is spec.Noc.SEND and peers.get((src, i)) == core
        }
        unused = min(set(range(1 << spec.WIDTH[spec.OperandKind.TAG])) - used)
        p.code[core][pc] = make(spec.NOC_RECV, base, cr, unused, d, n)
        broken.append((core, pc, src, unused))
        return p

    monkeypatch.setattr(Emitter, "run", retag)
    with pytest.raises(CompileError) as info:
        imcc.compile(MODEL, load_target("edge-rram"))
    monkeypatch.undo()
    debug = imcc.compile(MODEL, load_target("edge-rram")).program.debug
    message = info.value.message
    core, pc, src, tag = broken[0]
    # the broken receive is among the waits, with its node, and the error is located at the
    # node of the first waiting core's instruction
    assert (
        f"core {core} pc {pc} (noc.recv) [node {debug[(core, pc)]!r}] waits for a message "
        f"from core {src} tag {tag}"
    ) in message
    first = re.match(r"in pass 'emit': deadlock: no core can go on: core (\d+) pc (\d+) ", message)
    assert first is not None
    loc = info.value.loc
    assert isinstance(loc, NodeLoc) and loc.node == debug[(int(first[1]), int(first[2]))]
