"""Every op imcc imports, with the batch fixed in the ONNX file (torch's default export) to 1,
2 and 3, compiled by `imcc.compile` and run by `imcc.Simulator` on the ideal device, against
onnxruntime (issue 11: a fixed batch of 2 into a Conv came out as garbage).

The leading axis of every graph input is the batch, symbolic or a number: a graph that keeps
its samples apart gets a batch axis (the binary runs one sample at a time, and its outputs have
onnxruntime's shapes); a graph that mixes them (a reduction over axis 0, a transpose of the
batch, a Gram matrix across samples) is imported as one sample of the whole batch, and must be
just as right. Samples differ in scale (sample s is 2^s times larger), so a computation that
shared anything between samples (a quantisation scale, a window) shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import imcc
from imcc.frontends.onnx import import_onnx, supported_op_types

# Crossbar ops (Conv, Gemm, MatMul by a constant, the linear ONNX-ML models) quantise inputs
# and weights to the default 8 bits (per-vector abs-max scales): each product x * w is off by
# at most ~(0.5 / 127) * (max|x| |w| + |x| max|w|), i.e. <= 0.8 % of the largest product, and
# the K <= 18 products of an output add these errors with random signs. Relative to the
# largest output (the way tests/conftest.py's simulated_error measures), 3e-2 bounds that with
# room to spare (largest seen here: 1.4e-2, for two columns picked from three); a sample
# mixed with another (one shared scale for a 2^s larger sample, windows across samples) is off
# by far more.
CROSSBAR_TOL = 3e-2
# Everything else runs on the SIMD unit in float64 against onnxruntime's float32: a few float32
# ulps (~1e-7 relative) per op over at most a handful of ops; 1e-5 leaves ample headroom.
SIMD_TOL = 1e-5
# The analog CAM (ideal) compares in float32 as onnxruntime does, and sums the leaf values in
# float32: equal up to float32 rounding of the outputs.
TREE_TOL = 1e-6

BATCHES = (1, 2, 3)
ML = "ai.onnx.ml"


@dataclass(frozen=True, slots=True)
class Case:
    """One small graph: input x of shape (B, *shape), nodes, constants and how to check it."""

    nodes: Callable[[int], Sequence[onnx.NodeProto]]
    shape: tuple[int, ...]
    constants: Callable[[int], dict[str, np.ndarray]] = lambda b: {}
    tol: float = SIMD_TOL
    per_sample: bool = True  # False: the graph mixes samples (imported as one sample)
    opset: int = 17
    ml_opset: int = 3
    positive: bool = False  # inputs > 0 (Log, Sqrt)
    target: str | None = None


def node(op: str, inputs: Sequence[str], outputs: Sequence[str] = ("y",), **attrs: object):
    domain = ML if op in ML_OPS else ""
    return helper.make_node(op, list(inputs), list(outputs), op.lower(), domain=domain, **attrs)


ML_OPS = {op.split(".")[-1] for op in supported_op_types(ML)}


def one(op: str, **attrs: object) -> Callable[[int], Sequence[onnx.NodeProto]]:
    return lambda b: [node(op, ["x"], **attrs)]


def with_const(op: str, **attrs: object) -> Callable[[int], Sequence[onnx.NodeProto]]:
    return lambda b: [node(op, ["x", "c"], **attrs)]


def weights(seed: int, *shape: int, positive: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.uniform(0.5, 2.0, shape) if positive else rng.standard_normal(shape)
    return data.astype(np.float32)


def ints(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def tree_attrs(targets: str, ids: Sequence[int], weights: Sequence[float]) -> dict[str, object]:
    """Two trees over features 0 and 2 of four, for TreeEnsembleRegressor/Classifier."""
    votes = {
        f"{targets}_treeids": [0, 0, 1, 1],
        f"{targets}_nodeids": [1, 2, 1, 2],
        f"{targets}_ids": list(ids),
        f"{targets}_weights": list(weights),
    }
    return dict(
        nodes_treeids=[0, 0, 0, 1, 1, 1], nodes_nodeids=[0, 1, 2, 0, 1, 2],
        nodes_featureids=[0, 0, 0, 2, 0, 0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_LT", "LEAF", "LEAF"],
        nodes_values=[0.1, 0.0, 0.0, -0.3, 0.0, 0.0], nodes_truenodeids=[1, 0, 0, 1, 0, 0],
        nodes_falsenodeids=[2, 0, 0, 2, 0, 0], **votes,
    )  # fmt: skip


def tree_ensemble_5(b: int) -> Sequence[onnx.NodeProto]:
    tensor = helper.make_tensor
    return [
        node(
            "TreeEnsemble", ["x"], n_targets=2, aggregate_function=1, post_transform=0,
            tree_roots=[0],
            nodes_modes=tensor("nodes_modes", TensorProto.UINT8, (2,), [0, 1]),
            nodes_featureids=[1, 3],
            nodes_splits=tensor("nodes_splits", TensorProto.FLOAT, (2,), [0.2, -0.4]),
            nodes_truenodeids=[1, 0], nodes_trueleafs=[0, 1],
            nodes_falsenodeids=[2, 1], nodes_falseleafs=[1, 1],
            leaf_targetids=[0, 1, 0],
            leaf_weights=tensor("leaf_weights", TensorProto.FLOAT, (3,), [1.5, -2.0, 0.25]),
        )
    ]  # fmt: skip


XTIME = "xtime"

# One case (at least) per supported op type; the name starts with the op type.
CASES: dict[str, Case] = {
    # -- elementwise on the SIMD unit
    "Relu": Case(one("Relu"), (4,)),
    "Sigmoid": Case(one("Sigmoid"), (4,)),
    "Tanh": Case(one("Tanh"), (4,)),
    "Exp": Case(one("Exp"), (4,)),
    "Erf": Case(one("Erf"), (4,)),
    "Log": Case(one("Log"), (4,), positive=True),
    "Sqrt": Case(one("Sqrt"), (4,), positive=True),
    "Identity": Case(lambda b: [node("Identity", ["x"], ["i"]), node("Relu", ["i"])], (4,)),
    "Dropout": Case(lambda b: [node("Dropout", ["x"], ["d"]), node("Tanh", ["d"])], (4,)),
    "LeakyRelu": Case(one("LeakyRelu", alpha=0.1), (4,)),
    "Gelu": Case(one("Gelu"), (4,), opset=20),
    "Clip": Case(
        lambda b: [node("Clip", ["x", "lo", "hi"])],
        (4,),
        lambda b: {"lo": np.array(-0.75, np.float32), "hi": np.array(1.5, np.float32)},
    ),
    "Cast": Case(one("Cast", to=TensorProto.DOUBLE), (4,)),
    "Softmax": Case(one("Softmax", axis=-1), (3, 4)),
    "Add": Case(with_const("Add"), (3, 4), lambda b: {"c": weights(1, 3, 4)}),
    "Sub": Case(with_const("Sub"), (3, 4), lambda b: {"c": weights(2, 4)}),
    "Mul": Case(with_const("Mul"), (3, 4), lambda b: {"c": weights(3, 1, 3, 1)}),
    "Div": Case(with_const("Div"), (3, 4), lambda b: {"c": weights(4, 4, positive=True)}),
    "Sum": Case(lambda b: [node("Sum", ["x", "c", "x"])], (4,), lambda b: {"c": weights(5, 4)}),
    "Mean": Case(lambda b: [node("Mean", ["x", "c"])], (4,), lambda b: {"c": weights(6, 4)}),
    "Min": Case(lambda b: [node("Min", ["x", "c", "x"])], (4,), lambda b: {"c": weights(7, 4)}),
    # -- reductions and normalisation
    "ReduceSum": Case(
        lambda b: [node("ReduceSum", ["x", "axes"], keepdims=1)],
        (3, 4),
        lambda b: {"axes": ints(1)},
    ),
    "ReduceMean": Case(one("ReduceMean", axes=[2], keepdims=0), (3, 4)),
    "ReduceMax": Case(one("ReduceMax", axes=[1, 2], keepdims=1), (3, 4)),
    "ArgMax": Case(one("ArgMax", axis=2, keepdims=0), (3, 4)),
    "LayerNormalization": Case(
        lambda b: [node("LayerNormalization", ["x", "scale", "bias"], axis=-1)],
        (3, 4),
        lambda b: {"scale": weights(7, 4), "bias": weights(8, 4)},
    ),
    # -- shapes and data movement
    "Flatten": Case(one("Flatten", axis=1), (2, 3, 2)),
    "Reshape": Case(  # the target names the batch, as torch's fixed-shape export writes it
        lambda b: [node("Reshape", ["x", "shape"])], (2, 3), lambda b: {"shape": ints(b, -1)}
    ),
    "Reshape_copy": Case(
        lambda b: [node("Reshape", ["x", "shape"])], (6,), lambda b: {"shape": ints(0, 3, 2)}
    ),
    "Transpose": Case(one("Transpose", perm=[0, 2, 1]), (2, 3)),
    "Squeeze": Case(
        lambda b: [node("Squeeze", ["x", "axes"])], (1, 4), lambda b: {"axes": ints(1)}
    ),
    "Unsqueeze": Case(
        lambda b: [node("Unsqueeze", ["x", "axes"])], (4,), lambda b: {"axes": ints(1)}
    ),
    "Concat": Case(
        lambda b: [node("Relu", ["x"], ["r"]), node("Concat", ["x", "r"], axis=1)], (2, 3)
    ),
    "Gather": Case(
        lambda b: [node("Gather", ["x", "i"], axis=1)], (4,), lambda b: {"i": ints(2, 0, 3)}
    ),
    "Slice": Case(
        lambda b: [node("Slice", ["x", "s", "e", "a"])],
        (3, 5),
        lambda b: {"s": ints(1), "e": ints(4), "a": ints(2)},
    ),
    "Pad": Case(
        lambda b: [node("Pad", ["x", "pads"], mode="reflect")],
        (4,),
        lambda b: {"pads": ints(0, 1, 0, 2)},
    ),
    "Split": Case(
        lambda b: [node("Split", ["x", "split"], ["y0", "y1"], axis=1)],
        (4,),
        lambda b: {"split": ints(1, 3)},
    ),
    "Expand": Case(
        lambda b: [node("Expand", ["x", "shape"])], (1, 4), lambda b: {"shape": ints(1, 3, 4)}
    ),
    "Tile": Case(
        lambda b: [node("Tile", ["x", "repeats"])], (3,), lambda b: {"repeats": ints(1, 2)}
    ),
    # -- constants and shape arithmetic (folded at import)
    "Constant": Case(
        lambda b: [
            node("Constant", [], ["c"], value=numpy_helper.from_array(weights(9, 4))),
            node("Mul", ["x", "c"]),
        ],
        (4,),
    ),
    "ConstantOfShape": Case(
        lambda b: [
            node("ConstantOfShape", ["s"], ["c"], value=helper.make_tensor("v", 1, [1], [2.5])),
            node("Add", ["x", "c"]),
        ],
        (4,),
        lambda b: {"s": ints(4)},
    ),
    "Range": Case(
        lambda b: [node("Range", ["r0", "r1", "r2"], ["c"]), node("Add", ["x", "c"])],
        (4,),
        lambda b: {k: np.array(v, np.float32) for k, v in (("r0", 0), ("r1", 2), ("r2", 0.5))},
    ),
    "Shape": Case(  # y = x * N: the model's own batch size, not the IR's 1
        lambda b: [
            node("Shape", ["x"], ["s"]),
            node("Gather", ["s", "zero"], ["n"], axis=0),
            node("Cast", ["n"], ["f"], to=TensorProto.FLOAT),
            node("Mul", ["x", "f"]),
        ],
        (4,),
        lambda b: {"zero": ints(0)},
    ),
    "Shape_view": Case(  # torch's x.view(x.size(0), -1)
        lambda b: [
            node("Shape", ["x"], ["s"]),
            node("Gather", ["s", "zero"], ["n"], axis=0),
            node("Unsqueeze", ["n", "axes"], ["n1"]),
            node("Concat", ["n1", "minus"], ["spec"], axis=0),
            node("Reshape", ["x", "spec"]),
        ],
        (2, 3),
        lambda b: {"zero": np.array(0, np.int64), "axes": ints(0), "minus": ints(-1)},
    ),
    "Size": Case(
        lambda b: [
            node("Size", ["x"], ["n"]),
            node("Cast", ["n"], ["f"], to=1),
            node("Div", ["x", "f"]),
        ],
        (4,),
    ),
    # -- crossbars
    "Gemm": Case(
        lambda b: [node("Gemm", ["x", "w", "c"], transB=1, alpha=0.5)],
        (6,),
        lambda b: {"w": weights(10, 3, 6), "c": weights(11, 3)},
        tol=CROSSBAR_TOL,
    ),
    "MatMul": Case(
        with_const("MatMul"), (6,), lambda b: {"c": weights(12, 6, 3)}, tol=CROSSBAR_TOL
    ),
    "MatMul_activations": Case(  # x @ x^T per sample, on the SIMD unit
        lambda b: [node("Transpose", ["x"], ["t"], perm=[0, 2, 1]), node("MatMul", ["x", "t"])],
        (2, 3),
    ),
    "Conv": Case(
        lambda b: [node("Conv", ["x", "w", "c"], pads=[1, 1, 1, 1])],
        (2, 5, 5),
        lambda b: {"w": weights(13, 3, 2, 3, 3), "c": weights(14, 3)},
        tol=CROSSBAR_TOL,
    ),
    "Conv_1d": Case(
        lambda b: [node("Conv", ["x", "w"], strides=[2])],
        (2, 7),
        lambda b: {"w": weights(15, 3, 2, 3)},
        tol=CROSSBAR_TOL,
    ),
    "BatchNormalization": Case(
        lambda b: [node("BatchNormalization", ["x", "s", "o", "m", "v"])],
        (2, 3, 3),
        lambda b: {
            "s": weights(16, 2),
            "o": weights(17, 2),
            "m": weights(18, 2),
            "v": weights(19, 2, positive=True),
        },
    ),
    "MaxPool": Case(one("MaxPool", kernel_shape=[2, 2], strides=[2, 2]), (2, 4, 4)),
    "AveragePool": Case(one("AveragePool", kernel_shape=[2, 2], pads=[1, 1, 0, 0]), (2, 4, 4)),
    "GlobalAveragePool": Case(one("GlobalAveragePool"), (2, 3, 3)),
    "LRN": Case(one("LRN", size=3), (3, 2, 2)),
    # -- ONNX-ML
    "LinearRegressor": Case(
        one("LinearRegressor", coefficients=weights(20, 8).tolist(), targets=2),
        (4,),
        tol=CROSSBAR_TOL,
    ),
    "LinearClassifier": Case(
        lambda b: [
            node(
                "LinearClassifier",
                ["x"],
                ["label", "y"],
                classlabels_ints=[0, 1, 2],
                coefficients=weights(21, 12).tolist(),
                intercepts=[0.1, -0.2, 0.0],
                post_transform="SOFTMAX",
            )
        ],
        (4,),
        tol=CROSSBAR_TOL,
    ),
    "Scaler": Case(one("Scaler", offset=[0.5, -1.0, 0.0, 2.0], scale=[2.0, 0.5, 1.0, 3.0]), (4,)),
    "Normalizer": Case(
        lambda b: [node("Softmax", ["x"], ["p"], axis=1), node("Normalizer", ["p"], norm="L1")],
        (4,),
    ),
    "ArrayFeatureExtractor": Case(
        lambda b: [
            node("LinearRegressor", ["x"], ["s"], coefficients=weights(22, 12).tolist(), targets=3),
            node("ArrayFeatureExtractor", ["s", "i"]),
        ],
        (4,),
        lambda b: {"i": ints(2, 0)},
        tol=CROSSBAR_TOL,
    ),
    "TreeEnsembleRegressor": Case(
        one(
            "TreeEnsembleRegressor",
            n_targets=2,
            **tree_attrs("target", [0, 1, 1, 0], [0.5, 1.25, -0.75, 2.0]),
        ),
        (4,),
        tol=TREE_TOL,
        target=XTIME,
    ),
    "TreeEnsembleClassifier": Case(
        lambda b: [
            node(
                "TreeEnsembleClassifier",
                ["x"],
                ["label", "y"],
                classlabels_int64s=[0, 1, 2],
                **tree_attrs("class", [0, 1, 2, 1], [0.5, 1.25, 0.75, 2.0]),
            )
        ],
        (4,),
        tol=TREE_TOL,
        target=XTIME,
    ),
    "TreeEnsemble": Case(tree_ensemble_5, (4,), tol=TREE_TOL, ml_opset=5, target=XTIME),
}

# Graphs that mix samples: imported without a batch axis, the whole batch one sample.
MIXING: dict[str, Case] = {
    "ReduceSum_over_the_batch": Case(
        lambda b: [node("ReduceSum", ["x", "axes"], keepdims=1)],
        (4,),
        lambda b: {"axes": ints(0)},
        per_sample=False,
    ),
    "Softmax_over_the_batch": Case(one("Softmax", axis=0), (4,), per_sample=False),
    "ReduceMax_over_all_axes": Case(one("ReduceMax", keepdims=0), (4,), per_sample=False),
    "Concat_of_samples": Case(
        lambda b: [node("Relu", ["x"], ["r"]), node("Concat", ["x", "r"], axis=0)],
        (3,),
        per_sample=False,
    ),
    "Transpose_of_the_batch": Case(one("Transpose", perm=[1, 0]), (4,), per_sample=False),
    "Flatten_at_axis_0": Case(one("Flatten", axis=0), (2, 2), per_sample=False),
    "Reshape_to_one_row": Case(
        lambda b: [node("Reshape", ["x", "shape"])],
        (4,),
        lambda b: {"shape": ints(1, -1)},
        per_sample=False,
    ),
    "Gather_of_a_sample": Case(
        lambda b: [node("Gather", ["x", "i"], axis=0)],
        (4,),
        lambda b: {"i": ints(0)},
        per_sample=False,
    ),
    "Add_of_a_constant_per_sample": Case(
        with_const("Add"), (4,), lambda b: {"c": weights(23, b, 4)}, per_sample=False
    ),
    "Gram_across_samples": Case(
        lambda b: [node("Transpose", ["x"], ["t"], perm=[1, 0]), node("MatMul", ["t", "x"])],
        (3,),
        per_sample=False,
    ),
    "Conv_then_sum_over_the_batch": Case(  # the block path with several samples in one map
        lambda b: [
            node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            node("ReduceSum", ["c", "axes"], keepdims=1),
        ],
        (2, 5, 5),
        lambda b: {"w": weights(24, 3, 2, 3, 3), "axes": ints(0)},
        tol=CROSSBAR_TOL,
        per_sample=False,
    ),
}


def build(case: Case, batch: int) -> onnx.ModelProto:
    nodes = list(case.nodes(batch))
    outputs = [name for n in nodes[-1:] for name in n.output]
    graph = helper.make_graph(
        nodes,
        "fixed_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *case.shape])],
        [helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None) for name in outputs],
        [numpy_helper.from_array(a, k) for k, a in case.constants(batch).items()],
    )
    opsets = [helper.make_opsetid("", case.opset)]
    if any(n.domain == ML for n in nodes):
        opsets.append(helper.make_opsetid(ML, case.ml_opset))
    m = helper.make_model(graph, opset_imports=opsets, ir_version=10 if case.opset > 17 else 8)
    # every graph output gets the type and shape ONNX infers for it, as an exporter writes;
    # where ONNX-ML has no shape inference, the shape onnxruntime gives
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(m).graph.output}
    for output in m.graph.output:
        output.type.CopyFrom(inferred[output.name].type)
        if not output.type.tensor_type.elem_type:  # ONNX-ML: labels int64, the rest float
            int64 = output.name == "label"
            output.type.tensor_type.elem_type = TensorProto.INT64 if int64 else TensorProto.FLOAT
    if not all(o.type.tensor_type.HasField("shape") for o in m.graph.output):
        results = run_onnxruntime(m, data(case, batch))
        for output in m.graph.output:
            shape = results[output.name].shape
            output.type.tensor_type.shape.CopyFrom(
                helper.make_tensor_type_proto(1, shape).tensor_type.shape
            )
    return m


def run_onnxruntime(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in model.graph.output], session.run(None, {"x": x}), strict=True))


def data(case: Case, batch: int) -> np.ndarray:
    rng = np.random.default_rng(batch)
    shape = (batch, *case.shape)
    x = rng.uniform(0.5, 2.0, shape) * (1.0 if case.positive else rng.choice([-1.0, 1.0], shape))
    spread = 2.0 ** np.arange(batch).reshape(-1, *([1] * len(case.shape)))  # sample s: 2^s
    return np.asarray(x * spread, dtype=np.float32)


@cache
def compiled(name: str, batch: int) -> imcc.Binary:
    case = CASES.get(name) or MIXING[name]
    return imcc.compile(build(case, batch), case.target)


def check(name: str, case: Case, batch: int) -> imcc.Binary:
    model = build(case, batch)
    x = data(case, batch)
    expected = run_onnxruntime(model, x)
    binary = compiled(name, batch)
    got = imcc.Simulator(binary, device="ideal", mode="functional").run(x).outputs
    assert sorted(got) == sorted(expected)
    for out, want in expected.items():
        assert got[out].shape == want.shape, out
        if want.dtype.kind in "iu":
            np.testing.assert_array_equal(got[out], want, err_msg=out)
        else:
            scale = float(np.max(np.abs(want)))
            np.testing.assert_allclose(got[out], want, rtol=0, atol=case.tol * scale, err_msg=out)
    return binary


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_op_with_a_fixed_batch_matches_onnxruntime(name: str, batch: int) -> None:
    """A graph that keeps samples apart gets a batch axis whatever its fixed batch size: the
    binary's input is one sample's shape."""
    binary = check(name, CASES[name], batch)
    info = binary.program.inputs[0]
    assert info.batch_axis, "a fixed leading dimension is the batch axis"
    assert info.shape == CASES[name].shape


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", sorted(MIXING))
def test_graph_mixing_samples_falls_back_to_one_sample(name: str, batch: int) -> None:
    binary = check(name, MIXING[name], batch)
    info = binary.program.inputs[0]
    if batch > 1:
        assert not info.batch_axis
        assert info.shape == (batch, *MIXING[name].shape)


def test_every_supported_op_has_a_case() -> None:
    ops = set(supported_op_types()) | set(supported_op_types(ML))
    covered = {name.split("_")[0] for name in CASES}
    assert {op.split(".")[-1] for op in ops} <= covered


def test_fallback_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="imcc.frontends.onnx.importer"):
        graph = import_onnx(build(MIXING["ReduceSum_over_the_batch"], 2))
    assert not graph.batch_axis
    assert graph.inputs[0].shape == (2, 4)
    assert (
        "the model's fixed batch of 2 is imported as one sample (ReduceSum over axis 0 would "
        "reduce across the batch axis)" in caplog.text
    )


def test_torch_style_fixed_batch_cnn_runs_sample_by_sample() -> None:
    """Issue 11's model: Conv2d -> ReLU -> Flatten -> Linear exported with a fixed batch of 4.
    The binary takes one sample of (1, 8, 8); fed the 4 samples it gives onnxruntime's (4, 5)."""
    nodes = [
        node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        node("Relu", ["c"], ["r"]),
        node("Flatten", ["r"], ["f"], axis=1),
        node("Gemm", ["f", "fc", "fb"], transB=1),
    ]
    constants = {"w": weights(30, 2, 1, 3, 3), "b": weights(31, 2), "fc": weights(32, 5, 128),
                 "fb": weights(33, 5)}  # fmt: skip
    case = Case(lambda b: nodes, (1, 8, 8), lambda b: constants, tol=CROSSBAR_TOL)
    model = build(case, 4)
    binary = imcc.compile(model)
    assert [(i.name, i.shape, i.batch_axis) for i in binary.program.inputs] == [
        ("x", (1, 8, 8), True)
    ]
    x = data(case, 4)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    got = imcc.Simulator(binary, device="ideal", mode="functional").run(x).outputs["y"]
    assert got.shape == expected.shape == (4, 5)
    scale = float(np.max(np.abs(expected)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=CROSSBAR_TOL * scale)


@pytest.mark.parametrize(
    ("first", "second", "batch_axis", "ir_shapes"),
    [
        ([2, 3], [2, 5], True, [(1, 3), (1, 5)]),  # the same fixed batch: a batch axis
        (["N", 3], [1, 5], True, [(1, 3), (1, 5)]),  # symbolic, with a 1 beside it
        ([2, 3], [3, 3], False, [(2, 3), (3, 3)]),  # different numbers: no batch axis
        ([2, 3], [3], False, [(2, 3), (3,)]),  # a rank-1 input: no batch axis
    ],
)
def test_batch_decision_over_several_inputs(
    first: list[int | str], second: list[int], batch_axis: bool, ir_shapes: list[tuple[int, ...]]
) -> None:
    nodes = [node("Relu", ["a"], ["ra"]), node("Tanh", ["b"], ["rb"])]
    graph_proto = helper.make_graph(
        nodes,
        "two_inputs",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, first),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, second),
        ],
        [
            helper.make_tensor_value_info("ra", TensorProto.FLOAT, first),
            helper.make_tensor_value_info("rb", TensorProto.FLOAT, second),
        ],
    )
    model = helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 17)])
    graph = import_onnx(model)
    assert graph.batch_axis is batch_axis
    assert [v.shape for v in graph.inputs] == ir_shapes
