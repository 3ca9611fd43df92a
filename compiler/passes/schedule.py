"""schedule: every op -> the core that runs it.

A QDense runs its reduction and post-processing on the core holding most of its tiles; other
ops run where their first non-constant operand was produced. Ops keep the graph's topological
order; the code generator (compiler/codegen/) emits them in that order, each on its core.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph
from imcc.compiler.ir.trees import TreeEnsemble
from imcc.compiler.passes.manager import Context, Pass, register


@register
@dataclass(frozen=True, slots=True)
class SchedulePass(Pass):
    """After: every op has `core`, the core that executes it."""

    name = "schedule"
    requires = ("place",)  # reads `placement`
    provides = ("Op.core",)

    def needs(self, graph: Graph, ctx: Context) -> tuple[str, ...]:
        """Also `acam-map` for a model with trees: the CamTrees ops it makes need a core."""
        has_trees = any(True for _ in graph.walk(TreeEnsemble))
        return (*self.requires, "acam-map") if has_trees else self.requires

    def run(self, graph: Graph, ctx: Context) -> None:
        for op in graph.ops:
            if isinstance(op, ops.QDense):
                votes = Counter(core for core, _ in op.placement)
                op.core = min(votes, key=lambda c: (-votes[c], c))
                continue
            producers = [v.producer for v in op.inputs if v.producer is not None]
            op.core = producers[0].core if producers else 0
