"""The compiler driver: graph IR + target + options -> isa.Program through the pass pipeline.

Frontends are called by the facade (imcc/api.py); this module only sees the graph.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imcc.compiler.ir.core import Graph
from imcc.compiler.options import Schedule, check_options
from imcc.compiler.passes import DEFAULT_PIPELINE, Context, parse_pipeline, run_pipeline
from imcc.compiler.target import load_target
from imcc.isa.diagnostics import CompileError, OptionLoc, TargetError
from imcc.isa.program import Program
from imcc.isa.target import Target

log = logging.getLogger(__name__)

# Options a user may set, with what they mean; defaults come from the target's [defaults].
OPTIONS = {
    "weight_bits": "bits of the signed integer weights (per-channel scales)",
    "input_bits": "bits of the integer inputs of every crossbar MVM",
    "calibration": "how calibration data sets input scales and ADC ranges: minmax, percentile",
    "percentile": "the percentile used by calibration=percentile (default 99.99)",
    "spread": "deal crossbar tiles round-robin over all cores (true/false)",
    "schedule": "packed (layer by layer, the default), latency (every layer spread over all "
    "cores: one input as fast as possible), throughput (packed, the whole model replicated "
    "on every free group of cores: samples streamed to the replicas) or balanced (packed, "
    "spare arrays hold copies of the slowest convolutions, which take turns by block)",
    "phases": "run a model larger than the chip in phases, reprogramming arrays (true/false, "
    "default true)",
    "loops": "roll code that repeats into loops, so code size follows layers, not pixels "
    "(true/false, default true)",
}
# Options that change the hardware: the binary records the target with them applied.
HARDWARE_OPTIONS = {
    "rows": "crossbar rows",
    "cols": "crossbar columns",
    "cell_bits": "bits stored per crossbar cell",
    "dac_bits": "input bits applied per DAC step (1 = bit-serial)",
    "adc_bits": "ADC resolution",
    "cols_per_adc": "columns sharing one ADC",
    "sign_encoding": "differential (G+/G- pairs) or offset (ISAAC: W + 2^(b-1))",
    "adc_range": "full-scale, or column / slice (ranges from weights or calibration data)",
}
_INTS = {"weight_bits", "input_bits", "rows", "cols", "cell_bits", "dac_bits", "adc_bits",
         "cols_per_adc"}  # fmt: skip


def apply_hardware_options(target: Target, options: dict[str, Any]) -> Target:
    """The target with per-compile hardware overrides; a bad value names the option."""
    changes = {k: options[k] for k in HARDWARE_OPTIONS if options.get(k) is not None}
    if not changes:
        return target
    xbar = dataclasses.replace(target.xbar, **changes)
    changed = dataclasses.replace(target, xbar=xbar)
    try:
        changed.validate("options")
    except TargetError as exc:
        key = next((k for k in changes if f"xbar.{k} " in exc.message), "options")
        message = exc.message.replace("options: xbar.", "option ")
        raise CompileError(message, OptionLoc(key)) from None
    return changed


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
    known = {*OPTIONS, *HARDWARE_OPTIONS}
    unknown = sorted(set(options) - known)
    if unknown:
        raise CompileError(
            f"unknown compile options {unknown}; options are {', '.join(sorted(known))}",
            OptionLoc(unknown[0]),
        )
    for name, value in options.items():
        if name in _INTS and value is not None and not isinstance(value, int | np.integer):
            raise CompileError(f"option {name} must be an integer, not {value!r}", OptionLoc(name))
    resolved = apply_hardware_options(resolved, options)
    unknown = sorted(set(dict(resolved.defaults)) - set(OPTIONS))
    if unknown:  # load_target checks a file's; this catches a Target built in code
        raise TargetError(
            f"target {resolved.name!r}: [defaults] has unknown keys {unknown}; expected "
            f"{', '.join(OPTIONS)}",
            OptionLoc("target"),
        )
    # a target without [defaults] for the bits gets 8 (what every preset sets)
    merged: dict[str, Any] = {"weight_bits": 8, "input_bits": 8, **dict(resolved.defaults)}
    merged.update({k: v for k, v in options.items() if v is not None})
    check_options(resolved, merged)
    schedule = merged.pop("schedule", Schedule.PACKED)
    if schedule not in tuple(Schedule):
        raise CompileError(
            f"schedule = {schedule!r}; expected one of {', '.join(Schedule)}",
            OptionLoc("schedule"),
        )
    spread = bool(merged.pop("spread", False))
    phases = bool(merged.pop("phases", True))
    loops = bool(merged.pop("loops", True))
    if pipeline is None:
        settings = ["spread=true"] if spread else []
        if schedule == Schedule.LATENCY:
            settings = ["by_outputs=true"]
        if schedule == Schedule.BALANCED:
            settings = ["balance=true"]
        if not phases:
            settings.append("phases=false")
        place = f"place{{{','.join(settings)}}}" if settings else "place"
        pipeline = DEFAULT_PIPELINE.replace("place", place)
        if not loops:
            pipeline = pipeline.replace("emit", "emit{loops=false}")
        if schedule == Schedule.THROUGHPUT:
            pipeline += ",replicate"
    passes = parse_pipeline(pipeline)
    names = [p.name for p in passes]
    last = len(names) - 1 - names[::-1].index("emit") if "emit" in names else -1
    if last < 0 or any("emit" not in p.requires for p in passes[last + 1 :]):
        raise CompileError(
            f"pipeline {pipeline!r} does not end in 'emit' or passes on its program (the "
            f"default pipeline is {DEFAULT_PIPELINE})",
            OptionLoc("pipeline"),
        )
    ctx = Context(target=resolved, options=merged, calibration=calibrate)
    run_pipeline(graph, ctx, passes, print_after=print_after)
    program = ctx.program
    assert program is not None  # the pipeline ends in emit and passes on its program
    return CompileResult(program, graph, ctx.timings)
