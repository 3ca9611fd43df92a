"""imcc.backend's own contract: prepare's device and keywords are applied or rejected by name,
only an unsupported op, dtype or feature becomes a skip, and anything else fails."""

from __future__ import annotations

import inspect
import unittest
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import imcc.backend
from imcc.isa.diagnostics import (
    CompileError,
    Diagnostic,
    FrontendError,
    InputLoc,
    NodeLoc,
    OptionLoc,
    SimulationError,
)
from imcc.runtime.simulator import Simulator
from tests.conftest import mlp_onnx

X = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)


@pytest.fixture(scope="module")
def mlp() -> onnx.ModelProto:
    return mlp_onnx([6, 5, 3], ["relu", "none"])


def test_device_is_applied_to_the_runs(mlp: onnx.ModelProto) -> None:
    ideal = imcc.backend.prepare(mlp).run([X])[0]
    rep = imcc.backend.prepare(mlp, device="pcm", seed=0, time="1d")
    pcm = rep.run([X])[0]
    (simulator,) = rep.simulators.values()
    assert simulator.device_name == "pcm"
    assert simulator.time_s == 86400.0
    # PCM's programming noise and a day of drift move the outputs; the ideal chip is exact
    assert np.abs(pcm - ideal).max() > 1e-3


def test_seed_programs_the_same_chip(mlp: onnx.ModelProto) -> None:
    def on(seed: int) -> np.ndarray:
        return imcc.backend.prepare(mlp, device="rram-hp", seed=seed).run([X])[0]

    assert np.array_equal(on(1), on(1))
    assert not np.array_equal(on(1), on(2))


def test_run_mode_and_host_device(mlp: onnx.ModelProto) -> None:
    rep = imcc.backend.prepare(mlp, device="cpu", mode="cycle", max_cycles=10**7)
    rep.run([X])
    ((_, mode), simulator), *_ = rep.simulators.items()
    assert mode == "cycle" and simulator.max_cycles == 10**7
    assert simulator.device_name == "ideal"  # the target's own device
    rep.run([X], mode="functional")
    assert {mode for _, mode in rep.simulators} == {"cycle", "functional"}


def test_unknown_device_names_the_argument(mlp: onnx.ModelProto, tmp_path: Path) -> None:
    bad_preset = tmp_path / "mine.toml"
    bad_preset.write_text("[cell]\nlevels = 'many'\n")
    for device in ("nonsense", "CUDA", 3):
        with pytest.raises(SimulationError) as err:
            imcc.backend.prepare(mlp, device=device)
        assert err.value.loc == OptionLoc("device")
        assert f"unknown device {device!r}" in str(err.value)
        assert "'CPU'" in err.value.message and "'pcm'" in err.value.message
    with pytest.raises(SimulationError) as err:
        imcc.backend.prepare(mlp, device=str(bad_preset))
    assert err.value.loc == OptionLoc("device")
    assert imcc.backend.supports_device("CPU") and imcc.backend.supports_device("pcm")
    assert not imcc.backend.supports_device("CUDA")


def test_unknown_keyword_names_the_argument(mlp: onnx.ModelProto) -> None:
    with pytest.raises(SimulationError) as err:
        imcc.backend.prepare(mlp, devic="pcm")
    assert err.value.loc == OptionLoc("devic")
    assert "unknown keyword 'devic' of imcc.backend.prepare" in err.value.message
    assert "seed" in err.value.message and "time" in err.value.message
    rep = imcc.backend.prepare(mlp)
    with pytest.raises(SimulationError) as err:
        rep.run([X], seed=3)
    assert err.value.loc == OptionLoc("seed")


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("seed", -1, "expected an integer >= 0, not -1"),
        ("seed", "1", "not '1'"),
        ("max_cycles", 0, "expected an integer >= 1, not 0"),
        ("max_cycles", "many", "not 'many'"),
        ("time", "1q", "bad time '1q'"),
        ("mode", "fast", "unknown mode 'fast'"),
        ("mode", None, "unknown mode None"),
        ("drift_compensation", "row", "unknown drift compensation 'row'"),
        ("ir_drop", "slow", "unknown IR-drop mode 'slow'"),
        ("cam_device", -1.0, "sigma must be >= 0"),
        ("target", "nope", "unknown target 'nope'"),
        ("target", 5, "not 'int'"),
    ],
)
def test_bad_option_value_names_the_argument(
    mlp: onnx.ModelProto, name: str, value: object, says: str
) -> None:
    with pytest.raises(Diagnostic) as err:
        imcc.backend.prepare(mlp, **{name: value})
    assert err.value.loc == OptionLoc(name)
    assert says in err.value.message


