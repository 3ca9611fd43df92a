"""canonicalize: framework ops become the crossbar form (Dense), meaning unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from imcc.compiler.ir import ops
from imcc.compiler.ir.interpreter import evaluate
from tests.compiler.passes import golden
from tests.conftest import onnxruntime_run


@pytest.mark.parametrize("model", sorted(golden.MODELS))
def test_golden_dump_after_canonicalize(model: str) -> None:
    golden.check_golden(f"canonicalize.{model}", golden.dump_after(model, "canonicalize"))


@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_only_crossbar_form_is_left(model: str) -> None:
    """Gemm, Conv, Identity and the activations after them are gone: Dense ops (Im2Col
    windows for the convolution) and data movement remain."""
    graph = golden.graph_after(model, "canonicalize")
    kinds = {op.kind for op in graph.ops}
    assert not kinds & {"MatMul", "Conv", "Identity", "Relu", "Add"}
    dense = list(graph.walk(ops.Dense))
    assert len(dense) == 2
    assert dense[0].attrs["activation"] == ops.Activation.RELU  # fused into the first layer


@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_canonical_graph_computes_what_onnxruntime_does(model: str) -> None:
    """The float graph after canonicalize against onnxruntime on the source model; the
    interpreter runs float64 on float32 weights, onnxruntime float32: 1e-5 relative covers
    float32 rounding over these short sums (36 terms at most)."""
    graph = golden.graph_after(model, "canonicalize")
    x = golden.inputs(model, count=8)
    (got,) = evaluate(graph, {"x": x})
    expected = onnxruntime_run(golden.MODELS[model][0](), x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
