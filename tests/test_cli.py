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
    assert code == 1
    assert err == "imcc: error: --cam-noise: CAM programming noise sigma must be >= 0, not -1.0\n"


def test_a_missing_optional_package_is_a_one_line_error(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import imcc.cli

    def needs_skl2onnx(args: object) -> int:
        raise ModuleNotFoundError("No module named 'skl2onnx'", name="skl2onnx")

    monkeypatch.setattr(imcc.cli, "cmd_targets", needs_skl2onnx)
    code, _, err = run(capsys, "targets")
    assert code == 1
    assert err.startswith("imcc: error: this command needs the Python package 'skl2onnx'")


# --- every output is written at the end, and only when the whole command succeeded ---------


@pytest.fixture
def files(tmp_path: Path, model_path: Path) -> dict[str, Path]:
    """A compiled binary, its inputs and labels, and an empty folder for outputs."""
    binary = tmp_path / "m.imcb"
    assert main(["compile", str(model_path), "-o", str(binary)]) == 0
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(5, 12)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 0, 1]))
    np.save(tmp_path / "y4.npy", np.array([0, 1, 2, 0]))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "taken").write_text("a file")
    source = tmp_path / "m.s"
    assert main(["disasm", str(binary), "-o", str(source)]) == 0
    return {"binary": binary, "x": tmp_path / "x.npy", "y": tmp_path / "y.npy",
            "y4": tmp_path / "y4.npy", "out": tmp_path / "out", "source": source,
            "model": model_path}  # fmt: skip


RUN_FAILURES = [
    (["--labels", "{y4}"], "--labels: '{y4}' holds 4 labels for 5 predictions"),
    (["--stream", "-2"], "--stream: must be an integer from 1"),
    (["--stream", "0"], "--stream: must be an integer from 1"),
    (["--stream", "2", "--mode", "functional"], "--stream: times the cycle-level simulator"),
    (
        ["--report", "{out}/missing/r.json"],
        "--report: cannot write '{out}/missing/r.json': no such",
    ),
    (["--plot", "{out}/taken"], "--plot: '{out}/taken' exists and is not a directory"),
    (["--plot", "/dev/null/x"], "--plot: cannot write '/dev/null/x': '/dev/null' is not a"),
    (["--report", "{out}"], "--report: '{out}' is a directory"),
    (["--report", "{out}/y.npz"], "--report: '{out}/y.npz' is also the file of -o/--output"),
    (["--max-cycles", "0"], "--max-cycles: must be an integer from 1"),
    (["--seed", "-1"], "--seed: must be an integer from 0"),
    (["--time", "soon"], "--time: bad time 'soon'"),
    (["--trials", "0"], "--trials: must be an integer from 1"),
    (["--trials", "2"], "-o/--output: works on one chip; leave it out with --trials"),
    (["--labels", "{out}"], "--labels: '{out}' is a directory"),
]


@pytest.mark.parametrize(("extra", "message"), RUN_FAILURES)
def test_a_failing_run_names_the_option_and_leaves_no_file(extra, message, files, capsys) -> None:  # type: ignore[no-untyped-def]
    out = files["out"]
    extra = [a.format(**files) for a in extra]
    argv = ["run", str(files["binary"]), "--input", str(files["x"]), "-o", str(out / "y.npz"),
            "--report", str(out / "r.json"), "--plot", str(out / "plots"), *extra]  # fmt: skip
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.startswith("imcc: error: " + message.format(**files)), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["taken"]  # nothing written


