"""Tests for the ONNX-ML converters (frontends/onnx/converters.py: domain ai.onnx.ml, and the
ArgMax, Cast and Clip that skl2onnx puts around them): skl2onnx exports of scikit-learn's
linear models, MLPs and scalers compile and simulate to onnxruntime's outputs on every sample;
hand-made nodes pin onnxruntime's edge cases; what cannot be lowered is a FrontendError."""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import skl2onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, RidgeClassifier
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import LinearSVC, LinearSVR

import imcc
from imcc.compiler.ir.interpreter import evaluate
from imcc.frontends.onnx import import_onnx, supported_op_types
from imcc.isa.diagnostics import FrontendError, NodeLoc

# 16-bit weights and inputs against onnxruntime (float32), with test_sklearn's argument: each
# product is off by <= 2 x 2^-16 relative, summed over <= 64 terms, so scores and regression
# outputs are off by ~2.5e-4 of their scale at most, and probabilities by less (largest seen
# there: 2.5e-4 and 2.4e-4). 1e-3 of max(1, max|reference|) bounds scores and regression
# outputs relative to their magnitude, and probabilities (scale 1) absolutely.
REL_TOL = 1e-3
# The IR interpreter computes in float64 while onnxruntime computes in float32: a few ulps per
# op over sums of <= 3 terms in the hand-made models; 1e-5 leaves ample headroom.
INTERPRETER_RTOL = 1e-5


# -- data, models and runs ------------------------------------------------------------------


@functools.cache
def dataset(name: str, standardised: bool = False) -> tuple[np.ndarray, np.ndarray]:
    loaders: dict[str, Callable[..., Any]] = {
        "iris": load_iris,
        "wine": load_wine,
        "breast_cancer": load_breast_cancer,
        "digits": load_digits,
        "diabetes": load_diabetes,
    }
    x, y = loaders[name](return_X_y=True)
    return (StandardScaler().fit_transform(x) if standardised else x), y


def fit(estimator: Any, x: np.ndarray, y: np.ndarray) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # small max_iter: fast, not converged
        return estimator.fit(x, y)


def export(model: Any, x: np.ndarray) -> onnx.ModelProto:
    """skl2onnx's export as documented for runtimes without maps: zipmap off."""
    options = {"zipmap": False} if hasattr(model, "predict_proba") else None
    return skl2onnx.to_onnx(model, x[:1].astype(np.float32), options=options)


