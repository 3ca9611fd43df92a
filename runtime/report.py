"""What a run reports: time, energy by component, event counts, per-layer and per-unit figures.

Figures are per inference: every sample of a batch runs the same program, so the batch takes
`batch` times as long; `Simulator.stream` (StreamReport) times samples overlapping instead.
The functional simulator counts events and dynamic energy but not time: its `cycles` and
`latency_s` are None and leakage is left out.
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from imcc.isa.program import Program


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerReport:
    node: str
    busy_cycles: int  # instruction cycles issued for this node, summed over cores
    energy_pj: float
    counts: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunReport:
    mode: str
    device: str
    target: str
    batch: int
    cycles: int | None
    latency_s: float | None
    energy_pj: float
    energy_breakdown_pj: dict[str, float]
    counts: dict[str, int]
    utilisation: dict[str, float]  # unit -> busy fraction of (cycles x cores)
    stall_cycles: int | None  # cycles cores spent waiting on the network (all of `stalls`)
    layers: tuple[LayerReport, ...]
    area_mm2: float | None = None  # the chip's, from the target's [area] table when it has one
    # stall_cycles by cause (cycle mode): "message" (a receive waiting for its message),
    # "queue" (a send waiting for room in its receiver's queue)
    stalls: dict[str, int] = field(default_factory=dict)
    # memory level -> (peak words held, capacity in words): "buffer" (the fullest core's
    # local buffer) and "global", as the compiler's allocators recorded them in the binary
    memory: dict[str, tuple[int, int]] = field(default_factory=dict)
    # memory level -> bytes moved there per inference (`traffic_bytes`): "buffer" (every
    # core's local buffer, read or written), "tile" (the tiles' shared memories), "global"
    # and "network" (words sent over the mesh)
    traffic: dict[str, int] = field(default_factory=dict)

    @property
    def throughput_per_s(self) -> float | None:
        return None if not self.latency_s else 1.0 / self.latency_s

    @property
    def tops_per_w(self) -> float | None:
        """Crossbar MAC operations (2 ops each, at the model's input precision) per pJ."""
        macs = self.counts.get("macs", 0)
        return 2 * macs / self.energy_pj if self.energy_pj else None

    @property
    def power_w(self) -> float | None:
        """Average power over one inference: its energy over its latency (cycle mode)."""
        return self.energy_pj * 1e-12 / self.latency_s if self.latency_s else None

    def gops_per_s_per_w(self, ops: float | None = None) -> float | None:
        """PUMA's energy efficiency: operations per second per watt of average power, i.e.
        operations per joule / 1e9 (leakage included in cycle mode: of the whole chip, or of
        the cores the program uses on a chip with power gating).

        `ops` per inference defaults to 2 per crossbar cell MAC, the count behind `tops_per_w`
        (so this is 1000 x that). PUMA and ISAAC count 2 per MAC of a 16-bit weight with a
        16-bit input, i.e. cell MACs / the slices per weight (8 for 16-bit weights on 2-bit
        cells with offset encoding): pass `ops = 2 x the model's MACs` for their figure.
        """
        ops = 2 * self.counts.get("macs", 0) if ops is None else ops
        return ops / (self.energy_pj * 1e-12) / 1e9 if self.energy_pj else None

    def gops_per_s_per_mm2(self, ops: float | None = None) -> float | None:
        """PUMA's computational density: operations per second (at this run's latency, one
        inference at a time) per mm2 of the whole chip (`area_mm2`); `ops` as in
        `gops_per_s_per_w`. None without a latency (functional mode) or an area table."""
        if not self.latency_s or not self.area_mm2:
            return None
        ops = 2 * self.counts.get("macs", 0) if ops is None else ops
        return ops / self.latency_s / 1e9 / self.area_mm2

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"] = [
            {"node": layer.node, "busy_cycles": layer.busy_cycles, "energy_pj": layer.energy_pj,
             "counts": dict(layer.counts)}
            for layer in self.layers
        ]  # fmt: skip
        data["throughput_per_s"] = self.throughput_per_s
        data["tops_per_w"] = self.tops_per_w
        data["power_w"] = self.power_w
        data["gops_per_s_per_w"] = self.gops_per_s_per_w()
        data["gops_per_s_per_mm2"] = self.gops_per_s_per_mm2()
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    def table(self) -> str:
        """A readable summary for people; columns are as wide as their widest entry."""
        lines = [
            f"target {self.target}, device {self.device}, {self.mode} simulation, "
            f"batch {self.batch}"
        ]
        if self.cycles is not None and self.latency_s is not None:
            lines.append(
                f"  latency      {self.cycles:,} cycles = {self.latency_s * 1e6:.3f} us "
                "per inference"
            )
        lines.append(f"  energy       {self.energy_pj / 1e3:,.3f} nJ per inference")
        if self.tops_per_w:
            lines.append(f"  efficiency   {self.tops_per_w:.3f} TOPS/W (crossbar MACs)")
        if self.area_mm2:
            density = self.gops_per_s_per_mm2()
            per_mm2 = f", {density:,.3f} GOPS/s/mm2 (crossbar MACs)" if density else ""
            lines.append(f"  area         {self.area_mm2:,.3f} mm2{per_mm2}")
        total = self.energy_pj or 1.0
        parts = [
            (component, f"{pj:,.1f} pJ", f"{100 * pj / total:.1f} %")
            for component, pj in sorted(self.energy_breakdown_pj.items(), key=lambda kv: -kv[1])
            if pj
        ]
        lines += [f"    {row}" for row in _columns(parts, "<>>")]
        if self.utilisation:
            busy = ", ".join(f"{u} {100 * f:.1f} %" for u, f in sorted(self.utilisation.items()))
            lines.append(f"  utilisation  {busy}")
        if self.memory:
            held = ", ".join(
                f"{level} {peak:,} of {capacity:,} words ({100 * peak / capacity:.1f} %)"
                for level, (peak, capacity) in self.memory.items()
            )
            lines.append(f"  memory peak  {held}")
        if any(self.traffic.values()):
            moved = ", ".join(f"{level} {_bytes(n)}" for level, n in self.traffic.items() if n)
            lines.append(f"  traffic      {moved} per inference")
        if any(self.stalls.values()):
            waits = ", ".join(f"{cause} {n:,}" for cause, n in self.stalls.items() if n)
            lines.append(f"  stalls       {waits} cycles")
        if self.layers:
            lines.append("  per layer:")
            # the functional simulator has no time: its busy cycles would only mislead
            timed = self.cycles is not None
            rows = [
                (layer.node, f"{layer.busy_cycles:,} busy cycles", f"{layer.energy_pj:,.1f} pJ")
                if timed
                else (layer.node, f"{layer.energy_pj:,.1f} pJ")
                for layer in self.layers
            ]
            lines += [f"    {row}" for row in _columns(rows, "<>>" if timed else "<>")]
        return "\n".join(lines)


