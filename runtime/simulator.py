"""Simulator: load a binary, program its arrays through a device model, run inputs.

`Simulator(binary, device="ideal", seed=0, mode="cycle")` validates the whole binary first,
programs every bound array once (the device samples its programming-time effects there), and
then `run(inputs)` executes the program on a batch. Inputs are checked (names, dtypes, shapes,
finite values) before anything runs.

Physical devices add time and its remedies: `time=` (seconds, or '1h', '1d', '1y') is the time
since the arrays were programmed, at which every run happens; `drift_compensation="global"` or
`"column"` calibrates every programmed array at that time (runtime/devices/compensation.py; its
reads appear in every report); `ir_drop=` picks the fast (default), exact or no IR-drop model.
One Simulator is one chip: `set_time` moves the same programmed chip along its trajectory, and
the same seed programs the same chip, bit for bit. Arrays that the program itself reprograms
while it runs are freshly programmed (time 0, no compensation gain) when they are read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from imcc.isa.container import Binary
from imcc.isa.diagnostics import SimulationError
from imcc.isa.encoding import Instr
from imcc.isa.program import Program, TensorInfo
from imcc.runtime.acam import CamDevice
from imcc.runtime.costs import Price
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
from imcc.runtime.engine import CycleEngine, FunctionalEngine, Tally
from imcc.runtime.loader import validate
from imcc.runtime.machine import Machine
from imcc.runtime.report import LayerReport, RunReport

MODES = ("functional", "cycle")
DEFAULT_MAX_CYCLES = 10**9
# Samples simulated together: buffers hold (words touched) x BATCH_CHUNK values per core.
BATCH_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class RunResult:
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


class Simulator:
    def __init__(
        self,
        binary: Binary | Program | str | os.PathLike[str],
        device: str | DevicePreset | None = None,
        seed: int = 0,
        mode: str = "cycle",
        max_cycles: int = DEFAULT_MAX_CYCLES,
        *,
        time: float | str = 0.0,
        drift_compensation: str | None = None,
        ir_drop: str | None = None,
        cam_device: str | float | CamDevice | None = None,
    ) -> None:
        if isinstance(binary, str | os.PathLike):
            binary = Binary.load(binary)
        name = binary.name if isinstance(binary, Binary) else "<program>"
        program = binary.program if isinstance(binary, Binary) else binary
        if mode not in MODES:
            raise SimulationError(f"unknown mode {mode!r}; modes are {', '.join(MODES)}")
        if max_cycles < 1:
            raise SimulationError(f"max_cycles must be positive, not {max_cycles}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise SimulationError(f"seed must be a non-negative integer, not {seed!r}")
        if ir_drop is not None and ir_drop not in IR_DROP_MODES:
            raise SimulationError(
                f"unknown IR-drop mode {ir_drop!r}; modes are {', '.join(IR_DROP_MODES)}"
            )
        compensation = check_compensation(drift_compensation)
        seconds = parse_time(time)
        validate(program, name)
        self.program = program
        self.mode = mode
        self.max_cycles = max_cycles
        self.seed = int(seed)
        spec = device or program.target.xbar.device
        self.device = make_device(spec, program.target.xbar, seed=self.seed, ir_drop=ir_drop)
        self.device_name = self.device.name
        # analog-CAM arrays: ideal, or bounds moved by programming noise (runtime/acam.py)
        self.machine = Machine(program, self.device, self.seed, cam_device)
        self.time_s = 0.0
        self.drift_compensation: str | None = None
        self.calibration: CalibrationCost | None = None
        self.set_time(seconds, compensation)
        self.functional_tally: Tally | None = None
        self._node_starts: dict[str, tuple[int, int]] | None = None
        self.prices: dict[tuple[int, Instr, tuple[int, int]], tuple[Price, int]] = {}
        self.extent = max(
            [a + len(v) for a, v in program.constants]
            + [t.addr + t.size for t in (*program.inputs, *program.outputs)]
            + [0]
        )

    def set_time(self, time: float | str, drift_compensation: str | None = None) -> None:
        """Move the chip to `time` since programming and, if asked, recalibrate it there."""
        seconds = parse_time(time)
        compensation = check_compensation(drift_compensation)
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
        arrays, lead = self._check_inputs(inputs)
        batch = int(np.prod(lead, dtype=np.int64)) if lead else 1
        outputs = {t.name: np.empty((batch, t.size)) for t in self.program.outputs}
        # Counts and energy do not depend on the data (nor does the path through the code), so
        # the functional engine counts them on its first run only and reuses them after.
        cached = self.functional_tally if self.mode == "functional" else None
        counted = cached is not None
        tally = cached if cached is not None else Tally()
        for start in range(0, batch, BATCH_CHUNK):
            stop = min(start + BATCH_CHUNK, batch)
            m = self.machine
            m.reset(stop - start, self.extent)
            self._park_replicas()
            for info in self.program.inputs:
                m.memory[info.addr : info.addr + info.size] = arrays[info.name][start:stop].T
            first = start == 0  # timing and energy are the same for every sample: count once
            if self.mode == "cycle" and first:
                CycleEngine(m, self.max_cycles, self.prices).run(tally)
            else:
                count = first and not counted
                FunctionalEngine(m, self.max_cycles, self.prices).run(tally if count else None)
            for info in self.program.outputs:
                block = m.global_range(info.addr, info.size)
                outputs[info.name][start:stop] = block.T
        if self.mode == "functional":
            self.functional_tally = tally
        shaped = {
            info.name: outputs[info.name].reshape((*lead, *info.shape)).astype(info.dtype)
            for info in self.program.outputs
        }
        return RunResult(shaped, self._report(tally, batch))

    def trace(
        self, inputs: dict[str, Any] | np.ndarray | Any
    ) -> list[tuple[int, int, int, str, str]]:
        """Every instruction of one inference on the cycle-level model, in issue order:
        (core, start cycle, cycles, unit, node). For timelines (imcc.plots)."""
        m = self._load_one_sample(inputs)
        self._park_replicas()
        records: list[tuple[int, int, int, str, str]] = []
        CycleEngine(m, self.max_cycles, self.prices, trace=records).run(Tally())
        return records

    def stream(self, inputs: dict[str, Any] | np.ndarray | Any, samples: int) -> StreamReport:
        """Time `samples` inferences streamed through the chip (cycle mode): sample s goes to
        replica s mod R of a binary compiled with schedule = throughput (R = 1 otherwise),
        and every core of that replica runs its program once for it, starting over as soon
        as it halts, so consecutive samples overlap wherever their work sits on different
        cores. Only the timing and energy are new: the data path is `run`'s, on the first
        sample of `inputs`. Messages queue without limit (no back-pressure is modelled)."""
        if self.mode != "cycle":
            raise SimulationError("stream needs the cycle-level simulator (mode='cycle')")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise SimulationError(f"samples must be a positive integer, not {samples!r}")
        meta = self.program.meta
        cores = len(self.machine.cores)
        replicas = int(meta.get("replicas", 1))
        group = int(meta.get("replica_cores", cores))
        share = [len(range(r, samples, replicas)) for r in range(replicas)]
        iterations = [share[c // group] if c // group < replicas else 1 for c in range(cores)]
        m = self._load_one_sample(inputs)
        tally = Tally()
        engine = CycleEngine(m, self.max_cycles, self.prices, iterations)
        engine.run(tally)
        completions = []
        for s in range(samples):
            r, i = s % replicas, s // replicas
            members = range(r * group, (r + 1) * group)
            completions.append(max(engine.finished[c][i] for c in members if engine.finished[c]))
        makespan = max(completions)
        target = self.program.target
        energy = sum(tally.energy.values())
        energy += makespan * target.chip.cores * target.cost.leakage_pj_per_cycle
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

    def _load_one_sample(self, inputs: Any) -> Machine:
        """The machine reset for one inference, on the first sample of `inputs`."""
        arrays, _ = self._check_inputs(inputs)
        m = self.machine
        m.reset(1, self.extent)
        for info in self.program.inputs:
            m.memory[info.addr : info.addr + info.size] = arrays[info.name][:1].T
        return m

    def _park_replicas(self) -> None:
        """A replicated binary (schedule = throughput) answers one inference with its first
        replica: the others are copies, so `run` and `trace` leave them halted and count
        nothing for them. `stream` is where they work."""
        group = int(self.program.meta.get("replica_cores", 0))
        if int(self.program.meta.get("replicas", 1)) > 1:
            for core in self.machine.cores[group:]:
                core.halted = True

    def _check_inputs(self, inputs: Any) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
        declared = self.program.inputs
        if not isinstance(inputs, dict):
            if len(declared) != 1:
                names = ", ".join(t.name for t in declared)
                raise SimulationError(
                    f"the model has {len(declared)} inputs ({names}); pass a dict of name -> array"
                )
            inputs = {declared[0].name: inputs}
        unknown = sorted(set(inputs) - {t.name for t in declared})
        if unknown:
            raise SimulationError(
                f"unknown inputs {unknown}; the model's inputs are {[t.name for t in declared]}"
            )
        arrays: dict[str, np.ndarray] = {}
        lead: tuple[int, ...] | None = None
        for info in declared:
            if info.name not in inputs:
                raise SimulationError(f"missing input {info.name!r} of shape {info.shape}")
            raw = np.asarray(inputs[info.name])
            if raw.dtype.kind not in "fiub":
                raise SimulationError(
                    f"input {info.name!r} has dtype {raw.dtype}; expected a "
                    "real number type (float32)"
                )
            array = raw.astype(np.float64)
            tail = (
                array.shape[array.ndim - len(info.shape) :]
                if array.ndim >= len(info.shape)
                else None
            )
            if tail != info.shape:
                raise SimulationError(
                    f"input {info.name!r} has shape {raw.shape}; expected "
                    f"{info.shape} or (batch, {', '.join(map(str, info.shape))})"
                )
            this_lead = array.shape[: array.ndim - len(info.shape)]
            if lead is not None and this_lead != lead:
                raise SimulationError(
                    f"input {info.name!r} has batch shape {this_lead} but other inputs have {lead}"
                )
            lead = this_lead
            bad = ~np.isfinite(array)
            if bad.any() and not self.program.cam_codes:  # tree models code NaN as a level
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                raise SimulationError(
                    f"input {info.name!r} holds {array[index]} at index "
                    f"{index}; inputs must be finite"
                )
            arrays[info.name] = array.reshape(int(np.prod(this_lead, dtype=np.int64)), info.size)
        return arrays, lead or ()

    def _report(self, tally: Tally, batch: int) -> RunReport:
        target = self.program.target
        cycle = self.mode == "cycle"
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
            energy["leakage"] = cycles * target.chip.cores * target.cost.leakage_pj_per_cycle
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
            mode=self.mode,
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
