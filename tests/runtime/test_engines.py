"""The functional and cycle-level simulators on hand-written programs: same outputs always;
cycle counts equal the analytic count from the cost table."""

from __future__ import annotations

import math

import numpy as np
import pytest

import imcc
from imcc.compiler.target import load_target
from imcc.isa import spec
from imcc.isa.diagnostics import SimulationError
from imcc.isa.encoding import make
from imcc.runtime.costs import Network, price, route, transfer_cycles
from tests.runtime.programs import image_directive, with_io

COST = load_target().cost


def both_modes(binary: imcc.Binary, x: np.ndarray) -> tuple[np.ndarray, imcc.RunReport]:
    functional = imcc.Simulator(binary, mode="functional").run(x)
    cycle = imcc.Simulator(binary, mode="cycle").run(x)
    assert np.array_equal(functional.outputs["y"], cycle.outputs["y"])
    assert functional.report.counts == cycle.report.counts
    return cycle.outputs["y"], cycle.report


def test_a_loop_runs_its_body_n_times_and_costs_n_times() -> None:
    # y = x + 3 * 1, as three simd.add of a constant 1 in a loop
    program = with_io(
        ".const 8 1.0 1.0 1.0 1.0\n.core 0\n"
        "    ctl.set r0, 0\n    ctl.set r1, 8\n    ctl.set r3, 16\n"
        "    mem.load r0, r0, 4\n    mem.load r1, r1, 4\n"
        "body:\n    simd.add r0, r0, r1, 4\n    ctl.loop r2, 3, body\n"
        "    mem.store r3, r0, 4\n    ctl.halt\n"
    )
    y, report = both_modes(program, np.array([[1.0, 2.0, 3.0, 4.0]]))
    assert y.tolist() == [[4.0, 5.0, 6.0, 7.0]]
    mem = COST.mem_cycles + math.ceil(4 / 8)
    expected = 3 * COST.ctl_cycles + 2 * mem + 3 * (COST.simd_cycles + COST.ctl_cycles) + mem
    expected += COST.ctl_cycles  # halt
    assert report.cycles == expected
    assert report.counts["instructions"] == 3 + 2 + 6 + 1 + 1


def test_send_and_receive_between_cores_wait_for_the_mesh() -> None:
    # core 0 loads x and sends it to core 3 (2 hops on the 2x2 mesh), which stores it as y
    program = with_io(
        ".core 0\n    ctl.set r0, 0\n    mem.load r0, r0, 4\n    noc.send c3, r31, 7, r0, 4\n"
        "    ctl.halt\n"
        ".core 1\n    ctl.halt\n.core 2\n    ctl.halt\n"
        ".core 3\n    ctl.set r0, 100\n    noc.recv c0, r31, 7, r0, 4\n    ctl.set r1, 16\n"
        "    mem.store r1, r0, 4\n    ctl.halt\n"
    )
    y, report = both_modes(program, np.array([[1.0, -2.0, 3.0, -4.0]]))
    assert y.tolist() == [[1.0, -2.0, 3.0, -4.0]]
    mem = COST.mem_cycles + math.ceil(4 / 8)
    send_issue = COST.ctl_cycles + mem  # core 0 issues the send at this cycle
    arrival = send_issue + 2 * COST.noc_hop_cycles + math.ceil(4 / COST.noc_words_per_cycle)
    recv = 1 + math.ceil(4 / COST.noc_words_per_cycle)
    expected = arrival + recv + COST.ctl_cycles + mem + COST.ctl_cycles
    assert report.cycles == expected
    assert report.stall_cycles == arrival - COST.ctl_cycles
    assert report.counts["noc_word_hops"] == 8


