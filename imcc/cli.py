"""The `imcc` command: compile, run, asm, disasm, inspect, devices, targets, isa, demo, bench.

Exit status: 0 on success, 1 on a user error (one line naming what and where, no traceback),
2 on a usage error (argparse's own).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from imcc.isa.diagnostics import Diagnostic, OptionLoc, SourceLoc

# Upper bounds on counts whose work or memory grows with them: past these a run would not end
# in any useful time (or would exhaust memory), so they are errors up front.
MAX_TRIALS = 100_000
MAX_STREAM = 1_000_000
MAX_CELLS = 10_000_000
MAX_REPEATS = 1_000


class UserError(Diagnostic):
    """A bad command-line argument that argparse cannot see (file contents, names)."""


def _option_error(option: str, message: str) -> UserError:
    return UserError(message, OptionLoc(option))


@contextmanager
def _about(option: str) -> Iterator[None]:
    """Give a Diagnostic raised without a location the option whose value caused it."""
    try:
        yield
    except Diagnostic as exc:
        if exc.loc is None:
            raise _option_error(option, exc.message) from None
        raise


# API argument -> the command-line option that sets it, for errors the API raises
COMPILE_FLAGS = {name: "--" + name.replace("_", "-") for name in (
    "target", "calibrate", "pipeline", "weight_bits", "input_bits", "cell_bits", "dac_bits",
    "adc_bits", "rows", "cols", "cols_per_adc", "sign_encoding", "adc_range", "calibration",
    "percentile", "spread", "schedule",
)} | {"loops": "--no-loops"}  # fmt: skip
RUN_FLAGS = {
    "binary": "binary", "inputs": "--input", "device": "--device", "seed": "--seed",
    "mode": "--mode", "max_cycles": "--max-cycles", "time": "--time",
    "drift_compensation": "--drift-compensation", "ir_drop": "--ir-drop",
    "cam_device": "--cam-noise", "trials": "--trials", "labels": "--labels", "samples": "--stream",
}  # fmt: skip


@contextmanager
def _api_arguments(flags: dict[str, str]) -> Iterator[None]:
    """Point an error about an API argument at the option that set it: an OptionLoc naming
    the argument, or (no location) a message quoting exactly one (`name = value`, `option
    name`)."""
    try:
        yield
    except Diagnostic as exc:
        if isinstance(exc.loc, OptionLoc) and exc.loc.option in flags:
            raise _option_error(flags[exc.loc.option], exc.message) from None
        if exc.loc is None:
            quoted = [rf"(?<![\w-])({n} = |option {n}\b)" for n in flags]
            named = [n for n, q in zip(flags, quoted, strict=True) if re.search(q, exc.message)]
            if len(named) == 1:
                raise _option_error(flags[named[0]], exc.message) from None
        raise


def _count(option: str, value: int | None, low: int, high: int) -> None:
    """An integer option that must lie in [low, high] (None: not given)."""
    if value is not None and not low <= value <= high:
        raise _option_error(option, f"must be an integer from {low:,} to {high:,}, not {value:,}")


class Outputs:
    """The files a command writes, all written together at its end.

    Paths are checked when they are added (before any work), contents are collected as the
    command runs, and `commit` writes them only once everything succeeded; if one write fails,
    the files and folders already written are removed, so a failing command leaves nothing.
    """

    def __init__(self) -> None:
        self._paths: dict[Path, str] = {}  # path -> the option that names it
        self._data: list[tuple[str, Path, bytes]] = []
        self._dirs: list[tuple[str, Path]] = []

    def file(self, option: str, text: str) -> Path:
        """Check an output file: its folder exists and is writable, it is no folder itself."""
        if not text:
            raise _option_error(option, "expected a file name, not ''")
        path = Path(text)
        self._claim(option, path)
        if path.is_dir():
            raise _option_error(option, f"{text!r} is a directory; expected a file name")
        if path.exists() and not path.is_file():
            raise _option_error(option, f"{text!r} exists and is not a regular file")
        self._writable_dir(option, path.parent, text)
        return path

    def folder(self, option: str, text: str, names: Sequence[str]) -> Path:
        """Check an output folder (created at commit if missing) and the files it will hold."""
        if not text:
            raise _option_error(option, "expected a folder name, not ''")
        path = Path(text)
        if path.exists() and not path.is_dir():
            raise _option_error(option, f"{text!r} exists and is not a directory")
        if path.is_dir():
            self._writable_dir(option, path, text)
        else:
            ancestor = path.parent
            while not ancestor.exists() and ancestor != ancestor.parent:
                ancestor = ancestor.parent
            self._writable_dir(option, ancestor, text)
            self._dirs.append((option, path))
        for name in names:
            self._claim(option, path / name)
            if (path / name).exists() and not (path / name).is_file():
                raise _option_error(
                    option, f"{os.fspath(path / name)!r} exists and is not a regular file"
                )
        return path

    def add(self, option: str, path: Path, data: bytes) -> None:
        self._data.append((option, path, data))

    def commit(self) -> None:
        from imcc.isa.container import write_atomic

        created: list[Path] = []
        written: list[Path] = []
        try:
            for option, folder in self._dirs:
                missing = [folder, *(p for p in folder.parents if not p.exists())]
                for part in sorted(
                    (p for p in missing if not p.exists()), key=lambda p: len(p.parts)
                ):
                    try:
                        part.mkdir()
                    except OSError as exc:
                        raise _option_error(
                            option, f"cannot create {os.fspath(part)!r}: {exc.strerror}"
                        ) from None
                    created.append(part)
            for option, path, data in self._data:
                with _about(option):
                    write_atomic(path, data)
                written.append(path)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            for folder in reversed(created):
                with suppress(OSError):  # not empty: something else wrote there meanwhile
                    folder.rmdir()
            raise

    def _claim(self, option: str, path: Path) -> None:
        key = Path(os.path.abspath(path))
        if key in self._paths:
            raise _option_error(
                option, f"{os.fspath(path)!r} is also the file of {self._paths[key]}"
            )
        self._paths[key] = option

    @staticmethod
    def _writable_dir(option: str, folder: Path, text: str) -> None:
        where = os.fspath(folder) or "."
        if not folder.exists():
            raise _option_error(option, f"cannot write {text!r}: no such directory {where!r}")
        if not folder.is_dir():
            raise _option_error(option, f"cannot write {text!r}: {where!r} is not a directory")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise _option_error(option, f"cannot write {text!r}: no permission in {where!r}")


def _load_array(option: str, path: str) -> np.ndarray | dict[str, np.ndarray]:
    """A .npy array, or the arrays of an .npz archive by name (read completely here)."""
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                return {key: np.asarray(data[key]) for key in data.files}
        return np.asarray(data)
    except FileNotFoundError:
        raise _option_error(option, f"no such file: {path!r}") from None
    except IsADirectoryError:
        raise _option_error(option, f"{path!r} is a directory; expected a .npy/.npz file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _option_error(option, f"cannot read {path!r} as a .npy/.npz array: {exc}") from None


def _load_npy(option: str, path: str) -> np.ndarray:
    data = _load_array(option, path)
    if isinstance(data, dict):
        raise _option_error(option, f"{path!r} is an .npz archive; expected one .npy array")
    return data


def _inputs(specs: Sequence[str]) -> dict[str, np.ndarray] | np.ndarray:
    """`--input x.npy` (one-input models), `--input name=x.npy`, or an .npz of all inputs."""
    named: dict[str, np.ndarray] = {}
    for item in specs:
        name, sep, path = item.partition("=")
        if not sep:
            data = _load_array("--input", item)
            if isinstance(data, dict):
                named.update(data)
                continue
            if len(specs) > 1:
                raise _option_error(
                    "--input", f"with several --input options, name each: NAME={item}"
                )
            return data
        if not name:
            raise _option_error("--input", f"{item!r} names no input; expected NAME=X.npy")
        if name in named:
            raise _option_error("--input", f"input {name!r} is given twice")
        named[name] = _load_npy("--input", path)
    return named


def _check_data(option: str, what: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    """Numbers of one sample's `shape` or a batch of them, at least one, all finite."""
    expected = f"{shape} or (N, {', '.join(map(str, shape))})" if shape else "() or (N,)"
    if array.dtype.kind not in "biuf":
        raise _option_error(
            option, f"{what} has dtype {array.dtype}; expected real numbers of shape {expected}"
        )
    if array.shape[max(array.ndim - len(shape), 0) :] != shape or array.ndim < len(shape):
        raise _option_error(option, f"{what} has shape {array.shape}; expected {expected}, numbers")
    if array.size == 0:
        raise _option_error(option, f"{what} holds no samples; expected shape {expected}")
    if not np.isfinite(array).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise _option_error(
            option, f"{what} holds {array[index]} at index {index}; expected finite numbers"
        )


