"""Monte Carlo over chips: the same binary on independently programmed chips, metrics per trial.

`trials(binary, inputs, device="pcm", time="1d", trials=20, seed=0)` builds one Simulator per
trial with seed `seed + i` (trial i programs its own chip: programming noise, variation, faults
and drift exponents are drawn anew; the same seed gives the same chip), runs the inputs at the
given time, and applies a metric to the outputs. The default metric compares each output with
the ideal device's (run once): relative error ||y - y_ideal|| / ||y_ideal||, agreement of the
top-1 class with the ideal run (for outputs with a class axis), and accuracy against `labels`
(argmax of the first output's last axis) when given. `imcc run --trials N` prints the result.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from imcc.isa.container import Binary
from imcc.isa.diagnostics import OptionLoc, SimulationError
from imcc.isa.program import Program
from imcc.runtime.devices.presets import DevicePreset
from imcc.runtime.devices.units import format_time, parse_time
from imcc.runtime.report import RunReport
from imcc.runtime.simulator import Simulator

Metric = Callable[[dict[str, np.ndarray]], dict[str, float]]


@dataclass(frozen=True, slots=True)
class MetricStats:
    name: str
    values: tuple[float, ...]  # one per trial, in trial order

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        """Sample standard deviation over trials (0 for one trial)."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0

    @property
    def min(self) -> float:
        return float(np.min(self.values))

    @property
    def max(self) -> float:
        return float(np.max(self.values))


@dataclass(frozen=True, slots=True, kw_only=True)
class MonteCarloResult:
    device: str
    time_s: float
    drift_compensation: str | None
    seeds: tuple[int, ...]
    metrics: tuple[MetricStats, ...]
    report: RunReport  # of the first trial (costs do not depend on the chip's draws)

    def __getitem__(self, name: str) -> MetricStats:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "time_s": self.time_s,
            "drift_compensation": self.drift_compensation,
            "seeds": list(self.seeds),
            "metrics": {
                m.name: {"mean": m.mean, "std": m.std, "min": m.min, "max": m.max,
                         "values": list(m.values)}
                for m in self.metrics
            },
        }  # fmt: skip

    def table(self) -> str:
        comp = self.drift_compensation or "none"
        seeds = f"seeds {self.seeds[0]}..{self.seeds[-1]}" if len(self.seeds) > 1 else ""
        lines = [
            f"device {self.device}, time {format_time(self.time_s)} ({self.time_s:,.0f} s), "
            f"drift compensation {comp}: {len(self.seeds)} chips ({seeds})",
            f"  {'metric':<36} {'mean':>10} {'std':>10} {'min':>10} {'max':>10}",
        ]
        for m in self.metrics:
            lines.append(f"  {m.name:<36} {m.mean:10.4f} {m.std:10.4f} {m.min:10.4f} {m.max:10.4f}")
        return "\n".join(lines)


def output_metrics(
    outputs: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    labels: np.ndarray | None = None,
    classes: list[Any] | None = None,
) -> dict[str, float]:
    """The default metric: error and top-1 agreement against a reference run, and accuracy."""
    result: dict[str, float] = {}
    for name, y in outputs.items():
        ref = reference[name].astype(np.float64)
        y = y.astype(np.float64)
        norm = float(np.linalg.norm(ref))
        diff = float(np.linalg.norm(y - ref))
        result[f"{name}: relative error"] = diff / norm if norm else diff
        if y.ndim >= 2 and y.shape[-1] > 1:
            agree = np.argmax(y, axis=-1) == np.argmax(ref, axis=-1)
            result[f"{name}: top-1 agreement"] = float(np.mean(agree))
    if labels is not None:
        result["accuracy"] = accuracy(outputs, labels, classes)
    return result


def accuracy(
    outputs: dict[str, np.ndarray], labels: np.ndarray, classes: list[Any] | None = None
) -> float:
    """Fraction of samples predicted right: the first output is either scores with a class
    axis (the argmax is the class) or an integer label per sample (an index into `classes`,
    the class list a classifier's binary records, when given)."""
    first = next(iter(outputs.values()))
    labels = np.asarray(labels).reshape(-1)
    if first.dtype.kind in "iu" and first.size == labels.size:
        index = first.reshape(-1)
        predicted = np.asarray(classes, dtype=object)[index] if classes else index
        return float(np.mean(predicted == labels))
    if first.ndim < 2 or first.shape[-1] < 2:
        raise SimulationError(
            f"accuracy needs scores with a class axis or one integer label per sample; the "
            f"first output has shape {first.shape}",
            OptionLoc("labels"),
        )
    predicted = np.argmax(first, axis=-1).reshape(-1)
    if predicted.shape != labels.shape:
        raise SimulationError(
            f"{labels.shape[0]} labels for {predicted.shape[0]} samples; give one label per sample",
            OptionLoc("labels"),
        )
    return float(np.mean(predicted == labels))


def trials(
    binary: Binary | Program | str | os.PathLike[str],
    inputs: Any,
    metric: Metric | None = None,
    *,
    device: str | DevicePreset | None = None,
    time: float | str = 0.0,
    trials: int = 10,
    seed: int = 0,
    drift_compensation: str | None = None,
    ir_drop: str | None = None,
    cam_device: str | float | None = None,
    mode: str = "functional",
    labels: np.ndarray | None = None,
) -> MonteCarloResult:
    """Run `inputs` on `trials` independently programmed chips; metrics per trial."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise SimulationError(
            f"trials must be a positive integer, not {trials!r}", OptionLoc("trials")
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SimulationError(
            f"seed must be a non-negative integer, not {seed!r}", OptionLoc("seed")
        )
    try:
        seconds = parse_time(time)
    except SimulationError as exc:
        raise SimulationError(exc.message, OptionLoc("time")) from None
    if isinstance(binary, str | os.PathLike):
        binary = Binary.load(binary)
    if metric is None:
        ideal = Simulator(binary, device="ideal", mode="functional").run(inputs).outputs
        program = binary.program if isinstance(binary, Binary) else binary
        classes = json.loads(program.meta["classes"]) if "classes" in program.meta else None
        if labels is not None:
            labels = np.asarray(labels)
            accuracy(ideal, labels, classes)  # check the labels fit before running every trial

        def metric(outputs: dict[str, np.ndarray]) -> dict[str, float]:
            return output_metrics(outputs, ideal, labels, classes)

    values: dict[str, list[float]] = {}
    report: RunReport | None = None
    seeds = tuple(seed + i for i in range(trials))
    for trial_seed in seeds:
        sim = Simulator(
            binary, device=device, seed=trial_seed, mode=mode, time=seconds,
            drift_compensation=drift_compensation, ir_drop=ir_drop, cam_device=cam_device,
        )  # fmt: skip
        result = sim.run(inputs)
        report = report or result.report
        for name, value in metric(result.outputs).items():
            if not math.isfinite(value):
                raise SimulationError(
                    f"metric {name!r} is {value} on the chip of seed {trial_seed}; a metric "
                    "must be finite",
                    OptionLoc("metric"),
                )
            values.setdefault(name, []).append(float(value))
    assert report is not None
    return MonteCarloResult(
        device=report.device,
        time_s=seconds,
        drift_compensation=drift_compensation if drift_compensation != "none" else None,
        seeds=seeds,
        metrics=tuple(MetricStats(name, tuple(v)) for name, v in values.items()),
        report=report,
    )