@pytest.mark.parametrize("shared", [True, False])
def test_two_messages_on_one_link_wait_for_each_other(shared: bool) -> None:
    """Cores 0 and 1 each send 64 words at the same cycle on the 2x2 mesh. Both to core 3
    (XY routes 0 -> 1 -> 3 and 1 -> 3) share link 1 -> 3; core 0 sends first (ties go to the
    lower core), so core 1's message waits there until core 0's has crossed it. To cores 2
    and 3 (routes 0 -> 2 and 1 -> 3) nothing is shared and nothing waits."""
    dst0 = 3 if shared else 2
    program = with_io(
        f".core 0\n    ctl.set r0, 0\n    noc.send c{dst0}, r31, 1, r0, 64\n    ctl.halt\n"
        ".core 1\n    ctl.set r0, 0\n    noc.send c3, r31, 2, r0, 64\n    ctl.halt\n"
        ".core 2\n    ctl.set r0, 0\n"
        + ("" if shared else "    noc.recv c0, r31, 1, r0, 64\n")
        + "    ctl.halt\n"
        ".core 3\n    ctl.set r0, 0\n"
        + ("    noc.recv c0, r31, 1, r0, 64\n" if shared else "")
        + "    noc.recv c1, r31, 2, r0, 64\n    ctl.halt\n"
    )
    _, report = both_modes(program, np.zeros((1, 4)))
    hop, serialise = COST.noc_hop_cycles, math.ceil(64 / COST.noc_words_per_cycle)
    sent = COST.ctl_cycles  # both sends issue after one ctl.set
    recv = 1 + serialise  # the receive's own cost (ejection)
    if shared:
        first = sent + 2 * hop + serialise  # 0 -> 1 -> 3 on an idle network
        link_free = sent + hop + serialise  # core 0's message leaves link 1 -> 3
        second = link_free + hop + serialise  # core 1's waits for it
        # core 3 receives core 0's message, then core 1's
        done = max(second, max(first, COST.ctl_cycles) + recv) + recv + COST.ctl_cycles
    else:
        first = second = sent + hop + serialise  # one hop each, no shared link
        done = max(second, COST.ctl_cycles) + recv + COST.ctl_cycles
    assert report.cycles == max(done, sent + 1 + serialise + COST.ctl_cycles)
    assert second > first if shared else second == first


def test_the_network_model_on_an_idle_mesh_is_the_analytic_transfer() -> None:
    target = load_target()
    for src, dst, n in [(0, 3, 4), (3, 0, 100), (1, 2, 17)]:
        assert Network(target).send(src, dst, n, at=5) == 5 + transfer_cycles(target, src, dst, n)
    assert route(target, 0, 3) == [(0, 1), (1, 3)]  # X (along the row) first, then Y
    assert route(target, 3, 0) == [(3, 2), (2, 0)]


def test_xbar_program_replaces_the_image_mid_program() -> None:
    eye = np.eye(4, dtype=np.int64)
    twice = 2 * np.eye(4, dtype=np.int64)
    program = with_io(
        image_directive(0, eye) + image_directive(1, twice) + ".bind c0 a0 0\n.core 0\n"
        "    ctl.set r0, 0\n    ctl.set r1, 10\n    ctl.set r2, 16\n"
        "    mem.load r0, r0, 4\n    xbar.mvm a0, r0, r1, 8, 1, 1\n"
        "    xbar.program a0, 1\n    xbar.mvm a0, r1, r1, 8, 1, 1\n"
        "    mem.store r2, r1, 4\n    ctl.halt\n"
    )
    y, report = both_modes(program, np.array([[1.0, 2.0, -3.0, 4.0]]))
    assert y.tolist() == [[2.0, 4.0, -6.0, 8.0]]
    assert report.counts["cells_programmed"] == 16
    assert report.energy_breakdown_pj["programming"] == 16 * COST.xbar_program_pj_per_cell


