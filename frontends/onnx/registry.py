"""The ONNX converter registry and the per-node context that converters work through.

Sits between the importer (which walks the ONNX graph) and converters.py (one `convert_<op>`
per ONNX op type and opset version). A converter takes a NodeContext and returns one IR Value
or constant array per ONNX output it produces.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import onnx
from onnx import helper

from imcc.compiler.ir.core import Graph, Op, Value
from imcc.isa.diagnostics import CompileError, FrontendError, NodeLoc

# What a converter gives back for each ONNX output: an IR value, or an array when the result
# is known at import time (Constant, or a folded computation on constants).
Result: TypeAlias = Value | np.ndarray
Converter: TypeAlias = Callable[["NodeContext"], Sequence[Result]]

DEFAULT_DOMAIN = ""


@dataclass(frozen=True, slots=True)
class ConverterEntry:
    """One converter: used for models whose opset for `domain` is at least `since`."""

    op_type: str
    since: int
    domain: str
    function: Converter


# (domain, op_type) -> entries sorted by `since`.
CONVERTERS: dict[tuple[str, str], list[ConverterEntry]] = {}


def converter(
    op_type: str, since: int = 1, domain: str = DEFAULT_DOMAIN
) -> Callable[[Converter], Converter]:
    """Register `convert_<op>` for `op_type` from opset version `since` on.

    The importer picks, for a model importing opset N, the entry with the largest `since <= N`,
    mirroring how ONNX versions operators (a new version supersedes the older one from then on).
    """

    def register(function: Converter) -> Converter:
        entries = CONVERTERS.setdefault((normalize_domain(domain), op_type), [])
        if any(entry.since == since for entry in entries):
            raise ValueError(f"two converters for {op_type!r} since opset {since}")
        entries.append(ConverterEntry(op_type, since, normalize_domain(domain), function))
        entries.sort(key=lambda entry: entry.since)
        return function

    return register


def normalize_domain(domain: str) -> str:
    return DEFAULT_DOMAIN if domain == "ai.onnx" else domain


def qualified(domain: str, op_type: str) -> str:
    domain = normalize_domain(domain)
    return f"{domain}.{op_type}" if domain else op_type


def supported_op_types(domain: str = DEFAULT_DOMAIN) -> tuple[str, ...]:
    """The op types with at least one converter in `domain`, sorted."""
    domain = normalize_domain(domain)
    return tuple(sorted(op for d, op in CONVERTERS if d == domain))


def lookup(domain: str, op_type: str, opset: int | None, loc: NodeLoc) -> ConverterEntry:
    """The converter for a node, or a FrontendError naming what is supported."""
    entries = CONVERTERS.get((normalize_domain(domain), op_type))
    name = qualified(domain, op_type)
    if not entries:
        supported = ", ".join(qualified(d, op) for d, op in sorted(CONVERTERS))
        raise FrontendError(f"unsupported op type {name!r}; supported op types: {supported}", loc)
    if opset is None:
        raise FrontendError(f"the model imports no opset for the domain of {name!r}", loc)
    position = bisect.bisect_right([entry.since for entry in entries], opset)
    if position == 0:
        raise FrontendError(
            f"{name!r} is supported from opset {entries[0].since}, but the model imports "
            f"opset {opset}",
            loc,
        )
    return entries[position - 1]


class NodeContext:
    """What a converter sees of one ONNX node: its operands, attributes and the graph to build.

    Operands are IR Values (activations) or numpy arrays (constants known at import time);
    `value(i)` turns a constant into a graph constant on demand, so constants that only steer
    conversion (a Reshape's target shape) never reach the IR. While folding (every operand a
    constant) `graph` is a scratch graph that the importer evaluates, and `batch_axis` is False.
    """

    def __init__(
        self,
        *,
        graph: Graph,
        node: onnx.NodeProto,
        loc: NodeLoc,
        opset: int,
        operands: Sequence[Result | None],
        materialize: Callable[[int], Value],
        new_name: Callable[[str], str],
        is_used: Callable[[str], bool],
        is_batch_sized: Callable[[str], bool],
        batch_axis: bool,
        batch_symbolic: bool,
        folding: bool,
        fixed_batch: int | None = None,
    ) -> None:
        self.graph = graph
        self.node = node
        self.loc = loc
        self.opset = opset
        self.batch_axis = batch_axis
        # True when the batch size is symbolic in the model (not fixed to 1 by the exporter).
        self.batch_symbolic = batch_symbolic
        # The model's own batch size N when its file fixes it (None for a symbolic batch or
        # no batch axis): the IR shapes still have 1 on the batch axis.
        self.fixed_batch = fixed_batch
        self.folding = folding
        self._operands = list(operands)
        self._materialize = materialize
        self._new_name = new_name
        self._is_used = is_used
        self._is_batch_sized = is_batch_sized
        self._attrs = {attr.name: attr for attr in node.attribute}

    @property
    def op_type(self) -> str:
        return self.node.op_type

    # -- errors -----------------------------------------------------------------------------
    def error(self, message: str) -> FrontendError:
        return FrontendError(message, self.loc)

    # -- attributes -------------------------------------------------------------------------
    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute's Python value (strings, and lists of them, decoded from UTF-8), or
        `default` when absent."""
        if name not in self._attrs:
            return default
        value = helper.get_attribute_value(self._attrs[name])
        if isinstance(value, bytes):
            return self._text(name, value)
        if isinstance(value, list) and value and all(isinstance(v, bytes) for v in value):
            return [self._text(name, v) for v in value]
        return value

    def _text(self, name: str, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(
                f"attribute {name!r} of {self.op_type} holds {raw[:40]!r}, which is not UTF-8 "
                "text; ONNX strings are UTF-8"
            ) from None

    # -- operands ---------------------------------------------------------------------------
    @property
    def num_inputs(self) -> int:
        return len(self._operands)

    def has_input(self, index: int) -> bool:
        return index < len(self._operands) and self._operands[index] is not None

    def input_name(self, index: int) -> str:
        return str(self.node.input[index])

    def constant(self, index: int) -> np.ndarray | None:
        """The operand's array if it is known at import time, else None."""
        operand = self._operands[index] if index < len(self._operands) else None
        return operand if isinstance(operand, np.ndarray) else None

    def value(self, index: int) -> Value:
        """The operand as an IR Value (a constant becomes a graph constant)."""
        if not self.has_input(index):
            raise self.error(f"{self.op_type} needs input {index}, which is missing")
        operand = self._operands[index]
        if isinstance(operand, Value):
            return operand
        return self._materialize(index)

    def features(self, index: int, ranks: tuple[int, ...] = (1, 2)) -> Value:
        """Operand `index` of an ONNX-ML op as an IR Value of feature rows, (N, features), or
        where `ranks` has 1, one vector of features: any other rank is an error."""
        x = self.value(index)
        if len(x.shape) not in ranks:
            expected = " or ".join(("(features,)", "(N, features)")[r - 1] for r in ranks)
            raise self.error(
                f"{self.op_type} needs its input {self.input_name(index)!r} of shape "
                f"{expected}, not {x.shape}"
            )
        return x

    def weight(self, index: int, role: str) -> np.ndarray:
        """A constant operand the crossbars will hold; run-time values are not supported yet."""
        array = self.constant(index)
        if array is None:
            raise self.error(
                f"dynamic weight not supported yet: {role} of {self.op_type} "
                f"({self.input_name(index)!r}) is computed at run time, but weights must be "
                "initializers, Constant nodes or computable from them at import"
            )
        return array

    def batch_sized(self, index: int) -> bool:
        """True if constant operand `index` was folded from the Shape or Size of an activation
        with a symbolic batch: its batch entry is the IR's 1, standing for the run's N."""
        return self.has_input(index) and self._is_batch_sized(self.input_name(index))

    def output_used(self, index: int) -> bool:
        return index < len(self.node.output) and self._is_used(self.node.output[index])

    # -- building ---------------------------------------------------------------------------
    def add_constant(self, hint: str, array: np.ndarray) -> Value:
        return self.graph.add_constant(self._new_name(hint), array)

    def emit(
        self,
        op_class: type[Op],
        inputs: Sequence[Value],
        *,
        output: int | None = None,
        hint: str = "",
        **attrs: Any,
    ) -> Value:
        """Append one single-result IR op for this node.

        `output=i` names the result after ONNX output i (so the compiler reports the model's
        own tensor names); otherwise the result is an intermediate named after `hint`.
        """
        if output is not None:
            name = self.node.output[output]
        else:
            base = self.node.output[0] if self.node.output else self.loc.node
            name = self._new_name(f"{base}.{hint or op_class.kind.lower()}")
        op = op_class(inputs, name=self.loc.node, **attrs)
        try:
            return self.graph.build(op, name)
        except CompileError as exc:
            raise self.error(exc.message) from None
