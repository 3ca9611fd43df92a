"""The pass manager: parses a pipeline string, runs passes in order, verifies after each.

A pipeline is `"canonicalize,quantize{weight_bits=16},tile,place,schedule,emit"`. Each pass is a
small frozen dataclass registered by name; options in braces set its fields (a field that
shares a compile option's name overrides that option, and the binary records the value used).
Its contract: `requires` names the passes whose products it reads, `provides` the products it
makes (the `Produced` fields of IR ops, such as "QDense.tiles", and "program"). Before anything
runs, every pass's prerequisites must appear earlier in the pipeline (else a CompileError names
the pass and what to insert); reading a product whose pass has not run is a CompileError
naming that pass. After every pass the graph is verified; the IR can be printed after any pass
and each pass is timed. An error escaping a pass is re-raised with the pass name added.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from imcc.compiler.ir.core import Graph
from imcc.isa.diagnostics import CompileError, Diagnostic, OptionLoc
from imcc.isa.program import Program
from imcc.isa.target import Target, suggest

log = logging.getLogger(__name__)

PASSES: dict[str, type[Pass]] = {}
_LOC = OptionLoc("pipeline")


@dataclass
class Context:
    """What passes share besides the graph: the target, the compile options in force (the
    binary records them), calibration data, and the program once `emit` has made it."""

    target: Target
    options: dict[str, Any]
    calibration: dict[str, Any] | None = None
    program: Program | None = None
    timings: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Pass:
    """Base of all passes: subclasses set `name`, `requires` and `provides`, declare their
    options as fields, and implement `run`."""

    name: ClassVar[str] = ""
    # passes whose products this one reads: each must have run before it
    requires: ClassVar[tuple[str, ...]] = ()
    # what it makes: "Op.field" for each Produced field it sets, "program" for the Program
    provides: ClassVar[tuple[str, ...]] = ()

    def needs(self, graph: Graph, ctx: Context) -> tuple[str, ...]:
        """The passes that must run before this one on this graph and target (by default
        `requires`; a pass whose inputs depend on the model or the target overrides it)."""
        return self.requires

    def option(self, ctx: Context, name: str, default: Any = None) -> Any:
        """The field `name` where the pipeline set it (it then overrides the compile option
        of that name), else the compile option, else `default`; the options record the value
        used, so the binary tells the truth."""
        value = getattr(self, name)
        if value is None:
            value = ctx.options.get(name, default)
        if value is not None:
            ctx.options[name] = value
        return value

    def run(self, graph: Graph, ctx: Context) -> None:
        raise NotImplementedError


def register(cls: type[Pass]) -> type[Pass]:
    PASSES[cls.name] = cls
    return cls


def require_program(ctx: Context) -> Program:
    """The program `emit` made; a CompileError if it has not run."""
    if ctx.program is None:
        raise CompileError("no program yet: pass 'emit' must run first", _LOC)
    return ctx.program


_STAGE = re.compile(r"\s*([a-z][a-z0-9-]*)\s*(?:\{([^}]*)\})?\s*(?:,|$)")


def parse_pipeline(text: str) -> list[Pass]:
    """`"a,b{x=1,y=two}"` -> [A(), B(x=1, y="two")]; unknown names and options are errors."""
    passes: list[Pass] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _STAGE.match(text, pos)
        if not match or match.end() == pos:
            raise CompileError(f"cannot parse pipeline {text!r} at character {pos + 1}", _LOC)
        name, options = match.group(1), match.group(2)
        pos = match.end()
        if name not in PASSES:
            raise CompileError(f"unknown pass {name!r}{suggest(name, PASSES)}; passes are "
                               f"{', '.join(sorted(PASSES))}", _LOC)  # fmt: skip
        cls = PASSES[name]
        kwargs = {}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for item in filter(None, (s.strip() for s in (options or "").split(","))):
            key, _, raw = item.partition("=")
            key = key.strip()
            if key not in fields:
                raise CompileError(
                    f"pass {name!r} has no option {key!r}{suggest(key, fields)}; options "
                    f"are {sorted(fields) or 'none'}",
                    _LOC,
                )
            kwargs[key] = _parse_value(raw.strip())
        passes.append(cls(**kwargs))
    return passes


def check_prerequisites(passes: list[Pass], graph: Graph, ctx: Context) -> None:
    """Every pass's prerequisites (and theirs) run before it; else a CompileError names the
    pass and the passes to insert before it, in an order that works."""
    done: set[str] = set()
    for i, stage in enumerate(passes):
        missing = [
            name for name in _closure(stage.needs(graph, ctx), graph, ctx) if name not in done
        ]
        if missing:
            later = [name for name in missing if name in {p.name for p in passes[i + 1 :]}]
            hint = f"; {', '.join(map(repr, later))} must move before it" if later else ""
            raise CompileError(
                f"pass {stage.name!r} needs {', '.join(map(repr, missing))} to run before it"
                f"{hint} (the pipeline runs {', '.join(p.name for p in passes)})",
                _LOC,
            )
        done.add(stage.name)


def _closure(names: tuple[str, ...], graph: Graph, ctx: Context) -> list[str]:
    """`names` and everything they need, each after its own prerequisites (depth first)."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in order:
            for need in PASSES[name]().needs(graph, ctx):
                visit(need)
            order.append(name)

    for name in names:
        visit(name)
    return order


def _parse_value(raw: str) -> Any:
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(raw.lower(), raw)


def run_pipeline(
    graph: Graph,
    ctx: Context,
    pipeline: str | list[Pass],
    verify: bool = True,
    print_after: Callable[[str, Graph], None] | None = None,
) -> None:
    """Run each pass, verify the graph after it, record its time."""
    passes = parse_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    check_prerequisites(passes, graph, ctx)
    if not graph.output_names:
        graph.output_names = [v.name for v in graph.outputs]
    if verify:
        graph.verify()
    for stage in passes:
        start = time.perf_counter()
        try:
            stage.run(graph, ctx)
            if verify:
                graph.verify()
        except Diagnostic as exc:
            exc.message = f"in pass {stage.name!r}: {exc.message}"
            raise
        elapsed = time.perf_counter() - start
        ctx.timings.append((stage.name, elapsed))
        log.debug("pass %s took %.3f ms", stage.name, elapsed * 1e3)
        if print_after is not None:
            print_after(stage.name, graph)
