"""Finite receive queues (issue 13, a network with finite queues): with core.recv_queue_words
set, every (sender, receiver) pair has a queue of that many words, as PUMA's receive buffer has
FIFO entries per sending tile; a send waits while its message does not fit its own pair's
queue, whatever other senders hold. A schedule that cannot go on is rejected at load
(isa/protocol.py) and, run without that check, is a trap naming every core and what it waits
for; results stay those of the functional simulator, which has no queues."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import imcc
from imcc.isa.diagnostics import (
    BinaryFormatError,
    CoreLoc,
    SectionLoc,
    SimulationError,
    TargetError,
)
from imcc.isa.program import Program
from imcc.isa.protocol import ROOM, ProtocolError
from imcc.isa.target import Target
from imcc.runtime.devices import make_device
from imcc.runtime.engine import CycleEngine, FunctionalEngine, Tally
from imcc.runtime.machine import Machine
from tests.runtime.programs import IO, program

# Core 0 sends core 1 two 4-word messages; core 1 first works a while (a long vector op),
# then takes both, adds them and stores the sum.
TWO_MESSAGES = (
    IO
    + """
.core 0
    ctl.set r0, 0
    ctl.set r1, 64
    mem.load r1, r0, 4
    noc.send c1, r31, 0, r1, 4
    noc.send c1, r31, 0, r1, 4
    ctl.halt
.core 1
    ctl.set r0, 16
    ctl.set r1, 256
    ctl.set r2, 260
    simd.relu r1, r1, 8000
    noc.recv c0, r31, 0, r1, 4
    noc.recv c0, r31, 0, r2, 4
    simd.add r1, r1, r2, 4
    mem.store r0, r1, 4
    ctl.halt
"""
)


def with_queue(text: str, words: int) -> Program:
    p = program(text)
    core = dataclasses.replace(p.target.core, recv_queue_words=words)
    return dataclasses.replace(p, target=dataclasses.replace(p.target, core=core))


def starts(sim: imcc.Simulator, x: np.ndarray, core: int, unit: str) -> list[tuple[int, int]]:
    """(start, cycles) of core's instructions of `unit`, in issue order."""
    return [(s, n) for c, s, n, u, _, _ in sim.trace(x) if c == core and u == unit]


X = np.array([[1.0, -2.0, 3.0, -4.0]])


def test_a_full_queue_stalls_its_sender_until_the_receiver_takes_a_message() -> None:
    unbounded = imcc.Simulator(with_queue(TWO_MESSAGES, 0), mode="cycle")
    one_message = imcc.Simulator(with_queue(TWO_MESSAGES, 4), mode="cycle")
    free_sends = starts(unbounded, X, 0, "noc")
    held_sends = starts(one_message, X, 0, "noc")
    first_recv_start, first_recv_cycles = starts(one_message, X, 1, "noc")[0]
    # unbounded: the two sends go back to back; with room for one message, the second send
    # starts when core 1's first receive completes
    assert free_sends[1][0] == free_sends[0][0] + free_sends[0][1]
    assert held_sends[1][0] == first_recv_start + first_recv_cycles > free_sends[1][0]
    stall = held_sends[1][0] - free_sends[1][0]
    free_report = unbounded.run(X).report
    held_report = one_message.run(X).report
    assert held_report.stall_cycles is not None and free_report.stall_cycles is not None
    # the sender's wait is a stall of its own cause; the receiver may then wait for the later
    # message too (a message stall)
    assert held_report.stalls.get("queue") == stall and not free_report.stalls.get("queue")
    assert held_report.stall_cycles == sum(held_report.stalls.values())
    assert held_report.stall_cycles - free_report.stall_cycles >= stall
    assert f"queue {stall:,}" in held_report.table()
    assert held_report.cycles is not None and free_report.cycles is not None
    assert held_report.cycles > free_report.cycles
    # the results are the functional simulator's, which has no queues
    functional = imcc.Simulator(with_queue(TWO_MESSAGES, 4), mode="functional").run(X)
    y = one_message.run(X).outputs["y"]
    assert np.array_equal(y, functional.outputs["y"])
    assert np.array_equal(y, (2 * X).astype(np.float32))


