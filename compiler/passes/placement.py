"""place and schedule: tiles -> (core, array), and every op -> the core that runs it.

`place` (after `tile`): each Tile of each QDense gets one array of one core. By default arrays
fill core by core in layer order, so a layer's tiles share a core and its partial sums rarely
cross the network; `spread=true` deals tiles round-robin over the cores (to use every core's
ADCs in parallel, and to exercise multi-core code). A model that needs more arrays than the chip
has is an error for now (phases with reprogramming are future work).
`schedule` (after `place`): every op gets attrs["core"]: a QDense runs its reduction and
post-processing on the core holding most of its tiles; other ops run where their first
non-constant operand was produced. Ops keep the graph's topological order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph
from imcc.compiler.passes.manager import Context, Pass, register
from imcc.isa.diagnostics import CompileError


@register
@dataclass(frozen=True, slots=True)
class PlacePass(Pass):
    """After: every QDense has attrs["placement"], one distinct (core, array) per tile."""

    name = "place"
    spread: bool = False

    def run(self, graph: Graph, ctx: Context) -> None:
        cores, arrays = ctx.target.chip.cores, ctx.target.core.arrays
        needed = sum(len(op.attrs["tiles"]) for op in graph.walk(ops.QDense))
        if needed > cores * arrays:
            raise CompileError(
                f"the model needs {needed} crossbar arrays but target {ctx.target.name!r} has "
                f"{cores * arrays} ({cores} cores x {arrays}); use a larger target or fewer "
                "weight bits"
            )
        if self.spread:
            slots = [(i % cores, i // cores) for i in range(cores * arrays)]
        else:
            slots = [(c, a) for c in range(cores) for a in range(arrays)]
        next_slot = 0
        for op in graph.walk(ops.QDense):
            count = len(op.attrs["tiles"])
            op.attrs["placement"] = tuple(slots[next_slot : next_slot + count])
            next_slot += count


@register
@dataclass(frozen=True, slots=True)
class SchedulePass(Pass):
    """After: every op has attrs["core"], the core that executes it."""

    name = "schedule"

    def run(self, graph: Graph, ctx: Context) -> None:
        for op in graph.ops:
            if isinstance(op, ops.QDense):
                votes = Counter(core for core, _ in op.attrs["placement"])
                op.attrs["core"] = min(votes, key=lambda c: (-votes[c], c))
                continue
            producers = [v.producer for v in op.inputs if v.producer is not None]
            op.attrs["core"] = producers[0].attrs["core"] if producers else 0
