"""An MLP trained on scikit-learn's digits, exported to ONNX, compiled for an RRAM chip, run.

    python examples/digits_mlp.py [--out DIR]

Walks through what `imcc demo` does, one public API call at a time, and writes the ONNX model,
the binary, its disassembly and the run report into DIR (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx

import imcc
from imcc.tools.demo import digits, mlp_to_onnx, onnxruntime_outputs, train_mlp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for the model, binary and report")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="imcc-digits-"))
    out.mkdir(parents=True, exist_ok=True)

    # 1. Train on the bundled data and export to ONNX.
    data = digits()
    model = train_mlp(data)
    onnx.save(mlp_to_onnx(model), out / "digits_mlp.onnx")

    # 2. Compile: 8-bit weights and inputs on the default RRAM target; calibrate the input
    #    scales on training images instead of setting them per vector at run time.
    binary = imcc.compile(out / "digits_mlp.onnx", calibrate=data.x_train[:200])
    binary.save(out / "digits_mlp.imcb")

    # 3. Load the binary back (as `imcc run` would) and simulate cycle by cycle.
    result = imcc.Simulator(imcc.load(out / "digits_mlp.imcb"), mode="cycle").run(data.x_test)
    chip = result.outputs["probabilities"].argmax(axis=-1)
    reference = onnxruntime_outputs(onnx.load(out / "digits_mlp.onnx"), data.x_test)
    print(f"chip accuracy        {100 * np.mean(chip == data.y_test):.2f} %")
    print(f"onnxruntime accuracy {100 * np.mean(reference.argmax(-1) == data.y_test):.2f} %")
    print(result.report.table())
    (out / "report.json").write_text(result.report.to_json())
    print(f"wrote {out}/digits_mlp.onnx, digits_mlp.imcb and report.json")


if __name__ == "__main__":
    main()
