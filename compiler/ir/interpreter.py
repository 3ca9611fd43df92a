"""A numpy interpreter for the graph IR: the compiler's own reference, in float64.

Used by `quantize` to calibrate activation ranges from user data, and by tests to check each
pass preserves meaning. The leading axis of every value is the batch axis when the graph has one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, Op, Value
from imcc.compiler.ir.windows import Window, window_index
from imcc.isa.diagnostics import CompileError
from imcc.isa.numerics import qmax, quant_range


def quantize_vector(x: np.ndarray, scale: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """x_int = clip(round_half_even(x / s)); the same rule as the `simd.quant` instruction."""
    lo, hi = quant_range(bits, signed)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(scale == 0, 0.0, np.rint(x / np.where(scale == 0, 1.0, scale)))
    result: np.ndarray = np.clip(q, lo, hi)
    return result


def input_scale(x: np.ndarray, op: Op, source: np.ndarray | None = None) -> np.ndarray:
    """The scale of a QDense input: static, or abs-max per input vector (keepdims for
    broadcasting), or with scale_over "map" per sample over `source`, the Im2Col's input."""
    bits, signed = op.attrs["input_bits"], op.attrs["input_signed"]
    top = qmax(bits, signed)
    if op.attrs["input_scale"] is not None:
        return np.asarray(op.attrs["input_scale"], dtype=np.float64)
    if op.attrs.get("scale_over", "row") == "map":
        assert source is not None, "a map scale needs the Im2Col's input"
        peak = np.max(np.abs(source.reshape(source.shape[0], -1)), axis=1, initial=0.0)
        return np.asarray(peak.reshape(-1, *([1] * (x.ndim - 1))) / top)
    scale: np.ndarray = np.max(np.abs(x), axis=-1, keepdims=True) / top
    return scale


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    result: np.ndarray = e / np.sum(e, axis=axis, keepdims=True)
    return result


def _reduce(op: Op, x: np.ndarray) -> np.ndarray:
    axes = tuple(op.attrs["axes"])
    if not axes:
        return x
    functions: dict[str, Callable[..., np.ndarray]] = {
        "sum": np.sum,
        "mean": np.mean,
        "max": np.max,
    }
    keepdims = bool(op.attrs.get("keepdims", 1))
    result: np.ndarray = functions[op.attrs["mode"]](x, axis=axes, keepdims=keepdims)
    return result


def _layer_norm(op: Op, x: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    axes = tuple(range(op.attrs["axis"], x.ndim))
    mean = np.mean(x, axis=axes, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=axes, keepdims=True)
    result: np.ndarray = (x - mean) / np.sqrt(var + op.attrs["epsilon"]) * scale + bias
    return result


def _activation(name: str, y: np.ndarray) -> np.ndarray:
    functions: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        ops.Activation.RELU: lambda v: np.maximum(v, 0.0),
        ops.Activation.SIGMOID: lambda v: 1.0 / (1.0 + np.exp(-v)),
        ops.Activation.TANH: np.tanh,
    }
    return functions[name](y) if name in functions else y


def _qdense(op: Op, args: list[np.ndarray], source: np.ndarray | None = None) -> np.ndarray:
    x, w_int, w_scale, b = args
    s_x = input_scale(x, op, source)
    x_int = quantize_vector(x, s_x, op.attrs["input_bits"], op.attrs["input_signed"])
    y = (x_int @ w_int.astype(np.float64)) * s_x * w_scale + b
    return _activation(op.attrs.get("activation", "none"), y)


def _windows(op: Op, x: np.ndarray, filler: float) -> tuple[np.ndarray, np.ndarray]:
    """x (B, C, *spatial) -> its windows (B, C, P, K), `filler` in the padding; and in_pads."""
    window = Window.of(op.attrs, x.ndim - 2)
    index, in_pads = window_index(window, x.shape[2:])
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    padded = np.concatenate([flat, np.full((b, c, 1), filler)], axis=2)
    return padded[:, :, np.where(index >= 0, index, flat.shape[2])], in_pads


def _im2col(op: Op, x: np.ndarray) -> np.ndarray:
    cols, _ = _windows(op, x, 0.0)
    b, c, p, k = cols.shape
    return cols.transpose(0, 2, 1, 3).reshape(b, p, c * k)


