"""quantize: Dense -> QDense with integer weights and an input quantiser.

Before: Dense ops with float weights. After: QDense ops; weights are signed `weight_bits`
integers with one scale per output channel (s_w[n] = max|W[:, n]| / (2^(b-1) - 1)); inputs are
`input_bits` integers with a static scale from calibration data (abs-max over the samples) or,
without calibration data, a scale set per input vector at run time from its abs-max (as
aihwkit's ABS_MAX noise management does), counted as SIMD work. Inputs known to be
non-negative (ReLU, sigmoid, softmax outputs, or calibrated data >= 0) use the unsigned range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, Op, Value
from imcc.compiler.ir.interpreter import evaluate
from imcc.compiler.options import Calibration, check_options
from imcc.compiler.passes.manager import Context, Pass, register
from imcc.isa.numerics import qmax

_NON_NEGATIVE_ACTIVATIONS = (ops.Activation.RELU, ops.Activation.SIGMOID)


def quantize_weights(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel quantisation; an all-zero column gets scale 1."""
    top = qmax(bits, signed=True)
    peak = np.max(np.abs(w), axis=0).astype(np.float64)
    scale = np.where(peak > 0, peak / top, 1.0)
    w_int = np.clip(np.rint(w / scale), -top, top).astype(np.int64)
    return w_int, scale


@register
@dataclass(frozen=True, slots=True)
class QuantizePass(Pass):
    """After: every Dense is a QDense. Options (each overrides the compile option of its name):
    weight_bits, input_bits, calibration, percentile."""

    name = "quantize"
    requires = ("canonicalize",)  # reads Dense ops
    weight_bits: int | None = None
    input_bits: int | None = None
    calibration: str | None = None
    percentile: float | None = None

    def run(self, graph: Graph, ctx: Context) -> None:
        weight_bits = int(self.option(ctx, "weight_bits", 8))  # as the driver's default
        input_bits = int(self.option(ctx, "input_bits", 8))
        self.option(ctx, "calibration")
        self.option(ctx, "percentile")
        check_options(ctx.target, ctx.options)
        ranges = self._calibrate(graph, ctx)
        for dense in graph.walk(ops.Dense):
            if isinstance(dense, ops.QDense):
                continue
            x, w, b = dense.inputs
            w_int, w_scale = quantize_weights(np.asarray(graph.constants[w]), weight_bits)
            signed = not self._non_negative(graph, x, ranges)
            scale = None
            if dense.name in ranges:
                peak = ranges[dense.name][1]
                scale = peak / qmax(input_bits, signed) if peak > 0 else 1.0
            qdense = ops.QDense(
                [
                    x,
                    graph.add_constant(f"{dense.name}.w_int", w_int),
                    graph.add_constant(f"{dense.name}.w_scale", w_scale),
                    b,
                ],
                name=dense.name,
                weight_bits=weight_bits,
                input_bits=input_bits,
                input_signed=signed,
                input_scale=scale,
                # a convolution's windows share one scale, from its whole input map
                scale_over="map" if isinstance(x.producer, ops.Im2Col) else "row",
                activation=dense.attrs["activation"],
            )
            graph.replace_op(dense, qdense)
        graph.remove_dead()

    @staticmethod
    def _calibrate(graph: Graph, ctx: Context) -> dict[str, tuple[float, float]]:
        """(min, abs-max) of every Dense input over the calibration samples."""
        if ctx.calibration is None:
            return {}
        ranges: dict[str, tuple[float, float]] = {}
        percentile = float(ctx.options.get("percentile", 99.99))
        use_percentile = ctx.options.get("calibration") == Calibration.PERCENTILE

        def observe(op: Op, args: list[np.ndarray]) -> None:
            if isinstance(op, ops.Dense) and not isinstance(op, ops.QDense):
                x = args[0]
                if not np.all(np.isfinite(x)):
                    raise op.error("calibration data gives non-finite inputs to this layer")
                # percentile: the scale ignores the rarest large values, which then clip
                peak = np.percentile(np.abs(x), percentile) if use_percentile else np.abs(x).max()
                ranges[op.name] = (float(np.min(x)), float(peak))

        evaluate(graph, ctx.calibration, observe)
        return ranges

    @staticmethod
    def _non_negative(graph: Graph, x: Value, ranges: dict[str, tuple[float, float]]) -> bool:
        producer = x.producer
        # reshapes, transposes, windows (zero-padded) and pools keep every value's sign
        while isinstance(producer, ops.Reshape | ops.Transpose | ops.Im2Col | ops.Pool):
            x = producer.inputs[0]
            producer = x.producer
        if isinstance(producer, ops.Dense):
            return producer.attrs.get("activation") in _NON_NEGATIVE_ACTIVATIONS
        if isinstance(producer, ops.Relu | ops.Sigmoid | ops.Softmax):
            return True
        users = [op for op in graph.users(x) if isinstance(op, ops.Dense)]
        return bool(users) and all(u.name in ranges and ranges[u.name][0] >= 0 for u in users)
