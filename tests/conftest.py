"""Shared fixtures: targets, small ONNX MLP builders, hand-made programs."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, settings
from onnx import TensorProto, helper, numpy_helper

from imcc.compiler.target import load_target
from imcc.isa.container import Binary
from imcc.isa.target import Target

settings.register_profile(
    "imcc",
    derandomize=True,  # the same examples on every run and machine
    deadline=None,  # simulation time varies on shared machines; speed lives in `imcc bench`
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("imcc")


def big_target(cores: int = 8, arrays: int = 64, **xbar: int) -> Target:
    """The default target with more cores and arrays, for models that need many tiles."""
    base = load_target()
    data = base.to_dict()
    data["name"] = "test-big"
    data["chip"]["cores"] = cores
    data["chip"]["mesh_cols"] = min(cores, 4)
    data["core"]["arrays"] = arrays
    data["xbar"].update(xbar)
    return Target.from_dict(data, "test target")


@pytest.fixture
def target() -> Target:
    return load_target()


ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "none": None}


def mlp_onnx(
    widths: list[int],
    activations: list[str],
    softmax: bool = False,
    seed: int = 0,
    opset: int = 13,
) -> onnx.ModelProto:
    """An ONNX MLP widths[0] -> ... -> widths[-1]; Gemm layers with random weights."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    current = "x"
    for i, (k, n) in enumerate(itertools.pairwise(widths)):
        w = rng.normal(0, 1 / np.sqrt(k), size=(k, n)).astype(np.float32)
        b = rng.normal(0, 0.1, size=n).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        nodes.append(
            helper.make_node("Gemm", [current, f"W{i}", f"B{i}"], [f"h{i}"], name=f"fc{i}")
        )
        current = f"h{i}"
        act = ACTIVATIONS[activations[i]]
        if act:
            nodes.append(helper.make_node(act, [current], [f"a{i}"], name=f"act{i}"))
            current = f"a{i}"
    if softmax:
        nodes.append(helper.make_node("Softmax", [current], ["y"], name="softmax", axis=-1))
    else:
        nodes.append(helper.make_node("Identity", [current], ["y"], name="out"))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", widths[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", widths[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def onnxruntime_run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0])


def simulated_error(binary: Binary, model: onnx.ModelProto, x: np.ndarray) -> float:
    """Largest error of the simulated outputs `y` against onnxruntime, relative to the largest
    reference output; the functional and cycle-level simulators must agree bit for bit."""
    import imcc

    functional = imcc.Simulator(binary, mode="functional").run(x).outputs["y"]
    cycle = imcc.Simulator(binary, mode="cycle").run(x).outputs["y"]
    assert np.array_equal(functional, cycle), "functional and cycle-level simulators disagree"
    reference = onnxruntime_run(model, x)
    assert functional.shape == reference.shape
    return float(np.max(np.abs(functional - reference)) / np.max(np.abs(reference)))


def replace_target(target: Target, **changes: object) -> Target:
    return dataclasses.replace(target, **changes)  # type: ignore[arg-type]
