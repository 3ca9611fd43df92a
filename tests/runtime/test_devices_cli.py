"""`imcc run` with devices, time, compensation and Monte Carlo trials; `imcc devices`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from imcc.cli import main
from tests.conftest import mlp_onnx


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("devices-cli")
    rng = np.random.default_rng(0)
    onnx.save(mlp_onnx([12, 9, 3], ["relu", "none"], softmax=True), folder / "m.onnx")
    x = rng.normal(size=(20, 12)).astype(np.float32)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", rng.integers(0, 3, 20))
    np.save(folder / "short.npy", rng.integers(0, 3, 5))
    assert main(["compile", str(folder / "m.onnx"), "-o", str(folder / "m.imcb")]) == 0
    return {k: folder / f"{k}" for k in ("m.imcb", "x.npy", "y.npy", "short.npy")} | {"dir": folder}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_monte_carlo_prints_mean_and_spread(files, capsys) -> None:  # type: ignore[no-untyped-def]
    report = files["dir"] / "mc.json"
    code, out, _ = run(
        capsys, "run", str(files["m.imcb"]), "--input", str(files["x.npy"]), "--device", "pcm",
        "--time", "1d", "--seed", "0", "--trials", "3", "--labels", str(files["y.npy"]),
        "--drift-compensation", "global", "--report", str(report),
    )  # fmt: skip
    assert code == 0
    assert "device pcm, time 1d (86,400 s), drift compensation global: 3 chips (seeds 0..2)" in out
    for metric in ("y: relative error", "y: top-1 agreement", "accuracy"):
        assert metric in out
    assert "mean" in out and "std" in out and "drift_compensation" in out
    data = json.loads(report.read_text())
    assert len(data["monte_carlo"]["metrics"]["accuracy"]["values"]) == 3
    assert data["report"]["counts"]["drift_compensation_reads"] >= 1


def test_single_run_with_labels_prints_accuracy_and_the_device(files, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "run", str(files["m.imcb"]), "--input", str(files["x.npy"]),
                       "--device", "rram-wan", "--time", "2h", "--labels", str(files["y.npy"]),
                       "--ir-drop", "exact", "--device-set", "scales.programming=2")  # fmt: skip
    assert code == 0
    assert "accuracy: " in out
    assert "device rram-wan at 2h after programming, seed 0, drift compensation none" in out


@pytest.mark.parametrize(
    ("argv", "option", "message"),
    [(["--time", "1x"], "--time", "bad time '1x'"),
     (["--device", "nope"], "--device", "unknown device 'nope'; devices are ideal, "),
     (["--device", "pcm", "--trials", "-3"], "--trials", "not -3"),
     (["--device", "mram"], "--device", "device 'mram' stores 2 levels per cell"),
     (["--device", "pcm", "--device-set", "scales.bogus=1"], "--device-set",
      "device 'pcm': unknown keys ['bogus']"),
     (["--device", "pcm", "--trials", "2", "-o", "out.npz"], "-o/--output", "--trials"),
     (["--labels", "SHORT"], "--labels", "5 labels for 20")],
)  # fmt: skip
def test_user_errors_exit_1_with_one_line(  # type: ignore[no-untyped-def]
    files, capsys, argv: list[str], option: str, message: str
) -> None:
    """One line, located at the option (or API argument) at fault, saying what was wrong."""
    argv = [str(files["short.npy"]) if a == "SHORT" else a for a in argv]
    code, _, err = run(capsys, "run", str(files["m.imcb"]), "--input", str(files["x.npy"]), *argv)
    assert code == 1
    assert err.startswith(f"imcc: error: {option}") and message in err and err.count("\n") == 1


def test_devices_lists_presets_with_parameters_and_sources(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "devices")
    assert code == 0
    for name in ("ideal", "pcm", "pcm-hermes", "rram-wan", "rram-milo", "rram-hp", "mram",
                 "fefet", "nor-flash", "sram", "sram-analog"):  # fmt: skip
        assert f"\n{name} " in f"\n{out}"
    assert "aihwkit PCMLikeNoiseModel" in out and "uS" in out
    code, out, _ = run(capsys, "devices", "pcm")
    assert code == 0 and "[drift] power-law" in out and "Joshi et al." in out


def test_devices_stats_prints_programmed_and_drifted_conductances(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "devices", "pcm", "--stats", "--cells", "2000", "--times", "0,1d")
    assert code == 0
    assert "25.000" in out and "1d" in out and "drift" in out
    code, _, err = run(capsys, "devices", "--stats")
    assert code == 1 and err.startswith("imcc: error: --stats") and "needs a device" in err
    code, _, err = run(capsys, "devices", "sram", "--stats")
    assert code == 1 and "digital and exact" in err