def _calibration(path: str, graph: Any) -> np.ndarray | dict[str, np.ndarray]:
    """`--calibrate DATA`, checked against the model's inputs (one sample's shape, numbers)."""
    data = _load_array("--calibrate", path)
    names = [value.name for value in graph.inputs]
    if not isinstance(data, dict):
        if len(names) != 1:
            raise _option_error(
                "--calibrate",
                f"the model has {len(names)} inputs ({', '.join(names)}); give an .npz with "
                "one array per input name",
            )
        data = {names[0]: data}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise _option_error(
            "--calibrate", f"{path!r} holds {unknown}, not inputs of the model ({', '.join(names)})"
        )
    for value in graph.inputs:
        if value.name not in data:
            raise _option_error("--calibrate", f"{path!r} lacks input {value.name!r}")
        shape = tuple(value.shape[1:] if graph.batch_axis else value.shape)
        _check_data("--calibrate", f"{path!r} (input {value.name!r})", data[value.name], shape)
    return data


def cmd_compile(args: argparse.Namespace) -> int:
    import time

    import imcc
    from imcc.api import import_model
    from imcc.compiler.passes.manager import PASSES
    from imcc.compiler.target import load_target

    outputs = Outputs()
    output = outputs.file("-o/--output", args.output)
    if args.print_ir_after not in (None, "all", *PASSES):
        raise _option_error(
            "--print-ir-after",
            f"unknown pass {args.print_ir_after!r}; passes are {', '.join(sorted(PASSES))}",
        )
    with _about("--target"):
        target = load_target(args.target)
    with _about("model"):
        graph = import_model(args.model)
    calibrate = _calibration(args.calibrate, graph) if args.calibrate else None

    def print_after(name: str, graph: Any) -> None:
        if args.print_ir_after in (name, "all"):
            print(f"// IR after {name}\n{graph.dump()}\n")

    timings: list[tuple[str, float]] = []
    start = time.perf_counter()
    with _api_arguments(COMPILE_FLAGS):
        binary = imcc.compile(
            graph,
            target=target,
            calibrate=calibrate,
            pipeline=args.pipeline,
            print_after=print_after,
            timings=timings,
            weight_bits=args.weight_bits,
            input_bits=args.input_bits,
            cell_bits=args.cell_bits,
            dac_bits=args.dac_bits,
            adc_bits=args.adc_bits,
            rows=args.rows,
            cols=args.cols,
            cols_per_adc=args.cols_per_adc,
            sign_encoding=args.sign_encoding,
            adc_range=args.adc_range,
            calibration=args.calibration,
            percentile=args.percentile,
            spread=args.spread or None,
            schedule=args.schedule,
            loops=False if args.no_loops else None,
        )
    elapsed = time.perf_counter() - start
    outputs.add("-o/--output", output, binary.data)
    outputs.commit()
    cores = sum(1 for c in binary.program.code if c)
    units = []
    if binary.program.images:
        units.append(f"{len(binary.program.images)} crossbar images")
    if binary.program.cam_images:
        units.append(f"{len(binary.program.cam_images)} CAM images")
    print(
        f"wrote {args.output}: {len(binary.data):,} bytes, target {binary.target.name!r}, "
        f"{cores} core{'s' if cores != 1 else ''}"
        + "".join(f", {unit}" for unit in units)
        + f" ({elapsed * 1e3:.0f} ms)"
    )
    if args.timings:
        width = max((len(name) for name, _ in timings), default=0)
        for name, seconds in timings:
            print(f"  {name:<{width}}  {seconds * 1e3:8.2f} ms")
    return 0


