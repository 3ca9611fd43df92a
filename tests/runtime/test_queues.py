"""Finite receive queues (issue 13, a network with finite queues): with core.recv_queue_words
set, a send waits while its message does not fit its receiver's queue; a schedule that cannot
go on is a trap naming every core and what it waits for; results stay those of the functional
simulator, which has no queues."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import imcc
from imcc.isa.diagnostics import CoreLoc, SimulationError, TargetError
from imcc.isa.program import Program
from imcc.isa.target import Target
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
    noc.send c1, 0, r1, 4
    noc.send c1, 0, r1, 4
    ctl.halt
.core 1
    ctl.set r0, 16
    ctl.set r1, 256
    ctl.set r2, 260
    simd.relu r1, r1, 8000
    noc.recv c0, 0, r1, 4
    noc.recv c0, 0, r2, 4
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
    return [(s, n) for c, s, n, u, _ in sim.trace(x) if c == core and u == unit]


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
# queue, both wait for room at their second send, forever.
CROSSED = (
    IO
    + """
.core 0
    ctl.set r1, 64
    noc.send c1, 0, r1, 4
    noc.send c1, 0, r1, 4
    noc.recv c1, 0, r1, 4
    noc.recv c1, 0, r1, 4
    ctl.halt
.core 1
    ctl.set r1, 64
    noc.send c0, 0, r1, 4
    noc.send c0, 0, r1, 4
    noc.recv c0, 0, r1, 4
    noc.recv c0, 0, r1, 4
    ctl.halt
"""
)


def test_a_schedule_that_waits_on_full_queues_is_a_trap_naming_each_core() -> None:
    with pytest.raises(SimulationError) as info:
        imcc.Simulator(with_queue(CROSSED, 4), mode="cycle").run(X)
    assert info.value.loc == CoreLoc(0, 2, "noc.send")
    assert str(info.value) == (
        "core 0 pc 2 (noc.send): deadlock: every running core waits for the network (core 0 "
        "pc 2 waits for room in core 1's receive queue (4 of 4 words held), core 1 pc 2 waits "
        "for room in core 0's receive queue (4 of 4 words held))"
    )
    # with room for both, or in the functional simulator, it runs
    imcc.Simulator(with_queue(CROSSED, 8), mode="cycle").run(X)
    imcc.Simulator(with_queue(CROSSED, 4), mode="functional").run(X)


def test_a_message_larger_than_the_queue_traps_at_its_send() -> None:
    with pytest.raises(SimulationError) as info:
        imcc.Simulator(with_queue(TWO_MESSAGES, 3), mode="cycle").run(X)
    assert info.value.loc == CoreLoc(0, 3, "noc.send")
    assert "a message of 4 words cannot fit core 1's receive queue of 3 words" in str(info.value)


def test_a_negative_queue_size_is_a_target_error_naming_it() -> None:
    data = program(TWO_MESSAGES).target.to_dict()
    data["core"]["recv_queue_words"] = -4
    with pytest.raises(TargetError, match=r"core\.recv_queue_words = -4"):
        Target.from_dict(data)


def test_the_queue_size_is_recorded_only_when_set() -> None:
    p = program(TWO_MESSAGES)
    assert "recv_queue_words" not in p.target.to_json()
    assert '"recv_queue_words":4' in with_queue(TWO_MESSAGES, 4).target.to_json()
