"""compiler/codegen/trees.py: tree ensembles on the analog CAM (xtime preset): one encode, the
searches and leaf reads of every block, then the divisor. Trees are exact on the CAM
(thresholds become rank codes, nothing is rounded; the accumulator sums the trees in the
source's order), so scikit-learn's predict_proba and predict are matched bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

import imcc
from imcc.compiler.driver import compile_graph
from imcc.compiler.ir.cam import CamTrees
from imcc.frontends.sklearn import import_sklearn
from imcc.isa import spec
from tests.compiler.codegen.graphs import mnemonics

TARGET = "xtime"


def simulate(binary: imcc.Binary, x: np.ndarray) -> dict[str, np.ndarray]:
    """Tree models take float64 inputs as they are (no float32 cast: that is the model's)."""
    return dict(imcc.Simulator(binary, mode="functional").run(x).outputs)


def compiled(model: Any) -> tuple[imcc.Binary, CamTrees]:
    result = compile_graph(import_sklearn(model), TARGET)
    (trees,) = [op for op in result.graph.ops if isinstance(op, CamTrees)]
    return imcc.Binary(result.program), trees


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    return x, y


@pytest.mark.parametrize(("trees", "depth"), [(8, 4), (40, None)], ids=["small", "deep"])
def test_random_forest_classifier_equals_predict_proba(
    iris: tuple[np.ndarray, np.ndarray], trees: int, depth: int | None
) -> None:
    x, y = iris
    forest = RandomForestClassifier(n_estimators=trees, max_depth=depth, random_state=0)
    forest.fit(x, y)
    binary, op = compiled(forest)
    out = simulate(binary, x)
    np.testing.assert_array_equal(out["probabilities"], forest.predict_proba(x))
    np.testing.assert_array_equal(forest.classes_[out["label"]], forest.predict(x))
    counts = mnemonics(binary)
    assert counts[spec.ACAM_ENCODE.mnemonic] == 1  # the input coded once per inference
    blocks = op.plan.blocks
    assert counts[spec.ACAM_LEAF.mnemonic] == len(blocks)
    assert counts[spec.ACAM_SEARCH.mnemonic] == sum(len(b.arrays) for b in blocks)


def test_random_forest_on_several_cam_blocks(iris: tuple[np.ndarray, np.ndarray]) -> None:
    """Enough leaves for more than one 256-row block: the accumulator passes from block to
    block (and core to core), still summing tree after tree."""
    x, y = iris
    forest = RandomForestClassifier(n_estimators=60, random_state=1).fit(x, y)
    binary, op = compiled(forest)
    assert len(op.plan.blocks) > 1
    out = simulate(binary, x)
    np.testing.assert_array_equal(out["probabilities"], forest.predict_proba(x))


def test_inputs_on_the_thresholds(iris: tuple[np.ndarray, np.ndarray]) -> None:
    """Each threshold t itself and its float64 neighbours: where `x <= t` flips. scikit-learn
    compares float32(x) with its float64 threshold; the CAM's codes reproduce that exactly."""
    x, y = iris
    forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=2).fit(x, y)
    rows = []
    for estimator in forest.estimators_:
        tree = estimator.tree_
        for feature, threshold in zip(tree.feature, tree.threshold, strict=True):
            if feature < 0:
                continue
            below, above = np.nextafter(threshold, -np.inf), np.nextafter(threshold, np.inf)
            for value in (below, threshold, above, float(np.float32(threshold))):
                row = x[len(rows) % len(x)].copy()
                row[feature] = value
                rows.append(row)
    probe = np.array(rows)
    binary, _ = compiled(forest)
    got = simulate(binary, probe)["probabilities"]
    np.testing.assert_array_equal(got, forest.predict_proba(probe))


def test_random_forest_regressor_equals_predict() -> None:
    x, y = load_diabetes(return_X_y=True)
    x, y = x[:120], y[:120]
    forest = RandomForestRegressor(n_estimators=6, max_depth=5, random_state=0).fit(x, y)
    binary, _ = compiled(forest)
    (output,) = simulate(binary, x).values()
    np.testing.assert_array_equal(output.reshape(-1), forest.predict(x))