def _batch(binary: Any, inputs: dict[str, np.ndarray] | np.ndarray) -> int | None:
    """Samples in `inputs` (None when they do not fit the binary: the simulator says why)."""
    declared = binary.program.inputs
    if not declared:
        return None
    info = declared[0]
    array = inputs.get(info.name) if isinstance(inputs, dict) else inputs
    if array is None or array.ndim < len(info.shape):
        return None
    if array.shape[array.ndim - len(info.shape) :] != info.shape:
        return None
    return int(np.prod(array.shape[: array.ndim - len(info.shape)], dtype=np.int64))


def _check_labels(path: str, labels: np.ndarray, binary: Any, batch: int | None) -> None:
    """--labels: one label per prediction of the first output (scores or integer labels)."""
    outputs = binary.program.outputs
    if not outputs:
        raise _option_error("--labels", "the binary has no outputs to score")
    first = outputs[0]
    integer = np.dtype(first.dtype).kind in "iu" and first.size == 1
    if not integer and (not first.shape or first.shape[-1] < 2):
        raise _option_error(
            "--labels",
            f"accuracy needs scores with a class axis or one integer label per sample; the "
            f"first output {first.name!r} has shape {first.shape} per sample",
        )
    if batch is None:
        return
    per_sample = 1 if integer else int(np.prod(first.shape[:-1], dtype=np.int64))
    if labels.size != batch * per_sample:
        raise _option_error(
            "--labels",
            f"{path!r} holds {labels.size:,} labels for {batch * per_sample:,} predictions "
            f"({batch:,} samples); expected one label per prediction",
        )


def _summary(name: str, value: np.ndarray, classes: list[Any] | None) -> list[str]:
    """An output for people: shape, dtype, and the first samples (with the argmax of a row of
    scores, or the class name of an integer label)."""
    lines = [f"{name}: shape {value.shape} {value.dtype}"]
    options: dict[str, Any] = {"precision": 4, "suppress_small": True, "max_line_width": 96}
    if value.ndim == 0 or value.size == 0:
        lines.append(f"  {value}")
        return lines
    if value.ndim == 1:
        text = np.array2string(value, threshold=16, edgeitems=6, **options)
        lines.append(f"  {text}")
        if classes and value.dtype.kind in "iu":
            shown = value[:6]
            names = [classes[i] if 0 <= i < len(classes) else "?" for i in shown.tolist()]
            more = " ..." if value.size > 6 else ""
            lines.append(f"  classes: {', '.join(map(str, names))}{more}")
        return lines
    rows = min(3, value.shape[0])
    for i in range(rows):
        row = value[i]
        text = np.array2string(row, threshold=12, edgeitems=4, **options).replace("\n", " ")
        hint = ""
        if row.ndim == 1 and row.size > 1 and value.dtype.kind == "f":
            hint = f"  argmax {int(np.argmax(row))}"
        lines.append(f"  [{i}] {text}{hint}")
    if value.shape[0] > rows:
        lines.append(f"  ... {value.shape[0] - rows:,} more")
    return lines


