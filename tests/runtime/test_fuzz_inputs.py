"""Fuzzed run-time inputs and Simulator arguments: random shapes, dtypes, NaN and inf, ragged
lists, dicts with wrong keys, and odd max_cycles / seed / time / device / mode values, on a small
compiled MLP, a small forest on the analog CAM and a hand-made two-input program. Every case
ends in a result or a Diagnostic with a location; a result on the ideal device equals the
reference run of the same samples (so a run that looks fine but is wrong is a finding too).
`IMCC_FUZZ_SCALE=N` runs N times as many cases."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import imcc
from tests.conftest import mlp_onnx
from tests.fuzzing import Tally, cases
from tests.runtime.programs import program

TWO_INPUTS = """
.target edge-rram
.input {"name": "a", "shape": [2, 2], "addr": 0, "dtype": "float32"}
.input {"name": "b", "shape": [3], "addr": 8, "dtype": "float32"}
.output {"name": "y", "shape": [4], "addr": 16, "dtype": "float32"}
.core 0
    ctl.set r0, 0
    ctl.set r1, 100
    mem.load r1, r0, 12
    simd.add r1, r1, r1, 4
    ctl.set r2, 16
    mem.store r2, r1, 4
    ctl.halt
"""

# (good values, bad values) of each Simulator argument: a case takes good ones, and sometimes
# one bad one, which must be reported at that argument.
OPTIONS: dict[str, tuple[list[Any], list[Any]]] = {
    "max_cycles": ([None, 10**6, np.int64(10**5), 2**70, 50], [0, -5, "100", 1.5, True, [10]]),
    "seed": ([0, 1, 3, np.uint8(3), 2**64], [-1, "0", 1.0, None, True]),
    "time": ([0, 0.0, "1d", "1y", "30min", np.int64(60), 1e300],
             [-1, "x", [1], np.nan, np.inf, None, ""]),
    "device": ([None, "ideal", "pcm", "sram", ""], ["nope", 3, 1.5, b"pcm"]),
    "mode": (["functional", "cycle"], ["fast", None, 1]),
    "drift_compensation": ([None, "global", "column", "none"], ["x", 1]),
    "ir_drop": ([None, "fast", "exact", "off"], ["x", 2]),
    "cam_device": ([None, 0.0, 0.5, "ideal"], ["x", -1.0, np.nan, object()]),
}  # fmt: skip
TIMES = OPTIONS["time"][0] + OPTIONS["time"][1]
COMPENSATIONS = OPTIONS["drift_compensation"][0] + OPTIONS["drift_compensation"][1]
DTYPES = ["float32", "float64", "float16", "int64", "int8", "uint8", "bool", "complex128",
          "U3", "object", "longdouble"]  # fmt: skip


@pytest.fixture(scope="module")
def models() -> dict[str, imcc.Binary]:
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y)
    return {
        "mlp": imcc.compile(mlp_onnx([6, 5, 3], ["relu", "none"])),
        "forest": imcc.compile(forest, target="xtime"),
        "two": imcc.Binary(program(TWO_INPUTS), name="two.imcb"),
    }


def shapes_of(binary: imcc.Binary) -> dict[str, tuple[int, ...]]:
    return {t.name: t.shape for t in binary.program.inputs}


def random_array(rng: np.random.Generator, shape: tuple[int, ...]) -> Any:
    """An array of `shape` (or a near miss), of a random dtype, sometimes with NaN or inf."""
    kind = rng.integers(10)
    if kind == 0 and shape and shape[-1] > 1:  # ragged nested list
        rows = [list(rng.normal(size=shape[-1])) for _ in range(2)]
        rows[1] = rows[1][:-1]
        return rows
    if kind == 1:
        return rng.normal(size=shape).tolist()  # a rectangular nested list: fine
    if kind == 2:
        return [None, "a", 3][int(rng.integers(3))]
    dtype = DTYPES[int(rng.integers(len(DTYPES)))] if kind < 6 else "float64"
    values = rng.normal(scale=10 ** float(rng.integers(-3, 4)), size=shape)
    if rng.random() < 0.2 and values.size:
        values.flat[int(rng.integers(values.size))] = [np.nan, np.inf, -np.inf, 1e308][
            int(rng.integers(4))
        ]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return values.astype(dtype)


def random_shape(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Mostly a batch of the right shape; otherwise a wrong rank, size or an empty batch."""
    roll = rng.random()
    if roll < 0.55:
        lead = tuple(int(d) for d in rng.integers(1, 5, size=int(rng.integers(0, 3))))
        return (*lead, *shape)
    if roll < 0.65:
        return (0, *shape)
    if roll < 0.8:
        return tuple(int(d) for d in rng.integers(0, 7, size=int(rng.integers(0, 4))))
    wrong = list(shape) or [1]
    wrong[int(rng.integers(len(wrong)))] += int(rng.choice([-1, 1, 5]))
    return (int(rng.integers(1, 4)), *(max(d, 0) for d in wrong))


