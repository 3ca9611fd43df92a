"""`imcc bench`, CNN part: ResNet-18 and MobileNetV2 (imcc.zoo, 224x224 inputs) in the
high-precision configuration of the ONNX backend (16-bit weights and inputs, lossless ADC,
256 cores with 2^23-word buffers): compile time and peak memory next to an onnxruntime
session load, and one inference on the functional and cycle-level simulators next to
onnxruntime's."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np

from imcc.bench import median_seconds

SIZE = 224
BITS = 16


def run_cnn_bench(repeats: int = 3) -> dict[str, Any]:
    import onnxruntime as ort

    import imcc
    from imcc import zoo
    from imcc.backend import high_precision_target

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
    return "\n".join(lines)
