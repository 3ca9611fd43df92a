"""Command-line fuzzing: random and mutated argument lists for every `imcc` subcommand, run in
process through `imcc.cli.main`.

Every case must end with exit status 0, 1 (one `imcc: error:` message, a Diagnostic with a
location) or 2 (argparse's usage message): no traceback, no hang (small models, bounded
counts), and a command that failed leaves no file behind in its output folder. The default
run is a few hundred cases; IMCC_FUZZ_SCALE multiplies them (tests/fuzzing.py).
"""

from __future__ import annotations

import contextlib
import io
import random
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

import imcc
import imcc.cli
from imcc.isa.diagnostics import Diagnostic
from tests.conftest import mlp_onnx
from tests.fuzzing import Tally, bounded_memory, cases

SEED = 20261202
CASES = 300


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Inputs of every kind: good files, broken files, wrong kinds of file, and folders."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    root = tmp_path_factory.mktemp("fuzz_cli")
    rng = np.random.default_rng(SEED)
    onnx.save(mlp_onnx([6, 5, 3], ["relu", "none"], softmax=True), root / "m.onnx")
    binary = imcc.compile(str(root / "m.onnx"))
    binary.save(root / "m.imcb")
    x, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y)
    imcc.compile(forest, target="xtime").save(root / "f.imcb")
    np.save(root / "fx.npy", x[:4])
    np.save(root / "x.npy", rng.normal(size=(3, 6)).astype(np.float32))
    np.save(root / "x1.npy", rng.normal(size=6).astype(np.float32))
    np.savez(root / "x.npz", x=rng.normal(size=(2, 6)))
    np.save(root / "y.npy", np.array([0, 1, 2]))
    np.save(root / "wide.npy", np.ones((3, 7)))
    np.save(root / "strings.npy", np.array(["a", "b"]))
    np.save(root / "empty.npy", np.ones((0, 6)))
    np.save(root / "nan.npy", np.full((2, 6), np.nan))
    np.save(root / "scalar.npy", np.float64(3.0))
    from imcc.compiler.target import load_target
    from imcc.isa.disassembler import disassemble

    (root / "m.s").write_text(disassemble(binary.program, target_loader=load_target))
    text = (root / "m.s").read_text()
    (root / "cut.s").write_text(text[: len(text) // 2])
    (root / "nonutf8.s").write_bytes(text[:200].encode() + b"\xff\xfe" + text[200:400].encode())
    (root / "junk.bin").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    data = bytearray((root / "m.imcb").read_bytes())
    data[len(data) // 2] ^= 0x5A
    (root / "flipped.imcb").write_bytes(bytes(data))
    (root / "empty.txt").write_bytes(b"")
    (root / "folder").mkdir()
    (root / "target.toml").write_text('name = "t"\n[chip]\ncores = "many"\n')
    return {path.name: str(path) for path in root.iterdir()}


def _patch_heavy_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """`demo` trains for seconds and `bench` runs for minutes: the fuzz keeps their argument
    handling and replaces the work behind it with something quick."""
    import imcc.tools.bench
    import imcc.tools.bench_cnn
    import imcc.tools.bench_trees
    import imcc.tools.demo

    trained: dict[str, Any] = {}
    real_train = imcc.tools.demo.train_mlp

    def quick_train(data: Any, hidden: tuple[int, ...] = (64,), seed: int = 0) -> Any:
        if "model" not in trained:
            with warnings.catch_warnings():  # sklearn: not converged in 5 iterations
                warnings.simplefilter("ignore")
                trained["model"] = real_train(data, hidden=(8,), seed=seed, max_iter=5)
        return trained["model"]

    monkeypatch.setattr(imcc.tools.demo, "train_mlp", quick_train)
    monkeypatch.setattr(imcc.tools.bench, "run_bench", lambda repeats: {"repeats": repeats})
    monkeypatch.setattr(imcc.tools.bench, "format_bench", lambda figures: "bench")
    monkeypatch.setattr(imcc.tools.bench_trees, "run_tree_bench", lambda repeats: {})
    monkeypatch.setattr(imcc.tools.bench_trees, "format_tree_bench", lambda figures: "trees")
    monkeypatch.setattr(imcc.tools.bench_cnn, "run_cnn_bench", lambda repeats: {})
    monkeypatch.setattr(imcc.tools.bench_cnn, "format_cnn_bench", lambda figures: "cnn")


NUMBERS = ["0", "1", "2", "3", "-1", "-7", "4294967296", str(2**63), str(10**30), "abc", "1.5",
           "nan", "inf", "-inf", "1e3", "", " 2", "0x10"]  # fmt: skip
TIMES = ["0", "1s", "1h", "1d", "1y", "-1d", "1e400", "nan", "soon", "3x", "", "1e-300"]


def _paths(work: dict[str, str], out: Path, rng: random.Random, kind: str) -> str:
    """A value for a path option: mostly fitting `kind`, sometimes anything."""
    bad = ["/dev/null/x", "/nonexistent/dir/file", work["folder"], work["empty.txt"],
           work["junk.bin"], "", "-", "x\x00y"]  # fmt: skip
    if kind == "out":
        choices = [str(out / "o.bin"), str(out / "o.npz"), str(out / "new" / "o.bin"),
                   str(out / "taken"), str(out), "/dev/null/x", "", str(out / "sub")]  # fmt: skip
        return rng.choice(choices)
    good = {
        "model": [work["m.onnx"]],
        "binary": [work["m.imcb"], work["f.imcb"], work["flipped.imcb"]],
        "source": [work["m.s"], work["cut.s"], work["nonutf8.s"]],
        "input": [work["x.npy"], work["x1.npy"], work["x.npz"], "x=" + work["x.npy"],
                  "nope=" + work["x.npy"], work["fx.npy"], work["wide.npy"], work["nan.npy"],
                  work["strings.npy"], work["empty.npy"], work["scalar.npy"], "x=" + work["x.npz"],
                  "=" + work["x.npy"]],
        "labels": [work["y.npy"], work["x.npy"], work["strings.npy"], work["x.npz"]],
        "calibrate": [work["x.npy"], work["wide.npy"], work["strings.npy"], work["empty.npy"],
                      work["nan.npy"], work["x.npz"], work["scalar.npy"], work["x1.npy"]],
        "target": ["edge-rram", "xtime", "isaac", "nope", work["target.toml"], work["junk.bin"]],
        "device": ["pcm", "ideal", "rram-wan", "sram", "nope", work["target.toml"],
                   work["junk.bin"]],
    }[kind]  # fmt: skip
    return rng.choice(good) if rng.random() < 0.8 else rng.choice(bad)


def _command(work: dict[str, str], out: Path, rng: random.Random) -> list[str]:
    """One plausible command line, options drawn at random (values mostly sensible)."""

    def num(*sensible: str) -> str:
        return rng.choice(sensible) if sensible and rng.random() < 0.75 else rng.choice(NUMBERS)

    command = rng.choice(["compile", "compile", "run", "run", "run", "asm", "disasm", "inspect",
                          "devices", "targets", "isa", "demo", "bench"])  # fmt: skip
    argv: list[str] = []
    options: list[list[str]] = []
    if command == "compile":
        argv = ["compile", _paths(work, out, rng, "model"), "-o", _paths(work, out, rng, "out")]
        options = [
            ["--target", _paths(work, out, rng, "target")],
            ["--weight-bits", num("4", "8")], ["--input-bits", num("4", "8")],
            ["--cell-bits", num("1", "2", "4")], ["--dac-bits", num("1", "2")],
            ["--adc-bits", num("6", "9", "12")], ["--rows", num("16", "64")],
            ["--cols", num("16", "64")], ["--cols-per-adc", num("1", "8")],
            ["--sign-encoding", rng.choice(["differential", "offset", "other"])],
            ["--adc-range", rng.choice(["full-scale", "column", "slice", "x"])],
            ["--calibration", rng.choice(["minmax", "percentile", "mean"])],
            ["--percentile", num("99", "50", "100")], ["--spread"],
            ["--schedule", rng.choice(["packed", "latency", "throughput", "balanced", "fast"])],
            ["--calibrate", _paths(work, out, rng, "calibrate")],
            ["--pipeline", rng.choice(["emit", "canonicalize,quantize,emit", "canonicalize,,emit",
                                       "place{spread=maybe}", "canonicalize{x=1}", "",
                                       "canonicalize,quantize,bitslice,tile,adc-range,place,"
                                       "acam-map,schedule,emit"])],
            ["--print-ir-after", rng.choice(["quantize", "all", "nope", ""])], ["--timings"],
        ]  # fmt: skip
    elif command == "run":
        binary = _paths(work, out, rng, "binary")
        argv = ["run", binary, "--input", _paths(work, out, rng, "input")]
        options = [
            ["--input", _paths(work, out, rng, "input")],
            ["-o", _paths(work, out, rng, "out")], ["--report", _paths(work, out, rng, "out")],
            ["--plot", rng.choice([str(out / "plots"), str(out / "taken"), "/dev/null/x", ""])],
            ["--mode", rng.choice(["cycle", "functional", "fast"])],
            ["--device", _paths(work, out, rng, "device")],
            ["--device-set", rng.choice(["scales.programming=2", "x", "nope.key=1", "a.b=[",
                                         "scales.programming=-1", "scales.programming=nan"])],
            ["--seed", num("0", "5")], ["--time", rng.choice(TIMES)],
            ["--drift-compensation", rng.choice(["none", "global", "column", "all"])],
            ["--cam-noise", num("0", "0.3")], ["--ir-drop", rng.choice(["fast", "exact", "off"])],
            ["--trials", num("1", "2")], ["--labels", _paths(work, out, rng, "labels")],
            ["--max-cycles", num("100", "1000000")], ["--stream", num("1", "2", "3")],
        ]  # fmt: skip
    elif command == "asm":
        argv = ["asm", _paths(work, out, rng, "source"), "-o", _paths(work, out, rng, "out")]
    elif command in ("disasm", "inspect"):
        argv = [command, _paths(work, out, rng, "binary")]
        options = [["-o", _paths(work, out, rng, "out")]] if command == "disasm" else []
    elif command == "devices":
        argv = ["devices"]
        options = [
            [_paths(work, out, rng, "device")], ["--stats"],
            ["--times", rng.choice(["0,1h", "1d", "", ",", "x,1h", "-1s", "0,1e999"])],
            ["--cells", num("2", "100")], ["--seed", num("0")],
            ["--set", rng.choice(["scales.programming=2", "x=1", "cell.levels=0", "a.b"])],
        ]  # fmt: skip
    elif command == "demo":
        argv = ["demo"]
        options = [["--target", _paths(work, out, rng, "target")],
                   ["--mode", rng.choice(["cycle", "functional", "x"])]]  # fmt: skip
    elif command == "bench":
        argv = ["bench", "--no-cnn"]
        options = [["--json"], ["--repeats", num("1", "2")]]
    else:
        argv = [command]
    for option in options:
        if rng.random() < 0.3:
            argv += option
    if command == "run" and "--max-cycles" not in argv:
        argv += ["--max-cycles", "1000000"]  # the models halt long before: a guard only
    # every output path lies in `out` (or nowhere): never the fixtures, which must not change
    return argv


def _mutate(argv: list[str], work: dict[str, str], out: Path, rng: random.Random) -> list[str]:
    """Damage a command line: drop, duplicate, swap, replace or add arguments."""
    argv = list(argv)
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        what = rng.random()
        i = rng.randrange(len(argv))
        if what < 0.2 and len(argv) > 1:
            del argv[i]
        elif what < 0.4:
            argv.insert(i, argv[i])  # a duplicate
        elif what < 0.55 and len(argv) > 1:
            j = rng.randrange(len(argv))
            argv[i], argv[j] = argv[j], argv[i]
        elif what < 0.75 and i > 0:
            argv[i] = rng.choice([*NUMBERS, "--", "-x", "--frobnicate", "-h"])
        elif what < 0.9:
            argv.insert(i, rng.choice(["--frobnicate", "--mode", "-o", "--version", "--verbose"]))
        else:
            argv.insert(i, _paths(work, out, rng, rng.choice(["out", "input", "binary"])))
    return argv


def _one_case(argv: list[str], out: Path, errors: list[Diagnostic]) -> Callable[[], str]:
    """The case as Tally wants it: returns its outcome, raises what escaped `main`."""

    def call() -> str:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = imcc.cli.main(argv)
            except SystemExit as exc:  # argparse: usage errors, --help, --version
                code = exc.code if isinstance(exc.code, int) else 2
        err = stderr.getvalue()
        left = sorted(p.name for p in out.iterdir())
        problems = []
        if code not in (0, 1, 2):
            problems.append(f"exit status {code}")
        if "Traceback" in err:
            problems.append("a traceback")
        if code == 1 and not err.startswith("imcc: error: "):
            problems.append(f"exit 1 without an 'imcc: error:' line: {err[:200]!r}")
        if code == 2 and "usage:" not in err:
            problems.append(f"exit 2 without a usage message: {err[:200]!r}")
        if code != 0 and left != ["taken"]:
            problems.append(f"failed (exit {code}) but left {left}")
        if (out / "taken").exists() and code != 0 and (out / "taken").read_text() != "taken":
            problems.append("failed but overwrote an existing file")
        if problems:
            raise AssertionError("; ".join(problems) + f"; stderr {err[:300]!r}")
        return f"exit {code}"

    return call


def test_fuzz_the_command_line(  # type: ignore[no-untyped-def]
    work, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_heavy_work(monkeypatch)
    monkeypatch.chdir(tmp_path)  # a mutated relative output path lands here, not in the repo
    errors: list[Diagnostic] = []
    real_print = imcc.cli._print_error

    def record(exc: Diagnostic) -> None:
        errors.append(exc)
        real_print(exc)

    monkeypatch.setattr(imcc.cli, "_print_error", record)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    rng = random.Random(SEED)
    tally = Tally("cli")
    out = tmp_path / "out"
    with bounded_memory():
        for index in range(cases(CASES)):
            argv = _command(work, out, rng)
            if rng.random() < 0.3:
                argv = _mutate(argv, work, out, rng)
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            (out / "taken").write_text("taken")
            before = len(errors)
            outcome = tally.run(f"case {index} {argv}", _one_case(argv, out, errors))
            for exc in errors[before:]:
                if exc.loc is None:
                    tally.finding(f"case {index} {argv}: {exc}", "diagnostic without location")
            if outcome is not None:
                tally.outcomes[outcome] += 1
    tally.assert_clean()
