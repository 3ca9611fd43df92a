"""`imcc bench`: speed figures measured in one run, always next to a baseline.

Absolute times on shared machines are noise, so every figure is a median over repeats and is
reported with a ratio to a baseline timed in the same process: onnxruntime on the same model
and inputs, and a bare numpy GEMM doing the same partial-product work as the crossbars (one
GEMM per array image when the ADC is lossless, one per image and DAC step otherwise).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from imcc.isa import spec
from imcc.isa.numerics import input_steps


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm up: imports, caches, BLAS threads
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def gemm_baseline(binary: Any, batch: int, repeats: int, per_step: bool) -> float:
    """Seconds for the crossbars' partial products as bare float64 GEMMs on `batch` inputs."""
    program = binary.program
    work = []
    for core, code in enumerate(program.code):
        bound = {b.array: b.image for b in program.bindings if b.core == core}
        for instr in code:
            if instr.spec is not spec.XBAR_MVM:
                continue
            steps = 1
            if per_step:
                bits, signed = instr.operand("bits"), bool(instr.operand("signed"))
                steps = len(input_steps(bits, signed, program.target.xbar.dac_bits))
            first = instr.operand("array")
            for array in range(first, first + instr.operand("k")):  # every array it spans
                image = program.images[bound[array]].levels.astype(np.float64)
                work += [(np.ones((batch, image.shape[0])), image)] * steps
    return median_seconds(lambda: [x @ w for x, w in work], repeats)


def run_bench(repeats: int = 7) -> dict[str, Any]:
    """The demo MLP (64-64-10 on digits): compile, and simulate both the ideal lossless chip
    and a faithful lossy one, against onnxruntime and numpy GEMM baselines."""
    import onnxruntime as ort

    import imcc
    from imcc.tools.demo import digits, mlp_to_onnx, train_mlp

    data = digits()
    onnx_model = mlp_to_onnx(train_mlp(data))
    x = data.x_test
    batch = len(x)
    figures: dict[str, Any] = {
        "model": "digits MLP 64-64-10",
        "batch": batch,
        "repeats": repeats,
    }
    figures["compile_s"] = median_seconds(lambda: imcc.compile(onnx_model), repeats)
    session = ort.InferenceSession(
        onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    figures["compile_vs_onnxruntime_session"] = figures["compile_s"] / median_seconds(
        lambda: ort.InferenceSession(
            onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
        ),
        repeats,
    )
    x32 = x.astype(np.float32)
    ort_s = median_seconds(lambda: session.run(None, {"pixels": x32}), repeats)
    figures["onnxruntime_per_inference_s"] = ort_s / batch

    # ideal: the default 9-bit ADC is lossless for 2-bit cells, so each MVM is one matmul;
    # faithful: a 6-bit ADC rounds, so every DAC step is read and converted.
    configurations: dict[str, dict[str, Any]] = {"ideal": {}, "faithful": {"adc_bits": 6}}
    for name, options in configurations.items():
        binary = imcc.compile(onnx_model, **options)
        gemm_s = gemm_baseline(binary, batch, repeats, per_step=name == "faithful")
        figures[f"{name}_numpy_gemm_per_inference_s"] = gemm_s / batch
        for mode in ("functional", "cycle"):
            sim = imcc.Simulator(binary, mode=mode)

            def simulate(sim: imcc.Simulator = sim) -> object:
                return sim.run(x)

            seconds = median_seconds(simulate, repeats)
            key = f"{name}_{mode}"
            figures[f"{key}_per_inference_s"] = seconds / batch
            figures[f"{key}_vs_onnxruntime"] = seconds / ort_s
            figures[f"{key}_vs_numpy_gemm"] = seconds / gemm_s
    figures.update(noisy_bench(imcc.compile(onnx_model), x, repeats))
    return figures


NOISY: dict[str, Any] = {"device": "pcm", "time": "1d", "drift_compensation": "global"}


def noisy_bench(binary: Any, x: np.ndarray, repeats: int) -> dict[str, Any]:
    """A physical device against the ideal one on the same binary: programming the chip
    (Simulator construction: sampling every cell, IR drop, the compensation calibration) and
    running the batch (every DAC step read with read noise, then the ADC)."""
    import imcc

    batch = len(x)
    figures: dict[str, Any] = {
        "noisy_device": ", ".join(f"{k} {v}" for k, v in NOISY.items()),
        "noisy_setup_s": median_seconds(lambda: imcc.Simulator(binary, **NOISY), repeats),
        "ideal_setup_s": median_seconds(lambda: imcc.Simulator(binary), repeats),
    }
    figures["noisy_setup_vs_ideal"] = figures["noisy_setup_s"] / figures["ideal_setup_s"]
    for mode in ("functional", "cycle"):
        runs = {
            "ideal": imcc.Simulator(binary, mode=mode),
            "noisy": imcc.Simulator(binary, mode=mode, **NOISY),
        }
        seconds = {
            name: median_seconds(lambda sim=sim: sim.run(x), repeats)  # type: ignore[misc]
            for name, sim in runs.items()
        }
        figures[f"noisy_{mode}_per_inference_s"] = seconds["noisy"] / batch
        figures[f"noisy_{mode}_vs_ideal"] = seconds["noisy"] / seconds["ideal"]
    return figures


def format_bench(figures: dict[str, Any]) -> str:
    us = 1e6
    lines = [
        f"{figures['model']}, batch {figures['batch']}, median of {figures['repeats']} runs",
        f"  compile                      {figures['compile_s'] * 1e3:10.2f} ms"
        f"   ({figures['compile_vs_onnxruntime_session']:.1f}x an onnxruntime session load)",
        f"  onnxruntime                  {figures['onnxruntime_per_inference_s'] * us:10.3f} us"
        " per inference (baseline)",
    ]
    for name, what in (("ideal", "lossless ADC, one matmul per MVM"),
                       ("faithful", "6-bit ADC, every DAC step read")):  # fmt: skip
        lines.append(f"  {name} chip ({what}):")
        lines.append(
            f"    numpy GEMM (same products) "
            f"{figures[f'{name}_numpy_gemm_per_inference_s'] * us:10.3f} us per inference "
            "(baseline)"
        )
        for mode in ("functional", "cycle"):
            key = f"{name}_{mode}"
            lines.append(
                f"    imcc {mode:<10} simulation {figures[f'{key}_per_inference_s'] * us:8.3f} us"
                f" per inference = {figures[f'{key}_vs_onnxruntime']:.1f}x onnxruntime, "
                f"{figures[f'{key}_vs_numpy_gemm']:.1f}x numpy GEMM"
            )
    if "noisy_device" in figures:
        lines.append(
            f"  noisy chip ({figures['noisy_device']}) against the ideal one, same binary:"
        )
        lines.append(
            f"    programming the chip         {figures['noisy_setup_s'] * 1e3:10.2f} ms"
            f" = {figures['noisy_setup_vs_ideal']:.1f}x the ideal chip's"
        )
        for mode in ("functional", "cycle"):
            lines.append(
                f"    imcc {mode:<10} simulation "
                f"{figures[f'noisy_{mode}_per_inference_s'] * us:8.3f} us per inference = "
                f"{figures[f'noisy_{mode}_vs_ideal']:.1f}x the ideal run"
            )
    return "\n".join(lines)
