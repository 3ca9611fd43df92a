"""scikit-learn estimator -> graph IR converters: one `convert_<estimator>` per class.

Registered in registry.ESTIMATORS (final estimators, which give the model's named outputs) or
registry.TRANSFORMERS (the scalers of a Pipeline, which give new features). The fitted
parameters become graph constants; every linear map is a Dense op (a crossbar MVM), the rest
(scaling, activations, softmax, argmax) SIMD work. Outputs reproduce scikit-learn's `predict`,
`predict_proba` and `decision_function`, tie rules included. A classifier's `label` is an
int64 index into `classes_`, which goes into graph.meta["classes"] as JSON.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import LinearSVC, LinearSVR

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Value

from .registry import (
    EstimatorContext,
    Outputs,
    check_fitted,
    estimator,
    lookup_estimator,
    lookup_transformer,
    step_loc,
    transformer,
)

# MLP `activation` -> the Dense activation that computes it.
_MLP_ACTIVATIONS = {"identity": "none", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


# -- shared pieces --------------------------------------------------------------------------


def _classes(ctx: EstimatorContext, model: Any) -> np.ndarray:
    """The estimator's classes_, recorded in the graph's metadata for mapping labels back."""
    classes = np.asarray(model.classes_)
    if classes.ndim != 1 or classes.size < 2:
        raise ctx.error(
            f"expected classes_ to list at least two classes, not {classes.tolist()!r} "
            "(multi-output and multilabel classifiers are not supported)"
        )
    try:
        text = json.dumps(classes.tolist())
    except TypeError:
        raise ctx.error(
            f"class labels of type {type(classes.tolist()[0]).__name__!r} cannot be recorded "
            "in the binary; use numbers, strings or booleans"
        ) from None
    previous = ctx.graph.meta.get("classes")
    if previous is not None and previous != text:
        raise ctx.error("the model has two classifiers with different classes")
    ctx.graph.meta["classes"] = text
    return classes


def _label(ctx: EstimatorContext, scores: Value) -> Value:
    """The index of the first maximum score: numpy's (and scikit-learn's) argmax rule."""
    return ctx.emit(ops.ArgMax, [scores], name="label", hint="label", axis=-1, keepdims=0)


def _signed_pair(ctx: EstimatorContext, x: Value, w: np.ndarray, b: np.ndarray, hint: str) -> Value:
    """[-d, d] for the one-column decision d = x @ w + b of a binary classifier.

    scikit-learn predicts classes_[1] when d > 0 and classes_[0] otherwise (d == 0 included).
    ArgMax of [-d, d] takes the first maximum, so gives 1 exactly when d > 0. The two columns
    are exact negatives on the chip too: per-column weight scales make the integer weights
    -w_int and w_int, the MVM is exact, and IEEE products and sums are sign-symmetric, so the
    label agrees with the sign of `decision_function` on every sample. sigmoid([-d, d]) is
    [1 - p, p], scikit-learn's binary predict_proba.
    """
    return ctx.dense(x, np.hstack([-w, w]), np.concatenate([-b, b]), hint=hint)


def _linear_classifier(
    ctx: EstimatorContext, model: Any, x: Value, probabilities: str | None
) -> Outputs:
    """label, probabilities ("logistic" or "softmax"; None: no predict_proba) and
    decision_function of a linear classifier with coef_ (1 or n_classes, n_features)."""
    classes = _classes(ctx, model)
    coef = np.asarray(model.coef_)
    if coef.ndim != 2:
        raise ctx.error(f"expected coef_ of shape (n_classes, n_features), not {coef.shape}")
    rows = coef.shape[0]
    intercept = np.broadcast_to(np.asarray(model.intercept_, dtype=coef.dtype), (rows,))
    w = coef.T
    outputs: Outputs = []
    if rows == 1:
        if classes.size != 2:
            raise ctx.error(f"one row of coef_ for {classes.size} classes")
        decision = ctx.dense(x, w, intercept, name="decision_function", hint="decision")
        pair = _signed_pair(ctx, x, w, intercept, "signed_decision")
        outputs.append(("label", _label(ctx, pair)))
        if probabilities == "logistic":
            proba = ctx.emit(ops.Sigmoid, [pair], name="probabilities", hint="probabilities")
            outputs.append(("probabilities", proba))
        elif probabilities == "softmax":
            proba = ctx.emit(ops.Softmax, [pair], name="probabilities", hint="probabilities")
            outputs.append(("probabilities", proba))
    else:
        if rows != classes.size:
            raise ctx.error(f"{rows} rows of coef_ for {classes.size} classes")
        if probabilities == "logistic":
            raise ctx.error(
                "one-vs-rest probabilities (sigmoids normalised to sum 1) need a row sum, "
                "which the IR has no op for yet"
            )
        decision = ctx.dense(x, w, intercept, name="decision_function", hint="decision")
        outputs.append(("label", _label(ctx, decision)))
        if probabilities == "softmax":
            proba = ctx.emit(
                ops.Softmax, [decision], name="probabilities", hint="probabilities", axis=-1
            )
            outputs.append(("probabilities", proba))
    outputs.append(("decision_function", decision))
    return outputs


def _linear_regressor(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    """predict = x @ coef_.T + intercept_, one column per target."""
    coef = np.asarray(model.coef_)
    if coef.ndim == 1:
        coef = coef.reshape(1, -1)
    if coef.ndim != 2:
        raise ctx.error("expected coef_ of shape (n_features,) or (n_targets, n_features)")
    intercept = np.broadcast_to(np.asarray(model.intercept_, dtype=coef.dtype), (coef.shape[0],))
    return [("predict", ctx.dense(x, coef.T, intercept, name="predict", hint="predict"))]


# -- linear models --------------------------------------------------------------------------


@estimator(LogisticRegression)
def convert_logistic_regression(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    """Binary: sigmoid probabilities; multinomial: softmax.

    scikit-learn >= 1.8 has no `multi_class`: binary problems use the sigmoid, others the
    softmax. Earlier releases (imcc accepts >= 1.4) also had one-vs-rest (`multi_class='ovr'`,
    or the liblinear solver), whose probabilities are sigmoids normalised by their sum, and a
    binary multinomial mode, softmax([-d, d]); the rule below is theirs.
    """
    multi_class = getattr(model, "multi_class", None)
    binary = np.asarray(model.classes_).size <= 2
    ovr = multi_class in ("ovr", "warn") or (
        multi_class in (None, "auto", "deprecated")
        and (binary or getattr(model, "solver", "") == "liblinear")
    )
    return _linear_classifier(ctx, model, x, "logistic" if ovr else "softmax")


@estimator(LinearSVC)
def convert_linear_svc(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    """No predict_proba: label and decision_function (one column when binary)."""
    return _linear_classifier(ctx, model, x, None)


@estimator(LinearRegression)
def convert_linear_regression(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    return _linear_regressor(ctx, model, x)


@estimator(Ridge)
def convert_ridge(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    return _linear_regressor(ctx, model, x)


@estimator(LinearSVR)
def convert_linear_svr(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    return _linear_regressor(ctx, model, x)


# -- multi-layer perceptrons ----------------------------------------------------------------


def _mlp_hidden(ctx: EstimatorContext, model: Any, x: Value) -> Value:
    """The hidden layers: Dense ops with the model's activation fused in."""
    activation = _MLP_ACTIVATIONS.get(model.activation)
    if activation is None:
        raise ctx.error(
            f"unsupported activation {model.activation!r}; supported: "
            f"{', '.join(sorted(_MLP_ACTIVATIONS))}"
        )
    h = x
    for index, (w, b) in enumerate(zip(model.coefs_[:-1], model.intercepts_[:-1], strict=True)):
        h = ctx.dense(h, w, b, activation=activation, hint=f"layer{index}")
    return h


