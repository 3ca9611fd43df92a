"""scikit-learn tree models -> the IR's TreeEnsemble: one `convert_<estimator>` per class.

DecisionTree, RandomForest and ExtraTrees (classifiers and regressors), GradientBoosting and
HistGradientBoosting (classifiers and regressors), read natively from their fitted arrays (no
ONNX in between), so thresholds keep their float64 value and each node its learned NaN
direction (`missing_go_to_left`). scikit-learn's own arithmetic is reproduced:
- the trees of DecisionTree/RandomForest/ExtraTrees/GradientBoosting compare float32(X)
  with float64 thresholds (`compare="float32"`); HistGradientBoosting compares float64 X;
- a forest sums its trees' leaf values (class fractions v / sum(v), as predict_proba
  normalises them) tree after tree and divides by the number of trees (`divisor`);
- boosting starts from the baseline (`base`, first) and adds learning_rate * leaf tree after
  tree (HistGradientBoosting's leaves already hold the shrinkage); class k of a multi-class
  model has the trees (stage, k), so its sum runs over the stages in order.
Labels follow each estimator's `predict` tie rule; probabilities its `predict_proba`.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Value
from imcc.compiler.ir.trees import OPERANDS, TreeArrays, TreeEnsemble, pack, structure_problems

from .converters import _classes, _label
from .registry import EstimatorContext, Outputs, estimator


def _tree(tree_: Any, value: np.ndarray) -> dict[str, np.ndarray]:
    """One fitted sklearn.tree._tree.Tree with the given per-node output rows."""
    leaf = tree_.children_left < 0
    missing = getattr(tree_, "missing_go_to_left", None)
    n = tree_.node_count
    return {
        "feature": np.where(leaf, -1, tree_.feature).astype(np.int64),
        "threshold": np.where(leaf, 0.0, tree_.threshold).astype(np.float64),
        "strict": np.zeros(n, dtype=np.int64),  # X <= threshold goes left
        "left": np.where(leaf, -1, tree_.children_left).astype(np.int64),
        "right": np.where(leaf, -1, tree_.children_right).astype(np.int64),
        "missing": (np.zeros(n) if missing is None else np.asarray(missing)).astype(np.int64),
        "value": value,
    }


# scikit-learn >= 1.4 stores class fractions in tree_.value; some releases still divide them
# by their sum in predict_proba (rounding by an ulp), later ones return them as they are.
_NORMALISES = "normalizer" in inspect.getsource(DecisionTreeClassifier.predict_proba)


def _class_fractions(tree_: Any, classes: int) -> np.ndarray:
    """predict_proba of a tree per node, computed as this scikit-learn computes it."""
    proba = np.asarray(tree_.value, dtype=np.float64)[:, 0, :classes].copy()
    if _NORMALISES:
        normalizer = proba.sum(axis=1)[:, np.newaxis]
        normalizer[normalizer == 0.0] = 1.0
        proba /= normalizer
    return proba


def _ensemble(
    ctx: EstimatorContext,
    x: Value,
    trees: list[dict[str, np.ndarray]],
    targets: int,
    *,
    compare: str,
    base: np.ndarray | None = None,
    divisor: float = 1.0,
    hint: str = "trees",
) -> Value:
    arrays = pack(trees, targets)
    problems = structure_problems(arrays, x.shape[-1])
    if problems:
        raise ctx.error("malformed tree ensemble: " + "; ".join(problems))
    return _emit(ctx, x, arrays, compare=compare, base=base, divisor=divisor, hint=hint)


def _emit(
    ctx: EstimatorContext,
    x: Value,
    arrays: TreeArrays,
    *,
    compare: str,
    base: np.ndarray | None,
    divisor: float,
    hint: str,
) -> Value:
    constants = [ctx.constant(f"{hint}.{name}", getattr(arrays, name)) for name in OPERANDS]
    base_values = np.zeros(arrays.targets) if base is None else np.asarray(base, np.float64)
    return ctx.emit(
        TreeEnsemble,
        [x, *constants],
        hint=hint,
        compare=compare,
        base=tuple(float(v) for v in base_values.reshape(-1)),
        base_first=True,
        divisor=float(divisor),
    )


def _forest_classifier(ctx: EstimatorContext, model: Any, x: Value, trees: list[Any]) -> Outputs:
    classes = _classes(ctx, model)
    if getattr(model, "n_outputs_", 1) != 1:
        raise ctx.error("multi-output classifiers are not supported")
    parts = [_tree(t.tree_, _class_fractions(t.tree_, classes.size)) for t in trees]
    proba = _ensemble(
        ctx, x, parts, classes.size, compare="float32", divisor=float(len(trees)), hint="trees"
    )
    return [
        ("label", _label(ctx, proba)),
        ("probabilities", ctx.emit(ops.Identity, [proba], name="probabilities")),
    ]


def _forest_regressor(ctx: EstimatorContext, model: Any, x: Value, trees: list[Any]) -> Outputs:
    outputs = int(getattr(model, "n_outputs_", 1))
    parts = [_tree(t.tree_, np.asarray(t.tree_.value, np.float64)[:, :, 0]) for t in trees]
    y = _ensemble(ctx, x, parts, outputs, compare="float32", divisor=float(len(trees)))
    return [("predict", ctx.emit(ops.Identity, [y], name="predict"))]


@estimator(DecisionTreeClassifier)
def convert_decision_tree_classifier(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    """One tree: probabilities are the leaf's class fractions; label their argmax."""
    return _forest_classifier(ctx, model, x, [model])