def random_inputs(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]]) -> Any:
    roll = rng.random()
    if roll < 0.03:
        return [None, 3.0, "x", {1, 2}, (i for i in range(3))][int(rng.integers(5))]
    # one shared batch shape for all inputs, mostly
    lead = tuple(int(d) for d in rng.integers(1, 4, size=int(rng.integers(0, 2))))
    feeds: dict[Any, Any] = {}
    for name, shape in shapes.items():
        full = random_shape(rng, shape) if rng.random() < 0.2 else (*lead, *shape)
        feeds[name] = random_array(rng, full) if rng.random() < 0.3 else rng.normal(size=full)
    if rng.random() < 0.05 and feeds:
        del feeds[list(feeds)[int(rng.integers(len(feeds)))]]
    if rng.random() < 0.05:
        feeds[["z", 0, None, ("a",)][int(rng.integers(4))]] = np.zeros(3)
    if len(feeds) == 1 and rng.random() < 0.5:
        return next(iter(feeds.values()))  # the bare array of a one-input model
    return feeds


def pick(rng: np.random.Generator, values: list[Any]) -> Any:
    return values[int(rng.integers(len(values)))]


def random_options(rng: np.random.Generator) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, (good, _) in OPTIONS.items():
        if rng.random() < (0.9 if name == "mode" else 0.3):
            options[name] = pick(rng, good)
    if rng.random() < 0.3:
        name = pick(rng, sorted(OPTIONS))
        options[name] = pick(rng, OPTIONS[name][1])
    return options


class Reference:
    """The ideal functional run of a model, sample by sample, to check fuzzed results."""

    def __init__(self, binary: imcc.Binary) -> None:
        self.sim = imcc.Simulator(binary, mode="functional")

    def check(self, inputs: Any, outputs: dict[str, np.ndarray]) -> bool:
        feeds = inputs if isinstance(inputs, dict) else {self.sim.inputs[0].name: inputs}
        arrays = {k: np.asarray(v).astype(np.float64) for k, v in feeds.items()}
        expected = self.sim.run(arrays).outputs
        return all(np.array_equal(expected[k], v, equal_nan=True) for k, v in outputs.items())


def one_case(
    rng: np.random.Generator, binary: imcc.Binary, reference: Reference
) -> Callable[[], Any]:
    options = random_options(rng)
    inputs = random_inputs(rng, shapes_of(binary))
    call = pick(rng, ["run", "run", "run", "trace", "stream", "set_time"])
    samples = pick(rng, [1, 3, 2, np.int64(2), 0, -1, "2", 2.0])
    bad = rng.random() < 0.2  # set_time's arguments: good ones, or any
    times, compensations = (TIMES, COMPENSATIONS) if bad else (
        OPTIONS["time"][0], OPTIONS["drift_compensation"][0])  # fmt: skip
    later = (pick(rng, times), pick(rng, compensations)) if rng.random() < 0.4 else None

    def case() -> Any:
        sim = imcc.Simulator(binary, **options)
        if call == "set_time" or later is not None:
            time, compensation = later or ("1h", None)
            sim.set_time(time, compensation)
        if call == "trace":
            return sim.trace(inputs)
        if call == "stream":
            return sim.stream(inputs, samples)
        result = sim.run(inputs)
        ideal = options.get("device") in (None, "", "ideal", "sram")
        exact = ideal and options.get("cam_device") in (None, 0.0, "ideal")
        if exact and not reference.check(inputs, result.outputs):
            raise AssertionError("a result differs from the reference run")
        return result

    return case


def test_fuzzed_inputs_and_arguments_end_in_results_or_located_diagnostics(models) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    references = {name: Reference(binary) for name, binary in models.items()}
    names = sorted(models)
    tally = Tally("runtime inputs")
    for i in range(cases(1000)):
        name = names[int(rng.integers(len(names)))]
        tally.run(f"case {i} ({name})", one_case(rng, models[name], references[name]))
    assert tally.outcomes["ok"] > 250 and tally.outcomes["diagnostic"] > 250  # both kinds seen
    tally.assert_clean()