def onnxruntime_outputs(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feed = {session.get_inputs()[0].name: x.astype(np.float32)}
    return dict(zip(names, session.run(None, feed), strict=True))


def check_against_onnxruntime(model: onnx.ModelProto, x: np.ndarray) -> dict[str, str]:
    """Every output on every sample: labels equal (string labels through meta["classes"]),
    numbers within REL_TOL. Returns the binary's metadata."""
    binary = imcc.compile(model, weight_bits=16, input_bits=16)
    out = imcc.Simulator(binary, mode="functional").run(x.astype(np.float32)).outputs
    meta = binary.program.meta
    for name, expected in onnxruntime_outputs(model, x).items():
        got = out[name].reshape(expected.shape)
        if expected.dtype.kind in "OSU":
            assert got.dtype == np.int64
            got = np.array(json.loads(meta["classes"]), dtype=object)[got]
            np.testing.assert_array_equal(got.astype(str), expected.astype(str))
        elif expected.dtype.kind in "iu":
            np.testing.assert_array_equal(got, expected)
        else:
            scale = max(1.0, float(np.max(np.abs(expected))))
            np.testing.assert_allclose(got, expected, rtol=0, atol=REL_TOL * scale)
    return meta


def mlp(activation: str) -> MLPClassifier:
    return MLPClassifier(
        hidden_layer_sizes=(16,),
        activation=activation,
        max_iter=150,
        learning_rate_init=0.01,
        random_state=0,
    )


# (dataset, standardised, estimator factory, label transform)
CASES: dict[str, tuple[str, bool, Callable[[], Any], Callable[[np.ndarray], np.ndarray]]] = {
    "logistic_multinomial_iris": (
        "iris",
        True,
        lambda: LogisticRegression(max_iter=200),
        np.asarray,
    ),
    "logistic_multinomial_digits": (
        "digits",
        True,
        lambda: LogisticRegression(max_iter=200),
        np.asarray,
    ),
    "logistic_binary": ("breast_cancer", True, LogisticRegression, np.asarray),
    "logistic_binary_strings": (
        "breast_cancer",
        True,
        LogisticRegression,
        lambda y: np.array(["malignant", "benign"])[y],
    ),
    "logistic_shifted_ints": ("wine", True, LogisticRegression, lambda y: y * 2 + 3),
    "linear_svc_multiclass": ("wine", True, lambda: LinearSVC(random_state=0), np.asarray),
    "linear_svc_binary": ("breast_cancer", True, lambda: LinearSVC(random_state=0), np.asarray),
    "mlp_relu": ("iris", True, lambda: mlp("relu"), np.asarray),
    "mlp_logistic_digits": ("digits", True, lambda: mlp("logistic"), np.asarray),
    "mlp_tanh_strings": ("wine", True, lambda: mlp("tanh"), lambda y: np.array(["a", "b", "c"])[y]),
    "mlp_identity": ("iris", True, lambda: mlp("identity"), np.asarray),
    "linear_regression": ("diabetes", False, LinearRegression, np.asarray),
    "ridge_two_targets": ("diabetes", False, Ridge, lambda y: np.c_[y, np.sqrt(y)]),
    "linear_svr": ("diabetes", False, lambda: LinearSVR(C=100.0, random_state=0), np.asarray),
    "mlp_regressor": (
        "diabetes",
        False,
        lambda: MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", random_state=0),
        np.asarray,
    ),
    # Raw features through each scaler: skl2onnx writes StandardScaler as a Scaler node,
    # MinMaxScaler as Mul and Add, and its clip as Clip.
    "standard_scaler": (
        "breast_cancer",
        False,
        lambda: make_pipeline(StandardScaler(), LogisticRegression()),
        np.asarray,
    ),
    "standard_scaler_no_mean": (
        "diabetes",
        False,
        lambda: make_pipeline(StandardScaler(with_mean=False), Ridge()),
        np.asarray,
    ),
    "min_max_scaler": (
        "wine",
        False,
        lambda: make_pipeline(MinMaxScaler((-1, 1)), LogisticRegression(max_iter=500)),
        np.asarray,
    ),
    "min_max_scaler_clip": (
        "diabetes",
        False,
        lambda: make_pipeline(MinMaxScaler(clip=True), LinearRegression()),
        np.asarray,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_skl2onnx_export_matches_onnxruntime(case: str) -> None:
    data, standardised, make, labels = CASES[case]
    x, y = dataset(data, standardised)
    model = fit(make(), x, labels(y))
    check_against_onnxruntime(export(model, x), x)


def test_labels_outside_an_arithmetic_progression_index_the_classes() -> None:
    """Class labels 0, 5, 9 would need a gather: the label output is the index into
    meta["classes"] (the scikit-learn frontend's contract), which maps back exactly."""
    x, y = dataset("iris", standardised=True)
    model = fit(LogisticRegression(max_iter=200), x, np.array([0, 5, 9])[y])
    proto = export(model, x)
    binary = imcc.compile(proto, weight_bits=16, input_bits=16)
    assert json.loads(binary.program.meta["classes"]) == [0, 5, 9]
    index = imcc.Simulator(binary, mode="functional").run(x).outputs["label"]
    expected = onnxruntime_outputs(proto, x)["label"]
    np.testing.assert_array_equal(np.array([0, 5, 9])[index.ravel()], expected)


def test_shifted_integer_labels_are_computed_exactly() -> None:
    x, y = dataset("iris", standardised=True)
    model = fit(LogisticRegression(max_iter=200), x, y * 2 + 3)
    graph = import_onnx(export(model, x))
    assert json.loads(graph.meta["classes"]) == [3, 5, 7]
    assert [op.kind for op in graph.ops if op.kind in ("Mul", "Add")] == ["Mul", "Add"]


def test_the_supported_onnx_ml_ops() -> None:
    assert supported_op_types("ai.onnx.ml") == (
        "ArrayFeatureExtractor",
        "LinearClassifier",
        "LinearRegressor",
        "Normalizer",
        "Scaler",
        "TreeEnsemble",
        "TreeEnsembleClassifier",
        "TreeEnsembleRegressor",
    )


# -- hand-made nodes: onnxruntime's edge cases ----------------------------------------------


def ml_model(
    nodes: Sequence[onnx.NodeProto],
    outputs: Sequence[tuple[str, int, Sequence[int | str | None]]],
    features: int = 2,
    initializers: Sequence[onnx.TensorProto] = (),
    opset: int = 17,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes),
        "ml",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        list(initializers),
    )
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def interpret(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """The imported graph run by the IR interpreter (float64), by output name."""
    graph = import_onnx(model)
    return dict(zip(graph.output_names, evaluate(graph, {"X": x}), strict=True))


def check_interpreted(model: onnx.ModelProto, x: np.ndarray) -> None:
    got = interpret(model, x)
    for name, expected in onnxruntime_outputs(model, x).items():
        result = got[name].reshape(expected.shape)
        if expected.dtype.kind in "iu":
            np.testing.assert_array_equal(result, expected)
        else:
            np.testing.assert_allclose(result, expected, rtol=INTERPRETER_RTOL, atol=1e-7)


# Rows where the single score s = x0 - 2 x1 + 0.5 is 0 (a tie), > 0 and < 0.
PROBE = np.array([[1.0, 0.75], [0.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [0.5, 0.5]], np.float32)


def linear_classifier(
    post: str, rows: int = 1, labels: Sequence[int] | Sequence[bytes] = (3, 7, 11)
) -> onnx.ModelProto:
    """X (N, 2) -> label, scores: `rows` rows of coefficients (the first gives s above)."""
    strings = isinstance(labels[0], bytes)
    node = helper.make_node(
        "LinearClassifier",
        ["X"],
        ["label", "scores"],
        "lc",
        domain="ai.onnx.ml",
        coefficients=[1.0, -2.0, -1.0, 2.0, 0.5, 0.5][: 2 * rows],
        intercepts=[0.5, -0.5, 0.0][:rows],
        post_transform=post,
        **{"classlabels_strings" if strings else "classlabels_ints": list(labels[: max(rows, 2)])},
    )
    label_type = TensorProto.STRING if strings else TensorProto.INT64
    return ml_model(
        [node], [("label", label_type, ["N"]), ("scores", TensorProto.FLOAT, ["N", None])]
    )


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC"])
def test_one_score_column_follows_onnxruntime(post: str) -> None:
    """label = classlabels[1] iff s > 0 (a tie gives classlabels[0]); scores [1 - s, s] for
    NONE and [sigmoid(-s), sigmoid(s)] for LOGISTIC, as onnxruntime gives them."""
    check_interpreted(linear_classifier(post), PROBE)


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX"])
def test_several_score_columns_follow_onnxruntime(post: str) -> None:
    check_interpreted(linear_classifier(post, rows=3), PROBE)


def test_string_labels_of_one_score_column() -> None:
    model = linear_classifier("NONE", labels=[b"no", b"yes"])
    graph = import_onnx(model)
    assert json.loads(graph.meta["classes"]) == ["no", "yes"]
    label = interpret(model, PROBE)["label"].astype(np.int64).ravel()
    expected = onnxruntime_outputs(model, PROBE)["label"]
    np.testing.assert_array_equal(np.array(["no", "yes"], dtype=object)[label], expected)


def clip_model(opset: int, low: float | None, high: float | None) -> onnx.ModelProto:
    inputs, inits, attrs = ["X"], [], {}
    if opset >= 11:
        for name, bound in (("low", low), ("high", high)):
            inputs.append(name if bound is not None else "")
            if bound is not None:
                inits.append(numpy_helper.from_array(np.asarray(bound, np.float32), name))
        while inputs[-1] == "":
            inputs.pop()
    else:
        attrs = {k: v for k, v in (("min", low), ("max", high)) if v is not None}
    node = helper.make_node("Clip", inputs, ["Y"], "clip", **attrs)
    return ml_model([node], [("Y", TensorProto.FLOAT, ["N", 2])], initializers=inits, opset=opset)


@pytest.mark.parametrize("opset", [6, 11, 13])
@pytest.mark.parametrize(("low", "high"), [(-0.5, 1.0), (-0.5, None), (None, 1.0), (None, None)])
def test_clip_matches_onnxruntime(opset: int, low: float | None, high: float | None) -> None:
    x = np.random.default_rng(5).normal(size=(20, 2)).astype(np.float32)
    check_interpreted(clip_model(opset, low, high), x)


def test_argmax_keepdims_and_cast_to_float_match_onnxruntime() -> None:
    nodes = [
        helper.make_node("ArgMax", ["X"], ["index"], "argmax", axis=1, keepdims=1),
        helper.make_node("Cast", ["index"], ["Y"], "cast", to=TensorProto.FLOAT),
    ]
    model = ml_model(nodes, [("Y", TensorProto.FLOAT, ["N", 1])], features=4)
    x = np.random.default_rng(6).normal(size=(10, 4)).astype(np.float32)
    x[0] = [1.0, 3.0, 3.0, 0.0]  # a tie: the first maximum
    check_interpreted(model, x)
    binary = imcc.compile(model)
    out = imcc.Simulator(binary, mode="functional").run(x).outputs["Y"]
    np.testing.assert_array_equal(out, onnxruntime_outputs(model, x)["Y"])


# -- errors ---------------------------------------------------------------------------------


def error_of(model: onnx.ModelProto) -> FrontendError:
    with pytest.raises(FrontendError) as info:
        import_onnx(model)
    return info.value


@pytest.mark.parametrize("post", ["PROBIT", "SOFTMAX_ZERO"])
def test_unsupported_post_transform_is_an_error(post: str) -> None:
    error = error_of(linear_classifier(post, rows=3))
    assert error.loc == NodeLoc("lc", "LinearClassifier")
    assert error.message == (
        f"post_transform {post!r} of LinearClassifier is not supported; supported: NONE, "
        "LOGISTIC, SOFTMAX"
    )


def test_softmax_of_one_score_column_is_an_error() -> None:
    assert error_of(linear_classifier("SOFTMAX")).message.startswith(
        "SOFTMAX over a single score column is ambiguous"
    )


def test_linear_regressor_with_a_post_transform_is_an_error() -> None:
    node = helper.make_node(
        "LinearRegressor",
        ["X"],
        ["Y"],
        "lr",
        domain="ai.onnx.ml",
        coefficients=[1.0, 2.0],
        post_transform="LOGISTIC",
    )
    error = error_of(ml_model([node], [("Y", TensorProto.FLOAT, ["N", 1])]))
    assert error.message == (
        "post_transform 'LOGISTIC' of LinearRegressor is not supported; supported: NONE"
    )


def test_normalizer_of_other_than_softmax_is_an_error() -> None:
    node = helper.make_node("Normalizer", ["X"], ["Y"], "norm", domain="ai.onnx.ml", norm="L2")
    error = error_of(ml_model([node], [("Y", TensorProto.FLOAT, ["N", 2])]))
    assert error.loc == NodeLoc("norm", "Normalizer")
    assert error.message.startswith("Normalizer with norm 'L2' of 'X' is not supported")


def test_cast_from_float_to_integer_is_an_error() -> None:
    node = helper.make_node("Cast", ["X"], ["Y"], "cast", to=TensorProto.INT64)
    error = error_of(ml_model([node], [("Y", TensorProto.INT64, ["N", 2])]))
    assert error.message == (
        "Cast from float32 to int64 truncates towards zero, which the IR has no op for"
    )


def test_argmax_over_the_batch_or_of_the_last_maximum_is_an_error() -> None:
    across = helper.make_node("ArgMax", ["X"], ["Y"], "argmax", axis=0)
    assert error_of(ml_model([across], [("Y", TensorProto.INT64, [1, 2])])).message == (
        "ArgMax at axis 0 would compare samples across the batch axis"
    )
    last = helper.make_node("ArgMax", ["X"], ["Y"], "argmax", axis=1, select_last_index=1)
    assert error_of(ml_model([last], [("Y", TensorProto.INT64, ["N", 1])])).message.startswith(
        "ArgMax with select_last_index=1"
    )


def test_array_feature_extractor_of_the_input_is_an_error() -> None:
    indices = numpy_helper.from_array(np.array([1], np.int64), "indices")
    node = helper.make_node(
        "ArrayFeatureExtractor", ["X", "indices"], ["Y"], "afe", domain="ai.onnx.ml"
    )
    model = ml_model([node], [("Y", TensorProto.FLOAT, ["N", 1])], initializers=[indices])
    assert error_of(model).message.startswith(
        "ArrayFeatureExtractor selects columns of 'X', computed as a graph input"
    )


def test_zipmap_export_is_an_unsupported_op() -> None:
    """skl2onnx's default output is a list of dicts (ZipMap): export with zipmap off."""
    x, y = dataset("iris", standardised=True)
    model = fit(LogisticRegression(max_iter=200), x, y)
    proto = skl2onnx.to_onnx(model, x[:1].astype(np.float32))
    error = error_of(proto)
    assert isinstance(error.loc, NodeLoc) and error.loc.op_type == "ZipMap"
    assert error.message.startswith("unsupported op type 'ai.onnx.ml.ZipMap'")


def test_binary_mlp_export_with_its_concat_matches_onnxruntime() -> None:
    """skl2onnx joins [1 - p, p] with a Concat for a binary MLPClassifier."""
    x, y = dataset("breast_cancer", standardised=True)
    model = export(fit(mlp("relu"), x, y), x)
    assert "Concat" in {node.op_type for node in model.graph.node}
    check_against_onnxruntime(model, x)


def test_binary_ridge_classifier_matches_onnxruntime_in_shape_and_values() -> None:
    """skl2onnx declares (N, 2) for a binary RidgeClassifier's ArrayFeatureExtractor output,
    but the op computes one column, and onnxruntime gives (N, 1) (with a warning): the
    importer follows what the ops infer, not the model's declared output shapes."""
    x, y = dataset("breast_cancer", standardised=True)
    model = export(fit(RidgeClassifier(), x, y), x)
    declared = model.graph.output[1].type.tensor_type.shape.dim
    assert [d.dim_value for d in declared][1:] == [2]  # skl2onnx's declaration
    expected = onnxruntime_outputs(model, x[:5])
    out = imcc.Simulator(imcc.compile(model)).run(x[:5].astype(np.float32)).outputs
    assert {name: a.shape for name, a in out.items()} == {
        name: a.shape for name, a in expected.items()
    }
    assert expected["probabilities"].shape == (5, 1)
    check_against_onnxruntime(model, x)


def test_linear_model_of_a_rank_0_input_is_an_error() -> None:
    """A scalar graph input into a LinearRegressor (was an IndexError)."""
    node = helper.make_node(
        "LinearRegressor", ["X"], ["Y"], "linear", domain="ai.onnx.ml", coefficients=[1.0]
    )
    graph = helper.make_graph(
        [node],
        "ml",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)]
    error = error_of(helper.make_model(graph, opset_imports=opsets, ir_version=8))
    assert error.loc == NodeLoc("linear", "LinearRegressor")
    assert error.message == (
        "LinearRegressor needs its input 'X' of shape (features,) or (N, features), not ()"
    )


def test_non_utf8_string_labels_are_an_error() -> None:
    """A STRINGS attribute is decoded as UTF-8, or refused with the attribute's name (was a
    UnicodeDecodeError or a silently replaced label)."""
    model = linear_classifier("NONE", labels=[b"\xffno", b"yes"])
    error = error_of(model)
    assert error.loc == NodeLoc("lc", "LinearClassifier")
    assert error.message == (
        "attribute 'classlabels_strings' of LinearClassifier holds b'\\xffno', which is not "
        "UTF-8 text; ONNX strings are UTF-8"
    )
