"""`imcc bench`: speed figures measured in one run, always next to a baseline.

Absolute times on shared machines are noise, so every figure is a median over repeats and is
reported with a ratio to a baseline timed in the same process: onnxruntime on the same model
and inputs, and a bare numpy matmul doing the same integer MVM work as the crossbars.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm up: imports, caches, BLAS threads
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run_bench(repeats: int = 7) -> dict[str, Any]:
    """The demo MLP (64-64-10 on digits): compile and simulate, against onnxruntime and numpy."""
    import onnxruntime as ort

    import imcc
    from imcc.demo import digits, mlp_to_onnx, train_mlp

    data = digits()
    onnx_model = mlp_to_onnx(train_mlp(data))
    x = data.x_test
    batch = len(x)
    figures: dict[str, Any] = {"model": "digits MLP 64-64-10", "batch": batch, "repeats": repeats}
    figures["compile_s"] = median_seconds(lambda: imcc.compile(onnx_model), repeats)
    binary = imcc.compile(onnx_model)

    session = ort.InferenceSession(
        onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    x32 = x.astype(np.float32)
    ort_s = median_seconds(lambda: session.run(None, {"pixels": x32}), repeats)
    figures["onnxruntime_per_inference_s"] = ort_s / batch

    # The same integer work the crossbars do, as one float64 GEMM per array image.
    images = [img.levels.astype(np.float64) for img in binary.program.images]
    inputs = [np.ones((batch, img.shape[0])) for img in images]
    gemm_s = median_seconds(lambda: [a @ w for a, w in zip(inputs, images, strict=True)], repeats)
    figures["numpy_gemm_per_inference_s"] = gemm_s / batch

    for mode in ("functional", "cycle"):
        sim = imcc.Simulator(binary, mode=mode)

        def simulate(sim: imcc.Simulator = sim) -> object:
            return sim.run(x)

        seconds = median_seconds(simulate, repeats)
        figures[f"{mode}_per_inference_s"] = seconds / batch
        figures[f"{mode}_vs_onnxruntime"] = seconds / ort_s
        figures[f"{mode}_vs_numpy_gemm"] = seconds / gemm_s
    figures["compile_vs_onnxruntime_session"] = figures["compile_s"] / median_seconds(
        lambda: ort.InferenceSession(
            onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
        ),
        repeats,
    )
    return figures


def format_bench(figures: dict[str, Any]) -> str:
    us = 1e6
    lines = [
        f"{figures['model']}, batch {figures['batch']}, median of {figures['repeats']} runs",
        f"  compile                      {figures['compile_s'] * 1e3:10.2f} ms"
        f"   ({figures['compile_vs_onnxruntime_session']:.1f}x an onnxruntime session load)",
        f"  onnxruntime                  {figures['onnxruntime_per_inference_s'] * us:10.3f} us"
        " per inference (baseline)",
        f"  numpy GEMM (crossbar work)   {figures['numpy_gemm_per_inference_s'] * us:10.3f} us"
        " per inference (baseline)",
    ]
    for mode in ("functional", "cycle"):
        lines.append(
            f"  imcc {mode:<10} simulation {figures[f'{mode}_per_inference_s'] * us:10.3f} us"
            f" per inference = {figures[f'{mode}_vs_onnxruntime']:.1f}x onnxruntime, "
            f"{figures[f'{mode}_vs_numpy_gemm']:.1f}x numpy GEMM"
        )
    return "\n".join(lines)
