"""Tree ensembles on the analog-CAM unit, against the libraries themselves.

Every supported scikit-learn tree model, imported natively, on iris, wine, breast_cancer,
digits (classifiers) and diabetes (regressors), compiled for the X-TIME-style target and run
on the functional simulator with the ideal CAM, against scikit-learn's predict and
predict_proba; the same models converted by skl2onnx against onnxruntime; generated boundary
probes (every threshold, its float32 neighbours, NaN in every feature) against the reference;
XGBoost and LightGBM through onnxmltools (skipped where those optional packages are missing).
"""

from __future__ import annotations

import warnings
from functools import cache
from typing import Any

import numpy as np
import pytest
from onnx import helper as onnx_helper
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine
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
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import imcc
from imcc.compiler.ir.trees import TreeEnsemble
from imcc.compiler.ir.trees import leaves as reached_leaves
from imcc.frontends.sklearn import import_sklearn

# scikit-learn's sums are reproduced operation for operation (same float64 leaf values, same
# order, the forest's division last), so forest probabilities and every regression output
# must be bit-identical. Boosted probabilities go through exp on both sides (numpy's on the
# SIMD unit, scipy's expit / scikit-learn's softmax there), which may differ in the last bits:
# 1e-12 is ~4500 ulps of a probability, far below any label-changing difference.
TRANSCENDENTAL_TOL = 1e-12
# onnxruntime sums float32 leaf weights in float32 and writes float32 outputs; imcc reproduces
# the float32 sums (labels agree exactly) but finishes in float64. A probability's float32
# rounding is <= 6e-8; 1e-6 leaves room for a float32 sigmoid/softmax; regression outputs
# (diabetes targets up to ~350) agree to float32's relative precision, 2^-23 ~ 1.2e-7, x 8.
ORT_PROB_TOL = 1e-6
ORT_REL_TOL = 1e-6

LOADERS = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer,
           "digits": load_digits, "diabetes": load_diabetes}  # fmt: skip
CLASSIFIERS = {
    "DecisionTree": lambda: DecisionTreeClassifier(max_depth=6, random_state=0),
    "RandomForest": lambda: RandomForestClassifier(n_estimators=8, max_depth=6, random_state=0),
    "ExtraTrees": lambda: ExtraTreesClassifier(n_estimators=8, max_depth=6, random_state=0),
    "GradientBoosting": lambda: GradientBoostingClassifier(
        n_estimators=6, max_depth=3, learning_rate=0.3, random_state=0
    ),
    "HistGradientBoosting": lambda: HistGradientBoostingClassifier(
        max_iter=6, max_depth=4, random_state=0
    ),
}
REGRESSORS = {
    "DecisionTree": lambda: DecisionTreeRegressor(max_depth=6, random_state=0),
    "RandomForest": lambda: RandomForestRegressor(n_estimators=8, max_depth=6, random_state=0),
    "ExtraTrees": lambda: ExtraTreesRegressor(n_estimators=8, max_depth=6, random_state=0),
    "GradientBoosting": lambda: GradientBoostingRegressor(
        n_estimators=8, max_depth=3, random_state=0
    ),
    "HistGradientBoosting": lambda: HistGradientBoostingRegressor(
        max_iter=8, max_depth=4, random_state=0
    ),
}
CLASSIFICATION = ("iris", "wine", "breast_cancer", "digits")


