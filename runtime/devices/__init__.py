"""Device models behind one protocol, and the one registry of devices by name.

A device turns the integer cell levels of a crossbar image into a programmed array state
(sampled once, at programming time), evaluates that state at a time since programming (`age`),
and reads column currents from it for one input step. Currents are in units of one level step
(g_step x V_read), so the ideal device returns exact integers and the ADC (periphery.py) works
in level steps whatever the technology.

The registry maps every device name to what it builds for each kind of array it models
(crossbar, analog CAM): `ideal` (exact, the default for correctness) for both kinds, and one
TOML preset per technology in presets/ (PCM, RRAM, MRAM, FeFET, NOR flash, SRAM) for crossbars:
`analog` presets are PhysicalDevice (physical.py), `digital` ones (SRAM digital CIM) are exact
like `ideal`. The CAM device model is runtime/acam.py's. isa/presets.py lists the same names
and kinds for the compiler, which may not import the runtime; the import check below keeps the
two equal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from imcc.isa.diagnostics import SimulationError
from imcc.isa.presets import BUILTIN_DEVICES, DEVICE_PRESETS, DeviceKind, preset_names

if TYPE_CHECKING:
    from imcc.isa.target import XbarSpec
    from imcc.runtime.acam import CamDevice
    from imcc.runtime.devices.presets import DevicePreset


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

    def age(self, state: ArrayState, seconds: float) -> None: ...

    def set_gain(self, state: ArrayState, gain: np.ndarray | None) -> None: ...


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

    def age(self, state: ArrayState, seconds: float) -> None:
        """Exact cells do not change with time."""

    def set_gain(self, state: ArrayState, gain: np.ndarray | None) -> None:
        """Exact reads need no compensation: calibration finds a gain of exactly 1."""


class DigitalDevice(IdealDevice):
    """Digital CIM (SRAM): exact like `ideal`, named after its preset for reports."""

    def __init__(self, name: str) -> None:
        self.name = name


class XbarBuilder(Protocol):
    """Builds a crossbar device for the arrays of `xbar` (None: the caller has no target)."""

    def __call__(self, xbar: XbarSpec | None, *, seed: int, ir_drop: str | None) -> Device: ...


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """One name of the registry and what it builds for each kind of array it models."""

    name: str
    xbar: XbarBuilder | None = None  # a crossbar device for a target's arrays
    acam: Callable[[], CamDevice] | None = None  # an analog-CAM device

    @property
    def kinds(self) -> tuple[DeviceKind, ...]:
        built = ((DeviceKind.XBAR, self.xbar), (DeviceKind.ACAM, self.acam))
        return tuple(kind for kind, builder in built if builder is not None)


def _ideal(xbar: XbarSpec | None, *, seed: int, ir_drop: str | None) -> Device:
    return IdealDevice()


def _ideal_cam() -> CamDevice:
    from imcc.runtime.acam import CamDevice

    return CamDevice()


def _preset(name: str, xbar: XbarSpec | None, *, seed: int, ir_drop: str | None) -> Device:
    from imcc.runtime.devices.presets import load_preset

    return preset_device(load_preset(name), xbar, seed=seed, ir_drop=ir_drop)


def _shipped(name: str) -> DeviceEntry:
    """The entry of a preset file of presets/: a crossbar device."""
    return DeviceEntry(name, xbar=partial(_preset, name))


# The models built without a preset file; every preset of presets/ is a crossbar device too.
BUILTIN: dict[str, DeviceEntry] = {"ideal": DeviceEntry("ideal", xbar=_ideal, acam=_ideal_cam)}
if {name: entry.kinds for name, entry in BUILTIN.items()} != BUILTIN_DEVICES:
    raise AssertionError("isa/presets.py BUILTIN_DEVICES must list the runtime's built-in models")


def lookup(name: str) -> DeviceEntry | None:
    """The entry of `name` whatever the kinds it models (a built-in model or a preset of
    presets/), or None if no device has that name."""
    if name in BUILTIN:
        return BUILTIN[name]
    if name in preset_names(*DEVICE_PRESETS):
        return _shipped(name)
    return None


def devices() -> list[DeviceEntry]:
    """Every entry of the registry: the built-in models, then the presets (sorted)."""
    files = preset_names(*DEVICE_PRESETS)
    return [*BUILTIN.values(), *(_shipped(name) for name in files if name not in BUILTIN)]


def device_kinds() -> dict[str, tuple[DeviceKind, ...]]:
    """Every device name with the kinds of array it models, in the order of `devices`."""
    return {entry.name: entry.kinds for entry in devices()}


def device_names(kind: DeviceKind = DeviceKind.XBAR) -> list[str]:
    """The names of the devices of one kind (crossbar by default): `ideal` first, then the
    presets."""
    return [entry.name for entry in devices() if kind in entry.kinds]


def make_device(
    spec: str | Path | DevicePreset,
    xbar: XbarSpec | None = None,
    *,
    seed: int = 0,
    ir_drop: str | None = None,
) -> Device:
    """The crossbar device `spec` names (a registered name or a preset TOML path, or a loaded
    preset), built for the arrays of `xbar` (cell bits and ADC resolution); `ir_drop` is fast
    (default), exact or off for physical devices."""
    from imcc.runtime.devices.presets import DevicePreset, load_preset

    if isinstance(spec, DevicePreset):
        return preset_device(spec, xbar, seed=seed, ir_drop=ir_drop)
    entry = lookup(spec) if isinstance(spec, str) else None
    if entry is not None and entry.xbar is not None:
        return entry.xbar(xbar, seed=seed, ir_drop=ir_drop)
    # a preset file by path, or no device at all: load_preset's error names the devices
    return preset_device(load_preset(spec), xbar, seed=seed, ir_drop=ir_drop)


def make_cam_device(spec: str | float | CamDevice | None) -> CamDevice:
    """A CAM device: a name of the device registry that models CAMs (`ideal`), a
    programming-noise sigma in level steps, or a CamDevice; None is the ideal CAM."""
    from imcc.runtime.acam import CamDevice

    if spec is None:
        spec = "ideal"
    if isinstance(spec, CamDevice):
        device = spec
    elif isinstance(spec, str):
        entry = lookup(spec)
        if entry is None or entry.acam is None:
            names = device_names(DeviceKind.ACAM)
            raise SimulationError(
                f"unknown CAM device {spec!r}; CAM devices are {', '.join(sorted(names))}"
                " (or give a programming-noise sigma in level steps)"
            )
        device = entry.acam()
    elif isinstance(spec, int | float) and not isinstance(spec, bool):
        device = CamDevice(f"noise sigma={float(spec):g}", float(spec))
    else:
        raise SimulationError(f"a CAM device is a name or a sigma, not {spec!r}")
    if not (np.isfinite(device.sigma) and device.sigma >= 0):
        raise SimulationError(f"CAM programming noise sigma must be >= 0, not {device.sigma}")
    return device


def preset_device(
    preset: DevicePreset, xbar: XbarSpec | None, *, seed: int, ir_drop: str | None
) -> Device:
    """The crossbar device of a loaded preset: exact for a digital one, else physical."""
    from imcc.runtime.devices.physical import PhysicalDevice
    from imcc.runtime.periphery import Adc, full_scale

    if preset.exact:
        return DigitalDevice(preset.name)
    if xbar is None:
        raise SimulationError(f"device {preset.name!r} needs the target's crossbar parameters")
    # ADC offsets are in LSBs of the target's nominal converter (full-scale range)
    nominal = Adc(xbar.adc_bits, np.array([full_scale(xbar.rows, xbar.cell_bits, xbar.dac_bits)]))
    return PhysicalDevice(
        preset,
        cell_bits=xbar.cell_bits,
        adc_lsb=float(nominal.lsb[0]),
        ir_drop=ir_drop or "fast",
        seed=seed,
    )
