"""An ONNX backend (onnx.backend.base.Backend) over compile + simulate.

    import imcc.backend
    outputs = imcc.backend.run_model(model, [x])
    rep = imcc.backend.prepare(model, device="pcm", seed=1, time="1d")

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

`prepare`'s `device` is ONNX's "CPU" (the host: the target's own device model) or an imcc
device (`ideal`, a preset such as `pcm`, or a preset TOML path); its other keywords are the
Simulator's run options (`mode`, `seed`, `max_cycles`, `time`, `drift_compensation`,
`ir_drop`, `cam_device`) and `target` (a Target, preset name or TOML path, for instance
`high_precision_target(cores=256, buffer_words=1 << 23)` for ResNet-18 at 224x224). Each
prepared model is one chip: its runs share one Simulator per binary. An unknown device or
keyword is a Diagnostic naming the argument and listing what is supported;
`rep.run(inputs, mode="cycle")` runs the cycle-level simulator instead of the functional one.

A model that uses an op, dtype or feature imcc does not support, or that no chip the backend
builds can hold, raises `Unsupported`: a Diagnostic that is also a unittest.SkipTest, so a
test suite counts it as skipped, never as passed. Every other error fails: an internal error,
any other Diagnostic, and an output whose shape differs from the one ONNX declares.
"""

from __future__ import annotations

import hashlib
import os
import re
import unittest
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.backend.base import Backend, BackendRep

from imcc.api import compile as compile_model
from imcc.compiler.target import load_target
from imcc.isa.container import Binary
from imcc.isa.diagnostics import (
    CompileError,
    Diagnostic,
    FrontendError,
    InputLoc,
    OptionLoc,
    SimulationError,
    TargetError,
)
from imcc.isa.target import Target
from imcc.runtime.devices import device_names, make_cam_device
from imcc.runtime.devices.circuit import IR_DROP_MODES
from imcc.runtime.devices.compensation import check_compensation
from imcc.runtime.devices.presets import DevicePreset, load_preset
from imcc.runtime.devices.units import parse_time
from imcc.runtime.simulator import MODES, Simulator

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
# ONNX names the host "CPU"; there the simulator uses the target's own device model.
HOST_DEVICE = "CPU"

# What may become a skip: a Diagnostic of the frontend or the compiler saying that the model
# uses an op, dtype or feature imcc does not support, or that the chip cannot hold it.
# Anything else (an "internal error", any other message, any other exception) is a failure.
_UNSUPPORTED = re.compile(r"\b(un)?supported\b|has element type \S+; expected|is not a tensor")
_CAPACITY = re.compile(r"cannot hold|crossbar arrays but target")


def _check_choice(
    choices: tuple[str, ...], what: str, optional: bool = False
) -> Callable[[Any], object]:
    def check(value: Any) -> object:
        if not (optional and value is None) and value not in choices:
            raise SimulationError(f"unknown {what} {value!r}; expected one of {', '.join(choices)}")
        return value

    return check


def _check_int(minimum: int) -> Callable[[Any], object]:
    def check(value: Any) -> object:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise SimulationError(f"expected an integer >= {minimum}, not {value!r}")
        return value

    return check


# The Simulator's run options prepare() takes, each with the check its value must pass, so a
# bad value names its keyword before anything compiles (a test keeps these the Simulator's).
RUN_OPTIONS: dict[str, Callable[[Any], object]] = {
    "mode": _check_choice(MODES, "mode"),
    "seed": _check_int(0),
    "max_cycles": _check_int(1),
    "time": parse_time,
    "drift_compensation": check_compensation,
    "ir_drop": _check_choice(IR_DROP_MODES, "IR-drop mode", optional=True),
    "cam_device": make_cam_device,
}
OPTIONS = ("target", *RUN_OPTIONS)


class Unsupported(Diagnostic, unittest.SkipTest):
    """A model that uses an op, dtype or feature imcc does not support, or that no chip the
    backend builds can hold; test runners count it as skipped."""


def _skip_or_raise(exc: Diagnostic, what: str) -> Diagnostic:
    """`exc` as an Unsupported skip when it says something is not supported, else itself."""
    if isinstance(exc, Unsupported):
        return exc
    message = exc.message
    supported = isinstance(exc, FrontendError | CompileError) and "internal error" not in message
    if supported and (_UNSUPPORTED.search(message) or _CAPACITY.search(message)):
        unsupported = Unsupported(f"imcc cannot {what} this model: {message}", exc.loc)
        unsupported.__cause__ = exc
        return unsupported
    return exc


