"""emit: the scheduled graph -> isa.Program, by the code generator (compiler/codegen/)."""

from __future__ import annotations

from dataclasses import dataclass

from imcc.compiler import codegen  # noqa: F401  (registers the lowerings)
from imcc.compiler.codegen.emitter import Emitter
from imcc.compiler.ir.core import Graph
from imcc.compiler.passes.manager import Context, Pass, register
from imcc.isa.target import AdcRange


@register
@dataclass(frozen=True, slots=True)
class EmitPass(Pass):
    """After: ctx.program is the isa.Program for the graph."""

    name = "emit"
    requires = ("schedule",)  # reads `core` (and, through it, tiles and placement)
    provides = ("program",)

    def needs(self, graph: Graph, ctx: Context) -> tuple[str, ...]:
        """Also `adc-range` when the target's ADC ranges are per column or per slice."""
        if ctx.target.xbar.adc_range != AdcRange.FULL_SCALE:
            return (*self.requires, "adc-range")
        return self.requires

    def run(self, graph: Graph, ctx: Context) -> None:
        ctx.program = Emitter(graph, ctx).run()