@cache
def data(name: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = LOADERS[name](return_X_y=True)
    return x.astype(np.float64), y


@cache
def model(kind: str, name: str, dataset: str) -> Any:
    x, y = data(dataset)
    factory = (CLASSIFIERS if kind == "classifier" else REGRESSORS)[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return factory().fit(x, y)


@cache
def compiled(kind: str, name: str, dataset: str) -> imcc.Binary:
    return imcc.compile(model(kind, name, dataset), target="xtime")


def simulate(binary: imcc.Binary, x: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
    return imcc.Simulator(binary, mode="functional", **options).run(x).outputs


def check_classifier(m: Any, binary: imcc.Binary, x: np.ndarray, proba: np.ndarray) -> None:
    out = simulate(binary, x)
    labels = m.classes_[out["label"].reshape(-1)]
    np.testing.assert_array_equal(labels, m.predict(x))
    exact = not isinstance(m, GradientBoostingClassifier | HistGradientBoostingClassifier)
    tol = 0.0 if exact else TRANSCENDENTAL_TOL
    np.testing.assert_allclose(out["probabilities"], proba, rtol=0, atol=tol)


@pytest.mark.parametrize("dataset", CLASSIFICATION)
@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classifier_matches_scikit_learn(name: str, dataset: str) -> None:
    m = model("classifier", name, dataset)
    x, _ = data(dataset)
    check_classifier(m, compiled("classifier", name, dataset), x, m.predict_proba(x))


@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_regressor_matches_scikit_learn(name: str) -> None:
    m = model("regressor", name, "diabetes")
    x, _ = data("diabetes")
    out = simulate(compiled("regressor", name, "diabetes"), x)
    np.testing.assert_array_equal(out["predict"].reshape(-1), m.predict(x))


def test_pipeline_with_a_scaler_runs_the_scaler_on_simd() -> None:
    x, y = data("wine")
    pipe = make_pipeline(StandardScaler(), RandomForestClassifier(6, max_depth=5, random_state=0))
    pipe.fit(x, y)
    binary = imcc.compile(pipe, target="xtime")
    check_classifier(pipe, binary, x, pipe.predict_proba(x))
    graph = import_sklearn(pipe)
    assert [op.kind for op in graph.ops][:2] == ["Sub", "Div"]  # SIMD arithmetic, then trees


# -- boundary probes ------------------------------------------------------------------------


def probes(m: Any, x: np.ndarray) -> np.ndarray:
    """Rows at the training median with one feature set to every threshold of the model, to
    its float64 and float32 neighbours, and to NaN."""
    graph = import_sklearn(m)
    op = next(o for o in graph.ops if isinstance(o, TreeEnsemble))
    arrays = op.arrays(graph)
    internal = arrays.feature >= 0
    median = np.median(x, axis=0)
    rows = []
    pairs = zip(arrays.feature[internal], arrays.threshold[internal], strict=True)
    for f, t in {(int(f), float(t)) for f, t in pairs}:
        t32 = np.float32(t)
        for v in (t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), float(t32),
                  float(np.nextafter(t32, np.float32(np.inf))),
                  float(np.nextafter(t32, np.float32(-np.inf)))):  # fmt: skip
            row = median.copy()
            row[f] = v
            rows.append(row)
    for f in range(x.shape[1]):
        row = median.copy()
        row[f] = np.nan
        rows.append(row)
    return np.array(rows)


def reference_raw(m: Any, x: np.ndarray) -> np.ndarray:
    """scikit-learn's own numbers on probes (NaN included): predict_proba / predict where the
    estimator takes NaN; for GradientBoosting (which rejects NaN) its stages by hand, each
    tree through DecisionTreeRegressor.predict (which takes NaN), as predict_stages sums them."""
    if isinstance(m, GradientBoostingClassifier | GradientBoostingRegressor):
        raw = np.asarray(m._raw_predict_init(x[:1].astype(np.float32)), np.float64)
        raw = np.repeat(raw, len(x), axis=0)
        for stage in m.estimators_:
            for k, tree in enumerate(stage):
                raw[:, k] += m.learning_rate * tree.predict(x)
        return raw
    return m.predict_proba(x) if hasattr(m, "predict_proba") else m.predict(x)


@pytest.mark.parametrize(
    ("kind", "name", "dataset"),
    [("classifier", n, "breast_cancer") for n in sorted(CLASSIFIERS)]
    + [("regressor", n, "diabetes") for n in sorted(REGRESSORS)]
    + [("classifier", "GradientBoosting", "iris"), ("classifier", "HistGradientBoosting", "wine")],
)
def test_boundary_probes_agree_with_the_reference(kind: str, name: str, dataset: str) -> None:
    m = model(kind, name, dataset)
    x = probes(m, data(dataset)[0])
    out = simulate(compiled(kind, name, dataset), x)
    expected = reference_raw(m, x)
    if isinstance(m, GradientBoostingClassifier):
        raw = expected
        if raw.shape[1] == 1:  # binary: label 1 when s >= 0; probabilities [1 - p, p]
            np.testing.assert_array_equal(out["label"].reshape(-1), (raw[:, 0] >= 0).astype(int))
            p = 1 / (1 + np.exp(-raw[:, 0]))
            expected = np.column_stack([1 - p, p])
        else:
            np.testing.assert_array_equal(out["label"].reshape(-1), raw.argmax(axis=1))
            e = np.exp(raw - raw.max(axis=1, keepdims=True))
            expected = e / e.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(out["probabilities"], expected, rtol=0, atol=1e-12)
    elif kind == "classifier":
        np.testing.assert_array_equal(m.classes_[out["label"].reshape(-1)], m.predict(x))
        tol = TRANSCENDENTAL_TOL if name == "HistGradientBoosting" else 0.0
        np.testing.assert_allclose(out["probabilities"], expected, rtol=0, atol=tol)
    elif isinstance(m, GradientBoostingRegressor):
        np.testing.assert_array_equal(out["predict"], expected)
    else:
        np.testing.assert_array_equal(out["predict"].reshape(-1), expected)


def test_probes_really_sit_on_both_sides_of_thresholds() -> None:
    """The probes reach different leaves on either side of a float32-rounded threshold,
    so they test the tie rule, not just random rows."""
    m = model("regressor", "DecisionTree", "diabetes")
    x = probes(m, data("diabetes")[0])
    graph = import_sklearn(m)
    op = next(o for o in graph.ops if isinstance(o, TreeEnsemble))
    reached = reached_leaves(op.arrays(graph), x, "float32")
    assert len(np.unique(reached)) > 4
    np.testing.assert_array_equal(
        m.apply(x.astype(np.float32)), reached[:, 0]
    )  # our reference walk is scikit-learn's own


def test_learned_nan_directions_are_kept() -> None:
    """A tree trained with missing values sends NaN where it learned to (onnx/sklearn-onnx
    #1253: skl2onnx drops this); the CAM gives NaN a level of its own."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x[:, 0] > 0).astype(int)
    x[rng.random(400) < 0.3, 0] = np.nan
    y[np.isnan(x[:, 0])] = 0  # missing means class 0: the tree must learn NaN -> class 0
    m = RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0).fit(x, y)
    probe = np.array([[np.nan, 0.0, 0.0], [np.nan, 5.0, -5.0], [2.0, 0.0, 0.0]])
    out = simulate(imcc.compile(m, target="xtime"), probe)
    np.testing.assert_array_equal(out["label"].reshape(-1), m.predict(probe))
    np.testing.assert_array_equal(out["probabilities"], m.predict_proba(probe))


# -- through ONNX ---------------------------------------------------------------------------


def to_onnx(m: Any, x: np.ndarray) -> Any:
    from skl2onnx import to_onnx as convert

    options = {id(m): {"zipmap": False}} if hasattr(m, "classes_") else None
    return convert(m, x[:1].astype(np.float32), options=options)


def run_onnxruntime(proto: Any, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)}))


def check_against_onnxruntime(proto: Any, x: np.ndarray) -> None:
    expected = run_onnxruntime(proto, x)
    out = list(simulate(imcc.compile(proto, target="xtime"), x.astype(np.float32)).values())
    assert len(out) == len(expected)
    for got, want in zip(out, expected, strict=True):
        got = got.reshape(want.shape)
        if want.dtype.kind in "iu":
            np.testing.assert_array_equal(got, want)
        elif want.ndim == 2 and want.shape[1] > 1:  # probabilities
            np.testing.assert_allclose(got, want, rtol=0, atol=ORT_PROB_TOL)
        else:
            scale = np.abs(want).max()
            np.testing.assert_allclose(got, want, rtol=0, atol=ORT_REL_TOL * scale)


SKL2ONNX = [n for n in sorted(CLASSIFIERS) if n != "HistGradientBoosting"]  # see below


@pytest.mark.parametrize("dataset", CLASSIFICATION)
@pytest.mark.parametrize("name", SKL2ONNX)
def test_converted_classifier_matches_onnxruntime(name: str, dataset: str) -> None:
    """skl2onnx 1.20 cannot export HistGradientBoosting* with numpy 2 (attribute lists of
    numpy uint32, shared/references/acam_trees.md section 11.6), so those run natively only."""
    m = model("classifier", name, dataset)
    x = data(dataset)[0]
    check_against_onnxruntime(to_onnx(m, x), np.vstack([x, probes(m, x)[: 4 * x.shape[1]]]))


@pytest.mark.parametrize("name", SKL2ONNX)
def test_converted_regressor_matches_onnxruntime(name: str) -> None:
    m = model("regressor", name, "diabetes")
    x = data("diabetes")[0]
    check_against_onnxruntime(to_onnx(m, x), np.vstack([x, probes(m, x)]))


# -- XGBoost and LightGBM through onnxmltools -----------------------------------------------


def onnxmltools_model(library: str, task: str) -> tuple[Any, np.ndarray]:
    onnxmltools = pytest.importorskip("onnxmltools")
    from onnxmltools.convert.common.data_types import FloatTensorType

    name = "breast_cancer" if task == "binary" else ("wine" if task == "multiclass" else "diabetes")
    x, y = data(name)
    types = [("X", FloatTensorType([None, x.shape[1]]))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if library == "xgboost":
            xgb = pytest.importorskip("xgboost")
            cls = xgb.XGBRegressor if task == "regression" else xgb.XGBClassifier
            m = cls(n_estimators=6, max_depth=3, random_state=0).fit(x, y)
            proto = onnxmltools.convert_xgboost(m, initial_types=types, target_opset=15)
        else:
            lgb = pytest.importorskip("lightgbm")
            cls = lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier
            m = cls(n_estimators=6, num_leaves=8, random_state=0, verbose=-1).fit(x, y)
            proto = onnxmltools.convert_lightgbm(
                m, initial_types=types, target_opset=15, zipmap=False
            )
    return proto, x


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosted_libraries_through_onnx_match_onnxruntime(library: str, task: str) -> None:
    """Data rows, NaN in every feature, and every threshold of the exported model with its
    float32 neighbours (LightGBM's float64 thresholds were rounded to float32 by the export:
    onnxruntime, and so imcc, compare with the rounded ones)."""
    proto, x = onnxmltools_model(library, task)
    median = np.median(x, axis=0)
    nan_rows = np.tile(median, (x.shape[1], 1))
    np.fill_diagonal(nan_rows, np.nan)
    node = next(n for n in proto.graph.node if n.op_type.startswith("TreeEnsemble"))
    attrs = {a.name: onnx_helper.get_attribute_value(a) for a in node.attribute}
    rows = []
    for f, t, mode in zip(attrs["nodes_featureids"], attrs["nodes_values"],
                          attrs["nodes_modes"], strict=True):  # fmt: skip
        if mode != b"LEAF":
            t32 = np.float32(t)
            for v in (t32, np.nextafter(t32, np.float32(np.inf)),
                      np.nextafter(t32, np.float32(-np.inf))):  # fmt: skip
                row = median.copy()
                row[f] = v
                rows.append(row)
    check_against_onnxruntime(proto, np.vstack([x, nan_rows, *rows]))


# -- ONNX-ML node tests and malformed tree nodes --------------------------------------------


def single_tree_model(batch: int | str = 3) -> Any:
    """onnx's node test test_ai_onnx_ml_tree_ensemble_single_tree (ai.onnx.ml opset 5): one
    tree, two targets, a fixed batch of 3 in the input shape."""
    from onnx import TensorProto

    tensor = onnx_helper.make_tensor
    node = onnx_helper.make_node(
        "TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=2, aggregate_function=1,
        post_transform=0, tree_roots=[0],
        nodes_modes=tensor("nodes_modes", TensorProto.UINT8, (3,), np.zeros(3, np.uint8)),
        nodes_featureids=[0, 0, 0],
        nodes_splits=tensor("nodes_splits", TensorProto.DOUBLE, (3,), [3.14, 1.2, 4.2]),
        nodes_truenodeids=[1, 0, 1], nodes_trueleafs=[0, 1, 1],
        nodes_falsenodeids=[2, 2, 3], nodes_falseleafs=[0, 1, 1],
        leaf_targetids=[0, 1, 0, 1],
        leaf_weights=tensor("leaf_weights", TensorProto.DOUBLE, (4,), [5.23, 12.12, -12.23, 7.21]),
    )  # fmt: skip
    graph = onnx_helper.make_graph(
        [node],
        "single_tree",
        [onnx_helper.make_tensor_value_info("X", TensorProto.DOUBLE, [batch, 2])],
        [onnx_helper.make_tensor_value_info("Y", TensorProto.DOUBLE, [batch, 2])],
    )
    opsets = [onnx_helper.make_opsetid("", 21), onnx_helper.make_opsetid("ai.onnx.ml", 5)]
    return onnx_helper.make_model(graph, opset_imports=opsets, ir_version=10)


def test_onnx_node_test_single_tree_keeps_the_fixed_batch() -> None:
    """The fixed batch of 3 is three samples: Y is (3, 2), as onnx's expected output."""
    import onnxruntime as ort

    proto = single_tree_model()
    x = np.array([1.2, 3.4, -0.12, 1.66, 4.14, 1.77], np.float64).reshape(3, 2)
    expected = np.array([[5.23, 0], [5.23, 0], [0, 12.12]])  # onnx's own expected output
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"X": x})[0], expected, rtol=1e-12)
    binary = imcc.compile(proto, target="xtime")
    assert binary.program.inputs[0].shape == (2,)  # one sample's features
    got = simulate(binary, x)["Y"]
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got, expected, rtol=0, atol=ORT_REL_TOL * 12.12)