@estimator(DecisionTreeRegressor)
def convert_decision_tree_regressor(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    return _forest_regressor(ctx, model, x, [model])


@estimator(RandomForestClassifier)
def convert_random_forest_classifier(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    """Soft voting: the trees' class fractions summed in order, divided by their number."""
    return _forest_classifier(ctx, model, x, list(model.estimators_))


@estimator(ExtraTreesClassifier)
def convert_extra_trees_classifier(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    return _forest_classifier(ctx, model, x, list(model.estimators_))


@estimator(RandomForestRegressor)
def convert_random_forest_regressor(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    return _forest_regressor(ctx, model, x, list(model.estimators_))


@estimator(ExtraTreesRegressor)
def convert_extra_trees_regressor(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    return _forest_regressor(ctx, model, x, list(model.estimators_))


# -- boosting -------------------------------------------------------------------------------


def _gb_base(ctx: EstimatorContext, model: Any) -> np.ndarray:
    """The raw prediction of the init estimator: a constant for 'zero' or a Dummy."""
    init = model.init_
    if not (isinstance(init, str) and init == "zero") and type(init) not in (
        DummyClassifier,
        DummyRegressor,
    ):
        raise ctx.error(
            f"init={type(init).__name__} makes the starting score depend on the input; only "
            "the default (a Dummy estimator) and 'zero' are supported"
        )
    probe = np.zeros((1, model.n_features_in_), dtype=np.float32)
    base: np.ndarray = np.asarray(model._raw_predict_init(probe), dtype=np.float64)[0]
    return base


def _gb_trees(model: Any, columns: int, sign: float = 1.0) -> list[dict[str, np.ndarray]]:
    """Stage-major trees; tree (stage, k) adds learning_rate * leaf to column k."""
    stages, per_stage = model.estimators_.shape
    trees = []
    for stage in range(stages):
        for k in range(per_stage):
            t = model.estimators_[stage, k].tree_
            value = np.zeros((t.node_count, columns))
            # scikit-learn adds learning_rate * value: the same product, rounded the same
            value[:, k] = model.learning_rate * np.asarray(t.value, np.float64)[:, 0, 0]
            if columns == 2 and per_stage == 1:  # binary: columns [-s, s]
                value[:, 1] = value[:, 0]
                value[:, 0] = -value[:, 0]
            trees.append(_tree(t, value * sign))
    return trees


def _binary_outputs(ctx: EstimatorContext, pair: Value, ties_positive: bool) -> Outputs:
    """Label and probabilities from the pair [-s, s] of a binary boosted model's raw score s.

    probabilities = sigmoid([-s, s]) = [1 - p, p] up to rounding of 1 - p. The label is 1
    when s > 0 (argmax of [-s, s], first maximum wins), or, with `ties_positive`
    (GradientBoosting: s >= 0), 1 - argmax([s, -s]).
    """
    proba = ctx.emit(ops.Sigmoid, [pair], name="probabilities", hint="probabilities")
    if not ties_positive:
        return [("label", _label(ctx, pair)), ("probabilities", proba)]
    flipped = ctx.emit(ops.Mul, [pair, ctx.constant("flip", [-1.0, -1.0])], hint="flip")
    index = ctx.emit(ops.ArgMax, [flipped], hint="index", axis=-1, keepdims=0)
    one = ctx.constant("one", np.array(1, dtype=np.int64))
    return [("label", ctx.emit(ops.Sub, [one, index], name="label", hint="label")),
            ("probabilities", proba)]  # fmt: skip


@estimator(GradientBoostingClassifier)
def convert_gradient_boosting_classifier(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    classes = _classes(ctx, model)
    base = _gb_base(ctx, model)
    if model.estimators_.shape[1] == 1:
        trees = _gb_trees(model, 2)
        pair = _ensemble(ctx, x, trees, 2, compare="float32", base=np.array([-base[0], base[0]]))
        return _binary_outputs(ctx, pair, ties_positive=True)
    raw = _ensemble(ctx, x, _gb_trees(model, classes.size), classes.size, compare="float32",
                    base=base)  # fmt: skip
    proba = ctx.emit(ops.Softmax, [raw], name="probabilities", hint="probabilities", axis=-1)
    return [("label", _label(ctx, raw)), ("probabilities", proba)]


@estimator(GradientBoostingRegressor)
def convert_gradient_boosting_regressor(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    y = _ensemble(ctx, x, _gb_trees(model, 1), 1, compare="float32", base=_gb_base(ctx, model))
    return [("predict", ctx.emit(ops.Identity, [y], name="predict"))]


def _hgb_trees(ctx: EstimatorContext, model: Any, columns: int) -> list[dict[str, np.ndarray]]:
    """Iteration-major predictors; predictor (iteration, k) adds its leaf value to column k."""
    trees = []
    for iteration in model._predictors:
        for k, predictor in enumerate(iteration):
            nodes = predictor.nodes
            if np.any(nodes["is_categorical"]):
                raise ctx.error(
                    "categorical splits (bitsets) are not supported; encode categories as "
                    "numbers (ordinal) before fitting"
                )
            leaf = nodes["is_leaf"].astype(bool)
            n = nodes.shape[0]
            value = np.zeros((n, columns))
            value[:, k] = np.where(leaf, nodes["value"], 0.0)
            if columns == 2 and len(iteration) == 1:  # binary: columns [-s, s]
                value[:, 1] = value[:, 0]
                value[:, 0] = -value[:, 0]
            trees.append(
                {
                    "feature": np.where(leaf, -1, nodes["feature_idx"]).astype(np.int64),
                    "threshold": np.where(leaf, 0.0, nodes["num_threshold"]).astype(np.float64),
                    "strict": np.zeros(n, dtype=np.int64),
                    "left": np.where(leaf, -1, nodes["left"]).astype(np.int64),
                    "right": np.where(leaf, -1, nodes["right"]).astype(np.int64),
                    "missing": nodes["missing_go_to_left"].astype(np.int64),
                    "value": value,
                }
            )
    return trees


@estimator(HistGradientBoostingClassifier)
def convert_hist_gradient_boosting_classifier(
    ctx: EstimatorContext, model: Any, x: Value
) -> Outputs:
    classes = _classes(ctx, model)
    base = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    if base.size == 1:
        pair = _ensemble(ctx, x, _hgb_trees(ctx, model, 2), 2, compare="float64",
                         base=np.array([-base[0], base[0]]))  # fmt: skip
        return _binary_outputs(ctx, pair, ties_positive=False)
    raw = _ensemble(ctx, x, _hgb_trees(ctx, model, classes.size), classes.size,
                    compare="float64", base=base)  # fmt: skip
    proba = ctx.emit(ops.Softmax, [raw], name="probabilities", hint="probabilities", axis=-1)
    return [("label", _label(ctx, raw)), ("probabilities", proba)]


@estimator(HistGradientBoostingRegressor)
def convert_hist_gradient_boosting_regressor(
    ctx: EstimatorContext, model: Any, x: Value
) -> Outputs:
    """predict = the link's inverse of the raw score: identity, or exp for log-link losses
    (poisson, gamma)."""
    link = type(model._loss.link).__name__
    if link not in ("IdentityLink", "LogLink"):
        raise ctx.error(f"loss {model.loss!r} (link {link}) is not supported")
    base = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    raw = _ensemble(ctx, x, _hgb_trees(ctx, model, 1), 1, compare="float64", base=base)
    if link == "LogLink":
        return [("predict", ctx.emit(ops.Exp, [raw], name="predict"))]
    return [("predict", ctx.emit(ops.Identity, [raw], name="predict"))]
