"""The graph IR: typed tensor values, ops with `verify()`, and the Graph that passes rewrite.

Frontends build a Graph; passes in compiler/passes/ rewrite it in place; the `emit` pass reads
the final form. Values and ops are compared by identity (passes mutate them); types and
attributes are frozen values. Constant tensors live in `Graph.constants`, never inside ops.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, overload

import numpy as np

from imcc.isa.diagnostics import CompileError, NodeLoc


@dataclass(frozen=True, slots=True)
class TensorType:
    """Shape and element type of a value; -1 in `shape` is not allowed (shapes are concrete)."""

    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"


class Value:
    """An SSA value: produced by one op (or a graph input, or a constant)."""

    def __init__(self, name: str, type: TensorType) -> None:
        self.name = name
        self.type = type
        self.producer: Op | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    def __repr__(self) -> str:
        return f"%{self.name}:{self.type}"


T = TypeVar("T")


class Produced(Generic[T]):
    """A typed field of an op that a pass sets (`QDense.tiles` by `tile`, `Op.core` by
    `schedule`, ...): reading it before that pass ran is a CompileError naming the pass, or,
    for a field the pass may leave unset, gives `default`."""

    _REQUIRED: Any = object()

    def __init__(self, producer: str, default: Any = _REQUIRED) -> None:
        self.producer = producer
        self.default = default
        self.name = self.owner = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.owner = name, owner.__name__

    @overload
    def __get__(self, op: None, owner: type) -> Produced[T]: ...
    @overload
    def __get__(self, op: Op, owner: type) -> T: ...
    def __get__(self, op: Op | None, owner: type) -> Produced[T] | T:
        if op is None:
            return self
        try:
            value: T = op.produced[self.name]
        except KeyError:
            if self.default is not Produced._REQUIRED:
                return self.default  # type: ignore[no-any-return]
            raise op.error(
                f"{op.kind} has no {self.name}: the {self.producer!r} pass has not run on it"
            ) from None
        return value

    def __set__(self, op: Op, value: T) -> None:
        op.produced[self.name] = value


class Op:
    """Base of every IR op. Subclasses set `kind`, and may override `infer` and `check`.

    `attrs` holds plain values (ints, floats, strings, tuples); tensors go in the graph's
    constant table and are referenced as operand Values.
    """

    kind: ClassVar[str] = ""
    arity: ClassVar[tuple[int, int]] = (1, 1)  # min, max operands
    # the core that executes the op
    core: Produced[int] = Produced("schedule")

    def __init__(self, inputs: Sequence[Value], name: str = "", **attrs: Any) -> None:
        self.inputs: list[Value] = list(inputs)
        self.name = name or self.kind
        self.attrs: dict[str, Any] = dict(attrs)
        self.outputs: list[Value] = []
        self.produced: dict[str, Any] = {}  # the values of this op's Produced fields

    @property
    def loc(self) -> NodeLoc:
        return NodeLoc(self.name, self.kind)

    def error(self, message: str) -> CompileError:
        return CompileError(message, self.loc)

    def infer(self) -> list[TensorType]:
        """Output types from input types; the default keeps the first input's type."""
        return [self.inputs[0].type]

    def check(self, graph: Graph) -> None:
        """Op-specific invariants beyond arity and types; raise self.error(...)."""

    def verify(self, graph: Graph) -> None:
        lo, hi = self.arity
        if not lo <= len(self.inputs) <= hi:
            raise self.error(f"{self.kind} takes {lo}..{hi} operands, has {len(self.inputs)}")
        self.check(graph)
        expected = self.infer()
        actual = [v.type for v in self.outputs]
        if expected != actual:
            raise self.error(
                f"result types {[str(t) for t in actual]} do not match the inferred "
                f"{[str(t) for t in expected]}"
            )
        for value in self.outputs:
            if value.producer is not self:
                raise self.error(f"result {value!r} does not name this op as its producer")

    def __repr__(self) -> str:
        outs = ", ".join(map(repr, self.outputs))
        ins = ", ".join(f"%{v.name}" for v in self.inputs)
        fields = {**self.attrs, **self.produced}
        attrs = ", ".join(f"{k}={_short(v)}" for k, v in sorted(fields.items()))
        text = f"{outs} = {self.kind}({ins})"
        return f"{text} {{{attrs}}}  # {self.name}" if attrs else f"{text}  # {self.name}"


def _short(value: Any) -> str:
    text = repr(value.value if isinstance(value, enum.Enum) else value)
    return text if len(text) <= 60 else text[:57] + "..."


OpT = TypeVar("OpT", bound=Op)