def high_precision_target(
    cores: int = 64, buffer_words: int = 1 << 20, global_memory_words: int = 1 << 24
) -> Target:
    """The default chip widened for exact ONNX semantics: 4-bit cells, a lossless 12-bit ADC,
    64 arrays and a `buffer_words` buffer per core, `cores` cores (a square-ish mesh), and
    xtime's analog-CAM arrays for tree ensembles.
    (Maps larger than a quarter of a buffer rest in global memory and are read in parts, so
    the buffer bounds how large a block of pixels a layer works on, not the model.)"""
    data = load_target().to_dict()
    data["name"] = "onnx-backend"
    data["description"] = "edge-rram widened for exact ONNX semantics (the ONNX backend)"
    mesh_cols = 1 << ((cores - 1).bit_length() + 1) // 2
    data["chip"].update(cores=cores, mesh_cols=mesh_cols, global_memory_words=global_memory_words)
    data["core"].update(arrays=64, buffer_words=buffer_words)
    data["xbar"].update(cell_bits=4, adc_bits=12)
    # tree ensembles (ai.onnx.ml) run on analog CAM: the arrays of the X-TIME-style preset
    data["acam"] = load_target("xtime").to_dict()["acam"]
    return Target.from_dict(data, "onnx backend target")


def check_device(device: Any) -> str | DevicePreset | None:
    """The device a run uses: None (the target's own) for ONNX's "CPU", else an imcc device
    name, a preset TOML path or a DevicePreset; anything else is an error naming the devices."""
    if isinstance(device, DevicePreset):
        return device
    names = device_names()
    if isinstance(device, str):
        if device.upper() == HOST_DEVICE:
            return None
        if device in names:
            return device
        if device.endswith(".toml") and os.path.isfile(device):
            try:
                return load_preset(device)
            except Diagnostic as exc:
                raise SimulationError(exc.message, OptionLoc("device")) from None
    raise SimulationError(
        f"unknown device {device!r}; devices are {HOST_DEVICE!r} (the host: the target's own "
        f"device model), {', '.join(map(repr, names))}, or a device preset TOML path",
        OptionLoc("device"),
    )


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """prepare()'s keywords, each checked: an unknown one, or a bad value, names the keyword."""
    checked: dict[str, Any] = {}
    for name, value in options.items():
        if name == "target":
            checked[name] = _target(value)
            continue
        check = RUN_OPTIONS.get(name)
        if check is None:
            raise SimulationError(
                f"unknown keyword {name!r} of imcc.backend.prepare; keywords are "
                f"{', '.join(OPTIONS)} (and device)",
                OptionLoc(name),
            )
        try:
            check(value)
        except Diagnostic as exc:
            raise SimulationError(exc.message, OptionLoc(name)) from None
        checked[name] = value
    return checked


def _target(value: Any) -> Target | None:
    if value is None or isinstance(value, Target):
        return value
    if isinstance(value, str | os.PathLike):
        try:
            return load_target(value)
        except Diagnostic as exc:
            raise TargetError(exc.message, OptionLoc("target")) from None
    raise TargetError(
        f"target must be a Target, a preset name or a TOML path, not {type(value).__name__!r}",
        OptionLoc("target"),
    )


def _load(model: Any) -> onnx.ModelProto:
    """A ModelProto, or one parsed from bytes or read from a path."""
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, bytes | str | os.PathLike):
        try:
            if isinstance(model, bytes):
                return onnx.load_model_from_string(model)
            return onnx.load(os.fspath(model))
        except Exception as exc:  # OSError, protobuf's DecodeError, onnx's errors
            raise FrontendError(f"cannot read the ONNX model: {exc}", OptionLoc("model")) from None
    raise FrontendError(
        f"expected an onnx.ModelProto, bytes or a path, not {type(model).__name__!r}",
        OptionLoc("model"),
    )


