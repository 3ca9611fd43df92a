"""The acam-map pass: exact threshold coding, the partition proof, packing onto small CAMs, and
the errors a model the CAM cannot hold (or a malformed ONNX tree) gets."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.tree import DecisionTreeClassifier

import imcc
from imcc.compiler.ir.core import Graph, TensorType
from imcc.compiler.ir.trees import TreeEnsemble, pack
from imcc.compiler.passes.acam_map import float32_cut, map_ensemble, prove
from imcc.compiler.passes.manager import Context
from imcc.compiler.target import load_target
from imcc.isa.diagnostics import CompileError, FrontendError
from imcc.isa.target import Target


def small_cam_target(**acam: int) -> Target:
    """The xtime preset with a tiny CAM: 4-level cells, 4 cells and 8 rows an array, 2 arrays."""
    data = load_target("xtime").to_dict()
    data["name"] = "tiny-cam"
    data["acam"].update({"levels": 4, "cols": 4, "rows": 8, "arrays": 2, **acam})
    return Target.from_dict(data, "test target")


# -- exact coding ---------------------------------------------------------------------------


@given(
    st.floats(-1e6, 1e6, allow_nan=False, width=64),
    st.booleans(),
    st.integers(-3, 3),
)
def test_float32_cut_is_the_float32_comparison(t: float, strict: bool, step: int) -> None:
    """For x around the cut (float32 values and their float64 neighbours), float32(x) <= t
    (or <) is exactly x <= m (or <)."""
    m, inclusive = float32_cut(t, strict)
    base = np.float32(t)
    for _ in range(abs(step)):
        base = np.nextafter(base, np.float32(np.inf if step > 0 else -np.inf))
    for x in (float(base), np.nextafter(float(base), np.inf), np.nextafter(float(base), -np.inf),
              m, np.nextafter(m, np.inf), np.nextafter(m, -np.inf)):  # fmt: skip
        x32 = float(np.float32(x))
        truth = x32 < t if strict else x32 <= t
        assert truth == (x <= m if inclusive else x < m), (t, strict, x)


def ensemble_graph(trees: list[dict[str, Any]], features: int, compare: str) -> Graph:
    graph = Graph("trees")
    x = graph.add_input("X", TensorType((1, features), "float64"))
    arrays = pack(trees, 1)
    names = ("feature", "threshold", "strict", "left", "right", "missing", "value", "roots")
    constants = [graph.add_constant(n, getattr(arrays, n)) for n in names]
    out = graph.build(TreeEnsemble([x, *constants], name="trees", compare=compare, base=(0.0,),
                                   base_first=True, divisor=1.0))  # fmt: skip
    graph.outputs.append(out)
    return graph


def stump(threshold: float, strict: int, missing: int, feature: int = 0) -> dict[str, Any]:
    return {
        "feature": [feature, -1, -1], "threshold": [threshold, 0, 0], "strict": [strict, 0, 0],
        "left": [1, -1, -1], "right": [2, -1, -1], "missing": [missing, 0, 0],
        "value": [[0.0], [1.0], [2.0]],
    }  # fmt: skip


def test_less_than_and_less_or_equal_on_one_threshold_get_their_own_codes() -> None:
    """`x < 1` and `x <= 1` on the same feature: three finite codes (below, at, above 1)."""
    graph = ensemble_graph([stump(1.0, 1, 0), stump(1.0, 0, 1)], 1, "float64")
    binary = imcc.compile(graph, target="xtime")
    x = np.array([[0.5], [1.0], [np.nextafter(1.0, 2.0)], [np.nan]])
    out = imcc.Simulator(binary, mode="functional").run(x).outputs["trees"].reshape(-1)
    # x < 1: 1 else 2 (NaN -> right: 2); x <= 1: 1 else 2 (NaN -> left: 1)
    np.testing.assert_array_equal(out, [2.0, 3.0, 4.0, 3.0])
    table = binary.program.cam_codes[0]
    assert table.cut_count(0) == 2 and table.inclusive.tolist() == [0, 1]


def test_a_feature_spans_cells_and_rows_span_arrays_and_cores() -> None:
    """4-level cells (3 codes a cell), 4 cells an array, 8 rows: digits features with many
    thresholds span several cells, rows span both arrays of a core, blocks many cores; the
    accumulator passes along in tree order, so the result is still scikit-learn's, exactly."""
    x, y = load_iris(return_X_y=True)
    model = GradientBoostingClassifier(n_estimators=4, max_depth=3, random_state=0).fit(x, y)
    target = small_cam_target()
    binary = imcc.compile(model, target=target)
    stats = binary.program.meta["acam"]
    assert '"cores": ' in stats
    cores = {b.core for b in binary.program.cam_bindings}
    assert len(cores) > 3
    assert max(binary.program.cam_codes[0].cells) > 1
    out = imcc.Simulator(binary, mode="functional").run(x).outputs
    np.testing.assert_array_equal(out["label"].reshape(-1), model.predict(x))
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(x), rtol=0, atol=1e-12)
    cycle = imcc.Simulator(binary, mode="cycle").run(x[:4])
    np.testing.assert_array_equal(cycle.outputs["label"].reshape(-1), model.predict(x[:4]))
    assert (
        cycle.report.counts["cam_searches"] > 0
        and cycle.report.energy_breakdown_pj["cam_search"] > 0
    )