class Graph:
    """A model as a list of ops in topological order, with its inputs, outputs and constants."""

    def __init__(self, name: str = "model") -> None:
        self.name = name
        # True when the leading axis of every input and output is a batch axis that the
        # binary processes one sample at a time (shapes here then have 1 there).
        self.batch_axis = True
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        # The model's names for its outputs; fixed before passes run, since rewrites may
        # replace an output value by another (an Identity removed, an activation fused).
        self.output_names: list[str] = []
        # Strings the binary should carry for the user (e.g. "classes" of a classifier, JSON).
        self.meta: dict[str, str] = {}
        self.ops: list[Op] = []
        self.constants: dict[Value, np.ndarray] = {}
        self._names: set[str] = set()

    # -- construction -----------------------------------------------------------------------
    def fresh_name(self, hint: str) -> str:
        name, n = hint, 1
        while name in self._names:
            name, n = f"{hint}.{n}", n + 1
        self._names.add(name)
        return name

    def add_input(self, name: str, type: TensorType) -> Value:
        value = Value(self.fresh_name(name), type)
        self.inputs.append(value)
        return value

    def add_constant(self, name: str, array: np.ndarray) -> Value:
        array = np.asarray(array)
        value = Value(self.fresh_name(name), TensorType(tuple(array.shape), str(array.dtype)))
        self.constants[value] = array
        return value

    def add_op(self, op: Op, result_names: Sequence[str] = ()) -> Op:
        """Append `op`, creating its results with inferred types."""
        types = op.infer()
        names = list(result_names) or [op.name] * len(types)
        op.outputs = []
        for name, type in zip(names, types, strict=True):
            value = Value(self.fresh_name(name), type)
            value.producer = op
            op.outputs.append(value)
        self.ops.append(op)
        return op

    def build(self, op: Op, name: str = "") -> Value:
        """Append a single-result op and return its result."""
        return self.add_op(op, [name] if name else []).outputs[0]

    # -- queries ----------------------------------------------------------------------------
    def constant(self, value: Value) -> np.ndarray | None:
        return self.constants.get(value)

    def users(self, value: Value) -> list[Op]:
        return [op for op in self.ops if any(v is value for v in op.inputs)]

    @overload
    def walk(self) -> Iterator[Op]: ...
    @overload
    def walk(self, kind: type[OpT]) -> Iterator[OpT]: ...
    def walk(self, kind: type[Op] | None = None) -> Iterator[Op]:
        """The ops (of class `kind`) in order; the graph may be rewritten meanwhile."""
        for op in list(self.ops):
            if kind is None or isinstance(op, kind):
                yield op

    # -- rewriting --------------------------------------------------------------------------
    def replace_uses(self, old: Value, new: Value) -> None:
        for op in self.ops:
            op.inputs = [new if v is old else v for v in op.inputs]
        self.outputs = [new if v is old else v for v in self.outputs]

    def replace_op(self, old: Op, new: Op, results: Sequence[Value] | None = None) -> None:
        """Put `new` where `old` was; it takes over `results` (default: old's results), so
        every user and every name stays as it was. `new.infer()` must give their types."""
        values = list(results if results is not None else old.outputs)
        new.outputs = values
        for value in values:
            value.producer = new
        self.ops[self.ops.index(old)] = new
        old.outputs = []

    def remove_dead(self) -> None:
        """Drop ops whose results nobody uses and constants nobody references."""
        changed = True
        while changed:
            live = {id(v) for v in self.outputs}
            for op in self.ops:
                live.update(id(v) for v in op.inputs)
            kept = [
                op for op in self.ops if any(id(v) in live and v.producer is op for v in op.outputs)
            ]
            changed = len(kept) != len(self.ops)
            self.ops = kept
        used = {id(v) for op in self.ops for v in op.inputs} | {id(v) for v in self.outputs}
        self.constants = {v: a for v, a in self.constants.items() if id(v) in used}

    # -- checking and printing --------------------------------------------------------------
    def verify(self) -> None:
        """Every operand defined before use, every op well typed, outputs defined."""
        defined: set[int] = {id(v) for v in self.inputs} | {id(v) for v in self.constants}
        for value, array in self.constants.items():
            if tuple(array.shape) != value.shape:
                raise CompileError(f"constant {value!r} holds an array of shape {array.shape}")
        for op in self.ops:
            for value in op.inputs:
                if id(value) not in defined:
                    raise op.error(f"operand {value!r} is used before it is defined")
            op.verify(self)
            defined.update(id(v) for v in op.outputs)
        for value in self.outputs:
            if id(value) not in defined:
                raise CompileError(f"graph output {value!r} is never defined")
        if not self.outputs:
            raise CompileError(f"graph {self.name!r} has no outputs")

    def dump(self) -> str:
        lines = [f"graph {self.name}("]
        lines += [f"  {v!r}," for v in self.inputs]
        lines.append(") {")
        for value, array in self.constants.items():
            lines.append(f"  {value!r} = constant  # {array.size} values")
        lines += [f"  {op!r}" for op in self.ops]
        lines.append(f"  return {', '.join(f'%{v.name}' for v in self.outputs)}")
        lines.append("}")
        return "\n".join(lines)