def _conv(op: Op, args: list[np.ndarray]) -> np.ndarray:
    x, w, bias = args
    group = int(op.attrs.get("group", 1))
    cols = _im2col(op, x)  # (B, P, C * K), channels outermost
    out, k = w.shape[0], int(np.prod(w.shape[1:]))
    parts = [
        cols[:, :, g * k : (g + 1) * k]
        @ w[g * out // group : (g + 1) * out // group].reshape(-1, k).T
        for g in range(group)
    ]
    y = np.concatenate(parts, axis=2) + bias  # (B, P, O)
    spatial = Window.of(op.attrs, x.ndim - 2).output(x.shape[2:])
    result: np.ndarray = y.transpose(0, 2, 1).reshape(x.shape[0], out, *spatial)
    return result


def _select(op: Op, x: np.ndarray) -> np.ndarray:
    """Select's table indexes one sample; a batch (leading axis > 1) takes it per sample."""
    index = np.asarray(op.attrs["index"])
    samples = x.reshape(-1, op.inputs[0].type.size)
    flat = index.reshape(-1)
    picked = np.where(flat >= 0, samples[:, np.maximum(flat, 0)], op.attrs.get("fill", 0.0))
    return picked.reshape(samples.shape[0] * index.shape[0], *index.shape[1:])


def _pool(op: Op, args: list[np.ndarray]) -> np.ndarray:
    x = args[0]
    spatial = Window.of(op.attrs, x.ndim - 2).output(x.shape[2:])
    if op.attrs["mode"] == ops.PoolMode.MAX:
        cols, _ = _windows(op, x, -np.inf)
        y = cols.max(axis=3)
    else:
        cols, in_pads = _windows(op, x, 0.0)
        index, _ = window_index(Window.of(op.attrs, x.ndim - 2), x.shape[2:])
        counted = in_pads if op.attrs.get("count_include_pad") else index >= 0
        y = cols.sum(axis=3) / counted.sum(axis=1)
    result: np.ndarray = y.reshape(*x.shape[:2], *spatial)
    return result


def _channel(vector: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast along axis 1 of a rank-`rank` array."""
    return vector.reshape(1, -1, *([1] * (rank - 2)))


EVALUATORS: dict[str, Callable[[Op, list[np.ndarray]], np.ndarray]] = {
    "Identity": lambda op, a: a[0],
    "Relu": lambda op, a: np.maximum(a[0], 0.0),
    "Sigmoid": lambda op, a: 1.0 / (1.0 + np.exp(-a[0])),
    "Tanh": lambda op, a: np.tanh(a[0]),
    "Exp": lambda op, a: np.exp(a[0]),
    "Sqrt": lambda op, a: np.sqrt(a[0]),
    "Log": lambda op, a: np.log(a[0]),
    "Erf": lambda op, a: np.vectorize(math.erf, otypes=[np.float64])(a[0]),
    "MatMul": lambda op, a: a[0] @ a[1],
    "Softmax": lambda op, a: _softmax(a[0], op.attrs.get("axis", -1)),
    "ArgMax": lambda op, a: np.argmax(
        a[0], axis=op.attrs.get("axis", -1), keepdims=bool(op.attrs.get("keepdims", 1))
    ).astype(np.float64),
    "Reduce": lambda op, a: _reduce(op, a[0]),
    "LayerNorm": lambda op, a: _layer_norm(op, *a),
    "Dense": lambda op, a: _activation(op.attrs.get("activation", "none"), a[0] @ a[1] + a[2]),
    "QDense": _qdense,
    "Conv": _conv,
    "Im2Col": lambda op, a: _im2col(op, a[0]),
    "Pool": _pool,
    "Transpose": lambda op, a: np.transpose(a[0], op.attrs["perm"]),
    "Select": lambda op, a: _select(op, a[0]),
    "Concat": lambda op, a: np.concatenate(a, axis=op.attrs["axis"]),
    "BatchNorm": lambda op, a: a[0] * _channel(a[1], a[0].ndim) + _channel(a[2], a[0].ndim),
}


def evaluate(
    graph: Graph,
    inputs: dict[str, np.ndarray],
    observe: Callable[[Op, list[np.ndarray]], None] | None = None,
) -> list[np.ndarray]:
    """Run the graph on a batch (leading axis of every input); returns the outputs in order.

    `observe(op, operand_arrays)` is called before each op, for calibration.
    """
    env: dict[int, np.ndarray] = {id(v): a.astype(np.float64) for v, a in graph.constants.items()}
    batch = None
    for value in graph.inputs:
        if value.name not in inputs:
            raise CompileError(f"no data for graph input {value.name!r}")
        array = np.asarray(inputs[value.name], dtype=np.float64)
        env[id(value)] = array
        batch = array.shape[0] if array.ndim else None

    def get(value: Value) -> np.ndarray:
        return env[id(value)]

    for op in graph.ops:
        args = [get(v) for v in op.inputs]
        if observe is not None:
            observe(op, args)
        if isinstance(op, ops.Reshape):
            shape = tuple(op.attrs["shape"])
            if graph.batch_axis and batch is not None:
                shape = (batch, *shape[1:])
            result = args[0].reshape(shape)
        elif isinstance(op, ops.QDense) and op.attrs.get("scale_over") == "map":
            im2col = op.inputs[0].producer
            assert im2col is not None  # verified: an Im2Col makes the input
            result = _qdense(op, args, get(im2col.inputs[0]))
        elif op.kind in EVALUATORS:
            result = EVALUATORS[op.kind](op, args)
        elif isinstance(op, ops.Binary):
            result = op.function(args[0], args[1])
        else:
            raise op.error(f"the IR interpreter has no rule for {op.kind}")
        env[id(op.outputs[0])] = result
    return [get(v) for v in graph.outputs]
