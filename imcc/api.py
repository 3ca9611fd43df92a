"""The public Python API: compile a model, load a binary, simulate it.

The only layer that sees every package: frontends turn the model into graph IR, the compiler
turns that into a Program, the container into bytes; the runtime sees only the binary.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from imcc.compiler.driver import compile_graph
from imcc.compiler.ir.core import Graph
from imcc.isa.container import Binary
from imcc.isa.diagnostics import CompileError
from imcc.isa.target import Target


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


def compile(
    model: Any,
    target: str | Target | None = None,
    *,
    calibrate: np.ndarray | dict[str, np.ndarray] | None = None,
    pipeline: str | None = None,
    print_after: Callable[[str, Graph], None] | None = None,
    timings: list[tuple[str, float]] | None = None,
    **options: Any,
) -> Binary:
    """Compile `model` for `target` (a preset name, a TOML path, or None for the default).

    `calibrate` is sample input data (an array for a one-input model, or a dict by input name)
    used to fix static input scales; without it, scales are set per input vector at run time.
    Options: weight_bits, input_bits, cell_bits, spread. `timings`, if given, receives
    (pass name, seconds) for each pass.
    """
    graph = import_model(model)
    data = None
    if calibrate is not None:
        if not isinstance(calibrate, dict):
            if len(graph.inputs) != 1:
                raise CompileError("calibration data for a multi-input model must be a dict")
            calibrate = {graph.inputs[0].name: calibrate}
        data = {}
        for value in graph.inputs:
            if value.name not in calibrate:
                raise CompileError(f"calibration data lacks input {value.name!r}")
            array = np.asarray(calibrate[value.name], dtype=np.float64)
            per_sample = value.shape[1:] if graph.batch_axis else value.shape
            data[value.name] = array.reshape(-1, *per_sample) if graph.batch_axis else array
    result = compile_graph(
        graph, target, calibrate=data, pipeline=pipeline, print_after=print_after, **options
    )
    if timings is not None:
        timings.extend(result.timings)
    name = str(model) if isinstance(model, str | os.PathLike) else "<compiled>"
    return Binary(result.program, name=name)


def load(path: str | os.PathLike[str]) -> Binary:
    """Read and check a .imcb binary."""
    return Binary.load(path)
