"""An ONNX backend (onnx.backend.base.Backend) over compile + simulate.

    import imcc.backend
    outputs = imcc.backend.run_model(model, [x])

So the ONNX backend test suite can hold imcc to ONNX semantics, the backend compiles for a
high-precision configuration of the default chip: the widest weights and inputs whose integer
sums stay exact (up to 24 bits each), cells of 4 bits, a lossless 12-bit ADC, and 64 cores;
a model that chip cannot hold (the real models at 224x224) is compiled again for 256 cores
with 2^24-word buffers (`LARGER`), without phases. Graph inputs that feed a weight operand
(the right side of MatMul and Gemm, Conv kernels, BatchNormalization statistics; also a
Reshape's shape, Squeeze, Unsqueeze and reduction axes, Clip's bounds, and the shapes, pads,
indices and bounds of Slice, Pad, Split, Expand, Tile, Gather, ConstantOfShape and Range) are
bound when the data arrives:
`run` makes them constants and compiles once per distinct value, as a chip would be
reprogrammed.
A model imcc cannot compile raises unittest.SkipTest with the reason, so a test suite counts it
as skipped, never as passed. `prepare(model, target=...)` takes another target (for instance
`high_precision_target(cores=256, buffer_words=1 << 23)` for ResNet-18 at 224x224);
`rep.run(inputs, mode="cycle")` runs the
cycle-level simulator instead of the functional one.
"""

from __future__ import annotations

import hashlib
import unittest
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep

from imcc.api import compile as compile_model
from imcc.compiler.target import load_target
from imcc.isa.container import Binary
from imcc.isa.diagnostics import CompileError, Diagnostic, FrontendError
from imcc.isa.target import Target
from imcc.runtime.simulator import Simulator

# Operand positions that must be known when the program is built: crossbar weights (the
# right side of MatMul and Gemm) and the shapes and bounds the compiler folds in.
WEIGHT_OPERANDS = {
    "MatMul": (1,),
    "Gemm": (1,),
    "Reshape": (1,),
    "Clip": (1, 2),
    "Conv": (1, 2),
    "BatchNormalization": (1, 2, 3, 4),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "ReduceMean": (1,),  # the axes
    "ReduceSum": (1,),
    "ReduceMax": (1,),
    "Slice": (1, 2, 3, 4),  # starts, ends, axes, steps
    "Pad": (1, 2, 3),  # pads, constant_value, axes
    "Split": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "Gather": (1,),  # the indices
    "ConstantOfShape": (0,),
    "Range": (0, 1, 2),
}
PRECISIONS = (24, 20, 16, 12)  # tried in order until the integer sums fit exactly
# cores, buffer words, global memory words of the chip for models the default one cannot hold
LARGER = (256, 1 << 24, 1 << 26)
_CAPACITY = ("cannot hold", "crossbar arrays", "global memory")


def high_precision_target(
    cores: int = 64, buffer_words: int = 1 << 20, global_memory_words: int = 1 << 24
) -> Target:
    """The default chip widened for exact ONNX semantics: 4-bit cells, a lossless 12-bit ADC,
    64 arrays and a `buffer_words` buffer per core, and `cores` cores (a square-ish mesh).
    (A 224x224 ResNet-18 keeps a whole 64x112x112 map on one core: 2^23 words.)"""
    data = load_target().to_dict()
    data["name"] = "onnx-backend"
    data["description"] = "edge-rram widened for exact ONNX semantics (the ONNX backend)"
    mesh_cols = 1 << ((cores - 1).bit_length() + 1) // 2
    data["chip"].update(cores=cores, mesh_cols=mesh_cols, global_memory_words=global_memory_words)
    data["core"].update(arrays=64, buffer_words=buffer_words)
    data["xbar"].update(cell_bits=4, adc_bits=12)
    return Target.from_dict(data, "onnx backend target")


class ImccRep(BackendRep):
    def __init__(self, model: onnx.ModelProto, device: str, target: Target | None = None) -> None:
        self.model = model
        self.device = device
        initializers = {init.name for init in model.graph.initializer}
        self.feeds = [i.name for i in model.graph.input if i.name not in initializers]
        consumed = {
            node.input[index]
            for node in model.graph.node
            for index in WEIGHT_OPERANDS.get(node.op_type, ())
            if index < len(node.input)
        }
        self.weights = [name for name in self.feeds if name in consumed]
        self.binaries: dict[bytes, Binary] = {}
        self.target = target or high_precision_target()
        # A model the default chip cannot hold (the real models at 224x224) gets a larger one,
        # without phases: one that needs reprogramming would take minutes here (VGG-19).
        self.larger = None if target else high_precision_target(*LARGER)
        if not self.weights:  # nothing to wait for: compile now, so errors surface early
            self.binary_for({})

    def binary_for(self, weights: dict[str, np.ndarray]) -> Binary:
        key = hashlib.sha256(
            b"".join(np.ascontiguousarray(weights[n]).tobytes() for n in self.weights)
        ).digest()
        if key not in self.binaries:
            model = onnx.ModelProto()
            model.CopyFrom(self.model)
            kept = [i for i in model.graph.input if i.name not in weights]
            del model.graph.input[:]
            model.graph.input.extend(kept)
            model.graph.initializer.extend(
                numpy_helper.from_array(np.asarray(value), name) for name, value in weights.items()
            )
            try:
                self.binaries[key] = compile_precise(model, self.target)
            except unittest.SkipTest as skip:
                if self.larger is None or not any(w in str(skip) for w in _CAPACITY):
                    raise
                self.binaries[key] = compile_precise(model, self.larger, phases=False)
        return self.binaries[key]

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        elif isinstance(inputs, list | tuple):
            feeds = dict(zip(self.feeds, inputs, strict=False))
        else:
            feeds = {self.feeds[0]: inputs}
        feeds = {name: np.asarray(value) for name, value in feeds.items()}
        binary = self.binary_for({name: feeds.pop(name) for name in self.weights})
        outputs = Simulator(binary, mode=kwargs.get("mode", "functional")).run(feeds).outputs
        return tuple(outputs[info.name] for info in binary.program.outputs)


def compile_precise(model: onnx.ModelProto, target: Target, **options: Any) -> Binary:
    """The widest weights and inputs (equal bits) whose integer sums stay exact."""
    for bits in PRECISIONS:
        try:
            return compile_model(model, target, weight_bits=bits, input_bits=bits, **options)
        except CompileError as exc:
            if "exact accumulation" in exc.message and bits != PRECISIONS[-1]:
                continue
            raise unittest.SkipTest(f"imcc cannot compile this model: {exc}") from None
        except FrontendError as exc:
            raise unittest.SkipTest(f"imcc cannot import this model: {exc}") from None
    raise AssertionError("unreachable: the last precision either compiles or raises")


class ImccBackend(Backend):
    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> ImccRep:
        super().prepare(model, device, **kwargs)
        try:
            return ImccRep(model, device, kwargs.get("target"))
        except Diagnostic as exc:
            raise unittest.SkipTest(f"imcc cannot compile this model: {exc}") from None

    @classmethod
    def run_model(
        cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any
    ) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"  # the simulator runs on the host


prepare = ImccBackend.prepare
run_model = ImccBackend.run_model
supports_device = ImccBackend.supports_device
