"""How ADC resolution, cell bits and the sign encoding decide an analog chip's accuracy.

    python examples/adc_study.py [--out DIR] [--quick]

Compiles the digits MLP of `imcc demo` (8-bit weights and inputs, 128x128 arrays, bit-serial
inputs) for every combination of adc_bits 4..10, cell_bits 1, 2, 4 and both sign encodings,
with the ADC spanning the array's full scale and with per-column ranges calibrated on training
images; simulates the held-out images on the ideal device; prints the accuracy table and saves
it as DIR/adc_study.png. The lossless ADC for 128 rows needs log2(128 (2^cell_bits - 1) + 1)
bits: 8 for 1-bit cells, 9 for 2-bit, 11 for 4-bit; below that the ADC rounds and clips.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import imcc
from imcc.tools.demo import digits, mlp_to_onnx, onnxruntime_outputs, train_mlp

ADC_BITS = (4, 5, 6, 7, 8, 9, 10)
CELL_BITS = (1, 2, 4)
ENCODINGS = ("differential", "offset")
RANGES = ("full-scale", "column")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for adc_study.png")
    parser.add_argument("--quick", action="store_true", help="fewer points (for tests)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="imcc-adc-"))
    out.mkdir(parents=True, exist_ok=True)
    adc_bits = ADC_BITS[::3] if args.quick else ADC_BITS

    data = digits()
    model = mlp_to_onnx(train_mlp(data))
    reference = float(np.mean(onnxruntime_outputs(model, data.x_test).argmax(-1) == data.y_test))
    results: dict[tuple[str, str, int], list[float]] = {}
    for adc_range in RANGES:
        for encoding in ENCODINGS:
            for cell_bits in CELL_BITS:
                row = []
                for bits in adc_bits:
                    binary = imcc.compile(
                        model,
                        cell_bits=cell_bits,
                        adc_bits=bits,
                        sign_encoding=encoding,
                        adc_range=adc_range,
                        calibrate=data.x_train[:300],
                    )
                    result = imcc.Simulator(binary, mode="functional").run(data.x_test)
                    predicted = result.outputs["probabilities"].argmax(-1)
                    row.append(float(np.mean(predicted == data.y_test)))
                results[(adc_range, encoding, cell_bits)] = row

    print(f"digits MLP accuracy (%) against ADC bits; onnxruntime float32: {100 * reference:.2f}")
    print(
        f"{'ADC range':<11} {'encoding':<13} {'cell bits':>9}  "
        + " ".join(f"{b:>6}" for b in adc_bits)
    )
    for (adc_range, encoding, cell_bits), row in results.items():
        print(
            f"{adc_range:<11} {encoding:<13} {cell_bits:>9}  "
            + " ".join(f"{100 * a:6.1f}" for a in row)
        )
    plot(results, adc_bits, reference, out / "adc_study.png")
    print(f"wrote {out / 'adc_study.png'}")


def plot(
    results: dict[tuple[str, str, int], list[float]],
    adc_bits: tuple[int, ...],
    reference: float,
    path: Path,
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("the plot needs matplotlib: pip install 'imcc[examples]'") from None
    fig, axes = plt.subplots(1, len(RANGES), figsize=(11, 4.2), sharey=True)
    styles = {"differential": "-", "offset": "--"}
    for ax, adc_range in zip(axes, RANGES, strict=True):
        for (rng, encoding, cell_bits), row in results.items():
            if rng != adc_range:
                continue
            ax.plot(
                adc_bits,
                [100 * a for a in row],
                styles[encoding],
                marker="o",
                label=f"{encoding}, {cell_bits}-bit cells",
            )
        ax.axhline(100 * reference, color="grey", lw=0.8, label="onnxruntime float32")
        ax.set_title(f"ADC range: {adc_range}")
        ax.set_xlabel("ADC bits")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out accuracy (%)")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("digits MLP, 8-bit weights and inputs, 128x128 arrays, 1-bit DACs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
