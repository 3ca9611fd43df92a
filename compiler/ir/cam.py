"""The IR of tree ensembles mapped onto analog-CAM arrays: CamPlan, its Blocks, and CamTrees.

`acam-map` (compiler/passes/acam_map.py) makes them; code generation
(compiler/codegen/trees.py) reads them; the IR interpreter evaluates a CamTrees op straight
from its stored images (`CamPlan.evaluate`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from imcc.compiler.ir import interpreter
from imcc.compiler.ir.core import Op, Produced, TensorType, Value
from imcc.isa.acam import CamCode, CamImage, codes, spread
from imcc.isa.numerics import accumulate_leaves, row_matches


@dataclass(frozen=True, slots=True)
class FeatureCode:
    """One coded feature: its input index, cuts (t, inclusive) ascending, and NaN placement."""

    feature: int
    cuts: tuple[tuple[float, bool], ...]
    nan_low: bool

    @property
    def codes(self) -> int:
        return len(self.cuts) + 2


class Block:
    """Rows [row0, row1) of the ensemble's rows on one core: one image per active segment."""

    def __init__(
        self,
        core: int,
        arrays: tuple[int, ...],
        segments: tuple[int, ...],
        images: list[CamImage],
        leaf_cols: tuple[int, int],
    ) -> None:
        self.core = core
        self.arrays = arrays
        self.segments = segments
        self.images = images  # the first one holds the leaf RAM
        self.leaf_cols = leaf_cols

    def __repr__(self) -> str:
        return f"Block(core={self.core}, arrays={self.arrays}, rows={self.images[0].rows})"


class CamPlan:
    """Everything emit needs for one ensemble, and what the report says about it."""

    def __init__(
        self,
        *,
        code: CamCode,
        blocks: list[Block],
        cols: int,
        levels: int,
        targets: int,
        base: tuple[float, ...],
        base_first: bool,
        divisor: float,
        single: bool,
        stats: dict[str, Any],
    ) -> None:
        self.code = code
        self.blocks = blocks
        self.cols = cols
        self.levels = levels
        self.targets = targets
        self.base = base
        self.base_first = base_first
        self.divisor = divisor
        self.single = single  # accumulate in float32
        self.stats = stats

    def __repr__(self) -> str:
        return f"CamPlan({json.dumps(self.stats, sort_keys=True)})"

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """The ideal CAM's result on x (batch, features), straight from the images: the
        compiler's own model of what the chip computes (tests compare it with the source)."""
        x = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
        driven = spread(self.code, codes(self.code, x.T), self.levels)  # (cells, batch)
        batch = x.shape[0]
        dtype = np.float32 if self.single else np.float64
        base = np.asarray(self.base, dtype=np.float64)
        acc = np.tile(base if self.base_first else np.zeros_like(base), (batch, 1)).astype(dtype)
        for block in self.blocks:
            match = np.ones((batch, block.images[0].rows), dtype=bool)
            for segment, image in zip(block.segments, block.images, strict=True):
                window = driven[segment * self.cols : segment * self.cols + image.cols]
                low, high = image.low.astype(np.int64), image.high.astype(np.int64)
                match &= row_matches(window, low, high)
            c0, c1 = block.leaf_cols
            samples, rows = np.nonzero(match)  # sample-major, rows (tree order) ascending
            accumulate_leaves(acc[:, c0:c1], samples, rows, block.images[0].leaves)
        result = acc.astype(np.float64)  # the SIMD unit goes on in float64
        if self.divisor != 1.0:
            result = result / self.divisor
        if not self.base_first:
            result = result + base
        return result


class CamTrees(Op):
    """A tree ensemble mapped onto analog-CAM arrays: `plan` is its CamPlan."""

    kind = "CamTrees"
    arity: ClassVar[tuple[int, int]] = (1, 1)
    plan: Produced[CamPlan] = Produced("acam-map")

    def __init__(self, inputs: Sequence[Value], plan: CamPlan, name: str = "") -> None:
        super().__init__(inputs, name)
        self.plan = plan

    def infer(self) -> list[TensorType]:
        return [TensorType((1, self.plan.targets), "float64")]


interpreter.EVALUATORS[CamTrees.kind] = lambda op, args: op.plan.evaluate(args[0])  # type: ignore[attr-defined]
