"""acam-map: tree ensembles -> analog-CAM rows, coding table, arrays and cores.

`acam-map` (after `place`) turns every TreeEnsemble into a CamTrees op that carries a CamPlan:
- Rank coding (isa/acam.py): every threshold becomes a cut on the float64 input, exactly as
  the source compares: `x <= t` or `x < t`, on x itself or on float32(x) (then the cut sits
  at the midpoint between the last float32 on the left and the next, inclusive or not by
  round-half-even), so no threshold is rounded. Per feature the distinct cuts give K + 1 codes,
  plus a NaN code below or above them (whichever needs fewer duplicated rows).
- Rows: each root-to-leaf path is one row of per-feature code intervals (don't-care for
  untested features); a path that takes NaN on a feature whose interval does not reach the
  NaN code gets a second row for it; paths no input reaches are dropped.
- Cells: a feature with C codes spans ceil((C - 1) / (L - 1)) cells (L levels per cell); rows
  wider than one array span several arrays of a core (ANDed match lines); a block's segments
  that are don't-care for all its rows are not stored or searched.
- Packing: trees in order (grouped by output so boosted classes share leaf-RAM words), rows cut
  into blocks of the array height, blocks dealt onto cores in order; the accumulator passes
  from core to core, so every output is summed tree after tree as the source sums it.
- Proof: the stored images are decoded back to code intervals and, for every tree, its rows
  are shown to be pairwise disjoint with volumes summing to the whole code space: exactly one
  row per tree matches every input code, NaN included.
After `emit`, per ensemble: one encode, per block its searches and one leaf read (spec.ACAM_*),
then the divisor and base values on the SIMD unit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from imcc.compiler.ir.cam import Block, CamPlan, CamTrees, FeatureCode
from imcc.compiler.ir.core import Graph, Op
from imcc.compiler.ir.trees import Compare, TreeArrays, TreeEnsemble
from imcc.compiler.passes.manager import Context, Pass, register
from imcc.isa import spec
from imcc.isa.acam import CamCode, CamImage, cells_for, decode_ranges

# the count fields of `acam.encode`: features read (k) and cells driven (n)
_TWO_128 = 2.0**128  # one float32 ulp above the largest float32: where float32 overflows


def _float32(value: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def float32_cut(threshold: float, strict: bool) -> tuple[float, bool]:
    """(t, inclusive) such that, for every float64 x, `float32(x) <= threshold` (or `<` when
    strict) holds exactly when `x <= t` (inclusive) or `x < t` (not inclusive).

    w = the largest float32 passing the test; float32(x) passes iff it rounds to <= w, i.e.
    x lies below the midpoint m of w and the next float32, or at m when m rounds to w
    (round half to even). m is exact in float64 (float32 has 24 significant bits).
    """
    w = _float32(threshold)
    passes = w < threshold if strict else w <= threshold
    if not passes:
        w = float(np.nextafter(np.float32(w), np.float32(-np.inf)))
    if w == np.inf:
        return np.inf, True
    up = float(np.nextafter(np.float32(w), np.float32(np.inf)))
    low = -_TWO_128 if w == -np.inf else w
    m = (low + (_TWO_128 if up == np.inf else up)) / 2
    return m, _float32(m) <= w


# -- mapping --------------------------------------------------------------------------------


def _coding(
    arrays: TreeArrays, compare: str
) -> tuple[dict[int, list[tuple[float, bool]]], np.ndarray]:
    """Per feature its sorted distinct cuts; per node the index of its cut (-1 for leaves)."""
    internal = np.nonzero(arrays.feature >= 0)[0]
    node_cut = np.full(arrays.nodes, -1, dtype=np.int64)
    if compare == Compare.FLOAT64:
        cuts = [(float(t), not bool(s)) for t, s in
                zip(arrays.threshold[internal], arrays.strict[internal], strict=True)]  # fmt: skip
    else:
        memo: dict[tuple[float, bool], tuple[float, bool]] = {}
        cuts = []
        for t, s in zip(arrays.threshold[internal].tolist(), arrays.strict[internal].tolist(),
                        strict=True):  # fmt: skip
            key = (float(t), bool(s))
            if key not in memo:
                memo[key] = float32_cut(*key)
            cuts.append(memo[key])
    per_feature: dict[int, list[tuple[float, bool]]] = {}
    features = arrays.feature[internal]
    for f in np.unique(features).tolist():
        mine = np.nonzero(features == f)[0]
        distinct = sorted({cuts[i] for i in mine})  # (t, False) < (t, True): `x < t` first
        rank = {cut: k for k, cut in enumerate(distinct)}
        node_cut[internal[mine]] = [rank[cuts[i]] for i in mine]
        per_feature[int(f)] = distinct
    return per_feature, node_cut


def _paths(
    arrays: TreeArrays, node_cut: np.ndarray, cut_counts: dict[int, int]
) -> list[tuple[int, int, dict[int, tuple[int, int, bool]]]]:
    """(tree, leaf, {feature: (lo, hi, nan_ok)}) per root-to-leaf path: the finite codes
    [lo, hi) of 0..K that reach the leaf, and whether NaN does."""
    found = []
    for tree, root in enumerate(arrays.roots.tolist()):
        stack: list[tuple[int, dict[int, tuple[int, int, bool]]]] = [(root, {})]
        while stack:
            node, bounds = stack.pop()
            f = int(arrays.feature[node])
            if f < 0:
                found.append((tree, node, bounds))
                continue
            k = int(node_cut[node])
            lo, hi, nan_ok = bounds.get(f, (0, cut_counts[f] + 1, True))
            nan_left = bool(arrays.missing[node])
            right = dict(bounds)
            right[f] = (max(lo, k + 1), hi, nan_ok and not nan_left)
            left = dict(bounds)
            left[f] = (lo, min(hi, k + 1), nan_ok and nan_left)
            stack.append((int(arrays.right[node]), right))
            stack.append((int(arrays.left[node]), left))
    found.sort(key=lambda p: p[0])  # stable: within a tree, left-to-right leaf order
    return found


def _nan_low(paths: list[Any], feature: int, cuts: int) -> bool:
    """Put NaN below the finite codes when that duplicates fewer rows than above."""
    low = high = 0
    for _, _, bounds in paths:
        if feature in bounds:
            lo, hi, nan_ok = bounds[feature]
            if nan_ok and lo < hi:
                low += lo > 0
                high += hi < cuts + 1
    return low < high


def _parts(lo: int, hi: int, nan_ok: bool, cuts: int, nan_low: bool) -> list[tuple[int, int]]:
    """The code intervals (in the full code space, NaN included) a path accepts."""
    shift = 1 if nan_low else 0
    nan_code = 0 if nan_low else cuts + 1
    parts = [(lo + shift, hi + shift)] if lo < hi else []
    if nan_ok:
        if parts and nan_low and parts[0][0] == 1:
            parts[0] = (0, parts[0][1])
        elif parts and not nan_low and parts[0][1] == nan_code:
            parts[0] = (parts[0][0], nan_code + 1)
        else:
            parts.append((nan_code, nan_code + 1))
    return parts


@dataclass
class Cursor:
    """The first free CAM array: ensembles fill the chip's arrays one after another."""

    core: int = 0
    used: int = 0  # arrays of `core` already taken