def test_a_queue_that_holds_both_messages_does_not_stall() -> None:
    roomy = imcc.Simulator(with_queue(TWO_MESSAGES, 8), mode="cycle")
    unbounded = imcc.Simulator(with_queue(TWO_MESSAGES, 0), mode="cycle")
    assert roomy.trace(X) == unbounded.trace(X)


# Each core sends the other two messages before receiving any: with room for one message per
# queue, both wait for room at their second send, forever (whatever the timing).
CROSSED = (
    IO
    + """
.core 0
    ctl.set r1, 64
    noc.send c1, r31, 0, r1, 4
    noc.send c1, r31, 0, r1, 4
    noc.recv c1, r31, 0, r1, 4
    noc.recv c1, r31, 0, r1, 4
    ctl.halt
.core 1
    ctl.set r1, 64
    noc.send c0, r31, 0, r1, 4
    noc.send c0, r31, 0, r1, 4
    noc.recv c0, r31, 0, r1, 4
    noc.recv c0, r31, 0, r1, 4
    ctl.halt
"""
)


def test_a_schedule_that_waits_on_full_queues_is_rejected_at_load_naming_each_core() -> None:
    for mode in ("cycle", "functional"):  # the target's queues, whichever engine runs it
        with pytest.raises(BinaryFormatError) as info:
            imcc.Simulator(with_queue(CROSSED, 4), mode=mode)
        assert info.value.loc == SectionLoc("<program>", "CODE[0]")
        assert str(info.value) == (
            "<program>: section CODE[0]: deadlock: no core can go on: core 0 pc 2 (noc.send) "
            "waits for room in its queue to core 1 (4 of 4 words held); core 1 pc 2 (noc.send) "
            "waits for room in its queue to core 0 (4 of 4 words held) (core 0 waits for core "
            "1, which waits for core 0)"
        )
        cause = info.value.__cause__  # the protocol check's own error, with every wait
        assert isinstance(cause, ProtocolError) and cause.loc == CoreLoc(0, 2, "noc.send")
        assert [(w.core, w.pc, w.on, w.tag, w.held) for w in cause.waits] == [
            (0, 2, 1, ROOM, 4),
            (1, 2, 0, ROOM, 4),
        ]
    # with room for both messages per queue, or with unbounded queues, it runs
    imcc.Simulator(with_queue(CROSSED, 8), mode="cycle").run(X)
    imcc.Simulator(with_queue(CROSSED, 0), mode="cycle").run(X)


Engines = type[FunctionalEngine] | type[CycleEngine]


def run_unchecked(p: Program, engine: Engines = CycleEngine) -> None:
    """Run p on an engine without the loader (and so without its protocol check), as a
    hand-built Machine does: the run-time trap is the last line of defence."""
    machine = Machine(p, make_device("ideal"), seed=0)
    machine.reset(1)
    engine(machine, None).run(Tally())


@pytest.mark.parametrize("engine", [FunctionalEngine, CycleEngine])
def test_an_unchecked_receive_without_send_traps_naming_the_core(engine: Engines) -> None:
    text = IO + ".core 0\nctl.set r0, 0\nnoc.recv c1, r31, 5, r0, 4\nctl.halt\n.core 1\nctl.halt\n"
    with pytest.raises(SimulationError) as info:
        run_unchecked(program(text), engine)
    assert str(info.value) == (
        "core 0 pc 1 (noc.recv): deadlock: every running core waits for a message "
        "(core 0 pc 1 waits for core 1 tag 5)"
    )


def test_an_unchecked_schedule_that_waits_on_full_queues_traps_naming_each_core() -> None:
    with pytest.raises(SimulationError) as info:
        run_unchecked(with_queue(CROSSED, 4))
    assert info.value.loc == CoreLoc(0, 2, "noc.send")
    assert str(info.value) == (
        "core 0 pc 2 (noc.send): deadlock: every running core waits for the network (core 0 "
        "pc 2 waits for room in its queue to core 1 (4 of 4 words held), core 1 pc 2 waits "
        "for room in its queue to core 0 (4 of 4 words held))"
    )
    run_unchecked(with_queue(CROSSED, 8))