def test_a_failed_write_removes_the_outputs_already_written(files, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import imcc.isa.container
    from imcc.isa.diagnostics import BinaryFormatError

    real = imcc.isa.container.write_atomic

    def full_disk(path: Path, data: bytes) -> None:
        if path.name == "r.json":
            raise BinaryFormatError(f"cannot write {str(path)!r}: No space left on device")
        real(path, data)

    monkeypatch.setattr(imcc.isa.container, "write_atomic", full_disk)
    out = files["out"]
    code, _, err = run(capsys, "run", str(files["binary"]), "--input", str(files["x"]),
                       "-o", str(out / "y.npz"), "--report", str(out / "r.json"))  # fmt: skip
    assert code == 1 and err.startswith("imcc: error: --report: cannot write")
    assert sorted(p.name for p in out.iterdir()) == ["taken"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compile", "{model}", "-o", "{out}/no/m.imcb"], "-o/--output: cannot write '{out}/no/"),
        (["compile", "{model}", "-o", "{out}"], "-o/--output: '{out}' is a directory"),
        (["asm", "{source}", "-o", "/dev/null/x"], "-o/--output: cannot write '/dev/null/x'"),
        (["disasm", "{binary}", "-o", "{out}/no/m.s"], "-o/--output: cannot write '{out}/no/"),
        (["compile", "{model}", "-o", "{out}/m.imcb", "--target", "nope"], "--target: unknown"),
        (
            ["compile", "{model}", "-o", "{out}/m.imcb", "--print-ir-after", "x"],
            "--print-ir-after: unknown pass 'x'",
        ),
    ],
)
def test_compile_asm_disasm_check_their_output_first(argv, message, files, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, *[a.format(**files) for a in argv])
    assert code == 1 and err.startswith("imcc: error: " + message.format(**files)), err
    assert sorted(p.name for p in files["out"].iterdir()) == ["taken"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.ones((4, 7)), "has shape (4, 7); expected (12,) or (N, 12)"),
        (np.array(["a", "b"]), "has dtype <U1; expected real numbers"),
        (np.ones((0, 12)), "holds no samples"),
        (np.full((2, 12), np.nan), "holds nan at index (0, 0)"),
    ],
)
def test_bad_calibration_data_names_the_option_and_the_shape(data, message, files, capsys) -> None:  # type: ignore[no-untyped-def]
    np.save(files["out"] / "c.npy", data)
    code, _, err = run(capsys, "compile", str(files["model"]), "-o", str(files["out"] / "m.imcb"),
                       "--calibrate", str(files["out"] / "c.npy"))  # fmt: skip
    assert code == 1 and err.startswith("imcc: error: --calibrate: ") and message in err, err
    assert not (files["out"] / "m.imcb").exists()


def test_asm_of_a_file_that_is_not_utf8_points_at_the_byte(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "bad.s"
    source.write_bytes(b".target edge-rram\nctl.halt \xff\n")
    code, _, err = run(capsys, "asm", str(source), "-o", str(tmp_path / "o.imcb"))
    assert code == 1
    assert err.startswith(f"imcc: error: {source}:2:10: byte 0xff is not UTF-8 text")
    assert not (tmp_path / "o.imcb").exists()


# --- what a new user meets ----------------------------------------------------------------


def test_version(capsys) -> None:  # type: ignore[no-untyped-def]
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"imcc {version('imcc')}\n"


def test_every_argument_of_every_command_has_help() -> None:
    import argparse

    from imcc.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [
        f"{name} {action.dest}"
        for name, command in sub.choices.items()
        for action in command._actions
        if not action.help
    ]
    assert not missing


def test_targets_show_the_units_each_target_has(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "targets")
    assert code == 0
    xtime = out[out.index("xtime:") :].splitlines()[1]
    assert "8 CAM arrays of 256 rows x 32 cells of 16 levels" in xtime
    assert "crossbar" not in xtime and "0 arrays" not in xtime
    edge = out[out.index("edge-rram (default):") :].splitlines()[1]
    assert "8 crossbar arrays of 128x128 2-bit cells" in edge and "CAM" not in edge


@pytest.fixture
def forest(tmp_path: Path) -> tuple[Path, Path, Path]:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    import imcc

    x, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=4, random_state=0).fit(x, y)
    imcc.compile(model, target="xtime").save(tmp_path / "f.imcb")
    np.save(tmp_path / "fx.npy", x[:6])
    np.save(tmp_path / "fy.npy", y[:6])
    return tmp_path / "f.imcb", tmp_path / "fx.npy", tmp_path / "fy.npy"


def test_inspect_of_a_forest_shows_only_what_it_uses(forest, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "inspect", str(forest[0]))
    assert code == 0
    assert "acam " in out and "CAM arrays [0]" in out
    assert "weight_bits" not in out and "input_bits" not in out and "xbar" not in out


