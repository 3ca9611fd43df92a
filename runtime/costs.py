"""Time and energy of one executed instruction, from the target's cost table.

The cycle-level simulator adds these around the shared semantics; the functional simulator
uses the energy and event counts only. Prices depend on the instruction and on static machine
state (the shape of the image an array holds), never on data, so they are cached per pc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from imcc.isa import spec
from imcc.isa.encoding import Instr
from imcc.isa.numerics import input_steps
from imcc.isa.program import Program
from imcc.isa.target import Target


@dataclass(frozen=True, slots=True)
class Price:
    cycles: int
    unit: str
    energy: tuple[tuple[str, float], ...]  # (component, pJ)
    counts: tuple[tuple[str, int], ...]  # (event, count)
    units: int = 1  # units it keeps busy for its cycles: the k arrays of a span (spec.span)


def price(
    target: Target, instr: Instr, rows: int = 0, cols: int = 0, core: int = 0, peer: int = -1
) -> Price:
    """Latency and energy of `instr` on `core`; `rows`/`cols` are the array image's for xbar
    ops, `peer` the core a message goes to or comes from (its core operand plus register cr,
    which only the run knows; -1: the core operand, as if cr held 0)."""
    cost, row = target.cost, instr.spec
    lanes = target.core.simd_lanes
    ops = dict(zip((f.name for f in row.fields), instr.operands, strict=True))
    unit = row.unit.value
    energy: dict[str, float] = {}
    counts: dict[str, int] = {"instructions": 1}
    # A row with a `repeat` count (xbar.mvmb streams m vectors through the array, simd.copy2d
    # moves n words m times) is priced as its repetitions: nothing overlaps on one array or
    # one SIMD unit.
    repeat = ops[row.repeat] if row.repeat else 1
    span = ops[row.span] if row.span else 1
    if row.cost is spec.CostClass.XBAR_MVM:
        steps = len(input_steps(ops["bits"], bool(ops["signed"]), target.xbar.dac_bits))
        # the image fills columns from 0; ADC g converts columns [g k, (g + 1) k) of the
        # k = cols_per_adc it is shared by, one after another, so the busiest converts min(cols, k)
        conversions_per_adc = min(cols, target.xbar.cols_per_adc)
        # per step: drive and read the array, convert every column (the ADCs in parallel),
        # accumulate the step into the column registers
        cycles = steps * (
            cost.xbar_read_cycles + conversions_per_adc * cost.adc_cycles + cost.shift_add_cycles
        )
        # the k arrays of a span work at once, each with its own DACs and ADCs, on one input
        # read from the buffer: k times one array's events and energy, in the time of one
        counts.update(
            dac_steps=steps * rows * span,
            array_activations=steps * span,
            adc_conversions=steps * cols * span,
            shift_adds=steps * cols * span,
            buffer_words=rows + cols * span,
        )
        energy.update(
            dac=steps * rows * span * cost.dac_pj,
            array=steps * span * cost.xbar_read_pj,
            adc=steps * cols * span * cost.adc_pj,
            shift_add=steps * cols * span * cost.shift_add_pj,
            buffer=(rows + cols * span) * cost.buffer_pj_per_word,
        )
        cycles *= repeat
        counts.update((name, count * repeat) for name, count in counts.items())
        energy.update((name, pj * repeat) for name, pj in energy.items())
        counts["instructions"] = 1
    elif row.cost is spec.CostClass.XBAR_PROGRAM:
        cycles = rows * cost.xbar_program_cycles_per_row
        counts["cells_programmed"] = rows * cols
        energy["programming"] = rows * cols * cost.xbar_program_pj_per_cell
    elif row.cost in (
        spec.CostClass.SIMD_ARITH,
        spec.CostClass.SIMD_TRANSCENDENTAL,
        spec.CostClass.SIMD_REDUCE,
    ):
        n = ops["n"] * repeat
        transcendental = row.cost is spec.CostClass.SIMD_TRANSCENDENTAL
        per_group = cost.simd_transcendental_cycles if transcendental else cost.simd_cycles
        cycles = math.ceil(n / lanes) * per_group
        if row.cost is spec.CostClass.SIMD_REDUCE:
            cycles += math.ceil(math.log2(max(lanes, 2)))  # the reduction tree over lanes
        words = sum(n if a.extent == "n" or a.strided else 1 for a in row.accesses)
        counts.update(simd_lane_ops=n, buffer_words=words)
        energy.update(
            simd=n * (cost.simd_transcendental_pj if transcendental else cost.simd_pj),
            buffer=words * cost.buffer_pj_per_word,
        )
    elif row.cost is spec.CostClass.MEM:
        n = ops["n"]
        cycles = cost.mem_cycles + math.ceil(n / cost.mem_words_per_cycle)
        counts.update(memory_words=n, buffer_words=n)
        energy.update(memory=n * cost.mem_pj_per_word, buffer=n * cost.buffer_pj_per_word)
    elif row.cost is spec.CostClass.TILE and target.tile is not None:
        n, tile = ops["n"], target.tile
        cycles = tile.memory_cycles + math.ceil(n / tile.memory_words_per_cycle)
        counts.update(tile_words=n, buffer_words=n)
        energy.update(tile_memory=n * tile.memory_pj_per_word, buffer=n * cost.buffer_pj_per_word)
    elif row.cost is spec.CostClass.NOC:
        n = ops["n"]
        hops = target.hops(core, ops["core"] if peer < 0 else peer)
        cycles = 1 + math.ceil(n / cost.noc_words_per_cycle)  # injection / ejection time
        counts.update(noc_words=n, buffer_words=n)
        energy["buffer"] = n * cost.buffer_pj_per_word
        if row.noc is spec.Noc.SEND:  # the network energy is paid once, by the sender
            counts["noc_word_hops"] = n * hops
            energy["noc"] = n * hops * cost.noc_pj_per_word_hop
    elif row.unit is spec.Unit.ACAM and target.acam is not None:
        cycles = _acam_price(target, instr, ops, rows, cols, energy, counts)
    else:  # control, and CAM or tile work on a target without them (the loader rejects it)
        cycles = cost.ctl_cycles
        energy["control"] = cost.ctl_pj
    return Price(
        cycles=int(cycles),
        unit=unit,
        energy=tuple(sorted(energy.items())),
        counts=tuple(sorted(counts.items())),
        units=span,
    )


def _acam_price(
    target: Target,
    instr: Instr,
    ops: dict[str, int],
    rows: int,
    cols: int,
    energy: dict[str, float],
    counts: dict[str, int],
) -> int:
    """Cycles of a CAM instruction; fills its energy (pJ) and event counts.

    `rows`/`cols` are what the row's spec.Shape says: the CAM image's (held or programmed); for
    the encoder (Shape.CODING) `rows` is the number of threshold comparisons of the rank coder
    (a binary search per feature) and `cols` is 1; for the leaf read (Shape.MATCHES) `cols` is
    the number of rows a search matches (one per tree of the image).
    """
    acam, cost = target.acam, target.cost
    assert acam is not None
    row = instr.spec
    buffer_pj = cost.buffer_pj_per_word
    if row.cost is spec.CostClass.ACAM_ENCODE:
        n, k = ops["n"], ops["k"]
        # comparators work lane-parallel, one step of every binary search per encode step
        cycles = max(1, math.ceil(rows / target.core.simd_lanes)) * acam.encode_cycles
        counts.update(acam_comparisons=rows, buffer_words=n + k)
        energy.update(acam_encode=rows * acam.encode_pj, buffer=(n + k) * buffer_pj)
        return cycles
    if row.cost is spec.CostClass.ACAM_SEARCH:
        words = -(-rows // spec.MATCH_BITS)
        counts.update(cam_searches=1, cam_rows_searched=rows, cam_cells_driven=cols,
                      buffer_words=cols + words)  # fmt: skip
        energy.update(
            cam_search=rows * acam.search_pj_per_row + cols * acam.search_pj_per_cell,
            buffer=(cols + words) * buffer_pj,
        )
        return acam.search_cycles
    if row.cost is spec.CostClass.ACAM_LEAF:
        n, matches = ops["n"], cols
        words = -(-rows // spec.MATCH_BITS)
        # the match-to-address unit streams one matched row's leaf vector per cycle
        counts.update(leaf_reads=matches, buffer_words=words + 2 * n)
        energy.update(
            cam_leaf=matches * n * acam.leaf_pj_per_word, buffer=(words + 2 * n) * buffer_pj
        )
        return acam.leaf_cycles + max(matches - 1, 0)
    counts["cam_cells_programmed"] = rows * cols
    energy["cam_programming"] = rows * cols * acam.program_pj_per_cell
    return max(1, rows * acam.program_cycles_per_row)


def transfer_cycles(target: Target, src: int, dst: int, n: int) -> int:
    """Cycles from a send issuing to its data arriving on an idle network: hops, then
    serialisation."""
    cost = target.cost
    return target.hops(src, dst) * cost.noc_hop_cycles + math.ceil(n / cost.noc_words_per_cycle)


def route(target: Target, src: int, dst: int) -> list[tuple[int, int]]:
    """The directed links (core, next core) of XY routing: along the row first, then the
    column."""
    cols = target.chip.mesh_cols
    (r, c), (r1, c1) = target.mesh_position(src), target.mesh_position(dst)
    links = []
    while c != c1:
        step = 1 if c1 > c else -1
        links.append((r * cols + c, r * cols + c + step))
        c += step
    while r != r1:
        step = 1 if r1 > r else -1
        links.append((r * cols + c, (r + step) * cols + c))
        r += step
    return links


class Network:
    """Link contention on the mesh: a message holds each link of its route for its
    serialisation time, ceil(n / words_per_cycle) cycles; its head moves on one hop
    (noc_hop_cycles) after entering a link, or waits there until the next link is free
    (cut-through, links granted first come first served in send order). On an idle network
    the arrival is exactly `transfer_cycles`."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.free: dict[tuple[int, int], int] = {}  # link -> first cycle it is free

    def send(self, src: int, dst: int, n: int, at: int) -> int:
        """Reserve the route for a message sent at cycle `at`; returns its arrival cycle."""
        cost = self.target.cost
        serialise = math.ceil(n / cost.noc_words_per_cycle)
        head = at
        for link in route(self.target, src, dst):
            enter = max(head, self.free.get(link, 0))
            self.free[link] = enter + serialise
            head = enter + cost.noc_hop_cycles
        return head + serialise


def leaking_cores(program: Program) -> int:
    """The cores whose leakage a run pays for: every core of the chip, or, on a chip with
    power gating, the cores the program uses: code beyond the final halt (every core that has
    code ends with one), or an array (crossbar or CAM) bound to an image at load."""
    chip = program.target.chip
    if not chip.power_gating:
        return chip.cores
    used = {core for core, code in enumerate(program.code) if len(code) > 1}
    used |= {b.core for b in (*program.bindings, *program.cam_bindings)}
    return max(1, len(used))  # core 0 always runs: it halts the program
