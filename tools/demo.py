"""`imcc demo`: an MLP trained on scikit-learn's bundled digits, exported to ONNX, compiled, run.

Prints the simulated chip's accuracy next to onnxruntime's on the same held-out split, and the
run report. The helpers here are also what examples/digits_mlp.py and the tests use.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from imcc.isa.diagnostics import Diagnostic

if TYPE_CHECKING:
    from imcc.isa.target import Target

SPLIT_SEED = 0


class MissingExtra(Diagnostic):
    """An optional dependency the command needs is not installed."""


@dataclass(eq=False, slots=True)
class DigitsData:
    """The digits split (arrays: not a frozen value)."""

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def digits() -> DigitsData:
    """scikit-learn's bundled 8x8 digits (1,797 images), 75 / 25 split, pixels in [0, 16]."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise MissingExtra(
            "the demo trains on scikit-learn's bundled digits; install it with "
            "`pip install 'imcc[sklearn]'`"
        ) from None
    data = load_digits()
    x = data.data.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.target, test_size=0.25, random_state=SPLIT_SEED, stratify=data.target
    )
    return DigitsData(x_train, x_test, y_train, y_test)


def train_mlp(
    data: DigitsData, hidden: tuple[int, ...] = (64,), seed: int = 0, max_iter: int = 400
) -> Any:
    """A scikit-learn MLPClassifier on pixels scaled to [0, 1]."""
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=hidden, max_iter=max_iter, random_state=seed)
    model.fit(data.x_train / 16.0, data.y_train)
    return model


def mlp_to_onnx(model: Any, pixel_scale: float = 1 / 16, opset: int = 13) -> onnx.ModelProto:
    """Export a fitted MLPClassifier: Mul(scale) -> (Gemm -> act)* -> Gemm -> Softmax."""
    activation = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid", "identity": None}
    act = activation[model.activation]
    nodes = []
    inits = [numpy_helper.from_array(np.array([pixel_scale], np.float32), "pixel_scale")]
    nodes.append(helper.make_node("Mul", ["pixels", "pixel_scale"], ["scaled"], name="scale"))
    current = "scaled"
    layers = len(model.coefs_)
    for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        inits += [
            numpy_helper.from_array(w.astype(np.float32), f"W{i}"),
            numpy_helper.from_array(b.astype(np.float32), f"B{i}"),
        ]
        out = f"fc{i}_out"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"B{i}"], [out], name=f"fc{i}"))
        current = out
        if i < layers - 1 and act is not None:
            nodes.append(helper.make_node(act, [current], [f"act{i}"], name=f"act{i}"))
            current = f"act{i}"
    nodes.append(helper.make_node("Softmax", [current], ["probabilities"], name="softmax", axis=-1))
    n_in, n_out = model.coefs_[0].shape[0], model.coefs_[-1].shape[1]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_out])],
        inits,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx_model.ir_version = 8
    onnx.checker.check_model(onnx_model)
    return onnx_model


def onnxruntime_outputs(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: x.astype(np.float32)})[0])


def run_demo(
    target: str | Target | None = None, mode: str = "cycle", out: Any = print
) -> dict[str, Any]:
    """The whole demo; returns the figures it printed (for tests)."""
    import imcc
    from imcc.runtime.report import in_graph_order

    data = digits()
    out("imcc demo: an MLP on scikit-learn's digits (8x8 images, 10 classes)")
    start = time.perf_counter()
    model = train_mlp(data)
    onnx_model = mlp_to_onnx(model)
    out(
        f"  trained MLPClassifier 64-64-10 in {time.perf_counter() - start:.1f} s, exported to ONNX"
    )
    start = time.perf_counter()
    binary = imcc.compile(onnx_model, target=target)
    compile_s = time.perf_counter() - start
    cores = sum(1 for c in binary.program.code if c)
    out(
        f"  compiled for {binary.target.name!r} in {compile_s * 1e3:.0f} ms: "
        f"{sum(len(c) for c in binary.program.code)} instructions on "
        f"{cores} core{'s' if cores != 1 else ''}, "
        f"{len(binary.program.images)} crossbar arrays, {len(binary.data):,} bytes"
    )
    start = time.perf_counter()
    result = imcc.Simulator(binary, mode=mode).run(data.x_test)
    simulate_s = time.perf_counter() - start
    chip = result.outputs["probabilities"].argmax(axis=-1)
    reference = onnxruntime_outputs(onnx_model, data.x_test).argmax(axis=-1)
    chip_acc = float(np.mean(chip == data.y_test))
    ort_acc = float(np.mean(reference == data.y_test))
    out(f"  simulated {len(data.x_test)} held-out images ({mode} mode) in {simulate_s:.2f} s")
    out("")
    out(f"  accuracy on the chip (8-bit weights and inputs): {100 * chip_acc:6.2f} %")
    out(f"  accuracy with onnxruntime (float32):             {100 * ort_acc:6.2f} %")
    out(
        f"  predictions that agree:                          "
        f"{100 * float(np.mean(chip == reference)):6.2f} %"
    )
    out("")
    # rows in the model's order, as `imcc run` prints them
    out(
        replace(
            result.report, layers=in_graph_order(result.report.layers, binary.program.debug)
        ).table()
    )
    return {"chip_accuracy": chip_acc, "onnxruntime_accuracy": ort_acc, "report": result.report}