def tree_regressor(shape: list[Any], modes: list[Any], ml_opset: int = 1, const: Any = None) -> Any:
    """A one-split TreeEnsembleRegressor on X (or on a constant `const`, its result added to
    X); ai.onnx.ml opsets 1 and 2 have no shape inference that checks X's rank."""
    from onnx import TensorProto, numpy_helper

    node = onnx_helper.make_node(
        "TreeEnsembleRegressor", ["C" if const is not None else "X"], ["Y"], "trees",
        domain="ai.onnx.ml", nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2],
        nodes_featureids=[0, 0, 0], nodes_modes=modes, nodes_values=[0.5, 0.0, 0.0],
        nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0], target_treeids=[0, 0],
        target_nodeids=[1, 2], target_ids=[0, 0], target_weights=[1.0, 2.0], n_targets=1,
    )  # fmt: skip
    nodes, inits, out = [node], [], "Y"
    if const is not None:
        inits = [numpy_helper.from_array(np.asarray(const, np.float32), "C")]
        nodes.append(onnx_helper.make_node("Add", ["X", "Y"], ["Z"], "add"))
        out = "Z"
    graph = onnx_helper.make_graph(
        nodes,
        "trees",
        [onnx_helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)],
        [onnx_helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 1])],
        inits,
    )
    opsets = [onnx_helper.make_opsetid("", 17), onnx_helper.make_opsetid("ai.onnx.ml", ml_opset)]
    return onnx_helper.make_model(graph, opset_imports=opsets, ir_version=8)


