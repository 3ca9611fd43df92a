"""The tree part of `imcc bench`: analog-CAM inference on the simulator beside onnxruntime's
TreeEnsemble, on the same model and the same batch, timed in one run.

The model is a scikit-learn RandomForestClassifier (100 trees, depth <= 8) on breast_cancer,
exported with skl2onnx; both imcc (for the X-TIME-style target) and onnxruntime run that ONNX
model on a batch of rows tiled from the dataset. Figures are medians over repeats, as rows per
second, with the ratio to onnxruntime, and the simulated chip's own latency and energy.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from imcc.tools.bench import median_seconds

BATCH = 4096


def run_tree_bench(repeats: int = 7, batch: int = BATCH) -> dict[str, Any]:
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    import imcc

    x, y = load_breast_cancer(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0).fit(x, y)
        proto = to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    rows = np.resize(x, (batch, x.shape[1])).astype(np.float32)
    figures: dict[str, Any] = {
        "model": "RandomForestClassifier 100 trees, depth <= 8, breast_cancer (skl2onnx)",
        "batch": batch,
        "repeats": repeats,
    }
    figures["compile_s"] = median_seconds(lambda: imcc.compile(proto, target="xtime"), repeats)
    binary = imcc.compile(proto, target="xtime")
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ort_s = median_seconds(lambda: session.run(None, {"X": rows}), repeats)
    figures["onnxruntime_rows_per_s"] = batch / ort_s
    expected = session.run(None, {"X": rows})[0]
    for mode in ("functional", "cycle"):
        sim = imcc.Simulator(binary, mode=mode)
        result = sim.run(rows)
        if not np.array_equal(result.outputs["label"], expected):
            raise RuntimeError(f"the {mode} simulation disagrees with onnxruntime")

        def simulate(sim: imcc.Simulator = sim) -> object:
            return sim.run(rows)

        seconds = median_seconds(simulate, repeats)
        figures[f"{mode}_rows_per_s"] = batch / seconds
        figures[f"{mode}_vs_onnxruntime"] = (batch / seconds) / figures["onnxruntime_rows_per_s"]
        if mode == "cycle":
            report = result.report
            figures["chip_latency_s"] = report.latency_s
            figures["chip_energy_pj_per_row"] = report.energy_pj
    figures["acam"] = binary.program.meta.get("acam", "")
    figures["numpy_functional_rows_per_s"] = _without_jit(binary, rows, repeats)
    return figures


def _without_jit(binary: Any, rows: np.ndarray, repeats: int) -> float:
    """Functional rows/s with the llvmlite CAM kernels off (the numpy definitions instead):
    what the JIT buys, measured in the same run."""
    import os

    import imcc
    from imcc.runtime.kernels import kernels

    previous = os.environ.get("IMCC_NO_JIT")
    os.environ["IMCC_NO_JIT"] = "1"
    kernels.cache_clear()
    try:
        sim = imcc.Simulator(binary, mode="functional")
        return len(rows) / median_seconds(lambda: sim.run(rows), repeats)
    finally:
        if previous is None:
            del os.environ["IMCC_NO_JIT"]
        else:
            os.environ["IMCC_NO_JIT"] = previous
        kernels.cache_clear()


def format_tree_bench(figures: dict[str, Any]) -> str:
    lines = [
        f"{figures['model']}, batch {figures['batch']}, median of {figures['repeats']} runs",
        f"  compile for xtime            {figures['compile_s'] * 1e3:10.2f} ms",
        f"  onnxruntime TreeEnsemble     {figures['onnxruntime_rows_per_s']:12,.0f} rows/s"
        " (baseline)",
    ]
    for mode in ("functional", "cycle"):
        lines.append(
            f"  imcc {mode:<10} simulation {figures[f'{mode}_rows_per_s']:12,.0f} rows/s = "
            f"{figures[f'{mode}_vs_onnxruntime']:.3f}x onnxruntime"
        )
    if "numpy_functional_rows_per_s" in figures:
        numpy_rate = figures["numpy_functional_rows_per_s"]
        lines.append(
            f"  the same without llvmlite    {numpy_rate:12,.0f} rows/s: the JIT kernels buy "
            f"{figures['functional_rows_per_s'] / numpy_rate:.1f}x"
        )
    latency = figures["chip_latency_s"]
    lines.append(
        f"  simulated chip: {latency * 1e9:.0f} ns and {figures['chip_energy_pj_per_row']:,.0f} pJ"
        " per row (one row at a time, no pipelining)"
    )
    return "\n".join(lines)
