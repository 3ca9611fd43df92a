"""`imcc bench`, CNN part: ResNet-18 and MobileNetV2 (imcc.tools.zoo, 224x224 inputs) in the
high-precision configuration of the ONNX backend (16-bit weights and inputs, lossless ADC,
256 cores with 2^23-word buffers): compile time and peak memory next to an onnxruntime
session load, and one inference on the functional and cycle-level simulators next to
onnxruntime's. Then the compile alone of the two largest light real models in the onnx
wheel, ResNet-50 and VGG-19 (8-bit; VGG-19's classifier runs in phases), each in a fresh
process so its peak resident memory is its own."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np

from imcc.tools.bench import median_seconds

SIZE = 224
BITS = 16


def run_cnn_bench(repeats: int = 3) -> dict[str, Any]:
    import onnxruntime as ort

    import imcc
    from imcc.backend import high_precision_target
    from imcc.tools import zoo

    target = high_precision_target(cores=256, buffer_words=1 << 23)
    image = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    figures: dict[str, Any] = {"repeats": repeats, "size": SIZE, "bits": BITS, "models": {}}
    for name, build in sorted(zoo.MODELS.items()):
        model = build(size=SIZE)
        data = model.SerializeToString()

        def compile_model(model: Any = model) -> Any:
            return imcc.compile(model, target, weight_bits=BITS, input_bits=BITS)

        row: dict[str, Any] = {"compile_s": median_seconds(compile_model, repeats)}
        tracemalloc.start()
        binary = compile_model()
        row["compile_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        row["instructions"] = sum(len(code) for code in binary.program.code)
        row["arrays"] = len(binary.program.bindings)

        def load(data: bytes = data) -> Any:
            return ort.InferenceSession(data, providers=["CPUExecutionProvider"])

        load_s = median_seconds(load, repeats)
        row["compile_vs_onnxruntime_session"] = row["compile_s"] / load_s
        session = load()
        ort_s = median_seconds(lambda: session.run(None, {"image": image}), repeats)  # noqa: B023
        row["onnxruntime_s"] = ort_s
        for mode in ("functional", "cycle"):
            sim = imcc.Simulator(binary, mode=mode)
            seconds = median_seconds(lambda: sim.run({"image": image}), repeats)  # noqa: B023
            row[f"{mode}_s"] = seconds
            row[f"{mode}_vs_onnxruntime"] = seconds / ort_s
        report = imcc.Simulator(binary, mode="cycle").run({"image": image}).report
        row["chip_latency_s"] = report.latency_s
        row["chip_energy_uj"] = report.energy_pj / 1e6
        figures["models"][name] = row
    figures["light"] = run_light_bench()
    return figures


LIGHT_MODELS = ("resnet50", "vgg19")
_LIGHT_COMPILE = """
import json, os, resource, sys, time
import onnx
import imcc
from imcc.backend import high_precision_target
path = os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light", sys.argv[1])
start = time.perf_counter()
binary = imcc.compile(path, high_precision_target(cores=256, buffer_words=1 << 24),
                      weight_bits=8, input_bits=8)
# VmHWM, not ru_maxrss: the latter survives exec, so it would include the parent's peak
status = open("/proc/self/status").read()
peak_kb = int(status.split("VmHWM:")[1].split()[0]) if "VmHWM:" in status else (
    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
print(json.dumps({"compile_s": time.perf_counter() - start,
                  "peak_mb": peak_kb / 1e3,
                  "instructions": sum(len(code) for code in binary.program.code),
                  "images": len(binary.program.images)}))
"""


def run_light_bench() -> dict[str, Any]:
    """Compile time and peak memory (the child process's peak RSS, VmHWM) of the light
    models."""
    import json
    import subprocess
    import sys

    figures: dict[str, Any] = {}
    for name in LIGHT_MODELS:
        done = subprocess.run(
            [sys.executable, "-c", _LIGHT_COMPILE, f"light_{name}.onnx"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        figures[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def format_cnn_bench(figures: dict[str, Any]) -> str:
    lines = [
        f"CNNs ({figures['size']}x{figures['size']} inputs, {figures['bits']}-bit, lossless "
        f"ADC, 256 cores), one inference, median of {figures['repeats']} runs"
    ]
    for name, row in figures["models"].items():
        lines += [
            f"  {name}: {row['instructions']:,} instructions, {row['arrays']:,} arrays",
            f"    compile                      {row['compile_s']:10.2f} s"
            f"    ({row['compile_vs_onnxruntime_session']:.0f}x an onnxruntime session load),"
            f" peak {row['compile_peak_mb']:.0f} MB",
            f"    onnxruntime                  {row['onnxruntime_s'] * 1e3:10.3f} ms (baseline)",
        ]
        for mode in ("functional", "cycle"):
            lines.append(
                f"    imcc {mode:<10} simulation {row[f'{mode}_s']:8.2f} s"
                f"   = {row[f'{mode}_vs_onnxruntime']:,.0f}x onnxruntime"
            )
        lines.append(
            f"    simulated chip: {row['chip_latency_s'] * 1e3:.3f} ms, "
            f"{row['chip_energy_uj']:.1f} uJ per inference"
        )
    light = figures.get("light", {})
    if light:
        lines.append("  light real models of the onnx wheel, compile only (8-bit, 256 cores):")
    for name, row in light.items():
        lines.append(
            f"    {name:<9} {row['compile_s']:7.1f} s, peak {row['peak_mb']:,.0f} MB resident, "
            f"{row['instructions']:,} instructions, {row['images']:,} array images"
        )
    return "\n".join(lines)
