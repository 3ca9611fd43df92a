"""emit: the scheduled graph -> a program that computes what the graph does."""

from __future__ import annotations

import numpy as np
import pytest

import imcc
from imcc.compiler.ir.interpreter import evaluate
from tests.compiler.passes import golden


@pytest.mark.parametrize("model", sorted(golden.MODELS))
def test_golden_dump_after_emit(model: str) -> None:
    golden.check_golden(f"emit.{model}", golden.dump_after(model, "emit"))


@pytest.mark.parametrize(
    ("model", "options"),
    [
        ("mlp", {}),
        ("cnn", {}),
        ("trees", {}),
        ("mlp", {"rows": 4, "cols": 16, "spread": True}),
        ("cnn", {"sign_encoding": "offset"}),
    ],
    ids=["mlp", "cnn", "trees", "mlp-spread", "cnn-offset"],
)
def test_functional_simulation_matches_the_ir_interpreter(
    model: str, options: dict[str, object]
) -> None:
    """On the ideal device (lossless ADC: edge-rram's 9 bits cover 128 rows of 2-bit cells)
    the binary's outputs are the interpreter's float64 results of the final graph rounded
    once to the output's dtype: no tolerance."""
    compiled = golden.compile_model(model, **options)
    graph = compiled.graphs["emit"]
    x = golden.inputs(model, count=5)
    expected = evaluate(graph, {graph.inputs[0].name: x})
    run = imcc.Simulator(compiled.binary, device="ideal", mode="functional").run(x)
    assert len(graph.output_names) == len(expected)
    for name, reference in zip(graph.output_names, expected, strict=True):
        got = run.outputs[name]
        assert got.shape == reference.shape, name
        np.testing.assert_array_equal(got, reference.astype(got.dtype), err_msg=name)
