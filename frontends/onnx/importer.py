"""ONNX model -> graph IR: the first step of the pipeline.

Takes a path, serialised bytes or an onnx.ModelProto; validates it (structure, onnx.checker,
strict shape inference); fixes the batch axis; then converts node by node through the converter
registry, folding nodes whose operands are all constants. Gives a verified `Graph` whose input
and output Values carry the model's own tensor names. Every problem is a FrontendError.
"""

from __future__ import annotations

import heapq
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, checker, helper, numpy_helper, shape_inference
from onnx.external_data_helper import load_external_data_for_model, uses_external_data

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, TensorType, Value
from imcc.compiler.ir.interpreter import evaluate
from imcc.isa.diagnostics import CompileError, FrontendError, NodeLoc

from . import converters as _converters  # noqa: F401  (registers converters)
from . import convolution as _convolution  # noqa: F401  (registers the CNN converters)
from . import shapes as _shapes  # noqa: F401  (registers the shape and movement converters)
from . import trees as _trees  # noqa: F401  (registers the tree-ensemble converters)
from .registry import (
    DEFAULT_DOMAIN,
    NodeContext,
    Result,
    lookup,
    normalize_domain,
)

log = logging.getLogger(__name__)

ModelSource = str | os.PathLike[str] | bytes | bytearray | memoryview | onnx.ModelProto

# Element types accepted for graph inputs; the IR computes in float anyway.
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)


def import_onnx(model: ModelSource) -> Graph:
    """Import an ONNX model (path, bytes or ModelProto) as a verified graph IR.

    The leading axis of every input is the batch axis (`batch_axis` True, size 1 in the IR
    shapes) when every input has rank >= 2 and that axis is symbolic, or the same number N in
    every input (a fixed batch, as torch exports by default). A fixed-batch graph that mixes
    its samples (a converter refuses to move the batch axis, a result's shape is not the
    per-sample one, an output is a constant) is imported again without a batch axis: the
    whole [N, ...] tensor is then one sample, as ONNX computes it.
    """
    proto = _load(model)
    opsets = _opsets(proto)
    nodes = list(enumerate(proto.graph.node))
    for index, node in nodes:
        domain = normalize_domain(node.domain)
        lookup(domain, node.op_type, opsets.get(domain), node_loc(node, index))
    ordered = _topological_order(proto.graph)
    if [index for index, _ in ordered] != [index for index, _ in nodes]:
        log.info("the model's nodes are not in topological order; sorting them")
        proto = _with_nodes(proto, [node for _, node in ordered])
    _check_outputs(proto.graph)
    inputs = _graph_inputs(proto.graph)
    _check(proto, ordered)
    types = _infer_types(proto, inputs, ordered)
    if inputs.fixed_batch is None:
        return _Importer(proto, opsets, inputs, types).run(ordered)
    try:
        return _Importer(proto, opsets, inputs, types).run(ordered)
    except FrontendError as exc:
        reason = exc.message
    log.info(
        "the model's fixed batch of %d is imported as one sample (%s)", inputs.fixed_batch, reason
    )
    whole = _graph_inputs(proto.graph, batch=False)
    return _Importer(proto, opsets, whole, types).run(ordered)


def node_loc(node: onnx.NodeProto, index: int) -> NodeLoc:
    """A node's location: its name, or `#index op_type` when it has none."""
    return NodeLoc(node.name or f"#{index} {node.op_type}", node.op_type)


# -- loading --------------------------------------------------------------------------------


def _load(model: ModelSource) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        proto, what, base_dir = model, "the ModelProto", None
    else:
        if isinstance(model, bytes | bytearray | memoryview):
            data, what, base_dir = bytes(model), "the given bytes", None
        elif isinstance(model, str | os.PathLike):
            path = os.fspath(model)
            try:
                with open(path, "rb") as file:
                    data = file.read()
            except OSError as exc:
                raise FrontendError(
                    f"cannot read ONNX model {path!r}: {exc.strerror or exc}"
                ) from None
            what, base_dir = repr(path), os.path.dirname(os.path.abspath(path))
        else:
            raise FrontendError(
                f"expected a path, bytes or an onnx.ModelProto, not {type(model).__name__!r}"
            )
        proto = onnx.ModelProto()
        try:
            proto.ParseFromString(data)
        except Exception:  # protobuf raises DecodeError, or RuntimeError from the C++ backend
            raise FrontendError(
                f"not an ONNX model: cannot parse {what} as a serialised onnx.ModelProto"
            ) from None
    if proto.ir_version <= 0 or not proto.HasField("graph"):
        raise FrontendError(f"not an ONNX model: no ir_version or no graph in {what}")
    if any(uses_external_data(t) for t in proto.graph.initializer):
        if base_dir is None:
            raise FrontendError(
                f"tensors of {what} live in external data files; pass the model's path"
            )
        try:
            load_external_data_for_model(proto, base_dir)
        except (OSError, ValueError) as exc:
            raise FrontendError(f"cannot read the external data of {what}: {exc}") from None
    return proto


