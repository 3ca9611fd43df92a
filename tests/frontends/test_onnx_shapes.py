"""Shape arithmetic folds at import; movement ops on activations become one Select each and
match onnxruntime; ops that would mix samples, or need run-time shapes, are refused by name.
(The ONNX node tests in tests/backend cover each op's semantics case by case.)"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import imcc
from imcc.compiler.ir import ops
from imcc.frontends.onnx import import_onnx
from imcc.isa.diagnostics import FrontendError
from imcc.runtime.simulator import Simulator
from tests.compiler.codegen.graphs import executed
from tests.conftest import onnxruntime_run


def _model(nodes: list[onnx.NodeProto], out_shape: list[object], inits: list[onnx.TensorProto],
           in_shape: tuple[object, ...] = ("N", 2, 3, 4)) -> onnx.ModelProto:  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _ints(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _run_both(model: onnx.ModelProto, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Pure data movement: with 16-bit nothing is quantised (no crossbar), so exact equality.
    binary = imcc.compile(model)
    got = Simulator(binary).run({"x": x}).outputs["y"]
    return got, onnxruntime_run(model, x)


def test_torch_flatten_chain_folds_to_a_reshape() -> None:
    """x.view(x.size(0), -1) as torch exports it: Shape -> Gather -> Unsqueeze -> Concat ->
    Reshape. Everything but the Reshape folds; the batch stays symbolic."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus_one"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = [_ints("zero", []), _ints("axes", [0]), _ints("minus_one", [-1])]
    inits[0] = numpy_helper.from_array(np.array(0, dtype=np.int64), "zero")
    model = _model(nodes, ["N", 24], inits)
    graph = import_onnx(model)
    assert [op.kind for op in graph.ops] == ["Reshape"]
    x = np.random.default_rng(0).standard_normal((3, 2, 3, 4)).astype(np.float32)
    got, expected = _run_both(model, x)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_on_an_activation_is_one_select(mode: str) -> None:
    nodes = [helper.make_node("Pad", ["x", "pads", "value"], ["y"], mode=mode)]
    inits = [
        _ints("pads", [0, 0, 1, 2, 0, 0, 2, -1]),  # a negative pad crops
        numpy_helper.from_array(np.array(0.5, dtype=np.float32), "value"),
    ]
    model = _model(nodes, ["N", 2, 6, 5], inits)
    assert [op.kind for op in import_onnx(model).ops] == ["Select"]
    x = np.random.default_rng(1).standard_normal((2, 2, 3, 4)).astype(np.float32)
    got, expected = _run_both(model, x)
    np.testing.assert_array_equal(got, expected)


def test_slice_split_and_concat_of_activations() -> None:
    nodes = [
        helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["s"]),
        helper.make_node("Split", ["x"], ["a", "b"], axis=3, num_outputs=2),
        helper.make_node("Concat", ["s", "a", "b"], ["y"], axis=1),
    ]
    # rows backwards from the last, every other column from the first
    inits = [_ints("starts", [-1, 0]), _ints("ends", [-100, 4]), _ints("axes", [2, 3]),
             _ints("steps", [-1, 2])]  # fmt: skip
    model = _model(nodes, ["N", 6, 3, 2], inits)
    kinds = [op.kind for op in import_onnx(model).ops]
    assert kinds == ["Select", "Select", "Select", "Concat"]
    x = np.random.default_rng(2).standard_normal((2, 2, 3, 4)).astype(np.float32)
    got, expected = _run_both(model, x)
    np.testing.assert_array_equal(got, expected)