def _check_run_options(args: argparse.Namespace) -> None:
    """`imcc run`'s numbers in range and its flags compatible, before anything runs."""
    _count("--trials", args.trials, 1, MAX_TRIALS)
    _count("--stream", args.stream, 1, MAX_STREAM)
    if args.max_cycles is not None:
        _count("--max-cycles", args.max_cycles, 1, 2**63 - 1)
    _count("--seed", args.seed, 0, 2**63 - 1)
    if args.trials != 1:
        for given, option in ((args.output, "-o/--output"), (args.stream, "--stream"),
                              (args.plot, "--plot")):  # fmt: skip
            if given is not None:
                raise _option_error(option, "works on one chip; leave it out with --trials")
    if args.stream is not None and args.mode != "cycle":
        raise _option_error(
            "--stream", "times the cycle-level simulator; leave out --mode functional"
        )
    if args.cam_noise is not None and not (math.isfinite(args.cam_noise) and args.cam_noise >= 0):
        raise _option_error(
            "--cam-noise", f"CAM programming noise sigma must be >= 0, not {args.cam_noise}"
        )


def _run_device(args: argparse.Namespace, binary: Any) -> Any:
    """--device, with --device-set's overrides applied to it (or to the binary's device)."""
    device: Any = args.device
    if args.device_set:
        from imcc.runtime.devices.presets import load_preset, parse_override

        name = device or binary.program.target.xbar.device
        with _about("--device-set"):
            overrides = [parse_override(item) for item in args.device_set]
            device = load_preset(name, overrides)
    return device


