"""emit: the scheduled graph -> isa.Program, by the code generator (compiler/codegen/), whose
messages are then proven to let every core reach its halt (isa/protocol.py)."""

from __future__ import annotations

from dataclasses import dataclass

from imcc.compiler import codegen  # noqa: F401  (registers the lowerings)
from imcc.compiler.codegen.emitter import Emitter
from imcc.compiler.ir.core import Graph
from imcc.compiler.passes.manager import Context, Pass, register
from imcc.isa.diagnostics import CompileError, CoreLoc
from imcc.isa.protocol import ProtocolError, check_protocol
from imcc.isa.target import AdcRange


@register
@dataclass(frozen=True, slots=True)
class EmitPass(Pass):
    """After: ctx.program is the isa.Program for the graph, whose cores can all reach their
    halt with the target's receive queues (a schedule that deadlocks is a CompileError).
    `loops`: code that repeats is rolled into loops (else every instruction is written out)."""

    name = "emit"
    requires = ("schedule",)  # reads `core` (and, through it, tiles and placement)
    provides = ("program",)
    loops: bool = True

    def needs(self, graph: Graph, ctx: Context) -> tuple[str, ...]:
        """Also `adc-range` when the target's ADC ranges are per column or per slice."""
        if ctx.target.xbar.adc_range != AdcRange.FULL_SCALE:
            return (*self.requires, "adc-range")
        return self.requires

    def run(self, graph: Graph, ctx: Context) -> None:
        ctx.program = Emitter(graph, ctx, loops=self.loops).run()
        try:  # the schedule's messages must let every core halt with the target's queues
            check_protocol(ctx.program)
        except ProtocolError as exc:
            node = exc.loc.node if isinstance(exc.loc, CoreLoc) else ""
            op = next((op for op in graph.ops if node and op.name == node), None)
            raise (op.error(exc.message) if op is not None else CompileError(exc.message)) from None
