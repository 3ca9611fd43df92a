"""Report plots (matplotlib, from the `examples` or `dev` extra): a timeline of what every
core's units do during one inference, and a placement map of the chip.

    imcc run model.imcb --input x.npy --plot DIR     # DIR/timeline.png, DIR/placement.png

`timeline_png` and `placement_png` return the PNG bytes (the CLI writes every output of a
command together, at its end); `timeline` and `placement` write them to a path.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from imcc.isa import spec
from imcc.isa.diagnostics import Diagnostic
from imcc.isa.program import Program

UNIT_COLOURS = {
    spec.Unit.XBAR.value: "#d62728",
    spec.Unit.ACAM.value: "#9467bd",
    spec.Unit.SIMD.value: "#1f77b4",
    spec.Unit.MEM.value: "#2ca02c",
    spec.Unit.NOC.value: "#ff7f0e",
    spec.Unit.CTL.value: "#bbbbbb",
}


class PlotError(Diagnostic):
    pass


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError(
            "plots need matplotlib, which is not installed: pip install 'imcc[examples]'"
        ) from None
    return plt


def require_matplotlib() -> None:
    """Raise PlotError now if plots cannot be drawn (the CLI checks before it simulates)."""
    _pyplot()


def _png(plt: Any, fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def timeline(
    records: list[tuple[int, int, int, str, str, int]], path: Path, title: str = ""
) -> None:
    """Write `timeline_png` to `path`."""
    Path(path).write_bytes(timeline_png(records, title))


def placement(program: Program, path: Path, title: str = "") -> None:
    """Write `placement_png` to `path`."""
    Path(path).write_bytes(placement_png(program, title))


def timeline_png(records: list[tuple[int, int, int, str, str, int]], title: str = "") -> bytes:
    """One row per core that ran anything; a bar per instruction, coloured by unit.
    Consecutive instructions of one unit merge into one bar, so a long run stays readable."""
    plt = _pyplot()
    bars: dict[tuple[int, str], list[tuple[int, int]]] = defaultdict(list)
    for core, start, cycles, unit, _, _ in records:
        runs = bars[(core, unit)]
        if runs and runs[-1][0] + runs[-1][1] >= start:  # touching: extend the last bar
            first, width = runs[-1]
            runs[-1] = (first, max(width, start + cycles - first))
        elif cycles:
            runs.append((start, cycles))
    cores = sorted({core for core, _ in bars})
    row = {core: i for i, core in enumerate(cores)}
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.28 * len(cores)))
    for (core, unit), runs in sorted(bars.items()):
        ax.broken_barh(runs, (row[core] - 0.4, 0.8), facecolors=UNIT_COLOURS.get(unit, "k"))
    ax.set_yticks(range(len(cores)), [f"core {c}" for c in cores])
    ax.invert_yaxis()
    ax.set_xlabel("cycle")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in UNIT_COLOURS.values()]
    ax.legend(handles, list(UNIT_COLOURS), ncol=len(UNIT_COLOURS), loc="upper right", fontsize=8)
    ax.set_title(title or "unit activity per core, one inference")
    fig.tight_layout()
    return _png(plt, fig)


def placement_png(program: Program, title: str = "") -> bytes:
    """The mesh of cores: each coloured by the layer holding most of its arrays, labelled
    with the arrays in use (those programmed mid-program, in phases, counted too)."""
    plt = _pyplot()
    target = program.target
    cols = target.chip.mesh_cols
    rows = -(-target.chip.cores // cols)
    layer_of: dict[int, Counter[str]] = defaultdict(Counter)
    arrays: dict[int, set[int]] = defaultdict(set)
    for binding in program.bindings:
        arrays[binding.core].add(binding.array)
    for core, code in enumerate(program.code):
        for pc, instr in enumerate(code):
            if instr.spec.unit is spec.Unit.XBAR:
                first = instr.operand("array")
                span = instr.operand(instr.spec.span) if instr.spec.span else 1
                arrays[core].update(range(first, first + span))
                layer_of[core][program.debug.get((core, pc), "")] += 1
    layers = sorted({name for counts in layer_of.values() for name in counts})
    colour = {name: i for i, name in enumerate(layers)}
    cmap = plt.get_cmap("tab20")
    side = min(9.0, max(2.5, 0.4 * max(cols, rows)))
    fig, ax = plt.subplots(figsize=(side + 3.5, side + 0.8))  # room for the legend
    for core in range(target.chip.cores):
        r, c = divmod(core, cols)
        counts = layer_of.get(core)
        face = cmap(colour[counts.most_common(1)[0][0]] % 20) if counts else "#f2f2f2"
        ax.add_patch(plt.Rectangle((c, r), 0.95, 0.95, facecolor=face, edgecolor="#666666"))
        if arrays.get(core) and cols <= 32:
            ax.text(c + 0.47, r + 0.5, str(len(arrays[core])), ha="center", va="center",
                    fontsize=7)  # fmt: skip
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(colour[n] % 20)) for n in layers[:20]]
    if handles:
        ax.legend(handles, layers[:20], loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    ax.set_title(title or f"{target.name}: layer per core\n(number: arrays in use)", fontsize=9)
    fig.tight_layout()
    return _png(plt, fig)