class ImccRep(BackendRep):
    def __init__(
        self,
        model: onnx.ModelProto,
        device: str | DevicePreset | None = None,
        target: Target | None = None,
        **run_options: Any,
    ) -> None:
        self.model = model
        self.device = device
        self.run_options = run_options
        initializers = {init.name for init in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in initializers]
        self.feeds = [i.name for i in inputs]
        self.input_types = {i.name: i.type.tensor_type.elem_type for i in inputs}
        consumed = {
            node.input[index]
            for node in model.graph.node
            for index in WEIGHT_OPERANDS.get(node.op_type, ())
            if index < len(node.input)
        }
        self.weights = [name for name in self.feeds if name in consumed]
        self.binaries: dict[bytes, Binary] = {}
        self.simulators: dict[tuple[bytes, str], Simulator] = {}
        self.target = target or high_precision_target()
        # A model the default chip cannot hold (the real models at 224x224) gets a larger one,
        # without phases: one that needs reprogramming would take minutes here (VGG-19).
        self.larger = None if target else high_precision_target(*LARGER)
        if not self.weights:  # nothing to wait for: compile now, so errors surface early
            self.binary_for({})

    def binary_for(self, weights: dict[str, np.ndarray]) -> tuple[bytes, Binary]:
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
                numpy_helper.from_array(value, name) for name, value in weights.items()
            )
            try:
                self.binaries[key] = compile_precise(model, self.target)
            except CompileError as exc:
                if self.larger is None or not _CAPACITY.search(exc.message):
                    raise _skip_or_raise(exc, "compile") from None
                try:
                    self.binaries[key] = compile_precise(model, self.larger, phases=False)
                except Diagnostic as again:
                    raise _skip_or_raise(again, "compile") from None
            except Diagnostic as exc:
                raise _skip_or_raise(exc, "import") from None
        return key, self.binaries[key]

    def simulator_for(self, weights: dict[str, np.ndarray], mode: str) -> Simulator:
        """The chip for these weights: one Simulator per binary and mode, made once."""
        key, binary = self.binary_for(weights)
        if (key, mode) not in self.simulators:
            options = {**self.run_options, "mode": mode}
            self.simulators[key, mode] = Simulator(binary, device=self.device, **options)
        return self.simulators[key, mode]

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        for name in kwargs:
            if name != "mode":
                raise SimulationError(
                    f"unknown keyword {name!r} of run; the only one is mode (the others are "
                    "prepare's)",
                    OptionLoc(name),
                )
        mode = kwargs.get("mode", self.run_options.get("mode", "functional"))
        check_options({"mode": mode})
        feeds = self._feeds(inputs)
        weights = {name: self._weight(name, feeds.pop(name)) for name in self.weights}
        simulator = self.simulator_for(weights, mode)
        outputs = simulator.run(feeds).outputs
        result = tuple(outputs[info.name] for info in simulator.program.outputs)
        self._check_shapes(feeds, result)
        return result

    def _feeds(self, inputs: Any) -> dict[str, Any]:
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        elif isinstance(inputs, list | tuple):
            if len(inputs) != len(self.feeds):
                raise SimulationError(
                    f"{len(inputs)} inputs given; the model takes {len(self.feeds)} "
                    f"({', '.join(map(repr, self.feeds))})",
                    InputLoc(self.feeds[min(len(inputs), len(self.feeds) - 1)])
                    if self.feeds
                    else OptionLoc("inputs"),
                )
            feeds = dict(zip(self.feeds, inputs, strict=True))
        elif len(self.feeds) == 1:
            feeds = {self.feeds[0]: inputs}
        else:
            raise SimulationError(
                f"the model takes {len(self.feeds)} inputs ({', '.join(map(repr, self.feeds))}); "
                "pass a list or a dict of name -> array",
                OptionLoc("inputs"),
            )
        for name in self.weights:
            if name not in feeds:
                raise SimulationError(f"missing input {name!r}", InputLoc(name))
        return feeds

    def _weight(self, name: str, value: Any) -> np.ndarray:
        """An input bound as a constant, in the element type the model declares for it."""
        elem_type = self.input_types[name]
        try:
            dtype = helper.tensor_dtype_to_np_dtype(elem_type) if elem_type else None
            return np.asarray(value, dtype=dtype)
        except (ValueError, TypeError, KeyError) as exc:
            raise SimulationError(
                f"input {name!r} is not an array of the declared type: {exc}", InputLoc(name)
            ) from None

    def _check_shapes(self, feeds: dict[str, Any], outputs: tuple[np.ndarray, ...]) -> None:
        """Each output has the shape the model declares, symbolic dims bound by the inputs;
        a difference is an internal error of imcc, never a result."""
        sizes: dict[str, int] = {}
        for value in self.model.graph.input:
            if value.name in feeds:
                shape = np.shape(feeds[value.name])
                for dim, size in zip(value.type.tensor_type.shape.dim, shape, strict=False):
                    if dim.dim_param:
                        sizes.setdefault(dim.dim_param, int(size))
        for value, output in zip(self.model.graph.output, outputs, strict=False):
            declared = value.type.tensor_type.shape.dim
            expected = [
                d.dim_value if d.HasField("dim_value") else sizes.get(d.dim_param) for d in declared
            ]
            got = np.shape(output)
            if len(got) != len(expected) or any(
                e is not None and e != g for e, g in zip(expected, got, strict=False)
            ):
                shown = tuple("?" if e is None else e for e in expected)
                raise AssertionError(
                    f"internal error: imcc gives output {value.name!r} of shape {got}, but the "
                    f"model declares {shown}"
                )


def compile_precise(model: onnx.ModelProto, target: Target, **options: Any) -> Binary:
    """The widest weights and inputs (equal bits) whose integer sums stay exact."""
    for bits in PRECISIONS:
        try:
            return compile_model(model, target, weight_bits=bits, input_bits=bits, **options)
        except CompileError as exc:
            if "exact accumulation" in exc.message and bits != PRECISIONS[-1]:
                continue
            raise
    raise AssertionError("unreachable: the last precision either compiles or raises")


class ImccBackend(Backend):
    @classmethod
    def prepare(cls, model: Any, device: Any = HOST_DEVICE, **kwargs: Any) -> ImccRep:
        # (Backend.prepare only runs onnx.checker; the frontend runs it with node locations.)
        spec = check_device(device)
        options = check_options(kwargs)
        return ImccRep(_load(model), spec, **options)

    @classmethod
    def run_model(
        cls, model: Any, inputs: Any, device: Any = HOST_DEVICE, **kwargs: Any
    ) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        """The host ("CPU": the simulator runs there) and imcc's device models."""
        return isinstance(device, str) and (
            device.upper() == HOST_DEVICE or device in device_names()
        )


prepare = ImccBackend.prepare
run_model = ImccBackend.run_model
supports_device = ImccBackend.supports_device