def _opsets(proto: onnx.ModelProto) -> dict[str, int]:
    opsets = {normalize_domain(o.domain): int(o.version) for o in proto.opset_import}
    # a model of ai.onnx.ml nodes only (onnxmltools' XGBoost export) needs no ai.onnx opset
    uses_default = any(normalize_domain(n.domain) == DEFAULT_DOMAIN for n in proto.graph.node)
    if DEFAULT_DOMAIN not in opsets and uses_default:
        raise FrontendError("the model imports no opset for the default domain 'ai.onnx'")
    return opsets


def _with_nodes(proto: onnx.ModelProto, nodes: Sequence[onnx.NodeProto]) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy


# -- structure and validation ---------------------------------------------------------------


def _topological_order(graph: onnx.GraphProto) -> list[tuple[int, onnx.NodeProto]]:
    """The nodes (with their model indices) in an order where every input is defined first.

    Raises for a tensor read but never defined, a tensor defined twice, a cycle, or a graph
    output nobody produces; onnx.checker reports some of these too, but without the node.
    """
    nodes = list(graph.node)
    available = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    available |= {t.values.name for t in graph.sparse_initializer}
    producer = _producers(nodes, available)
    for index, node in enumerate(nodes):
        for name in node.input:
            if name and name not in available and name not in producer:
                raise FrontendError(
                    f"input {name!r} is not defined: no graph input, initializer or node output "
                    "has that name",
                    node_loc(node, index),
                )
    depends = [{producer[name] for name in node.input if name in producer} for node in nodes]
    order = _kahn(depends)
    if len(order) < len(nodes):
        cycle = _find_cycle(depends, set(range(len(nodes))) - set(order))
        names = [node_loc(nodes[i], i).node for i in cycle]
        raise FrontendError(
            f"the graph has a cycle: {' -> '.join(map(repr, names))} -> {names[0]!r} "
            "(each node reads an output of the one before it)",
            node_loc(nodes[cycle[0]], cycle[0]),
        )
    for value in graph.output:
        if value.name not in available and value.name not in producer:
            raise FrontendError(
                f"graph output {value.name!r} is never produced: no node, graph input or "
                "initializer has that name",
                NodeLoc(value.name, "graph output"),
            )
    return [(index, nodes[index]) for index in order]


def _producers(nodes: list[onnx.NodeProto], available: set[str]) -> dict[str, int]:
    """Tensor name -> the index of the node that outputs it; a tensor defined twice raises."""
    producer: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in node.output:
            if not name:
                continue
            if name in available or name in producer:
                raise FrontendError(
                    f"tensor {name!r} is defined twice (a tensor must have one producer)",
                    node_loc(node, index),
                )
            producer[name] = index
    return producer


def _kahn(depends: list[set[int]]) -> list[int]:
    """Node indices in dependency order, smallest index first among the ready ones; nodes on
    a cycle (and those after them) are left out."""
    users: list[list[int]] = [[] for _ in depends]
    for index, sources in enumerate(depends):
        for source in sources:
            users[source].append(index)
    waiting = [len(sources) for sources in depends]
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)  # smallest index first: keep the model's order where it is valid
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for user in users[index]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    return order


def _find_cycle(depends: Sequence[set[int]], stuck: set[int]) -> list[int]:
    """A cycle among `stuck` nodes (each has an unfinished dependency), in data-flow order."""
    path: list[int] = []
    seen: dict[int, int] = {}
    index = min(stuck)
    while index not in seen:
        seen[index] = len(path)
        path.append(index)
        index = min(d for d in depends[index] if d in stuck)
    # `path` walks against the data flow (node -> its producer); reverse to read forwards.
    cycle = path[seen[index] :][::-1]
    start = cycle.index(min(cycle))
    return cycle[start:] + cycle[:start]