def test_a_message_larger_than_the_queue_is_rejected_at_load_naming_its_send() -> None:
    with pytest.raises(BinaryFormatError) as info:
        imcc.Simulator(with_queue(TWO_MESSAGES, 3), mode="cycle")
    assert str(info.value) == (
        "<program>: section CODE[0]: core 0 pc 3 sends a message of 4 words, larger than its "
        "3-word queue to core 1"
    )
    cause = info.value.__cause__
    assert isinstance(cause, ProtocolError) and cause.loc == CoreLoc(0, 3, "noc.send")
    # unchecked, the cycle-level engine traps at the same send
    with pytest.raises(SimulationError) as trap:
        run_unchecked(with_queue(TWO_MESSAGES, 3))
    assert trap.value.loc == CoreLoc(0, 3, "noc.send")
    assert "a message of 4 words cannot fit its queue to core 1 of 3 words" in str(trap.value)


# Cores 0 and 2 both send to core 1, whose queues hold one 4-word message per sender. Core 2
# sends two messages at once; core 0 first works a while. Core 1 takes core 0's message first,
# works, then core 2's two. Core 2's queue is full (its second send waits) while core 0 sends:
# with one queue shared by all senders, core 0's send would wait for room that only core 1's
# receive from core 2 could make, and core 1 waits for core 0: a deadlock. Per sender, core 0's
# queue is empty, so its send goes at once and y = 3x.
TWO_SENDERS = (
    IO
    + """
.core 0
    ctl.set r0, 0
    ctl.set r1, 64
    ctl.set r2, 256
    simd.relu r2, r2, 2000
    mem.load r1, r0, 4
    noc.send c1, r31, 0, r1, 4
    ctl.halt
.core 1
    ctl.set r0, 16
    ctl.set r1, 256
    ctl.set r2, 260
    ctl.set r3, 264
    ctl.set r4, 512
    noc.recv c0, r31, 0, r1, 4
    simd.relu r4, r4, 8000
    noc.recv c2, r31, 0, r2, 4
    noc.recv c2, r31, 0, r3, 4
    simd.add r1, r1, r2, 4
    simd.add r1, r1, r3, 4
    mem.store r0, r1, 4
    ctl.halt
.core 2
    ctl.set r0, 0
    ctl.set r1, 64
    mem.load r1, r0, 4
    noc.send c1, r31, 0, r1, 4
    noc.send c1, r31, 0, r1, 4
    ctl.halt
"""
)


def test_a_full_queue_of_one_sender_does_not_hold_another_senders_message() -> None:
    per_sender = imcc.Simulator(with_queue(TWO_SENDERS, 4), mode="cycle")
    unbounded = imcc.Simulator(with_queue(TWO_SENDERS, 0), mode="cycle")
    (core0_send,) = starts(per_sender, X, 0, "noc")
    core2_sends = starts(per_sender, X, 2, "noc")
    receives = starts(per_sender, X, 1, "noc")
    # core 2's first message is queued before core 0 sends, and its queue stays full (its
    # second send waits) until core 1's receive from core 2, long after core 0's send
    assert core2_sends[0][0] + core2_sends[0][1] <= core0_send[0]
    second_from_core2 = receives[1][0] + receives[1][1]
    assert core2_sends[1][0] == second_from_core2 > core0_send[0]
    # core 0's send is not delayed at all: it starts as with unbounded queues
    assert core0_send == starts(unbounded, X, 0, "noc")[0]
    result = per_sender.run(X)
    stall = core2_sends[1][0] - starts(unbounded, X, 2, "noc")[1][0]
    assert stall > 0 and result.report.stalls.get("queue") == stall  # core 2's wait only
    assert np.array_equal(result.outputs["y"], (3 * X).astype(np.float32))
    functional = imcc.Simulator(with_queue(TWO_SENDERS, 4), mode="functional").run(X)
    assert np.array_equal(result.outputs["y"], functional.outputs["y"])


def test_a_negative_queue_size_is_a_target_error_naming_it() -> None:
    data = program(TWO_MESSAGES).target.to_dict()
    data["core"]["recv_queue_words"] = -4
    with pytest.raises(TargetError, match=r"core\.recv_queue_words = -4"):
        Target.from_dict(data)


def test_the_queue_size_is_recorded_only_when_set() -> None:
    p = program(TWO_MESSAGES)
    assert "recv_queue_words" not in p.target.to_json()
    assert '"recv_queue_words":4' in with_queue(TWO_MESSAGES, 4).target.to_json()
