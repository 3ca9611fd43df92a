"""Shared models and golden IR dumps for the per-pass tests in this folder.

Three small deterministic models built in code (an MLP and a CNN as ONNX, a random forest
fitted on iris), compiled once each per test session; `dump_after` gives the IR printed after
a pass, `check_golden` compares a text with golden/<name>.txt (IMCC_UPDATE_GOLDEN=1 rewrites
it). `Graph.dump()` holds no addresses or ids (names, types and attribute reprs only), so the
dumps are used as printed, without normalising; below the dump, each pass product is printed
in full, since the dump cuts attributes at 60 characters.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import imcc
from imcc.compiler.ir.core import Graph
from imcc.compiler.ir.crossbar import Slicing
from imcc.isa.container import Binary
from imcc.isa.program import Program

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE_FLAG = "IMCC_UPDATE_GOLDEN"

MLP_WIDTHS = (6, 20, 3)  # 20 outputs: two output blocks of 16 at 8 bits on 2-bit cells
CNN_INPUT = (1, 8, 8)
CNN_CHANNELS = 4


def mlp() -> onnx.ModelProto:
    """x (N, 6) -> Gemm -> Relu -> Gemm -> y (N, 3), weights from a seeded generator."""
    rng = np.random.default_rng(11)
    (k0, k1, k2) = MLP_WIDTHS
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (k0, k1)).astype(np.float32), "W0"),
        numpy_helper.from_array(rng.normal(0, 0.1, k1).astype(np.float32), "B0"),
        numpy_helper.from_array(rng.normal(0, 0.5, (k1, k2)).astype(np.float32), "W1"),
        numpy_helper.from_array(rng.normal(0, 0.1, k2).astype(np.float32), "B1"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "W0", "B0"], ["h0"], name="fc0"),
        helper.make_node("Relu", ["h0"], ["a0"], name="relu0"),
        helper.make_node("Gemm", ["a0", "W1", "B1"], ["y"], name="fc1"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k0])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", k2])],
        inits,
    )
    return _model(graph)


def cnn() -> onnx.ModelProto:
    """x (N, 1, 8, 8) -> Conv 3x3 (4 channels) -> Relu -> MaxPool 2x2 -> Flatten -> Gemm -> y
    (N, 3), weights from a seeded generator."""
    rng = np.random.default_rng(12)
    flat = CNN_CHANNELS * 3 * 3  # 8x8 -> conv 6x6 -> pool 3x3
    inits = [
        numpy_helper.from_array(
            rng.normal(0, 0.5, (CNN_CHANNELS, 1, 3, 3)).astype(np.float32), "conv.w"
        ),
        numpy_helper.from_array(rng.normal(0, 0.1, CNN_CHANNELS).astype(np.float32), "conv.b"),
        numpy_helper.from_array(rng.normal(0, 0.3, (flat, 3)).astype(np.float32), "fc.w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 3).astype(np.float32), "fc.b"),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["x", "conv.w", "conv.b"], ["c"], name="conv", kernel_shape=[3, 3]
        ),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *CNN_INPUT])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    return _model(graph)


@functools.cache
def trees() -> Any:
    """RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0) fitted on iris."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    return RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y)


def iris() -> np.ndarray:
    from sklearn.datasets import load_iris

    return np.asarray(load_iris().data, dtype=np.float64)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# name -> (builder, target)
MODELS: dict[str, tuple[Callable[[], Any], str]] = {
    "mlp": (mlp, "edge-rram"),
    "cnn": (cnn, "edge-rram"),
    "trees": (trees, "xtime"),
}
CROSSBAR_MODELS = ("mlp", "cnn")


def inputs(name: str, count: int = 4, seed: int = 0) -> np.ndarray:
    """`count` seeded input samples for model `name` (iris rows for the trees)."""
    if name == "trees":
        return iris()[::37][:count]
    shape = (MLP_WIDTHS[0],) if name == "mlp" else CNN_INPUT
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


@dataclass
class Compiled:
    """One compile: the binary, and after every pass the IR dump and a copy of the graph
    (passes rewrite the graph in place, so later passes would change a shared one)."""

    binary: Binary
    dumps: dict[str, str] = field(default_factory=dict)
    graphs: dict[str, Graph] = field(default_factory=dict)

    @property
    def program(self) -> Program:
        return self.binary.program


def compile_model(
    name: str, target: str | None = None, pipeline: str | None = None, **options: Any
) -> Compiled:
    """Compile model `name` (for its own target unless one is given), keeping what every
    pass left; cached, so tests must not mutate what it returns."""
    return _compile(name, target, pipeline, tuple(sorted(options.items())))