@estimator(MLPClassifier)
def convert_mlp_classifier(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    """Softmax output layer (multi-class) or one logistic unit (binary).

    scikit-learn's label is the argmax of the softmax (of the logits here: the same index,
    without the rounding of exp), or for a binary model sigmoid(z) > 0.5, here z > 0 (they
    differ only where sigmoid(z) rounds to 0.5 for 0 < z < 1e-16).
    """
    binarizer = getattr(model, "_label_binarizer", None)
    if getattr(binarizer, "y_type_", "") == "multilabel-indicator":
        raise ctx.error("multilabel MLPClassifier models are not supported")
    classes = _classes(ctx, model)
    h = _mlp_hidden(ctx, model, x)
    w, b = model.coefs_[-1], model.intercepts_[-1]
    if model.out_activation_ == "softmax" and w.shape[1] == classes.size:
        logits = ctx.dense(h, w, b, hint="logits")
        proba = ctx.emit(ops.Softmax, [logits], name="probabilities", hint="softmax", axis=-1)
        return [("label", _label(ctx, logits)), ("probabilities", proba)]
    if model.out_activation_ == "logistic" and w.shape[1] == 1 and classes.size == 2:
        pair = _signed_pair(ctx, h, w, b, "signed_logit")
        proba = ctx.emit(ops.Sigmoid, [pair], name="probabilities", hint="sigmoid")
        return [("label", _label(ctx, pair)), ("probabilities", proba)]
    raise ctx.error(
        f"unsupported output layer: {w.shape[1]} {model.out_activation_!r} units for "
        f"{classes.size} classes"
    )


@estimator(MLPRegressor)
def convert_mlp_regressor(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    if model.out_activation_ != "identity":
        raise ctx.error(f"unsupported output activation {model.out_activation_!r}")
    h = _mlp_hidden(ctx, model, x)
    w, b = model.coefs_[-1], model.intercepts_[-1]
    return [("predict", ctx.dense(h, w, b, name="predict", hint="predict"))]


# -- pipelines and scalers ------------------------------------------------------------------


@estimator(Pipeline)
def convert_pipeline(ctx: EstimatorContext, model: Any, x: Value) -> Outputs:
    """Scalers, then one supported estimator; 'passthrough' steps are skipped."""
    *transforms, (final_name, final) = model.steps
    for name, step in transforms:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        loc = step_loc(name, step)
        entry = lookup_transformer(step, loc)
        check_fitted(step, loc)
        _check_width(ctx.at(loc), step, x)
        x = entry.function(ctx.at(loc), step, x)
    if final is None or (isinstance(final, str) and final == "passthrough"):
        raise ctx.error(
            f"the pipeline ends in {final_name!r} = 'passthrough'; it must end in a "
            "classifier or regressor"
        )
    loc = step_loc(final_name, final)
    entry = lookup_estimator(final, loc)
    check_fitted(final, loc)
    _check_width(ctx.at(loc), final, x)
    outputs: Outputs = entry.function(ctx.at(loc), final, x)
    return outputs


def _check_width(ctx: EstimatorContext, step: Any, x: Value) -> None:
    n = getattr(step, "n_features_in_", None)
    if n is not None and int(n) != x.shape[-1]:
        raise ctx.error(f"the step takes {n} features, but is given {x.shape[-1]}")


# Scalers stay SIMD arithmetic in front of the first Dense instead of being folded into its
# weights (W' = W / scale, b' = b - (mean / scale) @ W). The crossbar quantises its input vector
# with one scale (its abs-max, or a calibrated one) and each weight column with one scale: on
# raw features whose ranges differ by orders of magnitude (breast_cancer: 1e-3 to 4e3), folding
# would leave the small features a fraction of one input step and push the range spread into
# the weights, so 8-bit models lose their accuracy. Standardised first, every feature gets the
# full input range. The cost is two SIMD ops per feature, the same as scikit-learn's transform.


@transformer(StandardScaler)
def convert_standard_scaler(ctx: EstimatorContext, model: Any, x: Value) -> Value:
    """(x - mean_) / scale_, as StandardScaler.transform computes it (a division, not a
    product with 1 / scale_, so the scaled features are scikit-learn's to the last bit)."""
    if model.with_mean:
        x = ctx.emit(ops.Sub, [x, ctx.constant("mean", model.mean_)], hint="center")
    if model.with_std:
        x = ctx.emit(ops.Div, [x, ctx.constant("scale", model.scale_)], hint="scale")
    return x


@transformer(MinMaxScaler)
def convert_min_max_scaler(ctx: EstimatorContext, model: Any, x: Value) -> Value:
    """x * scale_ + min_, then with `clip` limited to feature_range = (lo, hi) as
    lo + relu(x - lo) - relu(x - hi) (the IR has no min/max op; relu is a SIMD op)."""
    x = ctx.emit(ops.Mul, [x, ctx.constant("scale", model.scale_)], hint="scale")
    x = ctx.emit(ops.Add, [x, ctx.constant("min", model.min_)], hint="shift")
    if getattr(model, "clip", False):
        low, high = (float(v) for v in model.feature_range)
        x = _clip(ctx, x, low, high)
    return x


def _clip(ctx: EstimatorContext, x: Value, low: float, high: float) -> Value:
    """clip(x, low, high) = low + relu(x - low) - relu(x - high), for low <= high."""
    dtype = np.dtype(x.type.dtype)
    above_low = ctx.emit(ops.Sub, [x, ctx.constant("low", low, dtype)], hint="clip_low")
    above_high = ctx.emit(ops.Sub, [x, ctx.constant("high", high, dtype)], hint="clip_high")
    part = ctx.emit(
        ops.Sub,
        [
            ctx.emit(ops.Relu, [above_low], hint="clip_relu_low"),
            ctx.emit(ops.Relu, [above_high], hint="clip_relu_high"),
        ],
        hint="clip_span",
    )
    return ctx.emit(ops.Add, [part, ctx.constant("low", low, dtype)], hint="clip")