def test_run_options_are_the_simulators() -> None:
    keywords = set(inspect.signature(Simulator.__init__).parameters) - {"self", "binary", "device"}
    assert set(imcc.backend.RUN_OPTIONS) == keywords


def test_unsupported_op_is_a_skip_and_a_diagnostic() -> None:
    node = helper.make_node("LSTM", ["x", "w", "r"], ["y"], name="lstm", hidden_size=2)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(np.zeros((1, 8, 2), np.float32), "w"),
            numpy_helper.from_array(np.zeros((1, 8, 2), np.float32), "r"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(imcc.backend.Unsupported) as err:
        imcc.backend.prepare(model)
    assert isinstance(err.value, unittest.SkipTest)
    assert err.value.loc == NodeLoc("lstm", "LSTM")
    assert "unsupported op type 'LSTM'" in err.value.message


@pytest.mark.parametrize(
    "error",
    [
        FrontendError(
            "internal error: the TreeEnsembleClassifier converter made 'p' of shape (1, 2), "
            "but ONNX shape inference gives (3, 2)",
            NodeLoc("tree", "TreeEnsembleClassifier"),
        ),
        CompileError("sum over the empty axes (1,) of shape (2, 0, 4)", NodeLoc("r", "Reduce")),
        IndexError("list index out of range"),
    ],
    ids=["internal-error", "other-diagnostic", "exception"],
)
def test_other_errors_fail_rather_than_skip(
    mlp: onnx.ModelProto, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(imcc.backend, "compile_model", broken)
    with pytest.raises(type(error)) as err:
        imcc.backend.prepare(mlp)
    assert err.value is error
    assert not isinstance(err.value, unittest.SkipTest)


def test_output_of_the_wrong_shape_fails(
    mlp: onnx.ModelProto, monkeypatch: pytest.MonkeyPatch
) -> None:
    rep = imcc.backend.prepare(mlp)
    simulator = rep.simulator_for({}, "functional")
    run = simulator.run

    def one_sample(inputs: dict[str, np.ndarray]) -> object:
        result = run(inputs)
        return type(result)({k: v[:1] for k, v in result.outputs.items()}, result.report)

    monkeypatch.setattr(simulator, "run", one_sample)
    with pytest.raises(AssertionError) as err:
        rep.run([X])
    assert "imcc gives output 'y' of shape (1, 3), but the model declares (4, 3)" in str(err.value)


def _matmul_by_input() -> onnx.ModelProto:
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_inputs_bound_as_weights_are_checked() -> None:
    rep = imcc.backend.prepare(_matmul_by_input())
    x = np.ones((2, 3), np.float32)
    w = np.arange(6).reshape(3, 2)  # integers: bound in the declared float32
    (y,) = rep.run([x, w])
    assert np.allclose(y, x @ w, atol=1e-4)
    with pytest.raises(SimulationError) as err:
        rep.run([x])
    assert err.value.loc == InputLoc("w")
    assert "1 inputs given; the model takes 2 ('x', 'w')" in err.value.message
    with pytest.raises(SimulationError) as err:
        rep.run({"x": x})
    assert err.value.loc == InputLoc("w") and "missing input 'w'" in err.value.message
    with pytest.raises(SimulationError) as err:
        rep.run([x, [[1.0, 2.0], [3.0]]])
    assert err.value.loc == InputLoc("w")


def test_model_that_is_not_a_model() -> None:
    with pytest.raises(FrontendError) as err:
        imcc.backend.prepare(b"\x00not onnx")
    assert err.value.loc == OptionLoc("model")
    with pytest.raises(FrontendError) as err:
        imcc.backend.prepare(42)
    assert err.value.loc == OptionLoc("model")
    assert "not 'int'" in err.value.message