def map_ensemble(
    op: TreeEnsemble, graph: Graph, ctx: Context, cursor: Cursor | None = None
) -> CamPlan:
    """The CamPlan of one ensemble on ctx.target (see the module docstring), from the first
    free array at `cursor` (advanced past the arrays it takes), or from array 0."""
    cursor = Cursor() if cursor is None else cursor
    target = ctx.target
    acam = target.acam
    if acam is None:
        raise op.error(
            f"target {target.name!r} has no analog-CAM unit for tree ensembles; use a target "
            "with an [acam] section, such as xtime"
        )
    levels, cols = acam.levels, acam.cols
    arrays = op.arrays(graph)
    n_inputs = op.inputs[0].shape[1]
    readable = spec.ACAM_ENCODE.field("k").max
    if n_inputs > readable:
        raise op.error(f"{n_inputs} input features exceed the {readable} the CAM encoder reads")
    compare = op.attrs["compare"]
    per_feature, node_cut = _coding(arrays, compare)
    if not per_feature:  # no splits at all: one don't-care cell keeps the datapath uniform
        per_feature = {0: []}
    cut_counts = {f: len(c) for f, c in per_feature.items()}
    paths = _paths(arrays, node_cut, cut_counts)
    features = sorted(per_feature)
    coded = [
        FeatureCode(f, tuple(per_feature[f]), _nan_low(paths, f, cut_counts[f])) for f in features
    ]
    cells = [cells_for(fc.codes, levels) for fc in coded]
    first_cell = np.concatenate([[0], np.cumsum(cells)]).astype(np.int64)
    total_cells = int(first_cell[-1])
    if total_cells > acam.arrays * cols or total_cells > spec.ACAM_ENCODE.field("n").max:
        widest = sorted(zip(cells, features, strict=True), reverse=True)[:3]
        detail = ", ".join(f"feature {f}: {n} cells" for n, f in widest)
        raise op.error(
            f"the trees test {len(features)} features, which need {total_cells} CAM cells a row "
            f"at {levels} levels a cell ({detail}, ...), but a core of target {target.name!r} "
            f"chains at most {acam.arrays} arrays x {cols} cells = {acam.arrays * cols}"
        )

    # rows: one per path and per NaN part, as code intervals per coded feature
    full_hi = np.array([fc.codes for fc in coded], dtype=np.int64)
    row_lo, row_hi, row_tree, row_leaf, duplicated, dropped = _path_rows(
        paths, coded, cut_counts, full_hi
    )
    rows = len(row_tree)
    if not rows:
        raise op.error("no input reaches any leaf of the ensemble")
    lo_all, hi_all = np.array(row_lo), np.array(row_hi)
    # an interval reaching the top code reaches past it: codes above never occur, and the
    # last cell's range is then a don't-care at the top (isa/acam.py cell_ranges)
    reach = np.array([n * (levels - 1) + 1 for n in cells], dtype=np.int64)
    hi_all = np.where(hi_all == full_hi, reach, hi_all)
    low = np.zeros((rows, total_cells), dtype=np.uint16)
    high = np.full((rows, total_cells), levels, dtype=np.uint16)
    for i in range(len(features)):
        span = slice(int(first_cell[i]), int(first_cell[i + 1]))
        step = levels - 1  # the spread of isa/acam.py: cell j covers codes from j (L - 1)
        base = step * np.arange(cells[i])
        low[:, span] = np.clip(lo_all[:, i : i + 1] - base, 0, step)
        high[:, span] = np.clip(hi_all[:, i : i + 1] - base, 1, levels)

    # packing: trees grouped by their first output column, then rows into blocks
    values = arrays.value
    targets = arrays.targets
    tree_of = np.array(row_tree, dtype=np.int64)
    leaf_values = values[np.array(row_leaf, dtype=np.int64)] if rows else np.zeros((0, targets))
    first_col = np.full(arrays.roots.size, targets, dtype=np.int64)
    nonzero = leaf_values != 0
    for r in range(rows):
        hit = np.nonzero(nonzero[r])[0]
        if hit.size:
            first_col[tree_of[r]] = min(first_col[tree_of[r]], int(hit[0]))
    order = np.argsort(first_col[tree_of], kind="stable")
    low, high, leaf_values, tree_of = low[order], high[order], leaf_values[order], tree_of[order]

    blocks = _pack(op, ctx, cursor, low, high, leaf_values, tree_of)

    offsets = np.concatenate([[0], np.cumsum([len(fc.cuts) for fc in coded])]).astype(np.int64)
    table = CamCode(
        features=np.array(features, dtype=np.int64),
        nan_low=np.array([fc.nan_low for fc in coded], dtype=np.uint8),
        cells=np.array(cells, dtype=np.int64),
        offsets=offsets,
        cuts=np.array([t for fc in coded for t, _ in fc.cuts], dtype=np.float64),
        inclusive=np.array([inc for fc in coded for _, inc in fc.cuts], dtype=np.uint8),
    )
    wildcard = float(np.mean((low == 0) & (high == levels))) if low.size else 1.0
    stats = {
        "trees": int(arrays.roots.size),
        "rows": rows,
        "nan_rows": duplicated,
        "unreachable_paths": dropped,
        "features": len(features),
        "cells": total_cells,
        "max_cells_per_feature": max(cells),
        "max_codes_per_feature": max(fc.codes for fc in coded),
        "wildcard_fraction": round(wildcard, 4),
        "blocks": len(blocks),
        "arrays": sum(len(b.arrays) for b in blocks),
        "cores": len({b.core for b in blocks}),
    }
    plan = CamPlan(
        code=table,
        blocks=blocks,
        cols=cols,
        levels=levels,
        targets=targets,
        base=tuple(float(v) for v in op.attrs["base"]),
        base_first=bool(op.attrs.get("base_first", True)),
        divisor=float(op.attrs.get("divisor", 1.0)),
        single=op.attrs.get("accumulate", "float64") == "float32",
        stats=stats,
    )
    prove(op, plan, tree_of, total_cells)
    return plan


