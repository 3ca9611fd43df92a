"""The public Python API: compile a model, load a binary, simulate it.

The only layer that sees every package: frontends turn the model into graph IR, the compiler
turns that into a Program, the container into bytes; the runtime sees only the binary.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from imcc.compiler.driver import compile_graph
from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph
from imcc.isa.container import Binary
from imcc.isa.diagnostics import CompileError, Diagnostic, OptionLoc
from imcc.isa.target import AdcRange, Target

log = logging.getLogger(__name__)


def import_model(model: Any) -> Graph:
    """Graph IR of a model: an ONNX path, bytes or ModelProto, or a fitted scikit-learn
    estimator (imported natively, not through ONNX)."""
    if isinstance(model, Graph):
        return model
    # A scikit-learn estimator, or (for a clear error) an estimator class; sklearn not imported.
    cls = model if isinstance(model, type) else type(model)
    if any(c.__module__.split(".")[0] == "sklearn" for c in cls.__mro__):
        from imcc.frontends.sklearn import import_sklearn

        return import_sklearn(model)
    from imcc.frontends.onnx import import_onnx

    return import_onnx(model)


# The accuracy check after a compile with calibration data (see `compile`): at most this many
# calibration samples, and the loss (top-1 points, or relative error in %) that is reported.
# It simulates at most ACCURACY_MACS crossbar multiply-accumulates in all (the digits MLP's 256
# samples take 0.02 s, LeNet-5's 1 s; one 32x32 ResNet-18 sample takes ~15 s), and
# is skipped when fewer than ACCURACY_MIN_SAMPLES would fit, too few to resolve a point.
ACCURACY_SAMPLES = 256
ACCURACY_MIN_SAMPLES = 100
ACCURACY_MACS = 50_000_000
ACCURACY_POINTS = 1.0


def compile(
    model: Any,
    target: str | Target | None = None,
    *,
    calibrate: np.ndarray | dict[str, np.ndarray] | None = None,
    pipeline: str | None = None,
    print_after: Callable[[str, Graph], None] | None = None,
    timings: list[tuple[str, float]] | None = None,
    check_accuracy: bool = True,
    **options: Any,
) -> Binary:
    """Compile `model` for `target` into a Binary (`.save(path)` writes the .imcb file).

    Arguments (an option left at None takes the target's [defaults] or [xbar] value):

    - `model` (str | PathLike | bytes | onnx.ModelProto | fitted scikit-learn estimator | Graph):
      the model; ONNX by path, bytes or proto, a scikit-learn estimator imported natively.
    - `target` (str | Target | None, default None = "edge-rram"): a preset name
      (`imcc targets` lists them), the path of a target TOML file, or a Target.
    - `calibrate` (array | dict[str, array] | None, default None): sample inputs (an array for a
      one-input model, else a dict by input name; leading axis = samples). They fix static input
      scales (and, with adc_range column or slice, ADC ranges); without them every input
      vector's scale is set at run time from its abs-max. With them, the compiled binary is
      also checked against the float model (see `check_accuracy`).
    - `pipeline` (str | None, default None = the default pipeline): the passes to run, e.g.
      "canonicalize,quantize,bitslice,tile,adc-range,place,acam-map,schedule,emit", options in
      braces ("place{spread=true}", "quantize{weight_bits=16}": a pass option overrides the
      compile option of its name, and the binary records the value used); it must end in emit
      (or passes on its program, such as replicate) and run each pass's prerequisites first.
    - `print_after` (callable(pass name, Graph) | None, default None): called after every pass,
      e.g. to print the IR.
    - `timings` (list | None, default None): if given, receives (pass name, seconds) per pass.
    - `check_accuracy` (bool, default True): with `calibrate`, run up to 256 of its samples
      through the binary on the ideal device and through the float model, and log a warning
      (logger "imcc.api") naming the option to change when top-1 agreement (classifiers) or
      the relative error (regressors) is more than 1 point off; False skips it. Models too
      large to simulate 100 samples cheaply (over 500,000 crossbar MACs a sample) skip it.

    Compile options (keyword arguments; the target's defaults otherwise):

    - `weight_bits` (int in [2, 24], target default, usually 8): bits of the signed integer
      weights, one scale per output channel.
    - `input_bits` (int in [2, 24], target default, usually 8): bits of the integer inputs of
      every crossbar matrix multiply.
    - `calibration` (str, default "minmax"): how `calibrate` data sets input scales and ADC
      ranges: "minmax" (the largest value seen) or "percentile" (the `percentile`-th, so rare
      outliers clip).
    - `percentile` (float in (0, 100], default 99.99): the percentile of calibration="percentile".
    - `spread` (bool, default False): deal crossbar tiles round-robin over all cores.
    - `schedule` (str, default "packed"): "packed" (layer by layer), "latency" (every layer
      spread over all cores), "throughput" (the model replicated on every free group of cores)
      or "balanced" (spare arrays hold copies of the slowest convolutions).
    - `phases` (bool, default True): run a model larger than the chip in phases, reprogramming
      arrays; False makes that an error.
    - `loops` (bool, default True): roll code that repeats into counted loops, so code size
      follows a layer's structure rather than its pixels; False writes every instruction out
      (the outputs are the same).

    Hardware options (recorded in the binary's target; default: the target's [xbar] value):

    - `rows`, `cols` (int): crossbar rows and columns.
    - `cell_bits` (int): bits stored per crossbar cell.
    - `dac_bits` (int): input bits applied per DAC step (1 = bit-serial).
    - `adc_bits` (int): ADC resolution; lossless from
      log2(rows * (2^cell_bits - 1) * (2^dac_bits - 1) + 1) bits with adc_range full-scale.
    - `cols_per_adc` (int): columns sharing one ADC.
    - `sign_encoding` (str): "differential" (G+/G- pairs) or "offset" (ISAAC: W + 2^(b-1)).
    - `adc_range` (str): "full-scale", or "column" / "slice" (ranges from the weights, or from
      `calibrate` data when given).

    Errors are Diagnostics (FrontendError, CompileError, TargetError) with a location.
    """
    graph = import_model(model)
    data = None
    if calibrate is not None:
        if not isinstance(calibrate, dict):
            if len(graph.inputs) != 1:
                raise CompileError(
                    "calibration data for a multi-input model must be a dict",
                    OptionLoc("calibrate"),
                )
            calibrate = {graph.inputs[0].name: calibrate}
        data = {}
        for value in graph.inputs:
            if value.name not in calibrate:
                raise CompileError(
                    f"calibration data lacks input {value.name!r}", OptionLoc("calibrate")
                )
            array = np.asarray(calibrate[value.name], dtype=np.float64)
            per_sample = value.shape[1:] if graph.batch_axis else value.shape
            data[value.name] = array.reshape(-1, *per_sample) if graph.batch_axis else array
    check = None
    if check_accuracy and data and graph.batch_axis:
        check = AccuracyCheck(data, print_after, options)
    result = compile_graph(
        graph,
        target,
        calibrate=data,
        pipeline=pipeline,
        print_after=check.after_pass if check is not None else print_after,
        **options,
    )
    if timings is not None:
        timings.extend(result.timings)
    name = str(model) if isinstance(model, str | os.PathLike) else "<compiled>"
    binary = Binary(result.program, name=name)
    if check is not None:
        check.report(binary, result.graph)
    return binary


class AccuracyCheck:
    """Loss at compile time, measured on calibration samples: the float graph (after
    canonicalize) against the quantised graph (after quantize: weight and input bits,
    calibration) and against the binary on the ideal device (adds the ADC); logs one warning
    naming the option that fixes the larger loss."""

    def __init__(
        self,
        data: dict[str, np.ndarray],
        print_after: Callable[[str, Graph], None] | None,
        options: dict[str, Any],
    ) -> None:
        self.options = options
        self.samples = {k: v[:ACCURACY_SAMPLES] for k, v in data.items()}
        self.print_after = print_after
        self.outputs: dict[str, list[np.ndarray]] = {}  # pass name -> outputs after it
        self.names: list[str] = []

    def after_pass(self, name: str, graph: Graph) -> None:
        if name in ("canonicalize", "quantize"):
            from imcc.compiler.ir.interpreter import evaluate

            try:
                self.outputs[name] = evaluate(graph, self.samples)
                self.names = graph.output_names or [v.name for v in graph.outputs]
            except Diagnostic as exc:  # a graph the interpreter cannot run: no check
                log.debug("accuracy check skipped after %s: %s", name, exc)
        if self.print_after is not None:
            self.print_after(name, graph)

    def report(self, binary: Binary, graph: Graph) -> None:
        reference = self.outputs.get("canonicalize")
        dense = [op for op in graph.ops if isinstance(op, ops.QDense)]
        if reference is None or not dense:
            return  # nothing quantised (trees are exact), or no float reference
        macs = sum(op.inputs[0].type.size * op.inputs[1].shape[1] for op in dense)
        affordable = ACCURACY_MACS // max(macs, 1)
        count = min(len(next(iter(self.samples.values()))), affordable)
        if affordable < ACCURACY_MIN_SAMPLES:
            log.info(
                "accuracy check skipped: %d crossbar MACs per sample are too many to simulate "
                "%d calibration samples at compile time",
                macs,
                ACCURACY_MIN_SAMPLES,
            )
            return
        from imcc.runtime.simulator import Simulator

        samples = {k: v[:count] for k, v in self.samples.items()}
        reference = [r[:count] for r in reference]
        try:
            run = Simulator(binary, device="ideal", mode="functional").run(samples)
        except Diagnostic as exc:
            log.debug("accuracy check skipped: %s", exc)
            return
        simulated = [run.outputs[n] for n in self.names]
        total, where, kind = _worst_loss(reference, simulated, self.names)
        # more than a point, and more than one sample (a few samples cannot resolve a point)
        if total <= max(ACCURACY_POINTS, 100.0 / count):
            return
        quantised = self.outputs.get("quantize")
        bits_loss = total
        if quantised:
            bits_loss = _worst_loss(reference, [q[:count] for q in quantised], self.names)[0]
        fix = _remedy(binary, graph, bits_loss > ACCURACY_POINTS, self.options)
        log.warning(
            "accuracy lost at compile time: on %d calibration samples, output %r %s "
            "(ideal device); %s (check_accuracy=False skips this check)",
            count,
            where,
            kind,
            fix,
        )


def _loss(reference: np.ndarray, got: np.ndarray) -> tuple[float, str]:
    """(loss in points, what it is): top-1 disagreement of a per-sample vector of scores,
    label disagreement of integer outputs, else the relative (Frobenius) error in %."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    out = np.asarray(got, dtype=np.float64).reshape(len(reference), -1)
    if ref.shape[1] > 1:
        agree = 100.0 * float(np.mean(ref.argmax(axis=1) == out.argmax(axis=1)))
        return 100.0 - agree, f"agrees with the float model's top-1 on {agree:.1f} %"
    if np.array_equal(ref, np.rint(ref)):
        agree = 100.0 * float(np.mean(ref == out))
        return 100.0 - agree, f"agrees with the float model's labels on {agree:.1f} %"
    scale = float(np.linalg.norm(ref))
    error = 100.0 * float(np.linalg.norm(out - ref)) / (scale if scale > 0 else 1.0)
    return error, f"is {error:.1f} % off the float model (relative error)"


def _worst_loss(
    reference: list[np.ndarray], got: list[np.ndarray], names: list[str]
) -> tuple[float, str, str]:
    losses = [(*_loss(r, g), n) for r, g, n in zip(reference, got, names, strict=True)]
    loss, kind, name = max(losses, key=lambda item: item[0])
    return loss, name, kind


def _remedy(binary: Binary, graph: Graph, from_bits: bool, options: dict[str, Any]) -> str:
    """The option to change: the bits (or calibration) when the quantised graph already loses
    accuracy, else the ADC (the only other compile-time loss on the ideal device)."""
    xbar = binary.target.xbar
    if from_bits:
        dense = [op for op in graph.ops if isinstance(op, ops.QDense)]
        bits = {
            "weight_bits": min(op.attrs["weight_bits"] for op in dense),
            "input_bits": min(op.attrs["input_bits"] for op in dense),
        }
        low = [f"{name} (now {value})" for name, value in bits.items() if value < 8]
        if low:
            return f"raise {' or '.join(low)}"
        static = any(op.attrs["input_scale"] is not None for op in dense)
        percentile = static and options.get("calibration", "minmax") == "minmax"
        hint = " or set calibration='percentile' (outliers coarsen the input scales)"
        return (
            f"raise weight_bits (now {bits['weight_bits']}) or input_bits (now "
            f"{bits['input_bits']}){hint if percentile else ''}"
        )
    lossless = math.ceil(
        math.log2(xbar.rows * ((1 << xbar.cell_bits) - 1) * ((1 << xbar.dac_bits) - 1) + 1)
    )
    if xbar.adc_range == AdcRange.FULL_SCALE and xbar.adc_bits < lossless:
        return (
            f"the {xbar.adc_bits}-bit ADC loses the low bits: raise adc_bits (to {lossless} for "
            "exact results) or set adc_range='column'"
        )
    return f"the ADC ranges ({xbar.adc_range}) clip or round: raise adc_bits (now {xbar.adc_bits})"


def load(path: str | os.PathLike[str]) -> Binary:
    """Read and check a .imcb binary."""
    return Binary.load(path)