def test_concat_of_activations_matches_onnxruntime() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["s"]),
        helper.make_node("Concat", ["r", "s", "x"], ["y"], axis=1),
    ]
    inits = [_ints("starts", [1]), _ints("ends", [2]), _ints("axes", [1])]
    model = _model(nodes, ["N", 5, 3, 4], inits)
    assert [op.kind for op in import_onnx(model).ops] == ["Relu", "Select", "Concat"]
    x = np.random.default_rng(3).standard_normal((2, 2, 3, 4)).astype(np.float32)
    got, expected = _run_both(model, x)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("node", "inits", "message"),
    [
        (helper.make_node("Slice", ["x", "s", "e", "a"], ["y"]),
         [_ints("s", [0]), _ints("e", [1]), _ints("a", [0])], "across the batch axis"),
        (helper.make_node("Concat", ["x", "x"], ["y"], axis=0), [], "batch axis"),
        (helper.make_node("Gather", ["x", "i"], ["y"], axis=0),
         [numpy_helper.from_array(np.array([0], dtype=np.int64), "i")], "across the batch axis"),
    ],
)  # fmt: skip
def test_ops_that_mix_samples_are_refused_by_node(
    node: onnx.NodeProto, inits: list[onnx.TensorProto], message: str
) -> None:
    node.name = "mixer"
    model = _model([node], ["a", "b", "c", "d"], inits)
    with pytest.raises(FrontendError, match=message) as info:
        import_onnx(model)
    assert "mixer" in str(info.value)


def test_run_time_pads_are_refused_by_node() -> None:
    nodes = [
        helper.make_node("ArgMax", ["x"], ["best"], axis=1, keepdims=0),  # int64, at run time
        helper.make_node("Pad", ["x", "best"], ["y"], name="padder"),
    ]
    with pytest.raises(FrontendError, match="computed at run time") as info:
        import_onnx(_model(nodes, ["N", "c", "h", "w"], []))
    assert "padder" in str(info.value)


def test_select_copies_runs_not_elements() -> None:
    """A crop of the inner axis copies one run per kept row: 2 x 3 rows of 3 words each."""
    nodes = [helper.make_node("Slice", ["x", "s", "e", "a"], ["y"])]
    model = _model(nodes, ["N", 2, 3, 3], [_ints("s", [1]), _ints("e", [4]), _ints("a", [3])])
    graph = import_onnx(model)
    (select,) = graph.ops
    assert isinstance(select, ops.Select)
    binary = imcc.compile(model)
    copies = [
        i
        for code in binary.program.code
        for _, i, _ in executed(code)
        if i.mnemonic.endswith(".copy")
    ]
    assert len(copies) == 6 and all(i.operands[-1] == 3 for i in copies)


def _bad(node: onnx.NodeProto, inits: list[onnx.TensorProto], out: list[object],
         in_shape: tuple[object, ...] = ("N", 2, 3, 4)) -> onnx.ModelProto:  # fmt: skip
    node.name = "bad"
    return _model([node], out, inits, in_shape)


def _floats(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (_bad(helper.make_node("Gather", ["x", "i"], ["y"], axis=3), [_ints("i", [7])],
              ["N", 2, 3, 1]), "indices out of range for axis 3 of size 4"),
        (_bad(helper.make_node("Pad", ["x", "p"], ["y"], mode="banana"),
              [_ints("p", [0, 0, 0, 1, 0, 0, 0, 0])], ["N", 2, 3, 5]),
         "Pad mode 'banana' is not one of constant, edge, reflect, wrap"),
        (_bad(helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect"),
              [_ints("p", [0, 0, 0, 0, 0, 0, 0, 3])], ["N", 2, 3, 4], ("N", 2, 3, 1)),
         "reflect padding of axis 3 needs at least 2 elements"),
        (_bad(helper.make_node("LRN", ["x"], ["y"], size=0), [], ["N", 2, 3, 4]),
         "LRN needs a positive size, not 0"),
        (_bad(helper.make_node("Range", ["a", "b", "c"], ["y"]),
              [_floats("a", 0.0), _floats("b", 3.0), _floats("c", 0.0)], ["n"]),
         "Range with delta 0 never ends"),
        (_model([helper.make_node("ArgMax", ["x"], ["i"], axis=3, keepdims=0),
                 helper.make_node("Gather", ["x", "i"], ["y"], name="bad", axis=3)],
                ["N", 2, 3, "a", "b", "c"], []),
         "Gather with indices computed at run time is not supported"),
    ],
)  # fmt: skip
def test_bad_shape_and_movement_nodes_are_named(model: onnx.ModelProto, message: str) -> None:
    with pytest.raises(FrontendError) as info:
        import_onnx(model)
    assert info.value.loc is not None and info.value.loc.node == "bad"
    assert message in str(info.value)
