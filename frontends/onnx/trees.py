"""ONNX-ML tree ensembles -> the IR's TreeEnsemble (ai.onnx.ml TreeEnsembleClassifier and
TreeEnsembleRegressor, opsets 1 and 3; TreeEnsemble, opset 5), as scikit-learn (skl2onnx),
XGBoost and LightGBM (onnxmltools) export them.

The node table is validated the way onnxruntime reads it, with an error instead of a silent
misreading: trees must be contiguous in the lists and start with their root (onnxruntime takes
the first-listed node of a tree as its root), every child id must exist, no node may be reached
twice (a cycle, or a node shared), and only the interval tests BRANCH_LEQ, BRANCH_LT,
BRANCH_GTE and BRANCH_GT are supported (GTE/GT become LT/LEQ with the branches swapped, and the
NaN direction with them; EQ, NEQ and MEMBER would need unions of intervals). NaN takes the true
branch where nodes_missing_value_tracks_true says so, the false branch otherwise.

Thresholds compare as onnxruntime compares them: against float32(X) with float32 thresholds
for float (and integer) inputs, against X for double inputs. Leaf votes become rows of the leaf
values; base_values are added after the trees (and after AVERAGE's division). Classifier
outputs follow onnxruntime, including its binary convention: with one score column s
(class_ids all 0, two labels) the scores are [1 - s, s] when every weight is >= 0 (the label
is the second class when s > 0.5; LOGISTIC is then not applied, as in onnxruntime), else
[-s, s] or, with LOGISTIC, [sigmoid(-s), sigmoid(s)] (the label is the second when s > 0).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from onnx import numpy_helper

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Value
from imcc.compiler.ir.trees import OPERANDS, TreeArrays, TreeEnsemble, structure_problems

from .converters import ML_DOMAIN, _labels_of
from .registry import NodeContext, Result, converter

_INTERVAL_MODES = {"BRANCH_LEQ": (0, False), "BRANCH_LT": (1, False),
                   "BRANCH_GTE": (1, True), "BRANCH_GT": (0, True)}  # fmt: skip
# mode -> (strict, swapped): GTE is `not (x < t)`, GT is `not (x <= t)`
_MODE_CODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ",
               "BRANCH_MEMBER")  # fmt: skip
_POST = ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT")  # TreeEnsemble's int codes


def _values(ctx: NodeContext, name: str, dtype: Any = np.float64) -> np.ndarray | None:
    """A FLOATS attribute, or its `_as_tensor` (double) variant, as float64."""
    if ctx.has_attr(f"{name}_as_tensor"):
        return np.asarray(numpy_helper.to_array(ctx.attr(f"{name}_as_tensor")), dtype=dtype)
    if ctx.has_attr(name):
        return np.asarray(np.asarray(ctx.attr(name), dtype=np.float32), dtype=dtype)
    return None


def _ints(ctx: NodeContext, name: str, required: bool = True) -> np.ndarray:
    if not ctx.has_attr(name):
        if required:
            raise ctx.error(f"{ctx.op_type} needs the {name!r} attribute")
        return np.zeros(0, dtype=np.int64)
    return np.asarray(ctx.attr(name), dtype=np.int64)


def _class_labels(ctx: NodeContext) -> list[int | str]:
    ints = ctx.attr("classlabels_int64s") or []
    strings = ctx.attr("classlabels_strings") or []
    if bool(ints) == bool(strings):
        raise ctx.error(
            f"{ctx.op_type} needs exactly one of classlabels_int64s and classlabels_strings"
        )
    if strings:
        return [str(s) for s in strings]
    return [int(v) for v in ints]


def _compare(ctx: NodeContext, x: Value) -> str:
    dtype = np.dtype(x.type.dtype)
    if dtype == np.float64:
        return "float64"
    if dtype.kind in "iuf" and dtype.itemsize >= 4:
        return "float32"  # onnxruntime compares float (and integer) inputs in float32
    raise ctx.error(f"{ctx.op_type} on {dtype} inputs is not supported")


def _threshold(values: np.ndarray, compare: str) -> np.ndarray:
    """What onnxruntime compares against: float32 thresholds for a float32 comparison."""
    return values.astype(np.float32).astype(np.float64) if compare == "float32" else values


class _Legacy:
    """The node table of TreeEnsembleClassifier/Regressor, validated and normalised."""

    def __init__(self, ctx: NodeContext, compare: str, features: int) -> None:
        self.ctx = ctx
        tree_ids = _ints(ctx, "nodes_treeids")
        node_ids = _ints(ctx, "nodes_nodeids")
        feature_ids = _ints(ctx, "nodes_featureids")
        modes = [str(m) for m in ctx.attr("nodes_modes") or []]
        values = _values(ctx, "nodes_values")
        true_ids = _ints(ctx, "nodes_truenodeids")
        false_ids = _ints(ctx, "nodes_falsenodeids")
        n = tree_ids.size
        missing = _ints(ctx, "nodes_missing_value_tracks_true", required=False)
        if missing.size == 0:
            missing = np.zeros(n, dtype=np.int64)
        if values is None:
            values = np.zeros(n)
        lengths = {len(a) for a in (node_ids, feature_ids, modes, values, true_ids, false_ids,
                                    missing)}  # fmt: skip
        if lengths != {n} or n == 0:
            raise ctx.error(
                "the nodes_* attributes must list the same, non-zero number of nodes, not "
                f"{sorted(lengths | {n})}"
            )
        self.index: dict[tuple[int, int], int] = {}
        self.trees: list[int] = []  # tree ids in order
        roots = []
        for i, (tree, node) in enumerate(zip(tree_ids.tolist(), node_ids.tolist(), strict=True)):
            if (tree, node) in self.index:
                raise ctx.error(f"tree {tree}: node id {node} appears twice")
            if not self.trees or self.trees[-1] != tree:
                if tree in self.trees:
                    raise ctx.error(
                        f"the nodes of tree {tree} are not contiguous in nodes_treeids (node "
                        f"{node} comes after nodes of another tree); onnxruntime would split it"
                    )
                self.trees.append(tree)
                roots.append(i)
            self.index[(tree, node)] = i
        feature = np.full(n, -1, dtype=np.int64)
        strict = np.zeros(n, dtype=np.int64)
        left = np.full(n, -1, dtype=np.int64)
        right = np.full(n, -1, dtype=np.int64)
        miss = np.zeros(n, dtype=np.int64)
        referenced = set()
        for i in range(n):
            mode, tree, node = modes[i], int(tree_ids[i]), int(node_ids[i])
            if mode == "LEAF":
                continue
            if mode not in _INTERVAL_MODES:
                raise ctx.error(
                    f"node mode {mode!r} (tree {tree}, node {node}) is not supported: an "
                    "analog-CAM row holds one interval per feature; supported modes: "
                    f"{', '.join(_INTERVAL_MODES)}, LEAF"
                )
            children = []
            for role, ids in (("true", true_ids), ("false", false_ids)):
                child = self.index.get((tree, int(ids[i])))
                if child is None:
                    raise ctx.error(
                        f"tree {tree}, node {node}: its {role} child id {int(ids[i])} is not a "
                        "node of the tree"
                    )
                children.append(child)
            referenced.update(children)
            strict[i], swapped = _INTERVAL_MODES[mode]
            true_child, false_child = children
            left[i], right[i] = (false_child, true_child) if swapped else (true_child, false_child)
            miss[i] = int(bool(missing[i])) ^ int(swapped)  # NaN's side, as `left` now means
            feature[i] = int(feature_ids[i])
        for tree, root in zip(self.trees, roots, strict=True):
            if root in referenced:
                real = [i for i in range(n) if tree_ids[i] == tree and i not in referenced]
                where = f"node {int(node_ids[real[0]])} is" if real else "no node is"
                raise ctx.error(
                    f"tree {tree}: its first listed node (id {int(node_ids[root])}) is not its "
                    f"root ({where} the root); onnxruntime takes the first node as the root, so "
                    "list each tree root first"
                )
        self.n = n
        self.feature, self.strict, self.left, self.right, self.missing = (
            feature, strict, left, right, miss
        )  # fmt: skip
        self.threshold = _threshold(values, compare)
        self.roots = np.array(roots, dtype=np.int64)
        self.features = features

    def arrays(self, prefix: str, targets: int) -> tuple[TreeArrays, np.ndarray]:
        """The node table with the leaf votes `{prefix}_treeids/_nodeids/_ids/_weights`
        summed into value rows; also the weights (for onnxruntime's binary rule)."""
        ctx = self.ctx
        vote_trees = _ints(ctx, f"{prefix}_treeids")
        vote_nodes = _ints(ctx, f"{prefix}_nodeids")
        vote_ids = _ints(ctx, f"{prefix}_ids")
        weights = _values(ctx, f"{prefix}_weights")
        if weights is None or not (vote_trees.size == vote_nodes.size == vote_ids.size
                                   == weights.size):  # fmt: skip
            raise ctx.error(f"the {prefix}_* attributes must list the same number of votes")
        value = np.zeros((self.n, targets))
        votes = zip(vote_trees.tolist(), vote_nodes.tolist(), vote_ids.tolist(),
                    weights.tolist(), strict=True)  # fmt: skip
        for tree, node, target, weight in votes:
            i = self.index.get((tree, node))
            if i is None:
                raise ctx.error(f"a vote names tree {tree}, node {node}, which does not exist")
            if self.feature[i] >= 0:
                raise ctx.error(f"a vote names tree {tree}, node {node}, which is not a leaf")
            if not 0 <= target < targets:
                raise ctx.error(f"a vote names output {target}; there are {targets}")
            value[i, target] += weight
        arrays = TreeArrays(self.feature, self.threshold.astype(np.float64), self.strict,
                            self.left, self.right, self.missing, value, self.roots)  # fmt: skip
        problems = structure_problems(arrays, self.features)
        if problems:
            raise ctx.error("malformed tree ensemble: " + "; ".join(problems))
        return arrays, weights


def _emit(
    ctx: NodeContext,
    x: Value,
    arrays: TreeArrays,
    *,
    compare: str,
    base: np.ndarray,
    divisor: float = 1.0,
    output: int | None = None,
) -> Value:
    constants = [
        ctx.add_constant(f"{ctx.node.output[0]}.{name}", getattr(arrays, name)) for name in OPERANDS
    ]
    return ctx.emit(
        TreeEnsemble,
        [x, *constants],
        output=output,
        hint="trees",
        compare=compare,
        base=tuple(float(v) for v in base),
        base_first=False,
        divisor=float(divisor),
        accumulate=compare,  # onnxruntime sums in the threshold type: float32 for float models
    )


def _post(ctx: NodeContext, scores: Value, post: str, output: int) -> Value:
    if post == "LOGISTIC":
        return ctx.emit(ops.Sigmoid, [scores], output=output)
    if post == "SOFTMAX":
        return ctx.emit(ops.Softmax, [scores], output=output, axis=-1)
    return ctx.emit(ops.Identity, [scores], output=output)


def _constant(ctx: NodeContext, hint: str, values: list[float]) -> Value:
    return ctx.add_constant(f"{ctx.node.output[0]}.{hint}", np.array(values, dtype=np.float64))


def _post_transform(ctx: NodeContext, supported: tuple[str, ...]) -> str:
    post = ctx.attr("post_transform", "NONE")
    post = _POST[post] if isinstance(post, int) and 0 <= post < len(_POST) else str(post)
    if post not in supported:
        raise ctx.error(
            f"post_transform {post!r} of {ctx.op_type} is not supported here; supported: "
            f"{', '.join(supported)}"
        )
    return post


@converter("TreeEnsembleClassifier", since=1, domain=ML_DOMAIN)
def convert_tree_ensemble_classifier(ctx: NodeContext) -> list[Result]:
    """Y = labels, Z = scores; see the module docstring for onnxruntime's binary rule."""
    x = ctx.features(0, ranks=(2,))
    compare = _compare(ctx, x)
    labels = _class_labels(ctx)
    table = _Legacy(ctx, compare, x.shape[-1])
    class_ids = _ints(ctx, "class_ids")
    base = _values(ctx, "base_values")
    base = np.zeros(0) if base is None else base
    if set(class_ids.tolist()) == {0} and len(labels) == 2:
        post = _post_transform(ctx, ("NONE", "LOGISTIC"))
        if base.size > 1:
            raise ctx.error(
                "two base_values with one score column is ambiguous (onnxruntime uses one of "
                "them); give one"
            )
        arrays, weights = table.arrays("class", 1)
        s_value = np.concatenate([-arrays.value, arrays.value], axis=1)
        pair_arrays = dataclasses.replace(arrays, value=s_value)
        b = float(base[0]) if base.size else 0.0
        pair = _emit(ctx, x, pair_arrays, compare=compare, base=np.array([-b, b]))  # [-s, s]
        if np.all(weights >= 0):  # [1 - s, s]; the label is the second class when s > 0.5
            scores = ctx.emit(ops.Add, [pair, _constant(ctx, "one", [1.0, 0.0])], output=1)
            half = ctx.emit(ops.Mul, [pair, _constant(ctx, "keep", [0.0, 1.0])], hint="keep")
            versus = ctx.emit(ops.Add, [half, _constant(ctx, "half", [0.5, 0.0])], hint="half")
            index = ctx.emit(ops.ArgMax, [versus], hint="index", axis=-1, keepdims=0)
        else:  # [-s, s] or its sigmoid; the label is the second class when s > 0
            scores = _post(ctx, pair, post, 1)
            index = ctx.emit(ops.ArgMax, [pair], hint="index", axis=-1, keepdims=0)
        return [_labels_of(ctx, index, labels, 0), scores]
    post = _post_transform(ctx, ("NONE", "LOGISTIC", "SOFTMAX"))
    arrays, _ = table.arrays("class", len(labels))
    if base.size not in (0, len(labels)):
        raise ctx.error(f"{base.size} base_values for {len(labels)} classes")
    raw = _emit(ctx, x, arrays, compare=compare,
                base=base if base.size else np.zeros(len(labels)))  # fmt: skip
    index = ctx.emit(ops.ArgMax, [raw], hint="index", axis=-1, keepdims=0)
    return [_labels_of(ctx, index, labels, 0), _post(ctx, raw, post, 1)]


@converter("TreeEnsembleRegressor", since=1, domain=ML_DOMAIN)
def convert_tree_ensemble_regressor(ctx: NodeContext) -> list[Result]:
    """Y = the trees' SUM or AVERAGE (over all trees) per target, plus base_values."""
    x = ctx.features(0, ranks=(2,))
    compare = _compare(ctx, x)
    _post_transform(ctx, ("NONE",))
    targets = int(ctx.attr("n_targets", 1))
    aggregate = str(ctx.attr("aggregate_function", "SUM"))
    if aggregate not in ("SUM", "AVERAGE"):
        raise ctx.error(
            f"aggregate_function {aggregate!r} is not supported; supported: SUM, AVERAGE"
        )
    table = _Legacy(ctx, compare, x.shape[-1])
    arrays, _ = table.arrays("target", targets)
    base = _values(ctx, "base_values")
    base = np.zeros(targets) if base is None or base.size == 0 else base
    if base.size != targets:
        raise ctx.error(f"{base.size} base_values for {targets} targets")
    divisor = float(arrays.roots.size) if aggregate == "AVERAGE" else 1.0
    return [_emit(ctx, x, arrays, compare=compare, base=base, divisor=divisor, output=0)]


@converter("TreeEnsemble", since=5, domain=ML_DOMAIN)
def convert_tree_ensemble(ctx: NodeContext) -> list[Result]:
    """ai.onnx.ml opset 5: interior nodes and leaves in separate lists, `tree_roots` indexes
    the nodes; each reference to a leaf becomes a leaf node of its own."""
    x = ctx.features(0, ranks=(2,))
    compare = _compare(ctx, x)
    post = _post_transform(ctx, ("NONE", "SOFTMAX", "LOGISTIC"))
    aggregate = int(ctx.attr("aggregate_function", 1))
    if aggregate not in (0, 1):
        raise ctx.error(f"aggregate_function {aggregate} (MIN or MAX) is not supported")
    targets = int(ctx.attr("n_targets", 1))
    feature_ids = _ints(ctx, "nodes_featureids")
    splits = None
    if ctx.has_attr("nodes_splits"):
        splits = np.asarray(numpy_helper.to_array(ctx.attr("nodes_splits")), dtype=np.float64)
    modes = np.asarray(numpy_helper.to_array(ctx.attr("nodes_modes")), dtype=np.int64) if (
        ctx.has_attr("nodes_modes")) else np.zeros(0, dtype=np.int64)  # fmt: skip
    true_ids, false_ids = _ints(ctx, "nodes_truenodeids"), _ints(ctx, "nodes_falsenodeids")
    true_leaf = _ints(ctx, "nodes_trueleafs")
    false_leaf = _ints(ctx, "nodes_falseleafs")
    missing = _ints(ctx, "nodes_missing_value_tracks_true", required=False)
    roots = _ints(ctx, "tree_roots")
    leaf_targets = _ints(ctx, "leaf_targetids")
    leaf_weights = np.asarray(numpy_helper.to_array(ctx.attr("leaf_weights")), np.float64) if (
        ctx.has_attr("leaf_weights")) else np.zeros(0)  # fmt: skip
    n = feature_ids.size
    if missing.size == 0:
        missing = np.zeros(n, dtype=np.int64)
    if splits is None or {a.size for a in (splits, modes, true_ids, false_ids, true_leaf,
                                           false_leaf, missing)} != {n}:  # fmt: skip
        raise ctx.error("the nodes_* attributes must list the same number of nodes")
    if leaf_targets.size != leaf_weights.size:
        raise ctx.error("leaf_targetids and leaf_weights differ in length")
    feature = np.full(n, -1, dtype=np.int64)
    strict = np.zeros(n, dtype=np.int64)
    left = np.full(n, -1, dtype=np.int64)
    right = np.full(n, -1, dtype=np.int64)
    miss = np.zeros(n, dtype=np.int64)
    leaf_rows: list[np.ndarray] = []

    def child(node: int, target: int, is_leaf: int) -> int:
        if is_leaf:
            if not 0 <= target < leaf_targets.size:
                raise ctx.error(
                    f"node {node} points at leaf {target}; there are {leaf_targets.size}"
                )
            if not 0 <= leaf_targets[target] < targets:
                raise ctx.error(f"leaf {target} names target {int(leaf_targets[target])}")
            row = np.zeros(targets)
            row[int(leaf_targets[target])] = leaf_weights[target]
            leaf_rows.append(row)
            return n + len(leaf_rows) - 1
        if not 0 <= target < n:
            raise ctx.error(f"node {node}: child node {target} does not exist (0..{n - 1})")
        return target

    for i in range(n):
        mode = int(modes[i])
        name = _MODE_CODES[mode] if 0 <= mode < len(_MODE_CODES) else f"mode {mode}"
        if name not in _INTERVAL_MODES:
            raise ctx.error(
                f"node mode {name!r} (node {i}) is not supported: an analog-CAM row holds one "
                f"interval per feature; supported modes: {', '.join(_INTERVAL_MODES)}"
            )
        strict[i], swapped = _INTERVAL_MODES[name]
        t = child(i, int(true_ids[i]), int(true_leaf[i]))
        f = child(i, int(false_ids[i]), int(false_leaf[i]))
        left[i], right[i] = (f, t) if swapped else (t, f)
        miss[i] = int(bool(missing[i])) ^ int(swapped)
        feature[i] = int(feature_ids[i])
    leaves = len(leaf_rows)
    values = np.vstack([np.zeros((n, targets)), *leaf_rows]) if leaves else np.zeros((n, targets))
    arrays = TreeArrays(
        feature=np.concatenate([feature, np.full(leaves, -1)]),
        threshold=np.concatenate([_threshold(splits, compare), np.zeros(leaves)]),
        strict=np.concatenate([strict, np.zeros(leaves, dtype=np.int64)]),
        left=np.concatenate([left, np.full(leaves, -1)]),
        right=np.concatenate([right, np.full(leaves, -1)]),
        missing=np.concatenate([miss, np.zeros(leaves, dtype=np.int64)]),
        value=values,
        roots=roots,
    )
    problems = structure_problems(arrays, x.shape[-1])
    if problems:
        raise ctx.error("malformed tree ensemble: " + "; ".join(problems))
    divisor = float(roots.size) if aggregate == 0 else 1.0
    raw = _emit(ctx, x, arrays, compare=compare, base=np.zeros(targets), divisor=divisor,
                output=0 if post == "NONE" else None)  # fmt: skip
    return [raw if post == "NONE" else _post(ctx, raw, post, 0)]