def _path_rows(
    paths: list[tuple[int, int, dict[int, tuple[int, int, bool]]]],
    coded: list[FeatureCode],
    cut_counts: dict[int, int],
    full_hi: np.ndarray,
) -> tuple[list[np.ndarray], list[np.ndarray], list[int], list[int], int, int]:
    """CAM rows of code intervals (low, high per coded feature), with each row's tree and
    leaf: one per path and per NaN part of it. Also how many rows NaN parts added and how
    many paths no input reaches."""
    position = {fc.feature: i for i, fc in enumerate(coded)}
    row_lo: list[np.ndarray] = []
    row_hi: list[np.ndarray] = []
    row_tree: list[int] = []
    row_leaf: list[int] = []
    full_lo = np.zeros(len(coded), dtype=np.int64)
    duplicated = dropped = 0
    for tree, leaf, bounds in paths:
        choices: list[list[tuple[int, int, int]]] = []
        for f, (lo, hi, nan_ok) in bounds.items():
            fc = coded[position[f]]
            parts = _parts(lo, hi, nan_ok, cut_counts[f], fc.nan_low)
            choices.append([(position[f], a, b) for a, b in parts])
        combos: list[list[tuple[int, int, int]]] = [[]]
        for options in choices:
            combos = [[*done, option] for done in combos for option in options]
        if not combos or any(not options for options in choices):
            dropped += 1
            continue
        duplicated += len(combos) - 1
        for combo in combos:
            lo_row, hi_row = full_lo.copy(), full_hi.copy()
            for i, a, b in combo:
                lo_row[i], hi_row[i] = a, b
            row_lo.append(lo_row)
            row_hi.append(hi_row)
            row_tree.append(tree)
            row_leaf.append(leaf)
    return row_lo, row_hi, row_tree, row_leaf, duplicated, dropped