def test_the_proof_rejects_rows_that_do_not_partition_a_tree() -> None:
    x, y = load_iris(return_X_y=True)
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y)
    from imcc.frontends.sklearn import import_sklearn

    graph = import_sklearn(model)
    op = next(o for o in graph.ops if isinstance(o, TreeEnsemble))
    ctx = Context(target=load_target("xtime"), options={})
    plan = map_ensemble(op, graph, ctx)
    image = plan.blocks[0].images[0]
    rows = image.rows
    tree_of = np.zeros(rows, dtype=np.int64)
    prove(op, plan, tree_of, plan.code.n_cells)  # as built: fine
    image.high[0] = image.low[0] + 1  # shrink one row: part of the space is matched by none
    with pytest.raises(CompileError, match="do not partition its code space"):
        prove(op, plan, tree_of, plan.code.n_cells)


# -- errors ---------------------------------------------------------------------------------


def test_a_target_without_a_cam_is_an_error() -> None:
    x, y = load_iris(return_X_y=True)
    model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, y)
    with pytest.raises(CompileError, match="target 'edge-rram' has no analog-CAM unit"):
        imcc.compile(model)


def test_more_features_than_a_core_can_chain_is_an_error() -> None:
    x, y = load_digits(return_X_y=True)
    model = DecisionTreeClassifier(max_depth=8, random_state=0).fit(x, y)
    with pytest.raises(CompileError) as info:
        imcc.compile(model, target=small_cam_target())
    message = str(info.value)
    assert "CAM cells a row at 4 levels a cell" in message
    assert "a core of target 'tiny-cam' chains at most 2 arrays x 4 cells = 8" in message


def test_categorical_splits_are_an_error() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.integers(0, 4, 200), rng.normal(size=200)])
    y = (x[:, 0] == 2).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HistGradientBoostingClassifier(max_iter=3, categorical_features=[0]).fit(x, y)
    with pytest.raises(FrontendError, match="categorical splits"):
        imcc.compile(model, target="xtime")


# -- hand-made ONNX trees -------------------------------------------------------------------

MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT")


def legacy_regressor(
    nodes: list[tuple[int, int, int, str, float, int, int, int]],
    votes: list[tuple[int, int, float]],
    features: int = 2,
) -> onnx.ModelProto:
    """nodes: (tree, node, feature, mode, threshold, true id, false id, missing tracks true);
    votes: (tree, node, weight) of target 0."""
    node = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=1,
        nodes_treeids=[n[0] for n in nodes], nodes_nodeids=[n[1] for n in nodes],
        nodes_featureids=[n[2] for n in nodes], nodes_modes=[n[3] for n in nodes],
        nodes_values=[n[4] for n in nodes], nodes_truenodeids=[n[5] for n in nodes],
        nodes_falsenodeids=[n[6] for n in nodes],
        nodes_missing_value_tracks_true=[n[7] for n in nodes],
        target_treeids=[v[0] for v in votes], target_nodeids=[v[1] for v in votes],
        target_ids=[0] * len(votes), target_weights=[v[2] for v in votes],
    )  # fmt: skip
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 1])],
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    model.ir_version = 8
    return model


def stump_model(mode: str, missing: int) -> onnx.ModelProto:
    return legacy_regressor(
        [(0, 0, 1, mode, 0.25, 1, 2, missing), (0, 1, 0, "LEAF", 0, 0, 0, 0),
         (0, 2, 0, "LEAF", 0, 0, 0, 0)],
        [(0, 1, 1.0), (0, 2, 2.0)],
    )  # fmt: skip


def onnxruntime_run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"X": x.astype(np.float32)})[0])


@pytest.mark.parametrize("missing", [0, 1])
@pytest.mark.parametrize("mode", MODES)
def test_every_interval_mode_and_nan_direction_matches_onnxruntime(mode: str, missing: int) -> None:
    model = stump_model(mode, missing)
    x = np.array([[0, 0.0], [0, 0.25], [0, 0.5], [0, np.nan], [0, np.float32(0.25) + 1e-9]])
    out = imcc.Simulator(imcc.compile(model, target="xtime"), mode="functional").run(
        x.astype(np.float32)
    )
    np.testing.assert_array_equal(
        out.outputs["Y"].reshape(-1), onnxruntime_run(model, x).reshape(-1)
    )


