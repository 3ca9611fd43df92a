"""The tree-ensemble op of the graph IR: every tree source normalised to one form.

Frontends (scikit-learn, ONNX-ML TreeEnsembleClassifier/Regressor/TreeEnsemble, and through
ONNX XGBoost and LightGBM) build a TreeEnsemble; the `acam-map` pass maps it onto analog-CAM
rows (compiler/passes/acam_map.py). The node table is a set of graph constants (operands), the
way hummingbird's `_tree_commons` normalises every source before lowering:

    x         (1, features)     the input
    feature   int64[N]          the feature a node tests; -1 for a leaf
    threshold float64[N]        its threshold (exact: a float32 threshold is held exactly)
    strict    int64[N]          1: the test is `x < t`; 0: `x <= t` (GT/GTE are rewritten)
    left      int64[N]          the child taken when the test holds; -1 for a leaf
    right     int64[N]          the other child; -1 for a leaf
    missing   int64[N]          1: NaN takes `left`; 0: it takes `right`
    value     float64[N, T]     a leaf's contribution to each of the T outputs (0 elsewhere),
                                learning rate already folded in
    roots     int64[R]          each tree's root, in the order trees are summed

Attributes: `compare` ("float32": the source compares float32(x) against the threshold, as
scikit-learn's trees and float ONNX models do; "float64": x itself), `base` (T values),
`base_first` (True: the sum starts at `base`, as in scikit-learn's boosting; False: `base` is
added after the trees, as ONNX's base_values), and `divisor` (the sum is divided by it: the
number of trees of an averaging forest, 1 otherwise), `accumulate` ("float64", or "float32"
for sources that sum in float32, as onnxruntime does for float models: every partial sum, the
division and the base addition are then rounded to float32).

Semantics, per sample: acc = base if base_first else 0; for each tree in `roots` order, walk
from the root (NaN goes where `missing` says) and add the leaf's value row: acc += value[leaf],
one tree after the other; then acc /= divisor; then acc += base unless base_first. Outputs are
float64 (1, T); post-transforms (sigmoid, softmax) and labels (argmax) are ordinary IR ops.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from imcc.compiler.ir import interpreter, ops
from imcc.compiler.ir.core import Graph, Op, TensorType

OPERANDS = ("feature", "threshold", "strict", "left", "right", "missing", "value", "roots")


class Compare(enum.StrEnum):
    """The precision a tree compares features in (attributes `compare`, `accumulate`)."""

    FLOAT32 = "float32"  # float32(x) against the threshold, as scikit-learn and ONNX do
    FLOAT64 = "float64"  # x itself


COMPARES = tuple(Compare)


@dataclass(eq=False, slots=True)
class TreeArrays:
    """The node table of an ensemble (see the module docstring), as numpy arrays. Not a
    frozen value: arrays have no truth value, so two tables are equal only if identical."""

    feature: np.ndarray
    threshold: np.ndarray
    strict: np.ndarray
    left: np.ndarray
    right: np.ndarray
    missing: np.ndarray
    value: np.ndarray
    roots: np.ndarray

    @property
    def nodes(self) -> int:
        return int(self.feature.size)

    @property
    def targets(self) -> int:
        return int(self.value.shape[1])

    def as_list(self) -> list[np.ndarray]:
        return [getattr(self, name) for name in OPERANDS]


def pack(
    trees: Sequence[dict[str, np.ndarray]], targets: int, dtype: Any = np.float64
) -> TreeArrays:
    """Concatenate trees given with local node indices (children index their own tree's
    nodes, -1 for none) into one node table; roots are each tree's node 0.

    Each tree is a dict of arrays: feature, threshold, strict, left, right, missing, value
    (nodes x targets).
    """
    offset = 0
    parts: dict[str, list[np.ndarray]] = {name: [] for name in OPERANDS}
    for tree in trees:
        n = int(np.asarray(tree["feature"]).size)
        for name in ("feature", "threshold", "strict", "missing"):
            parts[name].append(np.asarray(tree[name]).reshape(n))
        for name in ("left", "right"):
            child = np.asarray(tree[name], dtype=np.int64).reshape(n)
            parts[name].append(np.where(child >= 0, child + offset, -1))
        parts["value"].append(np.asarray(tree["value"], dtype=np.float64).reshape(n, targets))
        parts["roots"].append(np.array([offset], dtype=np.int64))
        offset += n

    def joined(name: str, kind: Any) -> np.ndarray:
        if not parts[name]:
            shape = (0, targets) if name == "value" else (0,)
            return np.zeros(shape, dtype=kind)
        return np.ascontiguousarray(np.concatenate(parts[name]).astype(kind))

    return TreeArrays(
        feature=joined("feature", np.int64),
        threshold=joined("threshold", dtype),
        strict=joined("strict", np.int64),
        left=joined("left", np.int64),
        right=joined("right", np.int64),
        missing=joined("missing", np.int64),
        value=joined("value", np.float64),
        roots=joined("roots", np.int64),
    )


def structure_problems(arrays: TreeArrays, features: int) -> list[str]:
    """Why the node table is not a forest of well-formed trees (empty when it is)."""
    return _shape_problems(arrays) or _value_problems(arrays, features) or _link_problems(arrays)


def _shape_problems(arrays: TreeArrays) -> list[str]:
    n = arrays.nodes
    problems = []
    for name in ("threshold", "strict", "left", "right", "missing"):
        if getattr(arrays, name).shape != (n,):
            problems.append(f"{name} has shape {getattr(arrays, name).shape}, not ({n},)")
    if arrays.value.ndim != 2 or arrays.value.shape[0] != n:
        problems.append(f"value has shape {arrays.value.shape}, not ({n}, targets)")
    if arrays.roots.ndim != 1 or arrays.roots.size == 0:
        problems.append("the ensemble has no trees")
    return problems


def _value_problems(arrays: TreeArrays, features: int) -> list[str]:
    problems = []
    internal = arrays.feature >= 0
    if np.any(arrays.feature[internal] >= features):
        bad = int(arrays.feature[internal].max())
        problems.append(f"a node tests feature {bad}, but the input has {features} features")
    if np.any(np.isnan(arrays.threshold[internal])):
        problems.append("a threshold is NaN")
    if np.any(~np.isfinite(arrays.value[~internal])):
        problems.append("a leaf value is not finite")
    if np.any(arrays.feature < -1):
        problems.append("feature indices below -1")
    return problems


def _link_problems(arrays: TreeArrays) -> list[str]:
    """Roots that are not nodes, children that are not nodes, nodes reached twice: each
    tree must be a tree of its own (the walk stops at the first shared or missing node)."""
    n = arrays.nodes
    problems = []
    seen = np.zeros(n, dtype=bool)
    for tree, root in enumerate(arrays.roots.tolist()):
        if not 0 <= root < n:
            problems.append(f"tree {tree}: root {root} is not a node (0..{n - 1})")
            continue
        stack = [root]
        while stack:
            node = stack.pop()
            if seen[node]:
                problems.append(
                    f"tree {tree}: node {node} is reached twice (a cycle, or a node shared "
                    "by two branches or trees)"
                )
                return problems
            seen[node] = True
            if arrays.feature[node] < 0:
                continue
            for child in (int(arrays.left[node]), int(arrays.right[node])):
                if not 0 <= child < n:
                    problems.append(f"tree {tree}: node {node} has a missing child ({child})")
                    return problems
                stack.append(child)
    return problems


class TreeEnsemble(Op):
    """acc = trees summed in order (see the module docstring); result (1, T) float64."""

    kind = "TreeEnsemble"
    arity: ClassVar[tuple[int, int]] = (1 + len(OPERANDS), 1 + len(OPERANDS))

    def arrays(self, graph: Graph) -> TreeArrays:
        found = [graph.constant(v) for v in self.inputs[1:]]
        if any(a is None for a in found):
            raise self.error("the node table of a TreeEnsemble must be constants")
        return TreeArrays(*(np.asarray(a) for a in found))

    def infer(self) -> list[TensorType]:
        value = self.inputs[1 + OPERANDS.index("value")]
        if len(value.shape) != 2:
            raise self.error(f"value must be (nodes, targets), not {value.shape}")
        return [TensorType((1, value.shape[1]), "float64")]

    def check(self, graph: Graph) -> None:
        x = self.inputs[0]
        if len(x.shape) != 2 or x.shape[0] != 1:
            raise self.error(f"the input must be one row of features, not {x.shape}")
        arrays = self.arrays(graph)
        problems = structure_problems(arrays, x.shape[1])
        if problems:
            raise self.error("; ".join(problems))
        targets = arrays.targets
        base = self.attrs.get("base", ())
        if len(base) != targets:
            raise self.error(f"{len(base)} base values for {targets} outputs")
        for attr in ("compare", "accumulate"):
            if self.attrs.get(attr, "float64") not in COMPARES:
                raise self.error(f"{attr} must be one of {COMPARES}, not {self.attrs[attr]!r}")
        divisor = self.attrs.get("divisor", 1.0)
        if not (np.isfinite(divisor) and divisor > 0):
            raise self.error(f"divisor must be positive, not {divisor}")


ops.register(TreeEnsemble)


def compared(x: np.ndarray, compare: str) -> np.ndarray:
    """What the source compares: float32(x) (held exactly in float64) or x."""
    if compare == Compare.FLOAT32:
        with np.errstate(over="ignore"):
            result: np.ndarray = x.astype(np.float32).astype(np.float64)
        return result
    return x


def leaves(arrays: TreeArrays, x: np.ndarray, compare: str) -> np.ndarray:
    """The leaf each sample reaches in each tree: (batch, trees)."""
    xc = compared(np.asarray(x, dtype=np.float64), compare)
    batch = xc.shape[0]
    rows = np.arange(batch)
    out = np.empty((batch, arrays.roots.size), dtype=np.int64)
    for t, root in enumerate(arrays.roots):
        node = np.full(batch, root, dtype=np.int64)
        while True:
            feature = arrays.feature[node]
            internal = feature >= 0
            if not internal.any():
                break
            v = xc[rows, np.maximum(feature, 0)]
            t_value = arrays.threshold[node]
            with np.errstate(invalid="ignore"):
                holds = np.where(arrays.strict[node] == 1, v < t_value, v <= t_value)
            go_left = np.where(np.isnan(v), arrays.missing[node] == 1, holds)
            child = np.where(go_left, arrays.left[node], arrays.right[node])
            node = np.where(internal, child, node)
        out[:, t] = node
    return out


def evaluate(op: Op, arrays: TreeArrays, x: np.ndarray) -> np.ndarray:
    """The op's semantics on a batch x (batch, features): (batch, T) float64."""
    reached = leaves(arrays, x.reshape(x.shape[0], -1), op.attrs["compare"])
    dtype = np.float32 if op.attrs.get("accumulate", "float64") == "float32" else np.float64
    base = np.asarray(op.attrs["base"], dtype=np.float64).astype(dtype)
    base_first = op.attrs.get("base_first", True)
    acc = np.tile(base if base_first else np.zeros_like(base), (reached.shape[0], 1))
    values = arrays.value.astype(dtype)
    for t in range(reached.shape[1]):  # one tree after the other, as the source sums them
        acc = acc + values[reached[:, t]]
    divisor = float(op.attrs.get("divisor", 1.0))
    if divisor != 1.0:
        acc = acc / dtype(divisor)
    if not base_first:
        acc = acc + base
    return acc.astype(np.float64)


def _evaluate_op(op: Op, args: list[np.ndarray]) -> np.ndarray:
    x, *rest = args
    arrays = TreeArrays(*(np.asarray(a) for a in rest))
    # the interpreter holds constants as float64; the integer tables are exact there
    ints = {name: getattr(arrays, name).astype(np.int64) for name in
            ("feature", "strict", "left", "right", "missing", "roots")}  # fmt: skip
    arrays = TreeArrays(**{**{n: getattr(arrays, n) for n in OPERANDS}, **ints})
    batch = x.shape[0]
    return evaluate(op, arrays, x.reshape(batch, -1))


interpreter.EVALUATORS[TreeEnsemble.kind] = _evaluate_op