def _columns(rows: Sequence[tuple[str, ...]], align: str) -> list[str]:
    """Rows of cells padded to each column's widest cell; `align` is '<' or '>' per column."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(align))]
    return [
        "  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths, strict=True)).rstrip()
        for row in rows
    ]


def graph_order(debug: Mapping[tuple[int, int], str]) -> list[str]:
    """The nodes of a binary's debug map ((core, pc) -> node) in the model's order.

    Each core runs its nodes in graph order, so every core's sequence of first appearances is a
    constraint; the order merges them (a topological sort), taking the node whose code starts
    first ((pc, core)) when several are free, and breaking a cycle the same way."""
    first: dict[str, tuple[int, int]] = {}
    per_core: dict[int, list[tuple[int, str]]] = {}
    for (core, pc), node in debug.items():
        first[node] = min(first.get(node, (pc, core)), (pc, core))
        per_core.setdefault(core, []).append((pc, node))
    after: dict[str, set[str]] = {node: set() for node in first}
    before = dict.fromkeys(first, 0)
    for entries in per_core.values():
        seen = list(dict.fromkeys(node for _, node in sorted(entries)))
        for a, b in itertools.pairwise(seen):
            if b not in after[a]:
                after[a].add(b)
                before[b] += 1
    ready = [(first[node], node) for node, count in before.items() if count == 0]
    heapq.heapify(ready)
    left = set(first)
    order: list[str] = []
    while left:
        if not ready:  # a cycle between cores' orders: take the earliest-starting node
            node = min(left, key=lambda n: (first[n], n))
            before[node] = 0
            heapq.heappush(ready, (first[node], node))
        _, node = heapq.heappop(ready)
        if node not in left:
            continue
        left.discard(node)
        order.append(node)
        for nxt in sorted(after[node]):
            before[nxt] -= 1
            if before[nxt] == 0 and nxt in left:
                heapq.heappush(ready, (first[nxt], nxt))
    return order


def in_graph_order(
    layers: Sequence[LayerReport], debug: Mapping[tuple[int, int], str]
) -> tuple[LayerReport, ...]:
    """`layers` sorted into graph order (`graph_order`); rows for no node of the debug map
    ("(unattributed)", "(drift compensation)") keep their place at the end."""
    rank = {node: i for i, node in enumerate(graph_order(debug))}
    return tuple(
        sorted(layers, key=lambda layer: rank.get(layer.node, len(rank)))  # stable sort
    )


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,} B"


# level of the report's `traffic` -> the event count of the words moved there (runtime/costs.py)
TRAFFIC_COUNTS = {
    "buffer": "buffer_words",
    "tile": "tile_words",
    "global": "memory_words",
    "network": "noc_words",
}


def traffic_bytes(counts: Mapping[str, int], word_bytes: int) -> dict[str, int]:
    """Bytes moved at each memory level, from a run's event counts."""
    return {level: counts.get(key, 0) * word_bytes for level, key in TRAFFIC_COUNTS.items()}


def memory_peaks(program: Program) -> dict[str, tuple[int, int]]:
    """(peak words, capacity) per memory level from the binary's `peak.*` meta (the
    compiler's allocators); empty for a binary without them (hand-written assembly)."""
    meta, target = program.meta, program.target
    levels = {
        "buffer": ("peak.buffer_words", target.core.buffer_words),
        "global": ("peak.global_words", target.chip.global_memory_words),
    }
    if target.tile is not None:
        levels["tile"] = ("peak.tile_words", target.tile.memory_words)
    found: dict[str, tuple[int, int]] = {}
    for level, (key, capacity) in levels.items():
        if meta.get(key, "").isdigit():
            found[level] = (int(meta[key]), capacity)
    return found
