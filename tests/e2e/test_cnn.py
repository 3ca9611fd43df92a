"""End to end: CNNs compiled and simulated, against onnxruntime: LeNet-5 on 1x28x28, and a
small LeNet-style net with BatchNormalization, a grouped Conv, Clip, padded pools and
GlobalAveragePool."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import imcc
from imcc.compiler.driver import compile_graph
from imcc.compiler.ir import ops
from imcc.frontends.onnx import import_onnx
from tests.conftest import big_target, simulated_error

# 16-bit weights and inputs: every product carries a relative error of at most ~2 x 2^-16
# (half an LSB of each operand, the LSB being max / 32767 per window or column); sums of at
# most 36 terms of random sign, through four layers, keep the error ~1e-4 of the output's
# magnitude (measured: 1.0e-4). 2e-3 leaves a 20x margin, and 8-bit operands (errors ~256x
# larger) fail it.
REL_TOL_16 = 2e-3
# 8-bit: the same argument gives ~3e-2 of the magnitude (measured: 1.4e-2); 0.1 is the bound.
REL_TOL_8 = 0.1


def _target():  # type: ignore[no-untyped-def]
    return big_target(cores=4, arrays=64)  # the default 16384-word buffers


def lenet(seed: int = 0) -> onnx.ModelProto:
    """1x12x12 -> conv 3x3 (4, SAME) -> BN -> relu -> maxpool 2 -> conv 3x3 (8, group 2)
    -> clip(0, 6) -> avgpool 2 (pads, count_include_pad) -> conv 1x1 (10) -> global average
    -> flatten -> gemm 10."""
    rng = np.random.default_rng(seed)

    def init(name: str, *shape: int, scale: float = 1.0) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    inits = [
        init("W1", 4, 1, 3, 3, scale=0.5),
        init("B1", 4, scale=0.1),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "gamma"),
        init("beta", 4, scale=0.1),
        init("mean", 4, scale=0.1),
        numpy_helper.from_array(rng.uniform(0.5, 2.0, 4).astype(np.float32), "var"),
        init("W2", 8, 2, 3, 3, scale=0.3),
        init("B2", 8, scale=0.1),
        init("W3", 10, 8, 1, 1, scale=0.3),
        init("W4", 10, 10, scale=0.3),
        init("B4", 10, scale=0.1),
        numpy_helper.from_array(np.array(0, np.float32), "lo"),
        numpy_helper.from_array(np.array(6, np.float32), "hi"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], auto_pad="SAME_UPPER"),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "W2", "B2"], ["c2"], group=2, pads=[1, 1, 0, 0]),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["r2"]),
        helper.make_node(
            "AveragePool",
            ["r2"],
            ["p2"],
            kernel_shape=[2, 2],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            count_include_pad=1,
        ),
        helper.make_node("Conv", ["p2", "W3"], ["c3"]),
        helper.make_node("GlobalAveragePool", ["c3"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "W4", "B4"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "lenet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def lenet5(seed: int = 0) -> onnx.ModelProto:
    """LeNet-5: 1x28x28 -> conv 5x5 (6) -> relu -> avgpool 2 -> conv 5x5 (16) -> relu
    -> maxpool 2 -> flatten -> gemm 120 -> relu -> gemm 84 -> relu -> gemm 10."""
    rng = np.random.default_rng(seed)
    shapes = {"W1": (6, 1, 5, 5), "B1": (6,), "W2": (16, 6, 5, 5), "B2": (16,), "F1": (256, 120),
              "C1": (120,), "F2": (120, 84), "C2": (84,), "F3": (84, 10), "C3": (10,)}  # fmt: skip
    inits = [
        numpy_helper.from_array(
            rng.normal(0, 1 / np.sqrt(np.prod(shape[1:]) if len(shape) > 1 else 10), shape).astype(
                np.float32
            ),
            name,
        )
        for name, shape in shapes.items()
    ]
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "W1", "B1"], ["c1"]),
        node("Relu", ["c1"], ["r1"]),
        node("AveragePool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Conv", ["p1", "W2", "B2"], ["c2"]),
        node("Relu", ["c2"], ["r2"]),
        node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Flatten", ["p2"], ["f"]),
        node("Gemm", ["f", "F1", "C1"], ["g1"]),
        node("Relu", ["g1"], ["h1"]),
        node("Gemm", ["h1", "F2", "C2"], ["g2"]),
        node("Relu", ["g2"], ["h2"]),
        node("Gemm", ["h2", "F3", "C3"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "lenet5",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _inputs(n: int = 6) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, 1, 12, 12)).astype(np.float32)


def test_16bit_lenet5_matches_onnxruntime() -> None:
    """The windows stream through the QDense one row at a time, so LeNet-5's first layer
    (576 windows of 25) fits the default buffers; measured error 6e-5 of the magnitude."""
    model = lenet5()
    x = np.random.default_rng(2).normal(size=(4, 1, 28, 28)).astype(np.float32)
    binary = imcc.compile(model, _target(), weight_bits=16, input_bits=16)
    assert simulated_error(binary, model, x) <= REL_TOL_16


def test_16bit_cnn_matches_onnxruntime() -> None:
    model, x = lenet(), _inputs()
    binary = imcc.compile(model, _target(), weight_bits=16, input_bits=16)
    assert simulated_error(binary, model, x) <= REL_TOL_16


def test_8bit_cnn_error_is_bounded() -> None:
    model, x = lenet(), _inputs()
    error = simulated_error(imcc.compile(model, _target(), weight_bits=8, input_bits=8), model, x)
    assert REL_TOL_16 < error <= REL_TOL_8  # visibly coarser than 16 bits, and still bounded


def test_convolutions_lower_to_dense_and_batchnorm_folds() -> None:
    result = compile_graph(import_onnx(lenet()), _target(), weight_bits=16, input_bits=16)
    kinds = [op.kind for op in result.graph.ops]
    assert "Conv" not in kinds and "BatchNorm" not in kinds and "Mul" not in kinds
    assert kinds.count("QDense") == 4 and kinds.count("Im2Col") == 3
    first = next(op for op in result.graph.ops if isinstance(op, ops.QDense))
    assert first.attrs["activation"] == "relu"  # Conv + BN + Relu in one crossbar layer


@pytest.mark.parametrize(
    "attrs",
    [
        {"group": 4},  # depthwise: a block-diagonal weight
        {"group": 2, "strides": [2, 1], "pads": [1, 0, 2, 1]},
        {"dilations": [2, 2], "pads": [2, 1, 2, 1]},
        {"strides": [2, 2], "auto_pad": "SAME_LOWER"},
        {"strides": [2, 2], "auto_pad": "VALID"},
    ],
)
def test_16bit_conv_variants_match_onnxruntime(attrs: dict[str, object]) -> None:
    rng = np.random.default_rng(3)
    group = int(attrs.get("group", 1))  # type: ignore[call-overload]
    w = rng.normal(0, 0.5, (4, 4 // group, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, 4).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "W", "B"], ["c"], **attrs),
            helper.make_node("LeakyRelu", ["c"], ["y"], alpha=0.1),
        ],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 7, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.normal(size=(3, 4, 7, 6)).astype(np.float32)
    binary = imcc.compile(model, _target(), weight_bits=16, input_bits=16, spread=True)
    assert simulated_error(binary, model, x) <= REL_TOL_16


def test_batchnorm_folds_into_gemm_and_runs_alone_as_simd() -> None:
    rng = np.random.default_rng(4)
    params = [rng.uniform(0.5, 1.5, 5), rng.normal(0, 0.1, 5), rng.normal(0, 0.1, 5),
              rng.uniform(0.5, 2.0, 5)]  # fmt: skip
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (3, 5)).astype(np.float32), "W")]
    for name, values in zip(("s", "b", "m", "v"), params, strict=True):
        inits.append(numpy_helper.from_array(values.astype(np.float32), name))
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "W"], ["g"]),
            helper.make_node("BatchNormalization", ["g", "s", "b", "m", "v"], ["y"]),
            helper.make_node("BatchNormalization", ["y", "s", "b", "m", "v"], ["z"]),
        ],
        "bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 5]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    result = compile_graph(import_onnx(model), _target(), weight_bits=16, input_bits=16)
    # the first folds into the Gemm's crossbar weights; the second, whose input is also a
    # graph output, is a per-channel Mul and Add
    assert [op.kind for op in result.graph.ops] == ["QDense", "Mul", "Add"]
    x = rng.normal(size=(5, 3)).astype(np.float32)
    outputs = imcc.Simulator(imcc.compile(model, _target(), weight_bits=16, input_bits=16)).run(x)
    reference = onnxruntime_session_run(model, x)
    for name, expected in zip(("y", "z"), reference, strict=True):
        scale = float(np.max(np.abs(expected)))
        assert np.max(np.abs(outputs.outputs[name] - expected)) <= REL_TOL_16 * scale


def onnxruntime_session_run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(a) for a in session.run(None, {"x": x})]
