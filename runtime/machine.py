"""The simulated chip's state: cores (registers, buffer, arrays, pc), global memory, mailboxes.

Execution is batched: every buffer and memory word holds one value per sample of the batch
(arrays of shape (words, batch)), while registers and control flow are shared by all samples.
That is exact because no instruction moves data into a register: control flow never depends
on data, so each sample would take the same path anyway.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from imcc.isa.diagnostics import CoreLoc, SimulationError
from imcc.isa.encoding import Instr
from imcc.isa.program import Program
from imcc.runtime.acam import CamDevice, CamState, make_cam_device
from imcc.runtime.devices import ArrayState, Device
from imcc.runtime.periphery import Adc, full_scale


@dataclass
class Message:
    data: np.ndarray  # (n, batch)
    sent_at: int  # cycle the send issued (0 in functional mode)
    arrival: int = 0  # cycle its last word reaches the receiver (cycle mode: the network model)


class CoreState:
    def __init__(
        self, index: int, code: list[Instr], registers: int, arrays: int, cams: int = 0
    ) -> None:
        self.index = index
        self.code = code
        self.regs = np.zeros(registers, dtype=np.int64)
        self.arrays: list[ArrayState | None] = [None] * arrays
        self.cams: list[CamState | None] = [None] * cams  # analog-CAM arrays
        self.buffer = np.zeros((0, 0))
        self.pc = 0
        self.halted = not code
        self.time = 0  # cycle at which the core may issue its next instruction
        self.received: Message | None = None  # the message the last noc.recv consumed

    def reset(self, buffer_words: int, batch: int) -> None:
        self.regs[:] = 0
        # The buffer grows on first touch (see `reach`), so a large buffer that a program
        # uses little of costs nothing: a batch of thousands of samples stays affordable.
        self.buffer = np.zeros((0, batch))
        self.pc = 0
        self.halted = not self.code
        self.time = 0
        self.received = None

    def reach(self, end: int, limit: int) -> None:
        """Make the buffer at least `end` words long (doubling, up to `limit`), zero-filled."""
        size = self.buffer.shape[0]
        if end > size:
            grown = np.zeros((min(limit, max(end, 2 * size, 1024)), self.buffer.shape[1]))
            grown[:size] = self.buffer
            self.buffer = grown


class Machine:
    def __init__(
        self,
        program: Program,
        device: Device,
        seed: int,
        cam_device: str | float | CamDevice | None = None,
    ) -> None:
        self.program = program
        self.target = program.target
        self.device = device
        self.rng = np.random.default_rng(seed)
        # CAM programming draws from its own stream: adding CAMs never changes the crossbars.
        # The CAM device: as asked, else the target's default for its CAM arrays.
        acam = program.target.acam
        self.cam_device = make_cam_device(
            cam_device if cam_device is not None or acam is None else acam.device
        )
        self.cam_rng = np.random.default_rng([seed, 0xCA])
        cfg = self.target
        cams = cfg.acam.arrays if cfg.acam else 0
        # every core of the chip: one without code may still hold arrays (a binding)
        codes = [*program.code, *([] for _ in range(cfg.chip.cores - len(program.code)))]
        self.cores = [
            CoreState(i, code, cfg.core.registers, cfg.core.arrays, cams)
            for i, code in enumerate(codes)
        ]
        self.adcs: dict[int, tuple[Adc, bool]] = {}  # image -> (its ADC, lossless for it)
        self.memory = np.zeros((0, 0))
        self.mailboxes: dict[tuple[int, int, int], deque[Message]] = {}
        self.now = 0
        for binding in program.bindings:
            self.program_array(binding.core, binding.array, binding.image)
        for binding in program.cam_bindings:
            self.program_cam(binding.core, binding.array, binding.image)

    def program_array(self, core: int, array: int, image: int) -> None:
        levels = self.program.images[image].levels.astype(np.int64)
        self.cores[core].arrays[array] = self.device.program(levels, image, self.rng)

    def program_cam(self, core: int, array: int, image: int) -> None:
        assert self.target.acam is not None  # the loader rejects CAM work without a CAM unit
        self.cores[core].cams[array] = self.cam_device.program(
            self.program.cam_images[image], image, self.target.acam.levels, self.cam_rng
        )

    def adc_for(self, image: int) -> tuple[Adc, bool]:
        """The ADC settings an image was compiled with (the full scale when it names none),
        and whether they are lossless for its levels (then an exact device needs one matmul)."""
        cached = self.adcs.get(image)
        if cached is None:
            xbar = self.target.xbar
            levels = self.program.images[image].levels
            ranges = self.program.adc_ranges.get(image)
            if ranges is None:
                ranges = np.full(
                    levels.shape[1], full_scale(xbar.rows, xbar.cell_bits, xbar.dac_bits)
                )
            adc = Adc(xbar.adc_bits, ranges)
            cached = self.adcs[image] = (adc, adc.lossless_for(levels, xbar.dac_bits))
        return cached

    def reset(self, batch: int, extent: int) -> None:
        """Fresh buffers and memory for a batch; arrays keep what was programmed."""
        for core in self.cores:
            core.reset(self.target.core.buffer_words, batch)
        self.memory = np.zeros((extent, batch))
        for addr, values in self.program.constants:
            self.memory[addr : addr + len(values)] = values[:, None]
        self.mailboxes.clear()
        self.now = 0

    def global_range(self, start: int, n: int) -> np.ndarray:
        """A view of global memory, growing the backing store on first touch."""
        end = start + n
        if end > self.memory.shape[0]:
            grown = np.zeros((end, self.memory.shape[1]))
            grown[: self.memory.shape[0]] = self.memory
            self.memory = grown
        return self.memory[start:end]

    def trap(self, core: CoreState, message: str) -> SimulationError:
        instr = core.code[core.pc] if core.pc < len(core.code) else None
        node = self.program.debug.get((core.index, core.pc), "")
        return SimulationError(
            message, CoreLoc(core.index, core.pc, instr.mnemonic if instr else "", node)
        )