def test_mvm_cycles_and_counts_follow_the_cost_table() -> None:
    levels = np.ones((100, 20), dtype=np.int64)
    io = (
        '.target edge-rram\n.input {"name": "x", "shape": [100], "addr": 0, "dtype": "float32", '
        '"batch_axis": true, "quant": {}}\n.output {"name": "y", "shape": [20], "addr": 200, '
        '"dtype": "float32", "batch_axis": true, "quant": {}}\n'
    )
    from tests.runtime.programs import binary

    program = binary(
        io + image_directive(0, levels) + ".bind c0 a0 0\n.core 0\n"
        "    ctl.set r0, 0\n    ctl.set r1, 200\n    mem.load r0, r0, 100\n"
        "    xbar.mvm a0, r0, r1, 8, 0, 1\n    mem.store r1, r1, 20\n    ctl.halt\n"
    )
    x = np.arange(100, dtype=np.float64)[None, :] % 256
    y, report = both_modes(program, x)
    assert y[0].tolist() == [float(x.sum())] * 20
    steps = 8  # unsigned 8-bit inputs through 1-bit DACs
    # 20 columns on 3 ADCs of 8 columns each: the busiest converts 8, one after another
    mvm = steps * (COST.xbar_read_cycles + min(20, 8) * COST.adc_cycles + COST.shift_add_cycles)
    mem_in = COST.mem_cycles + math.ceil(100 / 8)
    mem_out = COST.mem_cycles + math.ceil(20 / 8)
    assert report.cycles == 2 * COST.ctl_cycles + mem_in + mvm + mem_out + COST.ctl_cycles
    assert report.counts["adc_conversions"] == steps * 20
    assert report.counts["dac_steps"] == steps * 100
    assert report.counts["array_activations"] == steps
    assert report.energy_breakdown_pj["adc"] == pytest.approx(steps * 20 * COST.adc_pj)


def test_a_message_of_the_wrong_length_traps() -> None:
    program = with_io(
        ".core 0\n    ctl.set r0, 0\n    noc.send c1, r31, 1, r0, 4\n    ctl.halt\n"
        ".core 1\n    ctl.set r0, 0\n    noc.recv c0, r31, 1, r0, 3\n    ctl.halt\n"
    )
    with pytest.raises(
        imcc.Diagnostic,
        match=r"core 1 pc 1 \(noc.recv\): message from core 0 "
        r"tag 1 holds 4 words, the receive expects 3",
    ):
        imcc.Simulator(program, mode="functional").run(np.zeros(4))


def test_a_strided_copy_transposes_and_costs_its_words() -> None:
    """simd.copy2d with strides (inner 4, outer 1, outer destination 2): the 2x4 matrix at
    x (row-major) is written transposed, 4x2, in one instruction priced as 8 copied words."""
    program = with_io(
        ".core 0\n"
        "    ctl.set r0, 0\n    ctl.set r1, 32\n    mem.load r1, r0, 8\n"
        "    ctl.set r5, 4\n    ctl.set r6, 1\n    ctl.set r7, 2\n    ctl.set r2, 48\n"
        "    simd.copy2d r2, r1, r5, 2, 4\n"
        "    ctl.set r3, 16\n    mem.store r3, r2, 4\n    ctl.halt\n"
    )
    x = np.arange(8.0).reshape(1, 8)  # only the first 4 are the declared input; rest zero
    y, report = both_modes(program, x[:, :4])
    assert y.tolist() == [[0.0, 0.0, 1.0, 0.0]]  # transposed (2x4 of [0,1,2,3,0,0,0,0])
    assert report.counts["simd_lane_ops"] == 8  # the copy2d's words; nothing else is SIMD
    copy = price(load_target(), make(spec.SIMD_COPY2D, 2, 1, 5, 2, 4))
    assert copy.cycles == math.ceil(8 / load_target().core.simd_lanes) * COST.simd_cycles
    assert dict(copy.counts) == {"instructions": 1, "simd_lane_ops": 8, "buffer_words": 16}


@pytest.mark.parametrize(
    ("strides", "message"),
    [
        ("4, 1, -2", "must be >= 0"),
        ("4, 5000, 2", r"a = r1 = 32: range \[32, 20037\) is outside the 16384-word buffer"),
    ],
)
def test_a_strided_copy_out_of_range_traps(strides: str, message: str) -> None:
    inner, outer, dst = (s.strip() for s in strides.split(","))
    program = with_io(
        ".core 0\n"
        f"    ctl.set r5, {inner}\n    ctl.set r6, {outer}\n    ctl.set r7, {dst}\n"
        "    ctl.set r3, 1\nagain:\n    ctl.set r1, 32\n    ctl.set r2, 48\n"
        "    simd.copy2d r2, r1, r5, 2, 5\n    ctl.branch.ne r3, r3, again\n    ctl.halt\n"
    )  # a branch target, where the loader forgets the registers: the run checks them
    with pytest.raises(SimulationError, match=message):
        imcc.Simulator(program).run(np.zeros((1, 4)))