_CHECKER_NODE = re.compile(r"Name: ?(\S*) OpType: ?(\S+)")
_INFERENCE_NODE = re.compile(r"\(op_type:([^,)]+)(?:, node name: ([^)]*))?\)")


def _loc_in(
    message: str, ordered: Sequence[tuple[int, onnx.NodeProto]], *, inference: bool
) -> NodeLoc | None:
    """The node an onnx checker / shape-inference message names, as a NodeLoc."""
    match = (_INFERENCE_NODE if inference else _CHECKER_NODE).search(message)
    if match is None:
        return None
    op_type, name = match.groups() if inference else match.groups()[::-1]
    if name:  # (None when onnx leaves an unnamed node's name out)
        return NodeLoc(name, op_type)
    unnamed = [(i, n) for i, n in ordered if not n.name and n.op_type == op_type]
    if len(unnamed) == 1:
        return node_loc(unnamed[0][1], unnamed[0][0])
    return NodeLoc(f"unnamed {op_type}", op_type)


def _first_line(message: str) -> str:
    text = message.split("==> Context:")[0].strip()
    return text.splitlines()[0] if text else message.strip()


def _check_outputs(graph: onnx.GraphProto) -> None:
    """Graph outputs must declare a tensor type with a shape (onnx.checker says so without
    naming the output)."""
    if not graph.output:
        raise FrontendError(
            f"graph {graph.name!r} has no outputs; a model must declare at least one",
            NodeLoc(graph.name or "model", "graph"),
        )
    for value in graph.output:
        loc = NodeLoc(value.name, "graph output")
        if value.type.WhichOneof("value") != "tensor_type":
            kind = (value.type.WhichOneof("value") or "untyped").replace("_type", "")
            raise FrontendError(
                f"graph output {value.name!r} is declared {kind}, not a tensor; {kind} "
                "values are not supported",
                loc,
            )
        if not value.type.tensor_type.HasField("shape"):
            raise FrontendError(
                f"graph output {value.name!r} declares no shape; ONNX requires one (its "
                "dimensions may be symbolic)",
                loc,
            )


def _check(proto: onnx.ModelProto, ordered: Sequence[tuple[int, onnx.NodeProto]]) -> None:
    try:
        checker.check_model(proto)
    except Exception as exc:  # ValidationError, or errors of the C++ checker on odd protos
        message = str(exc)
        raise FrontendError(
            f"the model fails the ONNX checker: {_first_line(message)}",
            _loc_in(message, ordered, inference=False),
        ) from None


@dataclass(frozen=True, slots=True)
class _Inputs:
    """The graph inputs that are not initializers, with IR types, and the batch decision:
    `batch_symbolic` when the model leaves the batch size open, else `fixed_batch` is the
    size N that every input's leading axis has (None without a batch axis)."""

    types: tuple[tuple[str, TensorType], ...]
    batch_axis: bool
    batch_symbolic: bool
    fixed_batch: int | None = None


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    """Each dim as an int, a symbolic name, or None when unknown."""
    dims: list[int | str | None] = []
    for dim in value.type.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or None)
    return dims


