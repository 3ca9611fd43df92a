"""Accuracy of the digits MLP on analog chips: PCM drift from 1 s to 1 year, RRAM variation.

    python examples/device_drift.py [--out DIR] [--trials N]     # the README figure: --trials 20

Trains the digits MLP, compiles it for the default RRAM-style target (8-bit weights on 2-bit
cells, static input scales from calibration data), then simulates many independently
programmed chips (`--trials`, seeds 0..N-1):
1. PCM (the `pcm` preset: aihwkit's PCMLikeNoiseModel): each chip followed along its own
   trajectory from 1 s to 1 year after programming, without drift compensation and with global
   and per-column compensation (the calibration reads are part of each run's report);
2. RRAM (`rram-wan`, Wan 2022 fits): the programming noise scaled from 0 to 6 times the
   published fit, read 1 s and 1 day after programming.
Writes device_drift.png (two panels, mean and spread over chips) and device_drift.json into
DIR (default: a temporary folder) and prints the tables. Needs matplotlib for the PNG
(`pip install 'imcc[examples]'`); without it the tables are still printed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import imcc
from imcc.runtime.devices.presets import load_preset
from imcc.runtime.devices.units import format_time
from imcc.tools.demo import digits, mlp_to_onnx, onnxruntime_outputs, train_mlp

TIMES = (1.0, 60.0, 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0, 365 * 86400.0)
COMPENSATIONS = (None, "global", "column")
SCALES = (0.0, 1.0, 2.0, 4.0, 6.0)
RRAM_TIMES = (1.0, 86400.0)


def accuracy(simulator: imcc.Simulator, x: np.ndarray, y: np.ndarray) -> float:
    probabilities = simulator.run(x).outputs["probabilities"]
    return float(np.mean(probabilities.argmax(axis=-1) == y))


def pcm_study(binary: imcc.Binary, x: np.ndarray, y: np.ndarray, trials: int) -> dict:
    """accuracy[compensation][trial][time]: one chip per trial, moved along its trajectory."""
    results: dict[str, list[list[float]]] = {}
    for compensation in COMPENSATIONS:
        per_chip = []
        for seed in range(trials):
            chip = imcc.Simulator(binary, device="pcm", seed=seed, mode="functional")
            row = []
            for seconds in TIMES:
                chip.set_time(seconds, drift_compensation=compensation)
                row.append(accuracy(chip, x, y))
            per_chip.append(row)
        results[compensation or "none"] = per_chip
    return results


def rram_study(binary: imcc.Binary, x: np.ndarray, y: np.ndarray, trials: int) -> dict:
    """accuracy[time][trial][scale] for the Wan 2022 programming noise times `scale`."""
    results: dict[str, list[list[float]]] = {}
    for seconds in RRAM_TIMES:
        per_chip = []
        for seed in range(trials):
            row = []
            for scale in SCALES:
                preset = load_preset("rram-wan").with_overrides(**{"scales.programming": scale})
                chip = imcc.Simulator(binary, device=preset, seed=seed, mode="functional",
                                      time=seconds)  # fmt: skip
                row.append(accuracy(chip, x, y))
            per_chip.append(row)
        results[format_time(seconds)] = per_chip
    return results


def table(title: str, columns: list[str], rows: dict[str, list[list[float]]]) -> str:
    lines = [title, f"  {'':<10}" + "".join(f"{c:>14}" for c in columns)]
    for name, per_chip in rows.items():
        a = np.asarray(per_chip)
        cells = [f"{100 * m:6.2f}+-{100 * s:4.2f}" for m, s in
                 zip(a.mean(axis=0), a.std(axis=0), strict=True)]  # fmt: skip
        lines.append(f"  {name:<10}" + "".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)


def plot(path: Path, pcm: dict, rram: dict, references: dict[str, float], trials: int) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, per_chip in pcm.items():
        a = 100 * np.asarray(per_chip)
        label = "no drift compensation" if name == "none" else f"{name} drift compensation"
        left.errorbar(TIMES, a.mean(axis=0), yerr=a.std(axis=0), marker="o", capsize=3,
                      label=label)  # fmt: skip
    left.set_xscale("log")
    left.set_xticks(TIMES, [format_time(t) for t in TIMES])
    left.set_xlabel("time since programming")
    left.set_title(f"PCM (aihwkit PCMLikeNoiseModel), {trials} chips")
    for name, per_chip in rram.items():
        a = 100 * np.asarray(per_chip)
        right.errorbar(SCALES, a.mean(axis=0), yerr=a.std(axis=0), marker="s", capsize=3,
                       label=f"read {name} after programming")  # fmt: skip
    right.set_xlabel("RRAM programming noise (x Wan 2022 fit)")
    right.set_title(f"RRAM (rram-wan), {trials} chips")
    for axis in (left, right):
        for name, value in references.items():
            axis.axhline(100 * value, color="grey", ls="--" if name == "ideal chip" else ":",
                         lw=1, label=name)  # fmt: skip
        axis.set_ylabel("accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower left")
    fig.suptitle("digits MLP 64-64-10, 8-bit weights on 2-bit cells, 128x128 arrays: mean +- std")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for the PNG and the JSON figures")
    parser.add_argument(
        "--trials", type=int, default=2, help="chips per point (default 2; the README's figure: 20)"
    )
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="imcc-drift-"))
    out.mkdir(parents=True, exist_ok=True)

    data = digits()
    model = mlp_to_onnx(train_mlp(data))
    binary = imcc.compile(model, calibrate=data.x_train[:200])
    x, y = data.x_test, data.y_test
    references = {
        "ideal chip": accuracy(imcc.Simulator(binary, mode="functional"), x, y),
        "onnxruntime float32": float(np.mean(onnxruntime_outputs(model, x).argmax(-1) == y)),
    }
    pcm = pcm_study(binary, x, y, args.trials)
    rram = rram_study(binary, x, y, args.trials)

    for name, value in references.items():
        print(f"accuracy, {name}: {100 * value:.2f} %")
    print(table("PCM: accuracy (%) against time since programming",
                [format_time(t) for t in TIMES], pcm))  # fmt: skip
    print(table("RRAM: accuracy (%) against programming noise (x Wan 2022 fit)",
                [f"x{s:g}" for s in SCALES], rram))  # fmt: skip
    figures = {
        "trials": args.trials, "times_s": TIMES, "scales": SCALES, "references": references,
        "pcm_accuracy": pcm, "rram_accuracy": rram,
    }  # fmt: skip
    (out / "device_drift.json").write_text(json.dumps(figures, indent=1))
    if plot(out / "device_drift.png", pcm, rram, references, args.trials):
        print(f"wrote {out}/device_drift.png and device_drift.json")
    else:
        print(f"wrote {out}/device_drift.json (install matplotlib for the PNG)")


if __name__ == "__main__":
    main()
