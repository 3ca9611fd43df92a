"""The `imcc` command: compile, run, asm, disasm, inspect, devices, targets, isa, demo, bench.

Exit status: 0 on success, 1 on a user error (one line naming what and where, no traceback),
2 on a usage error (argparse's own).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imcc.isa.diagnostics import Diagnostic


class UserError(Diagnostic):
    """A bad command-line argument that argparse cannot see (file contents, names)."""


def _load_array(path: str) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"no such file: {path!r}") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path!r} as a .npy/.npz array: {exc}") from None


def _inputs(specs: Sequence[str]) -> dict[str, np.ndarray] | np.ndarray:
    """`--input x.npy` (one-input models), `--input name=x.npy`, or an .npz of all inputs."""
    named: dict[str, np.ndarray] = {}
    for item in specs:
        name, sep, path = item.partition("=")
        if not sep:
            data = _load_array(item)
            if isinstance(data, np.lib.npyio.NpzFile):
                named.update({k: data[k] for k in data.files})
                continue
            if len(specs) > 1:
                raise UserError(f"with several --input options, name each: NAME={item}")
            return np.asarray(data)
        data = _load_array(path)
        if isinstance(data, np.lib.npyio.NpzFile):
            raise UserError(f"{path!r} is an .npz archive; NAME= takes one .npy array")
        named[name] = np.asarray(data)
    return named


def cmd_compile(args: argparse.Namespace) -> int:
    import time

    import imcc
    from imcc.compiler.passes.manager import PASSES

    calibrate = None
    if args.calibrate:
        data = _load_array(args.calibrate)
        calibrate = {k: data[k] for k in data.files} if hasattr(data, "files") else data

    def print_after(name: str, graph: Any) -> None:
        if args.print_ir_after in (name, "all"):
            print(f"// IR after {name}\n{graph.dump()}\n")

    if args.print_ir_after not in (None, "all", *PASSES):
        raise UserError(
            f"unknown pass {args.print_ir_after!r} for --print-ir-after; passes "
            f"are {', '.join(sorted(PASSES))}"
        )
    timings: list[tuple[str, float]] = []
    start = time.perf_counter()
    binary = imcc.compile(
        args.model,
        target=args.target,
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
    )
    elapsed = time.perf_counter() - start
    binary.save(args.output)
    cores = sum(1 for c in binary.program.code if c)
    print(
        f"wrote {args.output}: {len(binary.data):,} bytes, target {binary.target.name!r}, "
        f"{cores} cores, {len(binary.program.images)} crossbar images "
        f"({elapsed * 1e3:.0f} ms)"
    )
    if args.timings:
        for name, seconds in timings:
            print(f"  {name:<14} {seconds * 1e3:8.2f} ms")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import imcc
    from imcc.runtime.devices.units import format_time, parse_time

    binary = imcc.load(args.binary)  # first: a missing binary is the first thing to report
    device: Any = args.device
    if args.device_set:
        from imcc.runtime.devices.presets import load_preset, parse_override

        name = device or binary.program.target.xbar.device
        device = load_preset(name, [parse_override(item) for item in args.device_set])
    inputs = _inputs(args.input)
    labels = np.asarray(_load_array(args.labels)) if args.labels else None
    options: dict[str, Any] = {
        "device": device, "seed": args.seed, "mode": args.mode, "time": parse_time(args.time),
        "drift_compensation": args.drift_compensation, "ir_drop": args.ir_drop,
        "cam_device": args.cam_noise,
    }  # fmt: skip
    if args.trials != 1:
        from imcc.runtime.montecarlo import trials

        if args.output:
            raise UserError("-o/--output writes the outputs of one run; leave it out with --trials")
        summary = trials(binary, inputs, trials=args.trials, labels=labels, **options)
        if args.report:
            from imcc.isa.container import write_atomic

            data = {"report": summary.report.to_dict(), "monte_carlo": summary.to_dict()}
            write_atomic(Path(args.report), json.dumps(data, indent=2, sort_keys=True).encode())
        print(summary.table())
        print(f"report of the first chip (seed {summary.seeds[0]}):")
        print(summary.report.table())
        return 0
    sim = imcc.Simulator(binary, max_cycles=args.max_cycles, **options)
    result = sim.run(inputs)
    if args.output:
        import io

        from imcc.isa.container import write_atomic

        buffer = io.BytesIO()
        arrays: dict[str, Any] = dict(result.outputs)
        np.savez(buffer, **arrays)
        write_atomic(Path(args.output), buffer.getvalue())
    if args.report:
        from imcc.isa.container import write_atomic

        write_atomic(Path(args.report), result.report.to_json().encode())
    for name, value in result.outputs.items():
        summary_text = np.array2string(value.reshape(-1)[:8], precision=4, separator=", ")
        more = " ..." if value.size > 8 else ""
        print(f"{name}: shape {value.shape} {summary_text}{more}")
    if labels is not None:
        from imcc.runtime.montecarlo import accuracy

        print(f"accuracy: {100 * accuracy(result.outputs, labels):.2f} %")
    if not sim.device.exact:
        print(
            f"device {sim.device_name} at {format_time(sim.time_s)} after programming, seed "
            f"{sim.seed}, drift compensation {sim.drift_compensation or 'none'}"
        )
    print(result.report.table())
    if args.stream:
        print(sim.stream(inputs, args.stream).table())
    if args.plot:
        from imcc import plots

        out = Path(args.plot)
        out.mkdir(parents=True, exist_ok=True)
        plots.timeline(imcc.Simulator(binary, **options).trace(inputs), out / "timeline.png")
        plots.placement(binary.program, out / "placement.png")
        print(f"wrote {out / 'timeline.png'} and {out / 'placement.png'}")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from imcc.runtime.devices import device_names
    from imcc.runtime.devices.presets import load_preset, parse_override

    if args.name is None:
        if args.stats:
            raise UserError("--stats needs a device: imcc devices NAME --stats")
        print(f"{'ideal':<12} exact integer reads (the correctness baseline)")
        for name in device_names()[1:]:
            preset = load_preset(name)
            source = preset.programming.source if preset.programming else preset.cell.source
            print(f"{name:<12} {preset.summary()}")
            print(f"{'':<12} {source}")
        print("\n`imcc devices NAME` prints every parameter with its source; "
              "`imcc devices NAME --stats` the conductance statistics.")  # fmt: skip
        return 0
    if args.name == "ideal":
        print("ideal: a cell holds its integer level exactly; reads are exact integer sums")
        return 0
    preset = load_preset(args.name, [parse_override(item) for item in args.set or ()])
    if not args.stats:
        print(preset.describe())
        return 0
    from imcc.runtime.devices.statistics import conductance_statistics
    from imcc.runtime.devices.units import parse_times

    if args.cells < 2:
        raise UserError(f"--cells must be at least 2, not {args.cells}")
    stats = conductance_statistics(
        preset, times=parse_times(args.times), cells=args.cells, seed=args.seed
    )
    print(stats.table())
    return 0


def cmd_asm(args: argparse.Namespace) -> int:
    from imcc.compiler.target import load_target
    from imcc.isa.assembler import assemble
    from imcc.isa.container import Binary

    try:
        text = Path(args.source).read_text()
    except OSError as exc:
        raise UserError(f"cannot read {args.source!r}: {exc.strerror}") from None
    program = assemble(text, args.source, target_loader=load_target)
    from imcc.runtime.loader import validate

    validate(program, args.source)
    binary = Binary(program)
    binary.save(args.output)
    print(f"wrote {args.output}: {len(binary.data):,} bytes")
    return 0


def cmd_disasm(args: argparse.Namespace) -> int:
    import imcc
    from imcc.compiler.target import load_target
    from imcc.isa.disassembler import disassemble

    text = disassemble(imcc.load(args.binary).program, target_loader=load_target)
    if args.output:
        from imcc.isa.container import write_atomic

        write_atomic(Path(args.output), text.encode())
    else:
        sys.stdout.write(text)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import imcc

    binary = imcc.load(args.binary)
    p = binary.program
    t = p.target
    print(f"{args.binary}: imcc binary, {len(binary.data):,} bytes")
    print(f"  target   {t.name} ({t.description}), fingerprint {t.fingerprint.hex()[:16]}")
    print(
        f"  model    {p.meta.get('model', '?')}; options "
        + ", ".join(f"{k[7:]}={v}" for k, v in p.meta.items() if k.startswith("option."))
    )
    for core, code in enumerate(p.code):
        if code:
            arrays = sorted(b.array for b in p.bindings if b.core == core)
            nodes = sorted(
                {p.debug[(core, pc)] for pc in range(len(code)) if (core, pc) in p.debug}
            )
            print(
                f"  core {core:<3} {len(code):5} instructions, arrays {arrays}, "
                f"nodes {', '.join(nodes)}"
            )
    cells = sum(img.rows * img.cols for img in p.images)
    print(f"  xbar     {len(p.images)} images, {cells:,} cells of {t.xbar.cell_bits} bits")
    if p.cam_images and t.acam is not None:  # the analog-CAM tree unit
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
                + (f" ({quant})" if quant else "")
            )
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from imcc.compiler.target import DEFAULT_TARGET, load_target, preset_names

    for name in preset_names():
        t = load_target(name)
        mark = " (default)" if name == DEFAULT_TARGET else ""
        print(f"{name}{mark}: {t.description}")
        print(
            f"    {t.chip.cores} cores x {t.core.arrays} arrays of {t.xbar.rows}x{t.xbar.cols} "
            f"{t.xbar.cell_bits}-bit cells, DAC {t.xbar.dac_bits} b, ADC {t.xbar.adc_bits} b "
            f"per {t.xbar.cols_per_adc} columns, {t.chip.clock_ghz} GHz, device "
            f"{t.xbar.device}" + (f", {t.area_mm2:,.1f} mm2" if t.area_mm2 else "")
        )
    return 0


def cmd_isa(args: argparse.Namespace) -> int:
    from imcc.isa.docs import isa_reference

    sys.stdout.write(isa_reference())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from imcc.demo import run_demo

    run_demo(target=args.target, mode=args.mode)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from imcc.bench import run_bench
    from imcc.bench_trees import format_tree_bench, run_tree_bench

    figures = run_bench(repeats=args.repeats)
    figures["trees"] = run_tree_bench(repeats=args.repeats)  # analog-CAM tree inference
    if args.cnn:  # ResNet-18 and MobileNetV2: minutes, so fewer repeats
        from imcc.bench_cnn import run_cnn_bench

        figures["cnn"] = run_cnn_bench(repeats=min(args.repeats, 3))
    if args.json:
        print(json.dumps(figures, indent=2, sort_keys=True))
    else:
        from imcc.bench import format_bench
        from imcc.bench_cnn import format_cnn_bench

        print(format_bench(figures))
        print(format_tree_bench(figures["trees"]))
        if "cnn" in figures:
            print(format_cnn_bench(figures["cnn"]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imcc",
        description="Compile models for in-memory-computing accelerators and simulate them.",
        epilog="Exit status: 0 success, 1 error in the input (message says what and where), "
        "2 bad usage.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compile", help="compile an ONNX model to an .imcb binary")
    p.add_argument("model", help="ONNX model file")
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
        "'canonicalize,quantize,bitslice,tile,adc-range,place{spread=true},schedule,emit'",
    )
    p.add_argument("--print-ir-after", metavar="PASS", help="print the IR after PASS (or all)")
    p.add_argument("--timings", action="store_true", help="print the time of each pass")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="simulate a binary on inputs")
    p.add_argument("binary")
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="[NAME=]X.npy",
        help="input array (.npy; NAME= for multi-input models; or one .npz)",
    )
    p.add_argument("-o", "--output", help="write outputs to this .npz")
    p.add_argument("--mode", choices=["cycle", "functional"], default="cycle")
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
    p.add_argument("--max-cycles", type=int, default=10**9, help="cycle budget per inference")
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
    p.add_argument("source")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_asm)

    p = sub.add_parser("disasm", help="print a binary as assembly text")
    p.add_argument("binary")
    p.add_argument("-o", "--output", help="write to a file instead of standard output")
    p.set_defaults(func=cmd_disasm)

    p = sub.add_parser("inspect", help="summarise a binary")
    p.add_argument("binary")
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
        "--set", action="append", metavar="SECTION.KEY=VALUE", help="override a parameter"
    )
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("targets", help="list the target presets")
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("isa", help="print the instruction set reference")
    p.set_defaults(func=cmd_isa)

    p = sub.add_parser("demo", help="train, compile and simulate an MLP on the digits data")
    p.add_argument("--target", help="target preset or TOML file")
    p.add_argument("--mode", choices=["cycle", "functional"], default="cycle")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="time compilation and simulation against baselines")
    p.add_argument("--json", action="store_true", help="print figures as JSON")
    p.add_argument("--repeats", type=int, default=7, help="timed repetitions (median kept)")
    p.add_argument(
        "--no-cnn", dest="cnn", action="store_false",
        help="leave out ResNet-18 and MobileNetV2 (about 4 minutes of the run)",
    )  # fmt: skip
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except Diagnostic as exc:
        print(f"imcc: error: {exc}", file=sys.stderr)
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
