"""quantize: Dense -> QDense with signed integer weights, one scale per output column."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

import imcc
from imcc.compiler.ir import ops
from imcc.isa.diagnostics import CompileError, OptionLoc
from tests.compiler.passes import golden

WIDE = "canonicalize,quantize{weight_bits=16},bitslice,tile,adc-range,place,acam-map,schedule,emit"


@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_golden_dump_after_quantize(model: str) -> None:
    golden.check_golden(f"quantize.{model}", golden.dump_after(model, "quantize"))


def test_weight_bits_from_the_pipeline_sets_the_weights_and_the_binary_meta() -> None:
    """quantize{weight_bits=16}: every weight is the source weight over its column's scale
    s = max|W[:, n]| / (2^15 - 1), rounded; the binary records the 16 it used."""
    compiled = golden.compile_model("mlp", pipeline=WIDE)
    graph = compiled.graphs["quantize"]
    source = {t.name: numpy_helper.to_array(t) for t in golden.mlp().graph.initializer}
    top = 2**15 - 1
    for op, name in zip(graph.walk(ops.QDense), ("W0", "W1"), strict=True):
        w_int = graph.constants[op.inputs[1]]
        assert op.attrs["weight_bits"] == 16
        assert int(np.abs(w_int).max()) == top  # each column's largest weight maps to the top
        w = source[name].astype(np.float64)
        scale = np.abs(w).max(axis=0) / top
        np.testing.assert_array_equal(w_int, np.rint(w / scale))
        np.testing.assert_array_equal(graph.constants[op.inputs[2]], scale)
    assert compiled.program.meta["option.weight_bits"] == "16"


@pytest.mark.parametrize(
    "how",
    [{"pipeline": WIDE.replace("weight_bits=16", "weight_bits=40")}, {"weight_bits": 40}],
    ids=["pipeline", "option"],
)
def test_weight_bits_40_is_an_error_naming_weight_bits(how: dict[str, object]) -> None:
    with pytest.raises(CompileError, match=r"weight_bits = 40 is outside the supported range") as e:
        imcc.compile(golden.mlp(), "edge-rram", **how)  # type: ignore[arg-type]
    assert e.value.loc == OptionLoc("weight_bits")
