"""Tests for frontends/onnx: imported graphs, run by the IR interpreter, agree with onnxruntime
on the same random inputs; every unsupported or malformed model is a FrontendError that names
the node (or input) at fault."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from imcc.compiler.ir.core import Graph
from imcc.compiler.ir.interpreter import evaluate
from imcc.frontends.onnx import converter, import_onnx, supported_op_types
from imcc.frontends.onnx.registry import lookup
from imcc.isa.diagnostics import FrontendError, NodeLoc

# The IR interpreter computes in float64 while onnxruntime computes in float32, so the two differ
# by float32 rounding: a few ulps (~1e-7 relative) per op, accumulated over at most a handful of
# layers with sums of <= 8 terms. rtol 1e-5 leaves ~50x headroom over that; atol 1e-6 covers
# results that cancel to near zero, where a relative bound means nothing.
RTOL, ATOL = 1e-5, 1e-6

BATCH = 3
SUPPORTED = (
    "Add, ArgMax, AveragePool, BatchNormalization, Cast, Clip, Concat, Constant, "
    "ConstantOfShape, Conv, Div, Dropout, Erf, Exp, Expand, Flatten, Gather, Gelu, Gemm, "
    "GlobalAveragePool, Identity, LRN, LayerNormalization, LeakyRelu, Log, MatMul, MaxPool, Mean, "
    "Min, Mul, Pad, Range, ReduceMax, ReduceMean, ReduceSum, Relu, Reshape, Shape, Sigmoid, Size, "
    "Slice, Softmax, Split, Sqrt, Squeeze, Sub, Sum, Tanh, Tile, Transpose, Unsqueeze"
)
ML_SUPPORTED = (
    "ai.onnx.ml.ArrayFeatureExtractor, ai.onnx.ml.LinearClassifier, ai.onnx.ml.LinearRegressor, "
    "ai.onnx.ml.Normalizer, ai.onnx.ml.Scaler, ai.onnx.ml.TreeEnsemble, "
    "ai.onnx.ml.TreeEnsembleClassifier, ai.onnx.ml.TreeEnsembleRegressor"
)


# -- model building -------------------------------------------------------------------------


def value(
    name: str, shape: Sequence[int | str | None] | None, elem: int = TensorProto.FLOAT
) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def const(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(array, name)


def model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Sequence[TensorProto] = (),
    opset: int = 13,
) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "test", list(inputs), list(outputs), list(initializers))
    # IR version 8 is understood by every onnxruntime we support and allows opsets up to 17.
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    # onnx.checker wants a shape on every graph output; fill the ones given as None from
    # (lenient) shape inference, as an exporter would. Broken test graphs keep theirs empty.
    try:
        inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(m).graph.output}
    except Exception:
        inferred = {}
    for output in m.graph.output:
        known = inferred.get(output.name)
        if not output.type.tensor_type.HasField("shape") and known is not None:
            output.type.CopyFrom(known.type)
    return m


def weights(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def feeds_for(m: onnx.ModelProto, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random data for every real graph input, with BATCH rows on a symbolic leading dim."""
    initializers = {t.name for t in m.graph.initializer}
    feeds = {}
    for vi in m.graph.input:
        if vi.name in initializers:
            continue
        dims = [
            d.dim_value if d.HasField("dim_value") else BATCH for d in vi.type.tensor_type.shape.dim
        ]
        dtype = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        # Magnitudes in [0.5, 2] with random signs: no division by ~0, no saturated activations.
        data = rng.uniform(0.5, 2.0, dims) * rng.choice([-1.0, 1.0], dims)
        feeds[vi.name] = data.astype(dtype)
    return feeds


def check_against_onnxruntime(m: onnx.ModelProto, seed: int = 0) -> Graph:
    """Import `m`, run it on the IR interpreter and on onnxruntime, and compare every output."""
    graph = import_onnx(m)
    graph.verify()
    feeds = feeds_for(m, np.random.default_rng(seed))
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    actual = evaluate(graph, feeds)
    assert [v.name for v in graph.outputs] == [o.name for o in m.graph.output]
    assert len(actual) == len(expected)
    for got, want, out in zip(actual, expected, m.graph.output, strict=True):
        assert got.shape == want.shape, out.name
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=out.name)
    return graph


def kinds(graph: Graph) -> list[str]:
    return [op.kind for op in graph.ops]


# -- numerics against onnxruntime -----------------------------------------------------------

ACTIVATIONS = ("Relu", "Sigmoid", "Tanh")
WIDTHS = (6, 8, 5, 7, 4)


