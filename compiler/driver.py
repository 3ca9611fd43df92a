"""The compiler driver: graph IR + target + options -> isa.Program through the pass pipeline.

Frontends are called by the facade (imcc/api.py); this module only sees the graph.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imcc.compiler.ir.core import Graph
from imcc.compiler.passes import DEFAULT_PIPELINE, Context, run_pipeline
from imcc.compiler.target import load_target
from imcc.isa.diagnostics import CompileError
from imcc.isa.program import Program
from imcc.isa.target import Target

log = logging.getLogger(__name__)

# Options a user may set, with what they mean; defaults come from the target's [defaults].
OPTIONS = {
    "weight_bits": "bits of the signed integer weights (per-channel scales)",
    "input_bits": "bits of the integer inputs of every crossbar MVM",
    "cell_bits": "bits stored per crossbar cell (default: the target's)",
    "spread": "deal crossbar tiles round-robin over all cores (true/false)",
}


@dataclass
class CompileResult:
    program: Program
    graph: Graph
    timings: list[tuple[str, float]] = field(default_factory=list)


def compile_graph(
    graph: Graph,
    target: str | Target | None = None,
    calibrate: dict[str, np.ndarray] | None = None,
    pipeline: str | None = None,
    print_after: Callable[[str, Graph], None] | None = None,
    **options: Any,
) -> CompileResult:
    resolved = load_target(target)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise CompileError(
            f"unknown compile options {unknown}; options are {', '.join(sorted(OPTIONS))}"
        )
    merged: dict[str, Any] = dict(resolved.defaults)
    merged.update({k: v for k, v in options.items() if v is not None})
    spread = bool(merged.pop("spread", False))
    if pipeline is None:
        pipeline = DEFAULT_PIPELINE.replace("place", "place{spread=true}" if spread else "place")
    ctx = Context(target=resolved, options=merged, calibration=calibrate)
    run_pipeline(graph, ctx, pipeline, print_after=print_after)
    if "program" not in ctx.results:
        raise CompileError(f"pipeline {pipeline!r} does not end in 'emit'")
    program: Program = ctx.results["program"]
    return CompileResult(program, graph, ctx.timings)