def _pack(
    op: TreeEnsemble,
    ctx: Context,
    cursor: Cursor,
    low: np.ndarray,
    high: np.ndarray,
    leaf_values: np.ndarray,
    tree_of: np.ndarray,
) -> list[Block]:
    """The rows in blocks of the CAM's rows, each block's active segments on consecutive
    arrays from `cursor` (a new core when one is full), with the leaf columns it touches."""
    target = ctx.target
    acam = target.acam
    assert acam is not None  # map_ensemble checked
    levels, cols = acam.levels, acam.cols
    rows, total_cells = low.shape
    core, used = cursor.core, cursor.used
    blocks: list[Block] = []
    segments_total = -(-total_cells // cols)
    for row0 in range(0, rows, acam.rows):
        row1 = min(row0 + acam.rows, rows)
        active = []
        for s in range(segments_total):
            window = slice(s * cols, min((s + 1) * cols, total_cells))
            if np.any(low[row0:row1, window] > 0) or np.any(high[row0:row1, window] < levels):
                active.append(s)
        active = active or [0]
        touched = np.nonzero(np.any(leaf_values[row0:row1] != 0, axis=0))[0]
        c0, c1 = (int(touched[0]), int(touched[-1]) + 1) if touched.size else (0, 1)
        if c1 - c0 > acam.leaf_words:
            raise op.error(
                f"leaf vectors of {c1 - c0} outputs exceed the {acam.leaf_words}-word leaf RAM "
                f"rows of target {target.name!r}"
            )
        if used + len(active) > acam.arrays:
            core, used = core + 1, 0
        if core >= target.chip.cores:
            raise op.error(
                f"the trees need more CAM arrays than target {target.name!r} has "
                f"({target.chip.cores} cores x {acam.arrays}): {rows} rows in blocks of "
                f"{acam.rows} rows x {segments_total} segments of {cols} cells"
            )
        images = []
        for i, s in enumerate(active):
            window = slice(s * cols, min((s + 1) * cols, total_cells))
            leaves = leaf_values[row0:row1, c0:c1] if i == 0 else np.zeros((row1 - row0, 0))
            trees = len(np.unique(tree_of[row0:row1])) if i == 0 else 0
            images.append(CamImage(low[row0:row1, window], high[row0:row1, window], leaves, trees))
        blocks.append(
            Block(core, tuple(range(used, used + len(active))), tuple(active), images, (c0, c1))
        )
        used += len(active)
    cursor.core, cursor.used = (core, used) if used < acam.arrays else (core + 1, 0)
    return blocks


def prove(op: Op, plan: CamPlan, tree_of: np.ndarray, total_cells: int) -> None:
    """Exactly one row per tree matches every input code: from the stored images, each tree's
    rows (code intervals per feature) are pairwise disjoint and their volumes add up to the
    whole code space. Raises a CompileError (an internal error) otherwise."""
    levels, cols = plan.levels, plan.cols
    low = np.concatenate(
        [np.zeros((b.images[0].rows, total_cells), np.uint16) for b in plan.blocks]
    )
    high = np.full(low.shape, levels, dtype=np.uint16)
    row0 = 0
    for block in plan.blocks:
        n = block.images[0].rows
        for segment, image in zip(block.segments, block.images, strict=True):
            low[row0 : row0 + n, segment * cols : segment * cols + image.cols] = image.low
            high[row0 : row0 + n, segment * cols : segment * cols + image.cols] = image.high
        row0 += n
    code = plan.code
    first = np.concatenate([[0], np.cumsum(code.cells)]).astype(np.int64)
    sizes = [code.codes_count(f) for f in range(code.n_features)]
    lo = np.empty((low.shape[0], code.n_features), dtype=np.int64)
    hi = np.empty_like(lo)
    for f in range(code.n_features):
        span = slice(int(first[f]), int(first[f + 1]))
        a, b = decode_ranges(low[:, span], high[:, span], levels)
        lo[:, f], hi[:, f] = a, np.minimum(b, sizes[f])
    if np.any(lo >= hi):
        raise op.error(f"internal error: CAM row {int(np.argmax((lo >= hi).any(axis=1)))} is empty")
    for tree in np.unique(tree_of).tolist():
        rows = np.nonzero(tree_of == tree)[0]
        t_lo, t_hi = lo[rows], hi[rows]
        tested = np.nonzero(np.any((t_lo > 0) | (t_hi < sizes), axis=0))[0]
        space = math.prod(sizes[f] for f in tested.tolist())
        volume = sum(
            math.prod(int(b) - int(a) for a, b in zip(r_lo, r_hi, strict=True))
            for r_lo, r_hi in zip(t_lo[:, tested], t_hi[:, tested], strict=True)
        )
        apart = np.zeros((rows.size, rows.size), dtype=bool)
        for f in tested.tolist():
            apart |= (t_hi[:, None, f] <= t_lo[None, :, f]) | (t_hi[None, :, f] <= t_lo[:, None, f])
        np.fill_diagonal(apart, True)
        if volume != space or not apart.all():
            raise op.error(
                f"internal error: the CAM rows of tree {tree} do not partition its code space "
                f"(volume {volume} of {space}; overlapping rows: {not apart.all()})"
            )


@register
@dataclass(frozen=True, slots=True)
class AcamMapPass(Pass):
    """After: every TreeEnsemble is a CamTrees op whose plan fits the target's CAM arrays and
    whose rows are proven to give exactly one match per tree for every input."""

    name = "acam-map"
    provides = ("CamTrees.plan",)

    def run(self, graph: Graph, ctx: Context) -> None:
        summaries = []
        cursor = Cursor()
        for op in graph.walk(TreeEnsemble):
            plan = map_ensemble(op, graph, ctx, cursor)
            graph.replace_op(op, CamTrees([op.inputs[0]], plan, op.name))
            summaries.append({"node": op.name, **plan.stats})
        if summaries:
            graph.meta["acam"] = json.dumps(summaries, sort_keys=True)
        graph.remove_dead()