def _graph_inputs(graph: onnx.GraphProto, *, batch: bool = True) -> _Inputs:
    """The graph's inputs and its batch decision (`batch=False`: no batch axis, whatever the
    shapes)."""
    initializers = {t.name for t in graph.initializer}
    # Old exporters list every initializer among the inputs too; those are constants.
    real = [v for v in graph.input if v.name not in initializers]
    shapes: list[list[int | str | None]] = []
    for value in real:
        loc = NodeLoc(value.name, "graph input")
        if value.type.WhichOneof("value") != "tensor_type":
            kind = (value.type.WhichOneof("value") or "untyped").replace("_type", "")
            raise FrontendError(
                f"graph input {value.name!r} is declared {kind}, not a tensor; {kind} "
                "values are not supported",
                loc,
            )
        elem = value.type.tensor_type.elem_type
        if elem not in _FLOAT_TYPES:
            raise FrontendError(
                f"graph input {value.name!r} has element type {_type_name(elem)}; expected "
                "float32 (float64 and float16 are accepted too)",
                loc,
            )
        if not value.type.tensor_type.HasField("shape"):
            raise FrontendError(f"graph input {value.name!r} has no shape", loc)
        shapes.append(_dims(value))
    batch_axis, batch_symbolic, fixed_batch = batch and _batch_of(shapes), False, None
    if batch_axis:
        leading = {dims[0] for dims in shapes}
        batch_symbolic = any(not isinstance(dim, int) for dim in leading)
        fixed = {dim for dim in leading if isinstance(dim, int)}
        fixed_batch = None if batch_symbolic else int(fixed.pop())
    types: list[tuple[str, TensorType]] = []
    for value, dims in zip(real, shapes, strict=True):
        concrete: list[int] = []
        for axis, dim in enumerate(dims):
            if axis == 0 and batch_axis:
                concrete.append(1)
            elif isinstance(dim, int):
                concrete.append(dim)
            else:
                what = f"symbolic ({dim!r})" if dim else "unknown"
                reason = (
                    "; the graph has no batch axis, since that needs every input to have rank "
                    ">= 2 and a leading dimension that is symbolic in all of them, or the same "
                    "number in all of them"
                    if axis == 0
                    else ""
                )
                raise FrontendError(
                    f"dimension {axis} of graph input {value.name!r} is {what}; "
                    f"imcc needs concrete shapes, and only a leading batch dimension may be "
                    f"symbolic{reason}",
                    NodeLoc(value.name, "graph input"),
                )
        dtype = str(helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
        types.append((value.name, TensorType(tuple(concrete), dtype)))
    return _Inputs(tuple(types), batch_axis, batch_symbolic, fixed_batch)


def _batch_of(shapes: Sequence[Sequence[int | str | None]]) -> bool:
    """True when the leading axis of every input can be the batch axis: every input has
    rank >= 2, and the leading dims are symbolic (a size 1 may stand beside them, as some
    exporters write), or all the same number."""
    if not shapes or any(len(dims) < 2 for dims in shapes):
        return False
    leading = [dims[0] for dims in shapes]
    numbers = {dim for dim in leading if isinstance(dim, int)}
    if len(numbers) < len(set(leading)):  # some are symbolic
        return numbers <= {1}
    return len(numbers) == 1 and min(numbers) >= 1


def _type_name(elem_type: int) -> str:
    try:
        return str(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        pass
    try:
        return TensorProto.DataType.Name(elem_type).lower() if elem_type else "undefined"
    except ValueError:
        return f"unknown ({elem_type})"


@dataclass(frozen=True, slots=True)
class _Inferred:
    elem_type: int
    shape: tuple[int, ...] | None  # None when not fully known


def _infer_types(
    proto: onnx.ModelProto, inputs: _Inputs, ordered: Sequence[tuple[int, onnx.NodeProto]]
) -> dict[str, _Inferred]:
    """Strict ONNX shape inference with a symbolic batch fixed to 1, so every value is
    concrete. A fixed batch keeps its size N: `_bind` checks the per-sample results against
    ONNX's shapes for the whole batch.

    Only what the ops imply counts: the shapes a model declares for its outputs and
    value_info are dropped first (exporters get them wrong: skl2onnx declares (N, 2) for a
    binary classifier's one probability column, and onnxruntime gives what the op computes)."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    del model.graph.value_info[:]
    for value in model.graph.output:
        if value.type.WhichOneof("value") == "tensor_type":
            value.type.tensor_type.ClearField("shape")
    ir_types = dict(inputs.types)
    for value in model.graph.input:
        if value.name in ir_types and inputs.batch_symbolic:
            dim = value.type.tensor_type.shape.dim[0]
            dim.Clear()
            dim.dim_value = 1
    try:
        model = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:  # InferenceError, or ValidationError for bad attributes
        message = str(exc)
        text = message.split("[ShapeInferenceError]")[-1].split("[TypeInferenceError]")[-1]
        raise FrontendError(
            f"ONNX shape inference fails: {text.strip()}",
            _loc_in(message, ordered, inference=True),
        ) from None
    found: dict[str, _Inferred] = {}
    for value in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        if value.type.WhichOneof("value") != "tensor_type":
            continue
        tensor = value.type.tensor_type
        dims = _dims(value) if tensor.HasField("shape") else None
        shape = None
        if dims is not None and all(isinstance(d, int) for d in dims):
            shape = tuple(int(d) for d in dims if isinstance(d, int))
        found[value.name] = _Inferred(tensor.elem_type, shape)
    return found


# -- conversion -----------------------------------------------------------------------------


def _scratch_constants(
    graph: Graph, node: onnx.NodeProto, operands: Sequence[Result | None]
) -> Callable[[int], Value]:
    """Materialise constant operand i into a folding scratch graph, once."""
    made: dict[int, Value] = {}

    def materialize(index: int) -> Value:
        if index not in made:
            array = operands[index]
            assert isinstance(array, np.ndarray), "folding sees constant operands only"
            made[index] = graph.add_constant(node.input[index], array)
        return made[index]

    return materialize


class _Importer:
    """Walks the sorted nodes once, keeping ONNX tensor name -> IR Value or constant array."""

    def __init__(
        self,
        proto: onnx.ModelProto,
        opsets: dict[str, int],
        inputs: _Inputs,
        types: dict[str, _Inferred],
    ) -> None:
        self.proto = proto
        self.opsets = opsets
        self.inputs = inputs
        self.types = types
        self.graph = Graph(proto.graph.name or "model")
        self.graph.batch_axis = inputs.batch_axis
        self.values: dict[str, Value] = {}
        self.constants: dict[str, np.ndarray] = {}
        self.constant_values: dict[str, Value] = {}
        graph = proto.graph
        # Every ONNX tensor name is reserved, so intermediates never take one and the model's
        # names reach the IR unchanged.
        self.names: set[str] = {v.name for v in graph.input} | {t.name for t in graph.initializer}
        self.names |= {name for node in graph.node for name in node.output if name}
        self.consumed = {name for node in graph.node for name in node.input if name}
        self.consumed |= {v.name for v in graph.output}
        self.batch_sized: set[str] = set()  # see NodeContext.batch_sized

    def run(self, ordered: Sequence[tuple[int, onnx.NodeProto]]) -> Graph:
        for name, type in self.inputs.types:
            self.values[name] = self.graph.add_input(name, type)
        for tensor in self.proto.graph.initializer:
            try:
                self.constants[tensor.name] = numpy_helper.to_array(tensor)
            except (ValueError, TypeError) as exc:
                raise FrontendError(
                    f"cannot read initializer {tensor.name!r}: {exc}",
                    NodeLoc(tensor.name, "initializer"),
                ) from None
        for tensor in self.proto.graph.sparse_initializer:
            raise FrontendError(
                f"sparse initializer {tensor.values.name!r} is not supported",
                NodeLoc(tensor.values.name, "initializer"),
            )
        for index, node in ordered:
            self._convert(index, node)
        for output in self.proto.graph.output:
            self.graph.outputs.append(self._output(output.name))
        # Passes may later replace an output value; the model's names for them stay fixed.
        self.graph.output_names = [output.name for output in self.proto.graph.output]
        self.graph.remove_dead()
        try:
            self.graph.verify()
        except CompileError as exc:
            raise FrontendError(f"internal error: the imported graph is invalid: {exc}") from None
        return self.graph

    # -- helpers given to converters --------------------------------------------------------
    def _new_name(self, hint: str) -> str:
        name, n = hint, 1
        while name in self.names:
            name, n = f"{hint}.{n}", n + 1
        self.names.add(name)
        return name

    def _constant_value(self, name: str) -> Value:
        if name not in self.constant_values:
            self.constant_values[name] = self.graph.add_constant(name, self.constants[name])
        return self.constant_values[name]

    # -- one node ---------------------------------------------------------------------------
    def _convert(self, index: int, node: onnx.NodeProto) -> None:
        loc = node_loc(node, index)
        domain = normalize_domain(node.domain)
        entry = lookup(domain, node.op_type, self.opsets.get(domain), loc)
        operands: list[Result | None] = []
        for name in node.input:
            if not name:
                operands.append(None)
            elif name in self.values:
                operands.append(self.values[name])
            else:
                operands.append(self.constants[name])
        folding = not any(isinstance(operand, Value) for operand in operands)
        if folding:
            # Constant operands only: convert onto a scratch graph, then evaluate it.
            graph = Graph(f"fold {loc.node}")
            graph.batch_axis = False
            materialize = _scratch_constants(graph, node, operands)
        else:
            graph = self.graph
            materialize = lambda i: self._constant_value(node.input[i])  # noqa: E731
        ctx = NodeContext(
            graph=graph,
            node=node,
            loc=loc,
            opset=self.opsets[domain],
            operands=operands,
            materialize=materialize,
            new_name=self._new_name,
            is_used=self.consumed.__contains__,
            is_batch_sized=self.batch_sized.__contains__,
            batch_axis=self.graph.batch_axis and not folding,
            batch_symbolic=self.inputs.batch_symbolic,
            fixed_batch=self.inputs.fixed_batch if self.graph.batch_axis and not folding else None,
            folding=folding,
        )
        try:
            results = list(entry.function(ctx))
        except CompileError as exc:
            raise FrontendError(exc.message, loc) from None
        assert len(results) <= len(node.output), f"{node.op_type} converter gave extra results"
        if folding:
            results = self._fold(graph, node, loc, operands, results)
        # Shapes that carry the symbolic batch size (as 1), and what is folded from them.
        if self.inputs.batch_symbolic and (
            (node.op_type in ("Shape", "Size") and not folding)
            or (folding and any(name in self.batch_sized for name in node.input))
        ):
            self.batch_sized.update(name for name in node.output if name)
        for position, name in enumerate(node.output):
            if not name:
                continue
            if position >= len(results):
                if name in self.consumed:
                    raise FrontendError(
                        f"output {position} ({name!r}) of {node.op_type} is not supported",
                        loc,
                    )
                continue
            self._bind(name, results[position], node, loc)

    def _fold(
        self,
        scratch: Graph,
        node: onnx.NodeProto,
        loc: NodeLoc,
        operands: Sequence[Result | None],
        results: Sequence[Result],
    ) -> list[Result]:
        """Evaluate a constant node's scratch graph with the IR interpreter (in float64),
        then give each result the element type ONNX infers for it."""
        pending = [r for r in results if isinstance(r, Value)]
        arrays: dict[int, np.ndarray] = {}
        if pending:
            scratch.outputs = pending
            try:
                evaluated = evaluate(scratch, {})
            except CompileError as exc:
                raise FrontendError(f"cannot fold this constant node: {exc.message}", loc) from None
            arrays = {id(v): a for v, a in zip(pending, evaluated, strict=True)}
        first = next((o for o in operands if isinstance(o, np.ndarray)), None)
        folded: list[Result] = []
        for name, result in zip(node.output, results, strict=False):
            array = arrays[id(result)] if isinstance(result, Value) else np.asarray(result)
            inferred = self.types.get(name)
            if inferred is not None and inferred.elem_type:
                dtype = np.dtype(helper.tensor_dtype_to_np_dtype(inferred.elem_type))
            else:
                dtype = first.dtype if first is not None else array.dtype
            folded.append(np.asarray(array, dtype=dtype))
        log.debug("folded constant node %s", loc)
        return folded

    def _bind(self, name: str, result: Result, node: onnx.NodeProto, loc: NodeLoc) -> None:
        """Record an ONNX output, checking it against ONNX shape inference and the batch axis.

        With a fixed batch N, ONNX's shapes are those of the whole batch: an activation's
        shape (1, ...) must be ONNX's (N, ...), and a constant's ONNX's own. A mismatch means
        the node mixes samples, and the importer falls back to no batch axis."""
        shape = tuple(result.shape)
        inferred = self.types.get(name)
        fixed = self.inputs.fixed_batch if self.graph.batch_axis else None
        expected = shape
        if fixed is not None and isinstance(result, Value) and shape:
            expected = (fixed, *shape[1:])
        if inferred is not None and inferred.shape is not None and inferred.shape != expected:
            if fixed is not None:
                raise FrontendError(
                    f"{node.op_type} gives {name!r} of shape {inferred.shape} for the model's "
                    f"batch of {fixed}, which is not {fixed} samples of shape {shape[1:]}",
                    loc,
                )
            raise FrontendError(
                f"internal error: the {node.op_type} converter made {name!r} of shape {shape}, "
                f"but ONNX shape inference gives {inferred.shape}",
                loc,
            )
        if isinstance(result, np.ndarray):
            self.constants[name] = result
            return
        if self.graph.batch_axis and (not shape or shape[0] != 1):
            raise FrontendError(
                f"{node.op_type} gives {name!r} of shape {shape}, which no longer has the "
                "batch axis first",
                loc,
            )
        self.values[name] = result

    def _output(self, name: str) -> Value:
        """The Value for a graph output, named exactly as in the model."""
        batched = self.inputs.fixed_batch is not None and self.graph.batch_axis
        if batched and name not in self.values:  # a constant has no batch axis: ONNX gives it once
            raise FrontendError(
                f"graph output {name!r} is a constant, not computed per sample",
                NodeLoc(name, "graph output"),
            )
        value = self.values[name] if name in self.values else self._constant_value(name)
        if value.name != name:
            # A converter handed back an existing value; give the output its own name.
            value = self.graph.build(ops.Identity([value], name=name), name)
        return value