def test_tree_ensemble_opset_5_matches_onnxruntime() -> None:
    """Interior nodes and leaves listed apart; a GTE node tracking NaN to its true branch."""
    node = helper.make_node(
        "TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=2,
        nodes_featureids=[0, 1], nodes_modes=numpy_helper.from_array(np.array([2, 0], np.uint8)),
        nodes_splits=numpy_helper.from_array(np.array([0.5, -1.0], np.float32)),
        nodes_truenodeids=[1, 0], nodes_trueleafs=[0, 1], nodes_falsenodeids=[1, 2],
        nodes_falseleafs=[1, 1], nodes_missing_value_tracks_true=[1, 0], tree_roots=[0],
        leaf_targetids=[0, 1, 0], aggregate_function=1, post_transform=0,
        leaf_weights=numpy_helper.from_array(np.array([1.5, -2.0, 4.0], np.float32)),
    )  # fmt: skip
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 2])],
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 5)]
    )
    model.ir_version = 10
    x = np.array([[0.0, -2.0], [0.5, 0.0], [1.0, -1.0], [np.nan, -5.0], [0.7, np.nan]])
    out = imcc.Simulator(imcc.compile(model, target="xtime"), mode="functional").run(
        x.astype(np.float32)
    )
    np.testing.assert_array_equal(out.outputs["Y"], onnxruntime_run(model, x))


def frontend_error(model: onnx.ModelProto) -> str:
    with pytest.raises(FrontendError) as info:
        imcc.compile(model, target="xtime")
    return str(info.value)


def test_an_unsupported_node_mode_is_an_error() -> None:
    message = frontend_error(stump_model("BRANCH_EQ", 0))
    assert "node mode 'BRANCH_EQ' (tree 0, node 0) is not supported" in message
    assert "supported modes: BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, BRANCH_GT, LEAF" in message


def test_a_missing_child_is_an_error() -> None:
    model = legacy_regressor(
        [(0, 0, 0, "BRANCH_LEQ", 0.5, 1, 7, 0), (0, 1, 0, "LEAF", 0, 0, 0, 0)], [(0, 1, 1.0)]
    )
    assert "tree 0, node 0: its false child id 7 is not a node of the tree" in frontend_error(model)


def test_a_cycle_is_an_error() -> None:
    model = legacy_regressor(
        [(0, 0, 0, "BRANCH_LEQ", 0.5, 1, 2, 0), (0, 1, 1, "BRANCH_LEQ", 0.5, 1, 2, 0),
         (0, 2, 0, "LEAF", 0, 0, 0, 0)],
        [(0, 2, 1.0)],
    )  # fmt: skip
    assert "is reached twice (a cycle" in frontend_error(model)


def test_a_root_that_is_not_listed_first_is_an_error() -> None:
    model = legacy_regressor(
        [(0, 1, 0, "LEAF", 0, 0, 0, 0), (0, 0, 0, "BRANCH_LEQ", 0.5, 1, 2, 0),
         (0, 2, 0, "LEAF", 0, 0, 0, 0)],
        [(0, 1, 1.0), (0, 2, 2.0)],
    )  # fmt: skip
    message = frontend_error(model)
    assert "tree 0: its first listed node (id 1) is not its root (node 0 is the root)" in message


def test_breast_cancer_forest_has_exactly_one_match_per_tree_on_the_chip() -> None:
    """The runtime side of the proof: with the ideal CAM every search of a single-tree block
    matches exactly one row, for data and NaN rows alike."""
    x, y = load_breast_cancer(return_X_y=True)
    model = DecisionTreeClassifier(max_depth=5, random_state=0).fit(x, y)
    binary = imcc.compile(model, target="xtime")
    from imcc.frontends.sklearn import import_sklearn

    graph = import_sklearn(model)
    op = next(o for o in graph.ops if isinstance(o, TreeEnsemble))
    plan = map_ensemble(op, graph, Context(target=load_target("xtime"), options={}))
    rows = np.vstack([x, np.where(np.eye(30, dtype=bool), np.nan, np.median(x, axis=0))])
    from imcc.isa.acam import codes, spread

    driven = spread(plan.code, codes(plan.code, rows.T), plan.levels)
    image = plan.blocks[0].images[0]
    low, high = image.low.astype(np.int64), image.high.astype(np.int64)
    segment = plan.blocks[0].segments[0]
    window = driven[segment * plan.cols : segment * plan.cols + image.cols].T
    matches = ((window[:, None, :] >= low) & (window[:, None, :] < high)).all(axis=2).sum(axis=1)
    assert len(plan.blocks) == 1 and len(plan.blocks[0].segments) == 1
    np.testing.assert_array_equal(matches, 1)
    assert binary.program.cam_images[0].trees == 1