@functools.cache
def _compile(
    name: str, target: str | None, pipeline: str | None, options: tuple[tuple[str, Any], ...]
) -> Compiled:
    builder, default_target = MODELS[name]
    chosen = default_target if target is None else target
    return compile_source(builder(), chosen, pipeline, **dict(options))


def compile_source(
    source: Any, target: str, pipeline: str | None = None, **options: Any
) -> Compiled:
    """Compile any model, keeping the dump and a copy of the graph after every pass."""
    dumps: dict[str, str] = {}
    graphs: dict[str, Graph] = {}

    def after(pass_name: str, graph: Graph) -> None:
        dumps[pass_name] = graph.dump()
        graphs[pass_name] = copy.deepcopy(graph)

    binary = imcc.compile(source, target, pipeline=pipeline, print_after=after, **options)
    return Compiled(binary, dumps, graphs)


def dump_after(name: str, pass_name: str, target: str | None = None, **options: Any) -> str:
    """The IR dump of model `name` on `target` (default: the model's own) right after pass
    `pass_name`, then every pass product in full (the dump cuts attributes at 60 characters)."""
    compiled = compile_model(name, target, **options)
    assert pass_name in compiled.dumps, (
        f"pass {pass_name!r} did not run; ran {list(compiled.dumps)}"
    )
    return compiled.dumps[pass_name] + "\n" + products(compiled.graphs[pass_name])


def products(graph: Graph) -> str:
    """One line per pass product (`Produced` field) of every op, named by its first result
    (op names repeat: a lowered Conv's four ops share one): `%result.field = repr`."""
    lines = [
        f"%{op.outputs[0].name}.{field} = {value!r}"
        for op in graph.ops
        for field, value in sorted(op.produced.items())
    ]
    return "".join(f"# {line}\n" for line in lines)


def graph_after(name: str, pass_name: str, target: str | None = None, **options: Any) -> Graph:
    """A copy of model `name`'s graph right after pass `pass_name` (shared: do not mutate)."""
    return compile_model(name, target, **options).graphs[pass_name]


def check_golden(name: str, text: str) -> None:
    """`text` equals golden/<name>.txt; with IMCC_UPDATE_GOLDEN=1 the file is (re)written."""
    path = GOLDEN_DIR / f"{name}.txt"
    if os.environ.get(UPDATE_FLAG) == "1":
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text(text)
        return
    if not path.exists():
        raise AssertionError(
            f"golden file {path} is missing; create it by running the tests with "
            f"{UPDATE_FLAG}=1, e.g. {UPDATE_FLAG}=1 .venv/bin/python -m pytest "
            "tests/compiler/passes, then review it"
        )
    expected = path.read_text()
    if text != expected:
        import difflib

        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"golden/{name}.txt",
                "actual",
            )
        )
        raise AssertionError(
            f"IR dump differs from golden/{name}.txt (rerun with {UPDATE_FLAG}=1 if the "
            f"change is intended):\n{diff}"
        )


# -- an independent model of the cell levels ------------------------------------------------


def reference_levels(w_int: np.ndarray, slicing: Slicing) -> np.ndarray:
    """Cell levels (rows, slices, signs, outputs) of integer weights, computed here by
    repeated division (not by the compiler's slice_levels): differential pairs store |w| on
    G+ (w > 0) or G- (w < 0); the offset encoding stores u = w + offset on one cell."""
    base = 1 << slicing.cell_bits
    w = np.asarray(w_int, dtype=np.int64)
    if slicing.signs == 2:
        parts = [np.where(w > 0, w, 0), np.where(w < 0, -w, 0)]
    else:
        parts = [w + slicing.offset]
    levels = np.zeros((w.shape[0], slicing.slices, slicing.signs, w.shape[1]), dtype=np.int64)
    for p, part in enumerate(parts):
        for s in range(slicing.slices):
            levels[:, s, p, :] = (part // base**s) % base
    return levels


def recombine(levels: np.ndarray, slicing: Slicing) -> np.ndarray:
    """w = sum_s 2^(s*cell_bits) * (pos_s - neg_s), or sum_s 2^(s*cell_bits) * u_s - offset,
    from levels shaped (rows, slices, signs, outputs)."""
    weights = np.array([1 << (s * slicing.cell_bits) for s in range(slicing.slices)])
    magnitude = np.einsum("rspn,s->rpn", levels.astype(np.int64), weights)
    if slicing.signs == 2:
        return magnitude[:, 0] - magnitude[:, 1]
    return magnitude[:, 0] - slicing.offset
