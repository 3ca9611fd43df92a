"""replicate: copies of the whole program on disjoint groups of cores (schedule = throughput),
run after `emit` on the program it made.

ISAAC and PUMA raise throughput by giving the busiest layers more copies of their weights
(imc_compilers.md: ISAAC's replication to balance its pipeline). imcc replicates at the
coarsest grain, the whole model: if the program uses G cores (packed placement, layer by
layer), the chip holds R = floor(cores / G) replicas, each with its own arrays holding the same
images and the same code with its core numbers shifted by r * G. Samples are dealt to the
replicas round robin (`Simulator.stream`), so R inferences are in flight at once and, within a
replica, layers on different cores overlap consecutive samples. Latency of one input is that
of one replica: the price of throughput is that a layer uses only its replica's cores.

META records `replicas` and `replica_cores` (G); the runtime reads them to know which cores
serve which samples. In functional simulation every replica computes every sample: the
results are the same, only the streaming timing tells them apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from imcc.compiler.ir.core import Graph
from imcc.compiler.passes.manager import Context, Pass, register, require_program
from imcc.isa import spec
from imcc.isa.diagnostics import CompileError, OptionLoc
from imcc.isa.encoding import Instr, make
from imcc.isa.program import Binding, Program


@register
@dataclass(frozen=True, slots=True)
class ReplicatePass(Pass):
    """After: ctx.program runs on every free group of cores, one replica per group."""

    name = "replicate"
    requires = ("emit",)  # rewrites the program
    provides = ("program",)

    def run(self, graph: Graph, ctx: Context) -> None:
        program = require_program(ctx)
        if program.meta.get("peak.resting_words"):
            raise CompileError(
                "schedule = throughput replicates the program, but values of this model rest "
                f"in shared memory ({int(program.meta['peak.resting_words']):,} words in tile "
                "or global memory), which every replica would use at the same addresses; use "
                "schedule = packed, or a target with larger core buffers",
                OptionLoc("schedule"),
            )
        ctx.program = replicate(program)


def replicate(program: Program) -> Program:
    cores = program.target.chip.cores
    used = [c for c, code in enumerate(program.code) if code]
    used += [b.core for b in (*program.bindings, *program.cam_bindings)]
    group = max(used, default=0) + 1
    replicas = max(1, cores // group)
    meta = dict(program.meta, replicas=str(replicas), replica_cores=str(group))
    if replicas == 1:
        return dataclasses.replace(program, meta=meta)
    code: list[list[Instr]] = [[] for _ in range(cores)]
    debug: dict[tuple[int, int], str] = {}
    bindings: list[Binding] = []
    cam_bindings: list[Binding] = []
    for r in range(replicas):
        shift = r * group
        for core in range(group):
            if core < len(program.code):
                code[core + shift] = [_shifted(i, shift) for i in program.code[core]]
        debug.update(((core + shift, pc), node) for (core, pc), node in program.debug.items())
        bindings += [dataclasses.replace(b, core=b.core + shift) for b in program.bindings]
        cam_bindings += [dataclasses.replace(b, core=b.core + shift) for b in program.cam_bindings]
    return dataclasses.replace(
        program, code=code, debug=debug, bindings=bindings, cam_bindings=cam_bindings, meta=meta
    )


def _shifted(instr: Instr, shift: int) -> Instr:
    """The instruction with every core operand moved by `shift`."""
    row = instr.spec
    if all(f.kind is not spec.OperandKind.CORE for f in row.fields):
        return instr
    operands = [
        value + shift if field.kind is spec.OperandKind.CORE else value
        for field, value in zip(row.fields, instr.operands, strict=True)
    ]
    return make(row, *operands)