def test_run_prints_each_output_by_sample_and_functional_mode_has_no_cycles(  # type: ignore[no-untyped-def]
    forest, capsys
) -> None:
    binary, x, y = forest
    code, out, _ = run(capsys, "run", str(binary), "--input", str(x), "--mode", "functional",
                       "--labels", str(y))  # fmt: skip
    assert code == 0
    assert "label: shape (6,) int64" in out and "probabilities: shape (6, 3) float64" in out
    assert "  [0] " in out and "argmax" in out and "... 3 more" in out
    assert "accuracy: 100.00 %" in out
    assert "cycles" not in out


def test_the_report_table_sizes_its_columns_to_their_contents() -> None:
    from imcc.runtime.report import LayerReport, RunReport

    layers = tuple(
        LayerReport(node=name, busy_cycles=cycles, energy_pj=pj, counts=())
        for name, cycles, pj in [("a" * 40, 12, 3.0), ("b", 123_456_789_012, 9.87e13)]
    )
    report = RunReport(mode="cycle", device="ideal", target="t", batch=1, cycles=10,
                       latency_s=1e-8, energy_pj=9.87e13, energy_breakdown_pj={"a" * 30: 9.87e13},
                       counts={}, utilisation={}, stall_cycles=0, layers=layers)  # fmt: skip
    rows = report.table().split("per layer:\n")[1].splitlines()
    assert rows[0].startswith("    " + "a" * 40 + "  ") and " busy cycles " in rows[1]
    assert len({len(row) for row in rows}) == 1  # right-aligned numbers end together
    assert len({row.index("busy") for row in rows}) == 1


def test_per_layer_rows_are_in_graph_order(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import imcc
    from tests.conftest import big_target

    # fc0 to fc3 on core 0, then fc2 and fc3 spill to other cores: fc2 starts at pc 0 of
    # core 1, before fc1 on core 0, yet runs after it
    model = mlp_onnx([16, 16, 16, 200, 16], ["relu", "relu", "relu", "none"], seed=1)
    imcc.compile(model, big_target(cores=4, arrays=2)).save(tmp_path / "m.imcb")
    np.save(tmp_path / "x.npy", np.ones((2, 16), np.float32))
    code, out, _ = run(capsys, "run", str(tmp_path / "m.imcb"), "--input",
                       str(tmp_path / "x.npy"), "--report", str(tmp_path / "r.json"))  # fmt: skip
    assert code == 0
    nodes = [layer["node"] for layer in json.loads((tmp_path / "r.json").read_text())["layers"]]
    assert nodes[:4] == ["fc0", "fc1", "fc2", "fc3"]
    table = out.split("per layer:")[1]
    assert [table.index(f"fc{i} ") for i in range(4)] == sorted(
        table.index(f"fc{i} ") for i in range(4)
    )


def test_graph_order_merges_the_order_of_every_core() -> None:
    from imcc.runtime.report import graph_order

    debug = {(0, 0): "a", (0, 5): "b", (0, 9): "c", (1, 0): "c", (1, 3): "d", (2, 0): "d"}
    assert graph_order(debug) == ["a", "b", "c", "d"]


def test_bench_says_up_front_which_extra_it_needs(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "skl2onnx" else real(name, *a)
    )
    code, _, err = run(capsys, "bench", "--no-cnn")
    assert code == 1
    assert err.startswith("imcc: error: bench: imcc bench converts scikit-learn models")
    assert "needs skl2onnx" in err and "pip install 'imcc[dev]'" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compile", "{model}", "-o", "{out}/m.imcb", "--cols-per-adc", "0"], "--cols-per-adc: "),
        (["compile", "{model}", "-o", "{out}/m.imcb", "--input-bits", "1"], "--input-bits: "),
        (["run", "{binary}", "--input", "{x}", "--device", "nope"], "--device: "),
        (["run", "{binary}", "--input", "{x}", "--device-set", "nope.key=1"], "--device-set: "),
    ],
)
def test_errors_of_api_arguments_name_the_command_line_option(argv, message, files, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, *[a.format(**files) for a in argv])
    assert code == 1 and err.startswith("imcc: error: " + message), err


def test_the_readme_python_snippet_runs(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)  # it saves model.imcb
    exec(compile(snippet, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("['probabilities']\n")
    assert float(out.splitlines()[1]) > 0.9  # the chip's accuracy on the held-out digits
