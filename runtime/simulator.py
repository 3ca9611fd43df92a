"""Simulator: load a binary, program its arrays through a device model, run inputs.

`Simulator(binary, device="ideal", seed=0, mode="cycle")` validates the whole binary first,
programs every bound array once (the device samples its programming-time effects there), and
then `run(inputs)` executes the program on a batch. Inputs are checked (names, dtypes, shapes,
finite values) before anything runs.

Physical devices add time and its remedies: `time=` (seconds, or '1h', '1d', '1y') is the time
since the arrays were programmed, at which every run happens; `drift_compensation="global"` or
`"column"` calibrates every programmed array at that time (runtime/devices/compensation.py; its
reads appear in every report); `ir_drop=` picks the fast (default), exact or no IR-drop model.
One Simulator is one chip: `set_time` moves the same programmed chip along its trajectory (with
the compensation it was built with), and the same seed programs the same chip, bit for bit.
Arrays that the program itself reprograms while it runs are freshly programmed (time 0, no
compensation gain) when they are read.

By default a run's budget is derived from the program (engine.py: per core the most work a
halting program can do), so a program that never halts stops within seconds with a trap naming
its core and pc; `max_cycles` sets an explicit one. Memories are sparse (machine.py): only the
pages a program touches are held, up to a host limit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from imcc.isa.container import Binary
from imcc.isa.diagnostics import Diagnostic, InputLoc, OptionLoc, SectionLoc, SimulationError
from imcc.isa.encoding import Instr
from imcc.isa.program import Program, TensorInfo
from imcc.runtime.acam import CamDevice
from imcc.runtime.costs import Price, leaking_cores
from imcc.runtime.devices import ArrayState, make_device
from imcc.runtime.devices.circuit import IR_DROP_MODES
from imcc.runtime.devices.compensation import (
    CalibrationCost,
    calibrate,
    calibration_cost,
    check_compensation,
)
from imcc.runtime.devices.presets import DevicePreset
from imcc.runtime.devices.units import parse_time
from imcc.runtime.engine import CycleEngine, FunctionalEngine, Mode, Tally, work_budget
from imcc.runtime.loader import validate
from imcc.runtime.machine import Machine, MemoryLimit
from imcc.runtime.report import LayerReport, RunReport, memory_peaks, traffic_bytes

MODES = tuple(mode.value for mode in Mode)  # ("functional", "cycle")
T = TypeVar("T")
# Samples simulated together: buffers hold (words touched) x BATCH_CHUNK values per core.
BATCH_CHUNK = 4096


def _compensation(mode: Any) -> str | None:
    if mode is not None and not isinstance(mode, str):
        raise SimulationError(
            f"drift compensation must be 'global', 'column' or None, not {mode!r}"
        )
    return check_compensation(mode)


def _as_array(value: Any, name: str, expected: str) -> np.ndarray:
    """`value` as a numpy array; a ragged nested list or an object numpy cannot convert is a
    SimulationError at the input."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        shape = "a ragged nested sequence (rows of different lengths)" if isinstance(
            value, list | tuple) else f"a {type(value).__name__} numpy cannot convert"  # fmt: skip
        raise SimulationError(
            f"{shape} ({exc}); expected a rectangular array of shape {expected}",
            InputLoc(name),
        ) from None
    return array


@dataclass(eq=False, slots=True)
class RunResult:
    """What a run gives: the outputs by name and its report (arrays: not a frozen value)."""

    outputs: dict[str, np.ndarray]
    report: RunReport


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamReport:
    """A stream of `samples` inferences through the chip (`Simulator.stream`)."""

    samples: int
    replicas: int
    first_cycles: int  # when the first sample's result is complete: single-input latency
    makespan_cycles: int  # when the last one is
    completions: tuple[int, ...]  # cycle each sample completes, in sample order
    clock_ghz: float
    energy_pj_per_inference: float
    utilisation: dict[str, float]  # unit -> busy fraction of (makespan x cores)

    @property
    def latency_s(self) -> float:
        return self.first_cycles / (self.clock_ghz * 1e9)

    @property
    def inferences_per_s(self) -> float:
        return self.samples / (self.makespan_cycles / (self.clock_ghz * 1e9))

    def table(self) -> str:
        return (
            f"stream of {self.samples} samples over {self.replicas} replica(s): first result "
            f"after {self.first_cycles:,} cycles ({self.latency_s * 1e6:.3f} us), last after "
            f"{self.makespan_cycles:,}: {self.inferences_per_s:,.1f} inferences/s, "
            f"{self.energy_pj_per_inference / 1e3:,.3f} nJ per inference"
        )