def _run_trials(
    args: argparse.Namespace,
    binary: Any,
    inputs: dict[str, np.ndarray] | np.ndarray,
    labels: np.ndarray | None,
    options: dict[str, Any],
    outputs: Outputs,
    report_path: Path | None,
) -> int:
    """`imcc run --trials N`: a Monte-Carlo run over N chips, its table and report."""
    from imcc.runtime.montecarlo import trials

    with _api_arguments(RUN_FLAGS):
        summary = trials(binary, inputs, trials=args.trials, labels=labels, **options)
    if report_path is not None:
        data = {"report": summary.report.to_dict(), "monte_carlo": summary.to_dict()}
        text = json.dumps(data, indent=2, sort_keys=True)
        outputs.add("--report", report_path, text.encode())
    outputs.commit()
    print(summary.table())
    print(f"report of the first chip (seed {summary.seeds[0]}):")
    print(summary.report.table())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import imcc
    from imcc.runtime.devices.units import format_time, parse_time
    from imcc.runtime.report import in_graph_order

    # Every option is checked before anything is simulated, and every file is written at the
    # end, so a run that fails leaves no output behind.
    _check_run_options(args)
    monte_carlo = args.trials != 1
    with _about("--time"):
        seconds = parse_time(args.time)
    outputs = Outputs()
    output = outputs.file("-o/--output", args.output) if args.output else None
    report_path = outputs.file("--report", args.report) if args.report else None
    plot_dir = None
    if args.plot is not None:
        from imcc.tools import plots

        plot_dir = outputs.folder("--plot", args.plot, ("timeline.png", "placement.png"))
        with _about("--plot"):
            plots.require_matplotlib()

    binary = _load_binary(args.binary)
    device = _run_device(args, binary)
    inputs = _inputs(args.input)
    labels = None
    if args.labels:
        labels = _load_npy("--labels", args.labels)
        _check_labels(args.labels, labels, binary, _batch(binary, inputs))
    options: dict[str, Any] = {
        "device": device, "seed": args.seed, "mode": args.mode, "time": seconds,
        "drift_compensation": args.drift_compensation, "ir_drop": args.ir_drop,
        "cam_device": args.cam_noise,
    }  # fmt: skip
    if monte_carlo:
        return _run_trials(args, binary, inputs, labels, options, outputs, report_path)
    with _api_arguments(RUN_FLAGS):
        sim = imcc.Simulator(binary, max_cycles=args.max_cycles, **options)
        result = sim.run(inputs)
    report = replace(
        result.report, layers=in_graph_order(result.report.layers, binary.program.debug)
    )
    lines: list[str] = []
    classes = (
        json.loads(binary.program.meta["classes"]) if "classes" in binary.program.meta else None
    )
    for name, value in result.outputs.items():
        lines += _summary(name, value, classes)
    if labels is not None:
        from imcc.runtime.montecarlo import accuracy

        with _api_arguments(RUN_FLAGS):
            lines.append(f"accuracy: {100 * accuracy(result.outputs, labels, classes):.2f} %")
    if not sim.device.exact:
        lines.append(
            f"device {sim.device_name} at {format_time(sim.time_s)} after programming, seed "
            f"{sim.seed}, drift compensation {sim.drift_compensation or 'none'}"
        )
    lines.append(report.table())
    if args.stream is not None:
        with _api_arguments(RUN_FLAGS):
            lines.append(sim.stream(inputs, args.stream).table())
    if output is not None:
        import io

        buffer = io.BytesIO()
        arrays: dict[str, Any] = dict(result.outputs)
        np.savez(buffer, **arrays)
        outputs.add("-o/--output", output, buffer.getvalue())
    if report_path is not None:
        outputs.add("--report", report_path, report.to_json().encode())
    if plot_dir is not None:
        from imcc.tools import plots

        with _api_arguments(RUN_FLAGS):
            records = imcc.Simulator(binary, max_cycles=args.max_cycles, **options).trace(inputs)
        outputs.add("--plot", plot_dir / "timeline.png", plots.timeline_png(records))
        outputs.add("--plot", plot_dir / "placement.png", plots.placement_png(binary.program))
        lines.append(f"wrote {plot_dir / 'timeline.png'} and {plot_dir / 'placement.png'}")
    outputs.commit()
    print("\n".join(lines))
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from imcc.runtime.devices import BUILTIN, device_names
    from imcc.runtime.devices.presets import load_preset, parse_override

    if args.name is None:
        for given, option in ((args.stats, "--stats"), (args.set, "--set")):
            if given:
                raise _option_error(option, f"needs a device: imcc devices NAME {option} ...")
        print(f"{'ideal':<12} exact integer reads (the correctness baseline)")
        for name in (name for name in device_names() if name not in BUILTIN):
            preset = load_preset(name)
            source = preset.programming.source if preset.programming else preset.cell.source
            print(f"{name:<12} {preset.summary()}")
            print(f"{'':<12} {source}")
        print("\n`imcc devices NAME` prints every parameter with its source; "
              "`imcc devices NAME --stats` the conductance statistics.")  # fmt: skip
        return 0
    _count("--cells", args.cells, 2, MAX_CELLS)
    _count("--seed", args.seed, 0, 2**63 - 1)
    if args.name == "ideal":
        if args.stats or args.set:
            raise _option_error(
                "--stats" if args.stats else "--set", "device 'ideal' has no parameters"
            )
        print("ideal: a cell holds its integer level exactly; reads are exact integer sums")
        return 0
    with _about("--set"):
        overrides = [parse_override(item) for item in args.set or ()]
    with _about("device"):
        preset = load_preset(args.name, overrides)
    if not args.stats:
        print(preset.describe())
        return 0
    from imcc.runtime.devices.statistics import conductance_statistics
    from imcc.runtime.devices.units import parse_times

    with _about("--times"):
        times = parse_times(args.times)
    with _about("device"):
        stats = conductance_statistics(preset, times=times, cells=args.cells, seed=args.seed)
    print(stats.table())
    return 0


def _load_binary(path: str) -> Any:
    import imcc

    with _about("binary"):
        return imcc.load(path)


