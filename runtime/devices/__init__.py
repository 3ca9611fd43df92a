"""Device models behind one protocol, and their registry.

A device turns the integer cell levels of a crossbar image into a programmed array state
(sampled once, at programming time) and reads column currents from it for one input step.
Currents are in units of one level step (g_step x V_read), so the ideal device returns exact
integers. Physical devices (RRAM, PCM, ...) register here too.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from imcc.isa.diagnostics import SimulationError


class ArrayState:
    """What an array holds after programming; devices may subclass it."""

    def __init__(self, levels: np.ndarray, conductance: np.ndarray, image: int) -> None:
        self.levels = levels  # the integer levels asked for, (rows, cols)
        self.conductance = conductance  # what the device holds, in level steps, (rows, cols)
        self.image = image

    @property
    def rows(self) -> int:
        return int(self.levels.shape[0])

    @property
    def cols(self) -> int:
        return int(self.levels.shape[1])


class Device(Protocol):
    name: str
    exact: bool  # reads return sum_r x_r * level_rc exactly (enables the one-matmul fast path)

    def program(self, levels: np.ndarray, image: int, rng: np.random.Generator) -> ArrayState: ...

    def read(self, state: ArrayState, x: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


class IdealDevice:
    """Exact: conductance equals the level; a read is an exact integer dot product."""

    name = "ideal"
    exact = True

    def program(self, levels: np.ndarray, image: int, rng: np.random.Generator) -> ArrayState:
        return ArrayState(levels, levels.astype(np.float64), image)

    def read(self, state: ArrayState, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # x: (rows, batch) -> (cols, batch); float64 is exact below 2^53
        currents: np.ndarray = state.conductance.T @ x
        return currents


DEVICES: dict[str, type] = {"ideal": IdealDevice}


def make_device(name: str) -> Device:
    try:
        return DEVICES[name]()  # type: ignore[no-any-return]
    except KeyError:
        raise SimulationError(
            f"unknown device {name!r}; devices are {', '.join(sorted(DEVICES))}"
        ) from None