class _Keep:
    """The default of `set_time(drift_compensation=...)`: keep the chip's current choice."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


def _option(name: str, call: Callable[[], T]) -> T:
    """`call()`, with its Diagnostic (or a TypeError/ValueError from a value of the wrong
    kind) located at the API argument `name`."""
    try:
        return call()
    except Diagnostic as exc:
        if exc.loc is not None:
            raise
        raise type(exc)(exc.message, OptionLoc(name)) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise SimulationError(f"bad {name}: {exc}", OptionLoc(name)) from None


def _check_max_cycles(max_cycles: Any) -> int | None:
    if max_cycles is None:
        return None
    if isinstance(max_cycles, bool) or not isinstance(max_cycles, int | np.integer):
        raise SimulationError(
            f"max_cycles must be a positive integer or None (a budget derived from the "
            f"program), not {max_cycles!r}",
            OptionLoc("max_cycles"),
        )
    if max_cycles < 1:
        raise SimulationError(
            f"max_cycles must be a positive integer, not {max_cycles}", OptionLoc("max_cycles")
        )
    return int(max_cycles)


class Simulator:
    """One simulated chip: a binary loaded and validated, its arrays programmed through a
    device model, ready to run batches of inputs.

    Arguments:
      binary: a `Binary`, a `Program`, or the path of an .imcb file. The whole binary is
        validated before anything runs (a `BinaryFormatError` names the section).
      device: the crossbar device model: a name from `imcc devices` ("ideal", "pcm", "rram",
        ...), a `DevicePreset`, or the path of a preset TOML file; None is the device the
        binary's target names.
      seed: a non-negative integer; the same seed programs the same chip, bit for bit, and
        draws the same read noise.
      mode: "cycle" (semantics plus timing and energy, the default) or "functional"
        (semantics and energy only, faster; no cycles in the report): a `Mode` (engine.py)
        or its string.
      max_cycles: None (default): a budget derived from the program, per core the most work
        a halting program can do (loops at their static trip counts; a loop without a
        static count may repeat 4,096 times): a program that never halts traps within seconds
        with a SimulationError naming the core and pc. An integer replaces it: cycles in
        cycle mode, instructions in functional mode.
      time: time since the arrays were programmed, at which every run happens: seconds, or a
        string such as "1h", "1d", "1y".
      drift_compensation: None (or "none"), "global" or "column": calibrate every programmed
        array at `time`; the calibration's reads are priced in every report.
      ir_drop: None or "fast" (default for physical devices), "exact" or "off".
      cam_device: the analog-CAM device: None (the target's default), "ideal", a CamDevice, or
        a programming-noise sigma in level steps.

    Methods:
      run(inputs): outputs and a RunReport for a batch (see `run`).
      trace(inputs): one record per instruction of one inference, for timelines.
      stream(inputs, samples): the timing of `samples` inferences streamed through the chip.
      set_time(time, drift_compensation=KEEP): move this chip to another time since
        programming, keeping its compensation unless another is given.

    Every error is a `Diagnostic` with a location: OptionLoc for an argument, InputLoc for
    an input, CoreLoc (core and pc) for a trap while the program runs.
    """

    def __init__(
        self,
        binary: Binary | Program | str | os.PathLike[str],
        device: str | DevicePreset | None = None,
        seed: int = 0,
        mode: str = Mode.CYCLE,
        max_cycles: int | None = None,
        *,
        time: float | str = 0.0,
        drift_compensation: str | None = None,
        ir_drop: str | None = None,
        cam_device: str | float | CamDevice | None = None,
    ) -> None:
        if isinstance(binary, str | os.PathLike):
            path = binary
            binary = _option("binary", lambda: Binary.load(path))
        if not isinstance(binary, Binary | Program):
            raise SimulationError(
                f"binary must be an imcc Binary, a Program or the path of an .imcb file, not "
                f"{type(binary).__name__}",
                OptionLoc("binary"),
            )
        name = binary.name if isinstance(binary, Binary) else "<program>"
        program = binary.program if isinstance(binary, Binary) else binary
        if not isinstance(mode, str) or mode not in MODES:
            raise SimulationError(
                f"unknown mode {mode!r}; modes are {', '.join(MODES)}", OptionLoc("mode")
            )
        self.max_cycles = _check_max_cycles(max_cycles)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise SimulationError(
                f"seed must be a non-negative integer, not {seed!r}", OptionLoc("seed")
            )
        if ir_drop is not None and (not isinstance(ir_drop, str) or ir_drop not in IR_DROP_MODES):
            raise SimulationError(
                f"unknown IR-drop mode {ir_drop!r}; modes are {', '.join(IR_DROP_MODES)}",
                OptionLoc("ir_drop"),
            )
        compensation = _option("drift_compensation", lambda: _compensation(drift_compensation))
        seconds = _option("time", lambda: parse_time(time))
        if device is not None and not isinstance(device, str | os.PathLike | DevicePreset):
            raise SimulationError(
                f"device must be a device name, a DevicePreset or a preset path, not {device!r}",
                OptionLoc("device"),
            )
        validate(program, name)
        self.name = name
        self.program = program
        self.mode = Mode(mode)
        self.seed = int(seed)
        spec = device or program.target.xbar.device
        self.device = _option(
            "device",
            lambda: make_device(spec, program.target.xbar, seed=self.seed, ir_drop=ir_drop),
        )
        self.device_name = self.device.name
        # analog-CAM arrays: ideal, or bounds moved by programming noise (runtime/acam.py)
        self.machine = _option("cam_device", lambda: Machine(program, self.device, self.seed,
                                                             cam_device))  # fmt: skip
        self.time_s = 0.0
        self.drift_compensation: str | None = None
        self.calibration: CalibrationCost | None = None
        self.set_time(seconds, compensation)
        self.functional_tally: Tally | None = None
        self._node_starts: dict[str, tuple[int, int]] | None = None
        self.prices: dict[tuple[int, Instr, tuple[int, int], int], tuple[Price, int]] = {}
        self.budgets = work_budget(program)  # the default budget (engine.py), static

    def set_time(self, time: float | str, drift_compensation: str | None = KEEP) -> None:
        """Move the chip to `time` since programming and recalibrate it there with its drift
        compensation: the one it has (given to the constructor or to an earlier set_time)
        unless `drift_compensation` names another ("global", "column", or None for none).
        The chip is then the one a fresh Simulator with that time and compensation builds."""
        seconds = _option("time", lambda: parse_time(time))
        if drift_compensation is KEEP:
            compensation = self.drift_compensation
        else:
            compensation = _option("drift_compensation", lambda: _compensation(drift_compensation))
        arrays = self._programmed()
        for _, state in arrays:
            self.device.age(state, seconds)
        self.time_s = seconds
        self.drift_compensation = compensation
        self.calibration = None
        if compensation is None:
            for _, state in arrays:
                self.device.set_gain(state, None)
            return
        m, xbar = self.machine, self.program.target.xbar
        calibrate(
            self.device, [state for _, state in arrays], lambda image: m.adc_for(image)[0],
            (1 << xbar.dac_bits) - 1, seconds, compensation, m.rng,
        )  # fmt: skip
        self.calibration = calibration_cost(
            self.program.target,
            [(core, state.rows, state.cols) for core, state in arrays],
            compensation,
        )

    def _programmed(self) -> list[tuple[int, ArrayState]]:
        return [
            (core.index, state)
            for core in self.machine.cores
            for state in core.arrays
            if state is not None
        ]

    def run(self, inputs: dict[str, Any] | np.ndarray | Any) -> RunResult:
        """Outputs and a report for a batch. `inputs`: a dict of input name -> array, or the
        array itself for a model with one input; each array has the input's shape or a
        leading batch shape before it (real numbers, finite except for tree models, where
        NaN is a missing value). Outputs have the same leading batch shape."""
        arrays, lead = self._check_inputs(inputs, "run")
        batch = int(np.prod(lead, dtype=np.int64)) if lead else 1
        outputs = {t.name: np.empty((batch, t.size)) for t in self.program.outputs}
        # Counts and energy do not depend on the data (nor does the path through the code), so
        # the functional engine counts them on its first run only and reuses them after.
        cached = self.functional_tally if self.mode is Mode.FUNCTIONAL else None
        counted = cached is not None
        tally = cached if cached is not None else Tally()
        for start in range(0, batch, BATCH_CHUNK):
            stop = min(start + BATCH_CHUNK, batch)
            m = self._load(arrays, start, stop)
            self._park_replicas()
            first = start == 0  # timing and energy are the same for every sample: count once
            if self.mode is Mode.CYCLE and first:
                CycleEngine(m, self.max_cycles, self.prices, budgets=self.budgets).run(tally)
            else:
                count = first and not counted
                FunctionalEngine(m, self.max_cycles, self.prices, self.budgets).run(
                    tally if count else None
                )
            for info in self.program.outputs:
                try:
                    block = m.global_range(info.addr, info.size)
                except MemoryLimit as exc:
                    raise SimulationError(str(exc), SectionLoc(self.name, "IO")) from None
                outputs[info.name][start:stop] = block.T
        if self.mode is Mode.FUNCTIONAL:
            self.functional_tally = tally
        shaped = {
            info.name: outputs[info.name].reshape((*lead, *info.shape)).astype(info.dtype)
            for info in self.program.outputs
        }
        return RunResult(shaped, self._report(tally, batch))

    def trace(
        self, inputs: dict[str, Any] | np.ndarray | Any
    ) -> list[tuple[int, int, int, str, str, int]]:
        """Every instruction of one inference on the cycle-level model, in issue order:
        (core, start cycle, cycles, unit, node, units it keeps busy: the k arrays of an MVM
        spanning them, else 1). For timelines (imcc.tools.plots)."""
        m = self._load_one_sample(inputs, "trace")
        self._park_replicas()
        records: list[tuple[int, int, int, str, str, int]] = []
        CycleEngine(m, self.max_cycles, self.prices, trace=records, budgets=self.budgets).run(
            Tally()
        )
        return records

    def stream(self, inputs: dict[str, Any] | np.ndarray | Any, samples: int) -> StreamReport:
        """Time `samples` inferences streamed through the chip (cycle mode): sample s goes to
        replica s mod R of a binary compiled with schedule = throughput (R = 1 otherwise),
        and every core of that replica runs its program once for it, starting over as soon
        as it halts, so consecutive samples overlap wherever their work sits on different
        cores. Only the timing and energy are new: the data path is `run`'s, on the first
        sample of `inputs`. Messages queue without limit (no back-pressure is modelled)."""
        if self.mode is not Mode.CYCLE:
            raise SimulationError(
                "stream needs the cycle-level simulator (mode='cycle')", OptionLoc("mode")
            )
        if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
            raise SimulationError(
                f"samples must be a positive integer, not {samples!r}", OptionLoc("samples")
            )
        samples = int(samples)
        meta = self.program.meta
        cores = len(self.machine.cores)
        replicas = int(meta.get("replicas", 1))
        group = int(meta.get("replica_cores", cores))
        share = [len(range(r, samples, replicas)) for r in range(replicas)]
        iterations = [share[c // group] if c // group < replicas else 1 for c in range(cores)]
        m = self._load_one_sample(inputs, "stream")
        tally = Tally()
        engine = CycleEngine(m, self.max_cycles, self.prices, iterations, budgets=self.budgets)
        engine.run(tally)
        completions = []
        for s in range(samples):
            r, i = s % replicas, s // replicas
            members = range(r * group, (r + 1) * group)
            completions.append(max(engine.finished[c][i] for c in members if engine.finished[c]))
        makespan = max(completions)
        target = self.program.target
        energy = sum(tally.energy.values())
        energy += makespan * leaking_cores(self.program) * target.cost.leakage_pj_per_cycle
        return StreamReport(
            samples=samples,
            replicas=replicas,
            first_cycles=completions[0],
            makespan_cycles=makespan,
            completions=tuple(completions),
            clock_ghz=target.chip.clock_ghz,
            energy_pj_per_inference=energy / samples,
            utilisation={
                u: b / (max(makespan, 1) * target.chip.cores) for u, b in sorted(tally.busy.items())
            },
        )

    def _load(self, arrays: dict[str, np.ndarray], start: int, stop: int) -> Machine:
        """The machine reset for samples [start, stop) of checked inputs, inputs in memory.
        A batch whose memories the host cannot hold is an error here, before anything runs."""
        m = self.machine
        try:
            m.reset(stop - start)
        except MemoryLimit as exc:
            raise SimulationError(str(exc), SectionLoc(self.name, "CONST")) from None
        for info in self.program.inputs:
            try:
                m.global_range(info.addr, info.size)[:] = arrays[info.name][start:stop].T
            except MemoryLimit as exc:
                raise SimulationError(str(exc), InputLoc(info.name)) from None
        return m

    def _load_one_sample(self, inputs: Any, call: str) -> Machine:
        """The machine reset for one inference, on the first sample of `inputs`."""
        arrays, _ = self._check_inputs(inputs, call)
        return self._load(arrays, 0, 1)

    def _park_replicas(self) -> None:
        """A replicated binary (schedule = throughput) answers one inference with its first
        replica: the others are copies, so `run` and `trace` leave them halted and count
        nothing for them. `stream` is where they work."""
        group = int(self.program.meta.get("replica_cores", 0))
        if int(self.program.meta.get("replicas", 1)) > 1:
            for core in self.machine.cores[group:]:
                core.halted = True

    def _check_inputs(
        self, inputs: Any, call: str
    ) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
        """Every input as a (batch, size) float64 array, and the common batch shape; anything
        else is a SimulationError located at the input (InputLoc) saying what was expected."""
        declared = self.program.inputs
        names = [t.name for t in declared]
        if not isinstance(inputs, dict):
            if len(declared) != 1:
                raise SimulationError(
                    f"the model has {len(declared)} inputs ({', '.join(names)}); pass a dict "
                    f"of name -> array, not {type(inputs).__name__}",
                    OptionLoc("inputs"),
                )
            inputs = {declared[0].name: inputs}
        unknown = sorted((key for key in inputs if key not in names), key=repr)
        if unknown:
            raise SimulationError(
                f"unknown input name {unknown[0]!r}; the model's inputs are {names}",
                InputLoc(str(unknown[0])),
            )
        arrays: dict[str, np.ndarray] = {}
        lead: tuple[int, ...] | None = None
        for info in declared:
            loc = InputLoc(info.name)
            expected = f"{info.shape} or (batch, {', '.join(map(str, info.shape))})"
            if info.name not in inputs:
                raise SimulationError(f"missing; expected an array of shape {expected}", loc)
            raw = _as_array(inputs[info.name], info.name, expected)
            if raw.dtype.kind not in "fiub":
                raise SimulationError(
                    f"dtype {raw.dtype}; expected a real number type (float32)",
                    loc,
                )
            tail = raw.shape[raw.ndim - len(info.shape) :] if raw.ndim >= len(info.shape) else None
            if tail != info.shape:
                raise SimulationError(f"shape {raw.shape}; expected {expected}", loc)
            this_lead = raw.shape[: raw.ndim - len(info.shape)]
            if lead is not None and this_lead != lead:
                raise SimulationError(
                    f"batch shape {this_lead}, but the other inputs have {lead}",
                    loc,
                )
            lead = this_lead
            batch = int(np.prod(this_lead, dtype=np.int64))
            if batch == 0:
                raise SimulationError(
                    f"shape {raw.shape} is an empty batch; {call} needs at least one sample "
                    f"of shape {info.shape}",
                    loc,
                )
            with np.errstate(over="ignore"):  # float128 past float64's range is inf: caught
                array = raw.astype(np.float64).reshape(batch, info.size)
            bad = ~np.isfinite(array)
            if bad.any() and not self.program.cam_codes:  # tree models code NaN as a level
                sample, at = (int(i) for i in np.argwhere(bad)[0])
                index = np.unravel_index(at, info.shape) if info.shape else ()
                raise SimulationError(
                    f"{array[sample, at]} at index {tuple(int(i) for i in index)}; inputs "
                    "must be finite",
                    InputLoc(info.name, sample),
                )
            arrays[info.name] = array
        return arrays, lead or ()

    def _report(self, tally: Tally, batch: int) -> RunReport:
        target = self.program.target
        cycle = self.mode is Mode.CYCLE
        energy = dict(tally.energy)
        counts = dict(tally.counts)
        busy = dict(tally.busy)
        cycles = tally.cycles
        extra_layers: list[LayerReport] = []
        if self.calibration is not None:
            # the calibration at this time, once per run (compensation.py: cost model)
            cal = self.calibration
            energy["drift_compensation"] = cal.energy_pj
            for key, count in cal.counts:
                counts[key] = counts.get(key, 0) + count
            for unit, unit_cycles in cal.busy:
                busy[unit] = busy.get(unit, 0) + unit_cycles
            cycles += cal.cycles
            extra_layers.append(
                LayerReport(
                    node="(drift compensation)",
                    busy_cycles=sum(c for _, c in cal.busy),
                    energy_pj=cal.energy_pj,
                    counts=cal.counts,
                )
            )
        if cycle:
            leaking = leaking_cores(self.program)
            energy["leakage"] = cycles * leaking * target.cost.leakage_pj_per_cycle
        total_core_cycles = max(cycles, 1) * target.chip.cores
        layers = tuple(
            LayerReport(
                node=node or "(unattributed)",
                busy_cycles=tally.layer_busy[node],
                energy_pj=tally.layer_energy[node],
                counts=tuple(sorted(tally.layer_counts[node].items())),
            )
            for node in sorted(tally.layer_busy, key=self._first_pc)
        ) + tuple(extra_layers)
        return RunReport(
            mode=self.mode.value,
            device=self.device_name,
            target=target.name,
            batch=batch,
            cycles=cycles if cycle else None,
            latency_s=cycles / (target.chip.clock_ghz * 1e9) if cycle else None,
            energy_pj=float(sum(energy.values())),
            energy_breakdown_pj={k: float(v) for k, v in sorted(energy.items())},
            counts=dict(sorted(counts.items())),
            utilisation=(
                {u: b / total_core_cycles for u, b in sorted(busy.items())} if cycle else {}
            ),
            stall_cycles=tally.stall_cycles if cycle else None,
            layers=layers,
            area_mm2=target.area_mm2,
            stalls=dict(sorted(tally.stalls.items())) if cycle else {},
            memory=memory_peaks(self.program),
            traffic=traffic_bytes(counts, target.core.word_bytes),
        )

    def _first_pc(self, node: str) -> tuple[int, int]:
        """Where a node's code starts, to list layers in program order (built once)."""
        if self._node_starts is None:
            starts: dict[str, tuple[int, int]] = {}
            for (core, pc), name in self.program.debug.items():
                starts[name] = min(starts.get(name, (pc, core)), (pc, core))
            self._node_starts = starts
        return self._node_starts.get(node, (1 << 30, 0))

    @property
    def inputs(self) -> list[TensorInfo]:
        return list(self.program.inputs)

    @property
    def outputs(self) -> list[TensorInfo]:
        return list(self.program.outputs)