def _read_source(path: str) -> str:
    """An assembly file's text; a byte that is not UTF-8 is an error at its line and column."""
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise _option_error(
            "source", f"{path!r} is a directory; expected an assembly file"
        ) from None
    except OSError as exc:
        raise _option_error("source", f"cannot read {path!r}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        text = data.splitlines()[line - 1].decode("utf-8", "replace") if data else ""
        raise UserError(
            f"byte 0x{data[exc.start]:02x} is not UTF-8 text; assembly files are UTF-8",
            SourceLoc(path, line, col, text),
        ) from None


def cmd_asm(args: argparse.Namespace) -> int:
    from imcc.compiler.target import load_target
    from imcc.isa.assembler import assemble
    from imcc.isa.container import Binary
    from imcc.runtime.loader import validate

    outputs = Outputs()
    output = outputs.file("-o/--output", args.output)
    text = _read_source(args.source)
    program = assemble(text, args.source, target_loader=load_target)
    validate(program, args.source)
    binary = Binary(program)
    outputs.add("-o/--output", output, binary.data)
    outputs.commit()
    print(f"wrote {args.output}: {len(binary.data):,} bytes")
    return 0


def cmd_disasm(args: argparse.Namespace) -> int:
    from imcc.compiler.target import load_target
    from imcc.isa.disassembler import disassemble

    outputs = Outputs()
    output = outputs.file("-o/--output", args.output) if args.output else None
    text = disassemble(_load_binary(args.binary).program, target_loader=load_target)
    if output is None:
        sys.stdout.write(text)
        return 0
    outputs.add("-o/--output", output, text.encode())
    outputs.commit()
    return 0


# compile options that only shape crossbar MVMs (left out of `inspect` for a binary without)
XBAR_OPTIONS = frozenset({
    "weight_bits", "input_bits", "cell_bits", "dac_bits", "adc_bits", "rows", "cols",
    "cols_per_adc", "sign_encoding", "adc_range", "calibration", "percentile",
})  # fmt: skip


def cmd_inspect(args: argparse.Namespace) -> int:
    from imcc.isa import spec
    from imcc.runtime.report import graph_order

    binary = _load_binary(args.binary)
    p = binary.program
    t = p.target
    uses_xbar = bool(p.images) or any(
        instr.spec.unit is spec.Unit.XBAR for code in p.code for instr in code
    )
    uses_acam = bool(p.cam_images) or any(
        instr.spec.unit is spec.Unit.ACAM for code in p.code for instr in code
    )
    options = [
        f"{k[7:]}={v}"
        for k, v in p.meta.items()
        if k.startswith("option.") and (uses_xbar or k[7:] not in XBAR_OPTIONS)
    ]
    print(f"{args.binary}: imcc binary, {len(binary.data):,} bytes")
    print(f"  target   {t.name} ({t.description}), fingerprint {t.fingerprint.hex()[:16]}")
    print(
        f"  model    {p.meta.get('model', '?')}"
        + (f"; options {', '.join(options)}" if options else "")
    )
    rank = {node: i for i, node in enumerate(graph_order(p.debug))}
    for core, code in enumerate(p.code):
        if not code:
            continue
        parts = [f"{len(code):5} instructions"]
        arrays = sorted(b.array for b in p.bindings if b.core == core)
        if arrays:
            parts.append(f"arrays {arrays}")
        cam_arrays = sorted(b.array for b in p.cam_bindings if b.core == core)
        if cam_arrays:
            parts.append(f"CAM arrays {cam_arrays}")
        nodes = sorted(
            {p.debug[(core, pc)] for pc in range(len(code)) if (core, pc) in p.debug},
            key=lambda node: rank[node],
        )
        if nodes:
            parts.append(f"nodes {', '.join(nodes)}")
        print(f"  core {core:<3} " + ", ".join(parts))
    if uses_xbar:
        cells = sum(img.rows * img.cols for img in p.images)
        print(f"  xbar     {len(p.images)} images, {cells:,} cells of {t.xbar.cell_bits} bits")
    if uses_acam and t.acam is not None:  # the analog-CAM tree unit
        rows = sum(img.rows for img in p.cam_images if img.width)
        cam_cells = sum(img.rows * img.cols for img in p.cam_images)
        print(
            f"  acam     {len(p.cam_images)} CAM images on {len(p.cam_bindings)} arrays, {rows:,}"
            f" rows, {cam_cells:,} cells of {t.acam.levels} levels, {len(p.cam_codes)} coding"
            " tables"
        )
    print(f"  consts   {sum(len(v) for _, v in p.constants):,} words in {len(p.constants)} blocks")
    for kind, tensors in (("input", p.inputs), ("output", p.outputs)):
        for tensor in tensors:
            quant = ", ".join(f"{k}={v}" for k, v in tensor.quant)
            print(
                f"  {kind:<8} {tensor.name} {tensor.shape} at {tensor.addr}"
                + (f" ({quant})" if quant and uses_xbar else "")
            )
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from imcc.compiler.target import DEFAULT_TARGET, load_target, preset_names

    for name in preset_names():
        t = load_target(name)
        mark = " (default)" if name == DEFAULT_TARGET else ""
        print(f"{name}{mark}: {t.description}")
        units = []
        if t.core.arrays:
            x = t.xbar
            units.append(
                f"{t.core.arrays} crossbar array{'s' if t.core.arrays != 1 else ''} of "
                f"{x.rows}x{x.cols} {x.cell_bits}-bit cells (DAC {x.dac_bits} b, ADC "
                f"{x.adc_bits} b per {x.cols_per_adc} column{'s' if x.cols_per_adc != 1 else ''}"
                f", device {x.device})"
            )
        if t.acam is not None:
            a = t.acam
            units.append(
                f"{a.arrays} CAM array{'s' if a.arrays != 1 else ''} of {a.rows} rows x "
                f"{a.cols} cells of {a.levels} levels (leaf RAM {a.leaf_words} words per row, "
                f"device {a.device})"
            )
        per_core = " and ".join(units) if units else "SIMD only"
        print(
            f"    {t.chip.cores} cores, each {per_core}; {t.core.simd_lanes} SIMD "
            f"lane{'s' if t.core.simd_lanes != 1 else ''}, "
            f"{t.chip.clock_ghz} GHz" + (f", {t.area_mm2:,.1f} mm2" if t.area_mm2 else "")
        )
    return 0


def cmd_isa(args: argparse.Namespace) -> int:
    from imcc.isa.docs import isa_reference

    sys.stdout.write(isa_reference())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from imcc.compiler.target import load_target
    from imcc.tools.demo import run_demo

    with _about("--target"):
        target = load_target(args.target)  # before the training, not after it
    run_demo(target=target, mode=args.mode)
    return 0


# what `imcc bench` imports beyond the base install, and the extra that installs it
BENCH_NEEDS = (("sklearn", "scikit-learn"), ("skl2onnx", "skl2onnx"))


def cmd_bench(args: argparse.Namespace) -> int:
    import importlib.util

    _count("--repeats", args.repeats, 1, MAX_REPEATS)
    missing = [
        package for module, package in BENCH_NEEDS if importlib.util.find_spec(module) is None
    ]
    if missing:
        raise UserError(
            f"imcc bench converts scikit-learn models to ONNX for its baselines and needs "
            f"{' and '.join(missing)}, not installed: pip install 'imcc[dev]'",
            OptionLoc("bench"),
        )
    from imcc.tools.bench import run_bench
    from imcc.tools.bench_trees import format_tree_bench, run_tree_bench

    figures = run_bench(repeats=args.repeats)
    figures["trees"] = run_tree_bench(repeats=args.repeats)  # analog-CAM tree inference
    if args.cnn:  # ResNet-18 and MobileNetV2: minutes, so fewer repeats
        from imcc.tools.bench_cnn import run_cnn_bench

        figures["cnn"] = run_cnn_bench(repeats=min(args.repeats, 3))
    if args.json:
        print(json.dumps(figures, indent=2, sort_keys=True))
    else:
        from imcc.tools.bench import format_bench
        from imcc.tools.bench_cnn import format_cnn_bench

        print(format_bench(figures))
        print(format_tree_bench(figures["trees"]))
        if "cnn" in figures:
            print(format_cnn_bench(figures["cnn"]))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imcc")
    except PackageNotFoundError:  # run from a source tree that was never installed
        import imcc

        return f"{imcc.__version__} (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imcc",
        description="Compile models for in-memory-computing accelerators and simulate them.",
        epilog="Exit status: 0 success, 1 error in the input (message says what and where), "
        "2 bad usage.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--version", action="version", version=f"imcc {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compile", help="compile an ONNX model to an .imcb binary")
    p.add_argument("model", help="ONNX model file (.onnx)")
    p.add_argument("-o", "--output", required=True, help="binary to write (.imcb)")
    p.add_argument("--target", help="target preset name or TOML file (default: edge-rram)")
    p.add_argument("--weight-bits", type=int, help="signed weight bits (default: target's)")
    p.add_argument("--input-bits", type=int, help="MVM input bits (default: target's)")
    p.add_argument("--cell-bits", type=int, help="bits per crossbar cell (default: target's)")
    p.add_argument("--dac-bits", type=int, help="input bits per DAC step; 1 = bit-serial")
    p.add_argument("--adc-bits", type=int, help="ADC resolution")
    p.add_argument("--rows", type=int, help="crossbar rows")
    p.add_argument("--cols", type=int, help="crossbar columns")
    p.add_argument("--cols-per-adc", type=int, help="columns sharing one ADC")
    p.add_argument(
        "--sign-encoding",
        choices=["differential", "offset"],
        help="signed weights as G+/G- pairs or ISAAC's offset",
    )
    p.add_argument(
        "--adc-range",
        choices=["full-scale", "column", "slice"],
        help="ADC range: the array's full scale, or per column / per slice from the "
        "weights (or the calibration data when given)",
    )
    p.add_argument(
        "--calibration",
        choices=["minmax", "percentile"],
        help="how calibration data sets scales and ranges (default minmax)",
    )
    p.add_argument("--percentile", type=float, help="percentile for --calibration percentile")
    p.add_argument("--spread", action="store_true", help="deal tiles over all cores")
    p.add_argument(
        "--no-loops",
        action="store_true",
        help="write every instruction out instead of rolling code that repeats into loops "
        "(the outputs are the same)",
    )
    p.add_argument(
        "--schedule",
        choices=["packed", "latency", "throughput", "balanced"],
        help="packed (default): layer by layer; latency: every layer over all cores; "
        "throughput: the model replicated on every free group of cores; balanced: spare "
        "arrays hold copies of the slowest convolutions",
    )
    p.add_argument(
        "--calibrate",
        metavar="DATA",
        help=".npy/.npz of sample inputs for static "
        "input scales (default: per-vector scales at run time)",
    )
    p.add_argument(
        "--pipeline",
        help="pass pipeline, e.g. "
        "'canonicalize,quantize{weight_bits=16},bitslice,tile,adc-range,place{spread=true},"
        "schedule,emit' (a pass option overrides the compile option of its name)",
    )
    p.add_argument("--print-ir-after", metavar="PASS", help="print the IR after PASS (or all)")
    p.add_argument("--timings", action="store_true", help="print the time of each pass")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="simulate a binary on inputs")
    p.add_argument("binary", help="compiled binary to simulate (.imcb)")
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="[NAME=]X.npy",
        help="input array (.npy; NAME= for multi-input models; or one .npz)",
    )
    p.add_argument("-o", "--output", help="write the outputs to this .npz (one array per output)")
    p.add_argument(
        "--mode",
        choices=["cycle", "functional"],
        default="cycle",
        help="cycle (default): cycle-level timing, energy and utilisation; functional: the "
        "same outputs and energy, faster, without time",
    )
    p.add_argument(
        "--device", help="device preset or TOML file (default: the target's); see `imcc devices`"
    )
    p.add_argument(
        "--device-set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override a preset parameter, e.g. scales.programming=2 (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0, help="programs the chip (same seed, same chip)")
    p.add_argument(
        "--time", default="0", help="time since programming: seconds or 1s, 1h, 1d, 1w, 1y"
    )
    p.add_argument(
        "--drift-compensation",
        choices=["none", "global", "column"],
        default="none",
        help="recalibrate every array at --time: one gain per array or per column",
    )
    p.add_argument(
        "--cam-noise",
        type=float,
        metavar="SIGMA",
        help="analog-CAM arrays: move every programmed bound by N(0, SIGMA^2) level steps",
    )
    p.add_argument(
        "--ir-drop",
        choices=["fast", "exact", "off"],
        help="IR-drop model of physical devices (default fast; exact solves the circuit)",
    )
    p.add_argument(
        "--trials",
        type=int,
        default=1,
        help="Monte Carlo: run on N chips (seeds SEED..SEED+N-1), print each metric's "
        "mean and spread",
    )
    p.add_argument(
        "--labels",
        metavar="Y.npy",
        help="class labels: print accuracy (argmax of the first output's last axis)",
    )
    p.add_argument(
        "--max-cycles",
        type=int,
        default=None,
        help="cycle budget per inference (default: derived from the program's loop bounds): "
        "a program that runs longer stops with an error naming core and pc",
    )
    p.add_argument(
        "--plot",
        metavar="DIR",
        help="write a timeline of unit activity and a placement map (PNG, needs matplotlib)",
    )
    p.add_argument(
        "--stream",
        type=int,
        metavar="N",
        help="also time N inferences streamed through the chip (cycle mode): first-result "
        "latency and inferences per second",
    )
    p.add_argument(
        "--report",
        metavar="R.json",
        help="write the run report as JSON (with --trials: the first chip's report and the "
        "Monte Carlo statistics)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("asm", help="assemble a .s file into a binary")
    p.add_argument("source", help="assembly text (.s, UTF-8), as `imcc disasm` prints it")
    p.add_argument("-o", "--output", required=True, help="binary to write (.imcb)")
    p.set_defaults(func=cmd_asm)

    p = sub.add_parser("disasm", help="print a binary as assembly text")
    p.add_argument("binary", help="binary to disassemble (.imcb)")
    p.add_argument("-o", "--output", help="write to a file instead of standard output")
    p.set_defaults(func=cmd_disasm)

    p = sub.add_parser("inspect", help="summarise a binary")
    p.add_argument("binary", help="binary to summarise (.imcb)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("devices", help="list the device presets, or show one with its sources")
    p.add_argument("name", nargs="?", help="a preset (or TOML file) to show in full")
    p.add_argument(
        "--stats",
        action="store_true",
        help="statistics of programmed and drifted conductances at a few target levels",
    )
    p.add_argument("--times", default="0,1h,1d,1y", help="times since programming, for --stats")
    p.add_argument("--cells", type=int, default=100_000, help="cells per target, for --stats")
    p.add_argument("--seed", type=int, default=0, help="seed of the --stats sample")
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override a parameter, e.g. scales.programming=2 (repeatable)",
    )
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("targets", help="list the target presets")
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("isa", help="print the instruction set reference")
    p.set_defaults(func=cmd_isa)

    p = sub.add_parser("demo", help="train, compile and simulate an MLP on the digits data")
    p.add_argument("--target", help="target preset or TOML file (default: edge-rram)")
    p.add_argument(
        "--mode",
        choices=["cycle", "functional"],
        default="cycle",
        help="simulator: cycle-level (default) or functional (no time)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="time compilation and simulation against baselines")
    p.add_argument("--json", action="store_true", help="print figures as JSON")
    p.add_argument(
        "--repeats", type=int, default=7, help="timed repetitions (median kept; default 7)"
    )
    p.add_argument(
        "--no-cnn", dest="cnn", action="store_false",
        help="leave out ResNet-18 and MobileNetV2 (about 4 minutes of the run)",
    )  # fmt: skip
    p.set_defaults(func=cmd_bench)
    return parser


def _print_error(exc: Diagnostic) -> None:
    """How a user error ends a command: one line (an assembly error adds its source line)."""
    print(f"imcc: error: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for dest, value in vars(args).items():  # no path or name can hold a NUL byte
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and "\x00" in text:
                _print_error(_option_error(dest.replace("_", "-"), f"{text!r} holds a NUL byte"))
                return 1
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except Diagnostic as exc:
        _print_error(exc)
        return 1
    except ModuleNotFoundError as exc:  # an optional dependency of this command
        print(f"imcc: error: this command needs the Python package {exc.name!r}, which is not "
              "installed (`pip install 'imcc[dev]'` installs every optional one)",
              file=sys.stderr)  # fmt: skip
        return 1
    except KeyboardInterrupt:
        print("imcc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