def mlp(layers: int, style: str, seed: int) -> onnx.ModelProto:
    """An MLP of `layers` dense layers; activations cycle through Relu, Sigmoid, Tanh."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    current = "x"
    for i in range(layers):
        k, n = WIDTHS[i], WIDTHS[i + 1]
        pre, out = f"pre{i}", f"act{i}"
        if style == "matmul_add":
            inits += [const(f"W{i}", weights(rng, k, n)), const(f"b{i}", weights(rng, n))]
            nodes.append(helper.make_node("MatMul", [current, f"W{i}"], [f"mm{i}"]))
            nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [pre]))
        else:
            trans_b = style == "gemm_transb"
            w = weights(rng, n, k) if trans_b else weights(rng, k, n)
            inits += [const(f"W{i}", w), const(f"b{i}", weights(rng, 1, n))]
            attrs: dict[str, Any] = {"transB": 1} if trans_b else {}
            if style == "gemm_alpha_beta":
                attrs = {"alpha": 0.5, "beta": -1.5}
            nodes.append(
                helper.make_node("Gemm", [current, f"W{i}", f"b{i}"], [pre], f"gemm{i}", **attrs)
            )
        nodes.append(helper.make_node(ACTIVATIONS[i % 3], [pre], [out], f"act{i}"))
        current = out
    return model(
        nodes, [value("x", ["N", WIDTHS[0]])], [value(current, ["N", WIDTHS[layers]])], inits
    )


@pytest.mark.parametrize("layers", [1, 2, 3, 4])
@pytest.mark.parametrize("style", ["gemm", "gemm_transb", "gemm_alpha_beta", "matmul_add"])
def test_mlp_matches_onnxruntime(layers: int, style: str) -> None:
    graph = check_against_onnxruntime(mlp(layers, style, seed=layers), seed=layers)
    assert graph.batch_axis
    assert graph.inputs[0].shape == (1, WIDTHS[0])
    assert kinds(graph).count("MatMul") == layers


@pytest.mark.parametrize("op_type", ["Relu", "Sigmoid", "Tanh", "Identity"])
def test_unary_matches_onnxruntime(op_type: str) -> None:
    m = model(
        [helper.make_node(op_type, ["x"], ["y"])], [value("x", ["N", 4, 5])], [value("y", None)]
    )
    graph = check_against_onnxruntime(m)
    assert kinds(graph) == [op_type]


@pytest.mark.parametrize(("c_shape", "beta"), [((4,), 1.0), ((1, 4), 2.0), ((), 1.0), (None, 1.0)])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_bias_broadcast_matches_onnxruntime(
    c_shape: tuple[int, ...] | None, beta: float, trans_b: int
) -> None:
    rng = np.random.default_rng(7)
    w = weights(rng, 4, 3) if trans_b else weights(rng, 3, 4)
    inits = [const("W", w)]
    inputs = ["x", "W"]
    if c_shape is not None:
        inits.append(const("C", weights(rng, *c_shape)))
        inputs.append("C")
    node = helper.make_node("Gemm", inputs, ["y"], "gemm", transB=trans_b, beta=beta, alpha=1.25)
    m = model([node], [value("x", ["N", 3])], [value("y", ["N", 4])], inits, opset=13)
    graph = check_against_onnxruntime(m)
    assert kinds(graph) == (["MatMul"] if c_shape is None else ["MatMul", "Add"])
    assert graph.outputs[0].name == "y"


def test_gemm_with_a_runtime_bias_scales_it_by_beta() -> None:
    rng = np.random.default_rng(8)
    node = helper.make_node("Gemm", ["x", "W", "c"], ["y"], "gemm", beta=0.5)
    m = model(
        [node],
        [value("x", ["N", 3]), value("c", ["N", 4])],
        [value("y", ["N", 4])],
        [const("W", weights(rng, 3, 4))],
    )
    assert kinds(check_against_onnxruntime(m)) == ["MatMul", "Mul", "Add"]


BINARY_FORMS = ("constant_right", "constant_left", "two_activations", "scalar", "row_broadcast")


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("form", BINARY_FORMS)
def test_binary_matches_onnxruntime(op_type: str, form: str) -> None:
    rng = np.random.default_rng(3)
    # Constants away from zero so Div stays well conditioned.
    c = (rng.uniform(0.5, 2.0, (4, 5)) * rng.choice([-1, 1], (4, 5))).astype(np.float32)
    inputs = [value("x", ["N", 4, 5])]
    inits: list[TensorProto] = []
    if form == "constant_right":
        operands, inits = ["x", "c"], [const("c", c)]
    elif form == "constant_left":
        operands, inits = ["c", "x"], [const("c", c)]
    elif form == "scalar":
        operands, inits = ["x", "c"], [const("c", np.array(1.5, np.float32))]
    elif form == "row_broadcast":
        operands, inits = ["x", "c"], [const("c", c[:1, :].reshape(1, 1, 5))]
    else:
        operands, inputs = ["x", "z"], [*inputs, value("z", ["N", 4, 5])]
    m = model([helper.make_node(op_type, operands, ["y"])], inputs, [value("y", None)], inits)
    assert kinds(check_against_onnxruntime(m)) == [op_type]


@pytest.mark.parametrize("axis", [None, 1, 2, 3, -1, -2])
def test_softmax_opset11_flattens_trailing_axes(axis: int | None) -> None:
    attrs: dict[str, Any] = {} if axis is None else {"axis": axis}
    m = model(
        [helper.make_node("Softmax", ["x"], ["y"], "sm", **attrs)],
        [value("x", ["N", 3, 4, 5])],
        [value("y", None)],
        opset=11,
    )
    graph = check_against_onnxruntime(m)
    last = axis in (3, -1)
    assert kinds(graph) == (["Softmax"] if last else ["Reshape", "Softmax", "Reshape"])


@pytest.mark.parametrize("axis", [None, 1, 2, -1, -2])
def test_softmax_opset13_uses_one_axis(axis: int | None) -> None:
    attrs: dict[str, Any] = {} if axis is None else {"axis": axis}
    m = model(
        [helper.make_node("Softmax", ["x"], ["y"], "sm", **attrs)],
        [value("x", ["N", 3, 4])],
        [value("y", None)],
        opset=13,
    )
    graph = check_against_onnxruntime(m)
    assert kinds(graph) == ["Softmax"]
    expected = {None: -1, 1: 1, 2: -1, -1: -1, -2: 1}[axis]
    assert graph.ops[0].attrs["axis"] == expected


@pytest.mark.parametrize(
    ("shape", "axis"), [(("N", 2, 3, 4), None), (("N", 2, 3, 4), -3), (("N", 1, 3, 4), 2)]
)
def test_flatten_matches_onnxruntime(shape: tuple[int | str, ...], axis: int | None) -> None:
    attrs: dict[str, Any] = {} if axis is None else {"axis": axis}
    m = model(
        [helper.make_node("Flatten", ["x"], ["y"], **attrs)],
        [value("x", list(shape))],
        [value("y", None)],
    )
    graph = check_against_onnxruntime(m)
    assert kinds(graph) == ["Reshape"]
    assert graph.outputs[0].shape == (1, 12 if axis == 2 else 24)


@pytest.mark.parametrize(
    ("target", "allowzero", "opset"),
    [
        ([0, -1], 0, 13),
        ([-1, 24], 0, 13),
        ([0, 6, 4], 0, 13),
        ([0, 0, 12], 0, 13),
        ([0, 2, -1, 2], 0, 13),
        ([-1, 4, 6], 1, 14),
    ],
)
def test_reshape_matches_onnxruntime(target: list[int], allowzero: int, opset: int) -> None:
    attrs: dict[str, Any] = {"allowzero": allowzero} if opset >= 14 else {}
    m = model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], **attrs)],
        [value("x", ["N", 2, 3, 4])],
        [value("y", None)],
        [const("shape", np.array(target, np.int64))],
        opset=opset,
    )
    graph = check_against_onnxruntime(m)
    assert kinds(graph) == ["Reshape"]
    assert "shape" not in {v.name for v in graph.constants}  # it only steered the conversion


def test_reshape_opset1_takes_the_shape_attribute() -> None:
    # onnxruntime does not run opset < 7; numpy's reshape is the reference here.
    m = model(
        [helper.make_node("Reshape", ["x"], ["y"], shape=[0, -1])],
        [value("x", ["N", 2, 3])],
        [value("y", ["N", 6])],
        opset=4,
    )
    graph = import_onnx(m)
    x = np.random.default_rng(0).standard_normal((BATCH, 2, 3))
    np.testing.assert_array_equal(evaluate(graph, {"x": x})[0], x.reshape(BATCH, 6))


@pytest.mark.parametrize("opset", [10, 12, 13])
def test_dropout_is_identity_at_inference(opset: int) -> None:
    rng = np.random.default_rng(4)
    inits = [const("W", weights(rng, 5, 3))]
    if opset >= 12:
        inits += [const("ratio", np.array(0.3, np.float32)), const("train", np.array(False))]
        node = helper.make_node("Dropout", ["h", "ratio", "train"], ["d", "mask"], "drop")
    else:
        node = helper.make_node("Dropout", ["h"], ["d", "mask"], "drop", ratio=0.3)
    m = model(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            node,
            helper.make_node("Relu", ["d"], ["y"]),
        ],
        [value("x", ["N", 5])],
        [value("y", ["N", 3])],
        inits,
        opset=opset,
    )
    assert kinds(check_against_onnxruntime(m)) == ["MatMul", "Identity", "Relu"]


def test_constant_nodes_of_every_attribute_kind() -> None:
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("Constant", [], ["t"], value=const("t", weights(rng, 1, 6))),
        helper.make_node("Constant", [], ["f"], value_float=0.25),
        helper.make_node("Constant", [], ["fs"], value_floats=[1.0, -2.0, 3.0, 0.5, 1.5, 2.0]),
        helper.make_node("Constant", [], ["s"], value_ints=[0, 2, 3]),
        helper.make_node("Constant", [], ["i"], value_int=7),
        helper.make_node("Add", ["x", "t"], ["a"]),
        helper.make_node("Mul", ["a", "f"], ["b"]),
        helper.make_node("Sub", ["b", "fs"], ["c"]),
        helper.make_node("Reshape", ["c", "s"], ["y"]),
    ]
    m = model(nodes, [value("x", ["N", 6])], [value("y", ["N", 2, 3])])
    graph = check_against_onnxruntime(m)
    assert kinds(graph) == ["Add", "Mul", "Sub", "Reshape"]
    assert "i" not in {v.name for v in graph.constants}  # unused constants do not reach the IR


def test_constant_subgraphs_are_folded() -> None:
    rng = np.random.default_rng(6)
    nodes = [
        # W = reshape(W1 + W2, (4, 3)), b = 2 * b0: all known at import time.
        helper.make_node("Add", ["W1", "W2"], ["Wsum"]),
        helper.make_node("Reshape", ["Wsum", "wshape"], ["W"]),
        helper.make_node("Constant", [], ["two"], value_float=2.0),
        helper.make_node("Mul", ["b0", "two"], ["b"]),
        helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["y"]),
        helper.make_node("Identity", ["b"], ["bias_out"]),
    ]
    inits = [
        const("W1", weights(rng, 12)),
        const("W2", weights(rng, 12)),
        const("wshape", np.array([4, 3], np.int64)),
        const("b0", weights(rng, 4)),
    ]
    m = model(nodes, [value("x", ["N", 3])], [value("y", ["N", 4]), value("bias_out", [4])], inits)
    graph = check_against_onnxruntime(m)
    assert kinds(graph) == ["MatMul", "Add", "Relu"]
    folded = {v.name: a for v, a in graph.constants.items()}
    assert folded["bias_out"].dtype == np.float32
    assert graph.outputs[1].name == "bias_out"


def test_matmul_with_a_vector_weight() -> None:
    rng = np.random.default_rng(9)
    m = model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [value("x", ["N", 5])],
        [value("y", ["N"])],
        [const("w", weights(rng, 5))],
    )
    assert kinds(check_against_onnxruntime(m)) == ["MatMul", "Reshape"]


def test_outputs_keep_model_order_and_names() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Sigmoid", ["x"], ["s"]),
        helper.make_node("Identity", ["x"], ["x_copy"]),
    ]
    outs = [value("s", ["N", 4]), value("x_copy", ["N", 4]), value("r", ["N", 4])]
    m = model(nodes, [value("x", ["N", 4])], outs)
    graph = check_against_onnxruntime(m)
    assert [v.name for v in graph.inputs] == ["x"]
    assert [v.name for v in graph.outputs] == ["s", "x_copy", "r"]
    assert graph.output_names == ["s", "x_copy", "r"]


def test_unnamed_nodes_are_located_by_index() -> None:
    m = model(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Tanh", ["r"], ["y"])],
        [value("x", ["N", 4])],
        [value("y", None)],
    )
    assert [op.name for op in import_onnx(m).ops] == ["#0 Relu", "#1 Tanh"]


def test_initializers_listed_as_inputs_are_constants() -> None:
    rng = np.random.default_rng(10)
    m = model(
        [helper.make_node("Gemm", ["x", "W", "b"], ["y"])],
        [value("x", ["N", 3]), value("W", [3, 2]), value("b", [2])],  # old exporter style
        [value("y", ["N", 2])],
        [const("W", weights(rng, 3, 2)), const("b", weights(rng, 2))],
    )
    graph = check_against_onnxruntime(m)
    assert [v.name for v in graph.inputs] == ["x"]
    assert {v.name for v in graph.constants} == {"W", "b"}


def test_nodes_out_of_order_are_sorted() -> None:
    m = model(
        [helper.make_node("Tanh", ["r"], ["y"]), helper.make_node("Relu", ["x"], ["r"])],
        [value("x", ["N", 4])],
        [value("y", ["N", 4])],
    )
    assert kinds(check_against_onnxruntime(m)) == ["Relu", "Tanh"]


def test_float64_inputs_are_accepted() -> None:
    m = model(
        [helper.make_node("Sigmoid", ["x"], ["y"])],
        [value("x", ["N", 4], TensorProto.DOUBLE)],
        [value("y", None, TensorProto.DOUBLE)],
    )
    assert check_against_onnxruntime(m).inputs[0].type.dtype == "float64"


@pytest.mark.parametrize(
    ("shape", "batch_axis", "ir_shape"),
    [
        (["N", 4], True, (1, 4)),
        ([None, 4], True, (1, 4)),
        ([1, 4], True, (1, 4)),
        ([2, 4], True, (1, 4)),  # a fixed batch is a batch axis too (issue 11)
        ([4], False, (4,)),
    ],
)
def test_batch_axis_decision(
    shape: list[int | str | None], batch_axis: bool, ir_shape: tuple[int, ...]
) -> None:
    m = model([helper.make_node("Relu", ["x"], ["y"])], [value("x", shape)], [value("y", None)])
    graph = import_onnx(m)
    assert graph.batch_axis is batch_axis
    assert graph.inputs[0].shape == ir_shape
    assert graph.outputs[0].shape == ir_shape


def test_model_loads_from_path_and_bytes(tmp_path: Path) -> None:
    m = mlp(2, "gemm", seed=0)
    path = tmp_path / "mlp.onnx"
    onnx.save(m, path)
    for source in (path, str(path), m.SerializeToString()):
        assert kinds(import_onnx(source)) == kinds(import_onnx(m))


# -- the registry ---------------------------------------------------------------------------


def test_registry_picks_the_newest_version_not_above_the_opset() -> None:
    loc = NodeLoc("sm", "Softmax")
    assert lookup("", "Softmax", 11, loc).since == 1
    assert lookup("", "Softmax", 13, loc).since == 13
    assert lookup("ai.onnx", "Softmax", 18, loc).since == 13
    assert ", ".join(supported_op_types()) == SUPPORTED


def test_registry_rejects_a_duplicate_version() -> None:
    with pytest.raises(ValueError, match="two converters for 'Relu' since opset 1"):
        converter("Relu")(lambda ctx: [])


# -- errors ---------------------------------------------------------------------------------


def raises(m: onnx.ModelProto | bytes | str | Path, loc: NodeLoc | None) -> str:
    """Import `m`, expecting a FrontendError at `loc`; returns its message."""
    with pytest.raises(FrontendError) as info:
        import_onnx(m)
    assert info.value.loc == loc
    return str(info.value.message)


def test_unsupported_op_names_the_node_and_the_supported_set() -> None:
    rng = np.random.default_rng(11)
    m = model(
        [helper.make_node("ConvTranspose", ["x", "k"], ["y"], "conv1")],
        [value("x", ["N", 1, 5, 5])],
        [value("y", None)],
        [const("k", weights(rng, 1, 2, 3, 3))],
    )
    with pytest.raises(FrontendError) as info:
        import_onnx(m)
    assert str(info.value) == (
        f"node 'conv1' (ConvTranspose): unsupported op type 'ConvTranspose'; supported op types: "
        f"{SUPPORTED}, {ML_SUPPORTED}"
    )
    assert info.value.loc == NodeLoc("conv1", "ConvTranspose")
    m.graph.node[0].name = ""
    raises(m, NodeLoc("#0 ConvTranspose", "ConvTranspose"))


def test_op_of_another_domain_is_unsupported() -> None:
    m = model(
        [helper.make_node("Foo", ["x"], ["y"], "foo", domain="com.example")],
        [value("x", ["N", 4])],
        [value("y", None)],
    )
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    assert raises(m, NodeLoc("foo", "Foo")).startswith("unsupported op type 'com.example.Foo'")


def test_op_older_than_its_converter() -> None:
    m = model(
        [helper.make_node("Add", ["x", "x"], ["y"], "add")],
        [value("x", ["N", 4])],
        [value("y", None)],
        opset=6,
    )
    message = raises(m, NodeLoc("add", "Add"))
    assert message == "'Add' is supported from opset 7, but the model imports opset 6"


def test_dynamic_matmul_imports_as_a_product_of_activations() -> None:
    m = model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], "mm")],
        [value("x", [2, 4]), value("w", [4, 3])],
        [value("y", None)],
    )
    graph = import_onnx(m)
    assert kinds(graph) == ["MatMul"] and graph.ops[0].outputs[0].shape == (2, 3)


def test_dynamic_matmul_by_a_vector() -> None:
    m = model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], "mm")],
        [value("x", [2, 4]), value("w", [4])],
        [value("y", None)],
    )
    message = raises(m, NodeLoc("mm", "MatMul"))
    assert message.startswith("MatMul of 'x' (2, 4) by 'w' (4,): a product of run-time operands")


def test_dynamic_gemm_weight() -> None:
    m = model(
        [helper.make_node("Gemm", ["x", "w"], ["y"], "fc")],
        [value("x", [2, 4]), value("w", [4, 3])],
        [value("y", None)],
    )
    assert raises(m, NodeLoc("fc", "Gemm")).startswith("dynamic weight not supported yet")


def test_dynamic_conv_kernel() -> None:
    """A kernel computed at run time (here: the ReLU of a graph input) cannot be programmed
    into the crossbars: the error names the Conv node and the operand."""
    m = model(
        [
            helper.make_node("Relu", ["k"], ["k_relu"], "prep"),
            helper.make_node("Conv", ["x", "k_relu"], ["y"], "conv"),
        ],
        [value("x", [1, 1, 5, 5]), value("k", [2, 1, 3, 3])],
        [value("y", None)],
    )
    message = raises(m, NodeLoc("conv", "Conv"))
    assert message.startswith("dynamic weight not supported yet: the kernel W of Conv")
    assert "'k_relu'" in message


def test_gemm_trans_a_on_an_activation() -> None:
    rng = np.random.default_rng(12)
    m = model(
        [helper.make_node("Gemm", ["x", "W"], ["y"], "fc", transA=1)],
        [value("x", [4, "N"])],
        [value("y", None)],
        [const("W", weights(rng, 4, 3))],
    )
    # The leading dim 4 is not a batch axis, so the symbolic dim 1 is reported first.
    assert "dimension 1 of graph input 'x' is symbolic" in raises(m, NodeLoc("x", "graph input"))
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 2
    message = raises(m, NodeLoc("fc", "Gemm"))
    assert message.startswith("transA=1 is supported only when A is a constant")


def test_non_float_input() -> None:
    m = model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [value("x", ["N", 4], TensorProto.INT64)],
        [value("y", None, TensorProto.INT64)],
    )
    message = raises(m, NodeLoc("x", "graph input"))
    assert message == (
        "graph input 'x' has element type int64; expected float32 (float64 and float16 are "
        "accepted too)"
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an onnx model at all",
        b"\x08\x07\x12\x05hello",  # valid protobuf fields, no graph
        bytes(np.random.default_rng(13).integers(0, 256, 200, dtype=np.uint8)),
        b"\xff" * 64,
    ],
)
def test_malformed_bytes(data: bytes) -> None:
    assert raises(data, None).startswith("not an ONNX model: ")


def test_corrupted_model_bytes_never_raise_anything_else() -> None:
    # Seeded byte flips in a valid model: each import either succeeds or is a FrontendError.
    data = mlp(3, "gemm_transb", seed=0).SerializeToString()
    rng = np.random.default_rng(15)
    outcomes = {"imported": 0, "rejected": 0}
    for _ in range(300):
        corrupted = bytearray(data)
        for position in rng.integers(0, len(data), rng.integers(1, 6)):
            corrupted[position] = rng.integers(0, 256)
        try:
            import_onnx(bytes(corrupted))
            outcomes["imported"] += 1
        except FrontendError:
            outcomes["rejected"] += 1
    assert outcomes["imported"] and outcomes["rejected"]


def test_truncated_model_bytes() -> None:
    data = mlp(2, "gemm", seed=0).SerializeToString()
    assert raises(data[: len(data) // 2], None) == (
        "not an ONNX model: cannot parse the given bytes as a serialised onnx.ModelProto"
    )


def test_unreadable_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.onnx"
    assert (
        raises(missing, None)
        == f"cannot read ONNX model {str(missing)!r}: No such file or directory"
    )
    text = tmp_path / "model.onnx"
    text.write_text("this is text\n")
    assert raises(text, None).startswith("not an ONNX model: ")


def test_wrong_source_type() -> None:
    with pytest.raises(
        FrontendError, match=r"expected a path, bytes or an onnx\.ModelProto, not 'int'"
    ):
        import_onnx(cast(Any, 5))


def test_unknown_symbolic_non_batch_dim() -> None:
    m = model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [value("x", ["N", "features"])],
        [value("y", None)],
    )
    message = raises(m, NodeLoc("x", "graph input"))
    assert message == (
        "dimension 1 of graph input 'x' is symbolic ('features'); imcc needs concrete shapes, "
        "and only a leading batch dimension may be symbolic"
    )


def test_symbolic_dim_without_a_batch_axis() -> None:
    m = model([helper.make_node("Relu", ["x"], ["y"])], [value("x", ["N"])], [value("y", None)])
    message = raises(m, NodeLoc("x", "graph input"))
    assert message.startswith("dimension 0 of graph input 'x' is symbolic ('N')")
    assert "the graph has no batch axis" in message


def test_node_reading_an_undefined_tensor() -> None:
    m = model(
        [
            helper.make_node("Relu", ["x"], ["r"], "relu1"),
            helper.make_node("Add", ["r", "ghost"], ["y"], "add1"),
        ],
        [value("x", ["N", 4])],
        [value("y", None)],
    )
    message = raises(m, NodeLoc("add1", "Add"))
    assert message == (
        "input 'ghost' is not defined: no graph input, initializer or node output has that name"
    )


def test_cycle() -> None:
    m = model(
        [
            helper.make_node("Relu", ["x"], ["r"], "entry"),
            helper.make_node("Add", ["r", "b"], ["a"], "add"),
            helper.make_node("Tanh", ["a"], ["b"], "tanh"),
        ],
        [value("x", ["N", 4])],
        [value("b", None)],
    )
    message = raises(m, NodeLoc("add", "Add"))
    assert message.startswith("the graph has a cycle: 'add' -> 'tanh' -> 'add'")


def test_output_never_produced() -> None:
    m = model([helper.make_node("Relu", ["x"], ["y"])], [value("x", ["N", 4])], [value("z", None)])
    assert "graph output 'z' is never produced" in raises(m, NodeLoc("z", "graph output"))


def test_tensor_defined_twice() -> None:
    m = model(
        [helper.make_node("Relu", ["x"], ["y"], "a"), helper.make_node("Tanh", ["x"], ["y"], "b")],
        [value("x", ["N", 4])],
        [value("y", None)],
    )
    assert "tensor 'y' is defined twice" in raises(m, NodeLoc("b", "Tanh"))


def test_graph_output_without_a_shape() -> None:
    m = model(
        [helper.make_node("Relu", ["x"], ["y"])], [value("x", ["N", 4])], [value("y", ["N", 4])]
    )
    m.graph.output[0].type.tensor_type.ClearField("shape")
    message = raises(m, NodeLoc("y", "graph output"))
    assert message == (
        "graph output 'y' declares no shape; ONNX requires one (its dimensions may be symbolic)"
    )


def test_graph_without_outputs_is_a_user_error_naming_the_graph() -> None:
    """Was "internal error: the imported graph is invalid: graph ... has no outputs"."""
    m = model([helper.make_node("Relu", ["x"], ["y"])], [value("x", ["N", 4])], [])
    m.graph.name = "headless"
    message = raises(m, NodeLoc("headless", "graph"))
    assert message == "graph 'headless' has no outputs; a model must declare at least one"


def test_shape_inference_failure_names_an_unnamed_node() -> None:
    """onnx writes `(op_type:Softmax)` without a node name for an unnamed node."""
    m = model(
        [helper.make_node("Softmax", ["x"], ["y"])], [value("x", [])], [value("y", [])], opset=17
    )
    message = raises(m, NodeLoc("#0 Softmax", "Softmax"))
    assert message == "ONNX shape inference fails: Input rank must be >= 1 for Softmax."


def test_non_utf8_string_attribute_is_an_error() -> None:
    m = model(
        [helper.make_node("Pad", ["x", "pads"], ["y"], "pad", mode=b"\xffedge")],
        [value("x", ["N", 4])],
        [value("y", ["N", 6])],
        [const("pads", np.array([0, 1, 0, 1], np.int64))],
    )
    message = raises(m, NodeLoc("pad", "Pad"))
    assert message == (
        "attribute 'mode' of Pad holds b'\\xffedge', which is not UTF-8 text; ONNX strings "
        "are UTF-8"
    )


def test_float16_inputs_are_accepted() -> None:
    m = model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [value("x", ["N", 4], TensorProto.FLOAT16)],
        [value("y", ["N", 4], TensorProto.FLOAT16)],
    )
    graph = import_onnx(m)
    assert [str(v.type) for v in (*graph.inputs, *graph.outputs)] == ["float16[1,4]"] * 2


def test_checker_failure_names_the_node() -> None:
    m = model(
        [helper.make_node("Relu", ["x"], ["y"], "relu1", bogus=3)],
        [value("x", ["N", 4])],
        [value("y", None)],
    )
    message = raises(m, NodeLoc("relu1", "Relu"))
    assert message.startswith("the model fails the ONNX checker: Unrecognized attribute: bogus")


def test_shape_inference_failure_names_the_node() -> None:
    rng = np.random.default_rng(14)
    m = model(
        [helper.make_node("MatMul", ["x", "W"], ["y"], "mm")],
        [value("x", ["N", 4])],
        [value("y", ["N", 3])],
        [const("W", weights(rng, 5, 3))],
    )
    message = raises(m, NodeLoc("mm", "MatMul"))
    assert message.startswith("ONNX shape inference fails:")
    assert "Incompatible dimensions" in message


def test_dropout_mask_in_use() -> None:
    m = model(
        [helper.make_node("Dropout", ["x"], ["d", "mask"], "drop")],
        [value("x", ["N", 4])],
        [value("d", None), value("mask", None, TensorProto.BOOL)],
    )
    assert "the mask output 'mask' of Dropout is not supported" in raises(
        m, NodeLoc("drop", "Dropout")
    )


def test_dropout_in_training_mode() -> None:
    m = model(
        [helper.make_node("Dropout", ["x", "", "train"], ["y"], "drop")],
        [value("x", ["N", 4])],
        [value("y", None)],
        [const("train", np.array(True))],
    )
    message = raises(m, NodeLoc("drop", "Dropout"))
    assert message == "Dropout in training mode is not supported: imcc imports for inference"


def test_sparse_constant() -> None:
    sparse = helper.make_sparse_tensor(
        const("v", np.array([1.0], np.float32)), const("i", np.array([1], np.int64)), [4]
    )
    m = model(
        [
            helper.make_node("Constant", [], ["c"], "c", sparse_value=sparse),
            helper.make_node("Add", ["x", "c"], ["y"]),
        ],
        [value("x", ["N", 4])],
        [value("y", None)],
    )
    assert (
        raises(m, NodeLoc("c", "Constant")) == "sparse constants (sparse_value) are not supported"
    )


def test_reshape_shape_as_a_graph_input() -> None:
    # A run-time target shape can only arrive as an int64 graph input, rejected up front.
    m = model(
        [helper.make_node("Reshape", ["x", "s"], ["y"], "rs")],
        [value("x", [2, 4]), value("s", [2], TensorProto.INT64)],
        [value("y", [None, None])],
    )
    assert "graph input 's' has element type int64" in raises(m, NodeLoc("s", "graph input"))


@pytest.mark.parametrize(
    ("node", "shape", "message"),
    [
        (
            helper.make_node("Softmax", ["x"], ["y"], "op", axis=0),
            ["N", 4],
            "Softmax at axis 0 would normalise across the batch axis",
        ),
        (
            helper.make_node("Flatten", ["x"], ["y"], "op", axis=0),
            ["N", 4],
            "Flatten at axis 0 would fold the batch axis into the features",
        ),
        (
            helper.make_node("Flatten", ["x"], ["y"], "op", axis=2),
            ["N", 2, 3],
            "Flatten at axis 2 would fold axes 1..1 of shape (1, 2, 3) into the batch axis",
        ),
        (
            helper.make_node("Reshape", ["x", "minus_one"], ["y"], "op"),
            ["N", 4],
            "Reshape of (1, 4) to [-1] gives (4,), which no longer has the batch axis first",
        ),
        (
            helper.make_node("Reshape", ["x", "one_minus_one"], ["y"], "op"),
            ["N", 4],
            "Reshape to [1, -1] would fold the batch axis into dimension 1 (-1); write 0 or -1 "
            "for the leading dimension",
        ),
        (
            helper.make_node("Add", ["x", "rows"], ["y"], "op"),
            ["N", 4],
            "Add broadcasts shapes (1, 4) and (3, 4) to (3, 4): a constant would spread across "
            "the batch axis (axis 0)",
        ),
        (
            helper.make_node("Add", ["x", "cube"], ["y"], "op"),
            ["N", 4],
            "Add broadcasts 'x' of shape (1, 4) to rank 3, which would move its batch axis off "
            "axis 0",
        ),
    ],
)
def test_ops_that_would_break_the_batch_axis(
    node: onnx.NodeProto, shape: list[int | str], message: str
) -> None:
    inits = [
        const("minus_one", np.array([-1], np.int64)),
        const("one_minus_one", np.array([1, -1], np.int64)),
        const("rows", np.ones((3, 4), np.float32)),
        const("cube", np.ones((1, 1, 4), np.float32)),
    ]
    m = model([node], [value("x", shape)], [value("y", None)], inits)
    assert raises(m, NodeLoc("op", node.op_type)) == message


def test_batch_axis_rules_do_not_apply_without_a_batch() -> None:
    m = model(
        [helper.make_node("Softmax", ["x"], ["y"], axis=0)],
        [value("x", [4])],
        [value("y", None)],
    )
    assert not check_against_onnxruntime(m).batch_axis


def test_no_raw_exception_for_a_model_without_opset() -> None:
    m = model([helper.make_node("Relu", ["x"], ["y"])], [value("x", ["N", 4])], [value("y", None)])
    del m.opset_import[:]
    assert "imports no opset for the default domain" in raises(m, None)


@pytest.mark.parametrize(
    ("op_type", "opset", "axes", "attrs", "expected"),
    [
        ("ReduceSum", 11, None, {"axes": [1, -1]}, ("sum", (1, 2))),
        ("ReduceSum", 13, [-1], {"keepdims": 0}, ("sum", (2,))),
        ("ReduceMean", 17, None, {"axes": [2]}, ("mean", (2,))),
        ("ReduceMean", 18, [1], {}, ("mean", (1,))),
        ("ReduceMax", 18, None, {"noop_with_empty_axes": 1}, None),
    ],
)
def test_reductions_take_axes_from_the_attribute_or_the_input(
    op_type: str,
    opset: int,
    axes: list[int] | None,
    attrs: dict[str, Any],
    expected: tuple[str, tuple[int, ...]] | None,
) -> None:
    inputs, inits = ["x"], []
    if axes is not None:
        inputs.append("axes")
        inits.append(const("axes", np.array(axes, np.int64)))
    m = model(
        [helper.make_node(op_type, inputs, ["y"], "r", **attrs)],
        [value("x", ["N", 3, 4])],
        [value("y", None)],
        inits,
        opset=opset,
    )
    graph = check_against_onnxruntime(m)
    if expected is None:  # no axes with noop_with_empty_axes: the input passes through
        assert kinds(graph) == ["Identity"]
    else:
        assert kinds(graph) == ["Reduce"]
        assert (graph.ops[0].attrs["mode"], graph.ops[0].attrs["axes"]) == expected


def test_reduction_over_the_batch_axis() -> None:
    m = model(
        [helper.make_node("ReduceMean", ["x"], ["y"], "r", axes=[0])],
        [value("x", ["N", 3])],
        [value("y", None)],
        opset=17,
    )
    assert raises(m, NodeLoc("r", "ReduceMean")) == (
        "ReduceMean over axis 0 would reduce across the batch axis"
    )