LEQ_LEAVES = ["BRANCH_LEQ", "LEAF", "LEAF"]


@pytest.mark.parametrize(
    ("shape", "const", "found"),
    [([], None, "()"), (["N", 1], 0.25, "()"), (["N", 1], [0.25], "(1,)")],
)
def test_tree_input_of_the_wrong_rank_is_an_error(shape: list[Any], const: Any, found: str) -> None:
    """A rank-0 graph input, or a constant feature vector, into a tree ensemble (was an
    IndexError, or an internal error of the IR)."""
    from imcc.frontends.onnx import import_onnx
    from imcc.isa.diagnostics import FrontendError, NodeLoc

    with pytest.raises(FrontendError) as info:
        import_onnx(tree_regressor(shape, LEQ_LEAVES, const=const))
    assert info.value.loc == NodeLoc("trees", "TreeEnsembleRegressor")
    name = "'X'" if const is None else "'C'"
    assert info.value.message == (
        f"TreeEnsembleRegressor needs its input {name} of shape (N, features), not {found}"
    )


def test_non_utf8_node_modes_are_an_error() -> None:
    from imcc.frontends.onnx import import_onnx
    from imcc.isa.diagnostics import FrontendError, NodeLoc

    with pytest.raises(FrontendError) as info:
        import_onnx(tree_regressor(["N", 1], [b"\xff\xfe", b"LEAF", b"LEAF"]))
    assert info.value.loc == NodeLoc("trees", "TreeEnsembleRegressor")
    assert info.value.message == (
        "attribute 'nodes_modes' of TreeEnsembleRegressor holds b'\\xff\\xfe', which is not "
        "UTF-8 text; ONNX strings are UTF-8"
    )
