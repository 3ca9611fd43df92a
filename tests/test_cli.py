"""The `imcc` command: every subcommand, exit codes 0 / 1 / 2, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from imcc.cli import main
from tests.conftest import mlp_onnx


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp_onnx([12, 9, 3], ["relu", "none"], softmax=True), path)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_compile_run_disasm_asm_inspect(tmp_path: Path, model_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    binary = tmp_path / "mlp.imcb"
    code, out, _ = run(capsys, "compile", str(model_path), "-o", str(binary), "--timings")
    assert code == 0 and binary.exists() and "canonicalize" in out
    x = np.random.default_rng(0).normal(size=(5, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, _ = run(
        capsys,
        "run",
        str(binary),
        "--input",
        f"x={tmp_path / 'x.npy'}",
        "-o",
        str(tmp_path / "y.npz"),
        "--report",
        str(tmp_path / "r.json"),
    )
    assert code == 0 and "latency" in out
    y = np.load(tmp_path / "y.npz")["y"]
    assert y.shape == (5, 3)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)  # softmax rows
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["cycles"] > 0 and report["energy_pj"] > 0 and report["batch"] == 5

    code, text, _ = run(capsys, "disasm", str(binary))
    assert code == 0 and "xbar.mvm" in text
    (tmp_path / "mlp.s").write_text(text)
    code, _, _ = run(capsys, "asm", str(tmp_path / "mlp.s"), "-o", str(tmp_path / "again.imcb"))
    assert code == 0
    assert (tmp_path / "again.imcb").read_bytes() == binary.read_bytes()

    code, out, _ = run(capsys, "inspect", str(binary))
    assert code == 0 and "core 0" in out and "input    x (12,)" in out


def test_functional_mode_gives_the_same_outputs(tmp_path: Path, model_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    binary = tmp_path / "m.imcb"
    run(capsys, "compile", str(model_path), "-o", str(binary), "--spread")
    np.save(tmp_path / "x.npy", np.ones((2, 12), np.float32))
    outs = []
    for mode in ("cycle", "functional"):
        code, _, _ = run(
            capsys,
            "run",
            str(binary),
            "--input",
            str(tmp_path / "x.npy"),
            "--mode",
            mode,
            "-o",
            str(tmp_path / f"{mode}.npz"),
        )
        assert code == 0
        outs.append(np.load(tmp_path / f"{mode}.npz")["y"])
    assert np.array_equal(*outs)


def test_print_ir_after_a_pass(model_path: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(
        capsys,
        "compile",
        str(model_path),
        "-o",
        str(tmp_path / "m.imcb"),
        "--print-ir-after",
        "quantize",
    )
    assert code == 0
    assert "// IR after quantize" in out and "QDense" in out and "// IR after tile" not in out


def test_listing_commands(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "targets")
    assert code == 0 and "edge-rram (default)" in out
    code, out, _ = run(capsys, "isa")
    assert code == 0 and "xbar.mvm" in out and "ctl.halt" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compile", "missing.onnx", "-o", "x.imcb"], "missing.onnx"),
        (["run", "missing.imcb", "--input", "x.npy"], "cannot read 'missing.imcb'"),
        (["compile", "{model}", "-o", "{tmp}/o.imcb", "--target", "nope"], "unknown target 'nope'"),
        (["compile", "{model}", "-o", "{tmp}/o.imcb", "--weight-bits", "40"], "weight_bits = 40"),
        (["compile", "{model}", "-o", "{tmp}/o.imcb", "--print-ir-after", "x"], "unknown pass 'x'"),
        (
            ["compile", "{model}", "-o", "{tmp}/o.imcb", "--pipeline", "canonicalize,bogus"],
            "unknown pass 'bogus'",
        ),
    ],
)
def test_user_errors_exit_1_with_one_line(argv, message, model_path, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = [a.format(model=model_path, tmp=tmp_path) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.startswith("imcc: error: ") and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "o.imcb").exists()  # nothing half-written


def test_a_corrupted_binary_is_a_one_line_error(tmp_path: Path, model_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    binary = tmp_path / "m.imcb"
    run(capsys, "compile", str(model_path), "-o", str(binary))
    data = bytearray(binary.read_bytes())
    data[-5] ^= 0xFF
    binary.write_bytes(bytes(data))
    np.save(tmp_path / "x.npy", np.ones(12, np.float32))
    code, _, err = run(capsys, "run", str(binary), "--input", str(tmp_path / "x.npy"))
    assert code == 1 and "CRC32 mismatch" in err and err.count("\n") == 1


def test_usage_errors_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as info:
        main(["compile"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_console_script_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imcc", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for command in (
        "compile",
        "run",
        "asm",
        "disasm",
        "inspect",
        "targets",
        "isa",
        "demo",
        "bench",
    ):
        assert command in result.stdout


def test_run_with_cam_noise_and_monte_carlo_accuracy_on_a_forest(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    import imcc

    x, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=8, random_state=0).fit(x, y)
    imcc.compile(forest, target="xtime").save(tmp_path / "f.imcb")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    base = ["run", str(tmp_path / "f.imcb"), "--input", str(tmp_path / "x.npy"),
            "--mode", "functional"]  # fmt: skip
    code, out, _ = run(capsys, *base, "--cam-noise", "0.3", "--trials", "3",
                       "--labels", str(tmp_path / "y.npy"))  # fmt: skip
    assert code == 0 and "accuracy" in out
    code, _, err = run(capsys, *base, "--cam-noise", "-1")
    assert code == 1 and err == "imcc: error: CAM programming noise sigma must be >= 0, not -1.0\n"


def test_a_missing_optional_package_is_a_one_line_error(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import imcc.cli

    def needs_skl2onnx(args: object) -> int:
        raise ModuleNotFoundError("No module named 'skl2onnx'", name="skl2onnx")

    monkeypatch.setattr(imcc.cli, "cmd_targets", needs_skl2onnx)
    code, _, err = run(capsys, "targets")
    assert code == 1
    assert err.startswith("imcc: error: this command needs the Python package 'skl2onnx'")
