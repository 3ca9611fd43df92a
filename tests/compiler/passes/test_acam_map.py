"""acam-map: a tree ensemble -> analog-CAM rows on the target's arrays, computing what the
source model computes."""

from __future__ import annotations

import numpy as np

from imcc.compiler.ir.cam import CamTrees
from imcc.compiler.ir.trees import TreeEnsemble
from tests.compiler.passes import golden


def test_golden_dump_after_acam_map() -> None:
    golden.check_golden("acam-map.trees", golden.dump_after("trees", "acam-map"))


def test_models_without_trees_pass_through_unchanged() -> None:
    for model in golden.CROSSBAR_MODELS:
        assert golden.dump_after(model, "acam-map") == golden.dump_after(model, "place")


def test_the_plan_computes_the_forests_probabilities() -> None:
    """CamPlan.evaluate, the ideal CAM read from the stored images, against scikit-learn's
    predict_proba on every iris sample: the CAM compares float32(x) as the trees do, and sums
    the three trees in order before dividing by 3, as scikit-learn averages them; 1e-12
    allows for that order of float64 rounding, far below a leaf value's 1/3 steps."""
    forest = golden.trees()
    graph = golden.graph_after("trees", "acam-map")
    assert not list(graph.walk(TreeEnsemble))
    (op,) = graph.walk(CamTrees)
    x = golden.iris()
    np.testing.assert_allclose(op.plan.evaluate(x), forest.predict_proba(x), rtol=0, atol=1e-12)


def test_the_plan_fits_the_targets_cam_arrays() -> None:
    compiled = golden.compile_model("trees")
    target = compiled.program.target
    assert target.acam is not None
    (op,) = compiled.graphs["acam-map"].walk(CamTrees)
    plan = op.plan
    assert plan.stats["trees"] == 3
    taken = []
    for block in plan.blocks:
        assert 0 <= block.core < target.chip.cores
        assert all(0 <= a < target.acam.arrays for a in block.arrays)
        assert len(block.arrays) == len(block.segments) == len(block.images)
        for image in block.images:
            assert image.rows <= target.acam.rows and image.cols <= target.acam.cols
        taken += [(block.core, a) for a in block.arrays]
    assert len(set(taken)) == len(taken)
    assert sum(b.images[0].rows for b in plan.blocks) == plan.stats["rows"]
