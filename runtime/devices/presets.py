"""Device presets: TOML files in runtime/devices/presets/ (or a user's file), each number sourced.

A preset describes one technology's cells in physical units (conductances in uS, times in s,
voltages in V, wire resistance in Ohm) and its non-idealities on three time scales: what is
sampled at programming ([programming], [variation], [faults] and the drift exponents of
[drift]), how the state evolves with time since programming ([drift]), and what every read adds
([read_noise]). Every section carries a `source` string; `imcc devices NAME` prints them.
Loading validates everything: a missing, unknown or malformed key is a SimulationError naming
the preset, section and key.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imcc.isa import presets
from imcc.isa.diagnostics import SimulationError
from imcc.runtime.devices.curves import Curve, parse_curve

if TYPE_CHECKING:
    from imcc.runtime.devices.cells import CellModel, Cells

MODELS = ("analog", "digital")
CLIPS = ("zero", "window", "none")


@dataclass(frozen=True, slots=True, kw_only=True)
class CellSpec:
    """Integer level L of a b-bit cell maps to g_min + L (g_max - g_min) / (2^b - 1)."""

    g_min_us: float
    g_max_us: float
    levels: int  # distinct programmable conductances; 0 = analog (any value in the window)
    source: str

    @property
    def on_off(self) -> float:
        return self.g_max_us / self.g_min_us if self.g_min_us > 0 else math.inf


@dataclass(frozen=True, slots=True, kw_only=True)
class ConductanceProgramming:
    """g_prog = g_target + sigma(g_target) * xi; sigma scaled by g_max / reference (aihwkit)."""

    sigma_us: Curve
    reference_g_max_us: float | None = None
    clip: str = "zero"
    source: str

    def sigma(self, model: CellModel, g_target: np.ndarray) -> np.ndarray:
        """Standard deviation of the programming error at each target, in uS."""
        sigma = self.sigma_us(g_target / model.g_max, g_target)
        if self.reference_g_max_us:
            # aihwkit: a fit made at reference g_max scales with g_max / reference
            sigma = sigma * (model.g_max / self.reference_g_max_us)
        return np.asarray(sigma * model.preset.scales.programming, dtype=np.float64)


@dataclass(frozen=True, slots=True, kw_only=True)
class ThresholdVoltageProgramming:
    """Transistor cells (flash, FeFET): levels are threshold voltages across `vt_window_v`;
    in the linear read regime a V_T error dV moves g by dV / vt_window_v * (g_max - g_min)."""

    vt_window_v: float
    vt_sigma_v: float
    clip: str = "window"
    source: str

    def sigma(self, model: CellModel, g_target: np.ndarray) -> np.ndarray:
        """Standard deviation of the programming error at each target, in uS."""
        # linear read regime: a V_T error moves g by dV_T / window of the conductance range
        per_volt = (model.g_max - model.g_min) / self.vt_window_v
        scale = model.preset.scales.programming
        return np.full_like(g_target, self.vt_sigma_v * per_volt * scale, dtype=np.float64)


@dataclass(frozen=True, slots=True, kw_only=True)
class VariationSpec:
    """Multiplicative gain factors: one per device and one per chip (process corner)."""

    device_sigma_rel: float = 0.0
    chip_sigma_rel: float = 0.0
    source: str = "none modelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class NoDrift:
    """Each drift kind draws, at programming, the per-device parameters of its evolution
    (`sample`, into the Cells) and then gives the conductance t > 0 seconds after programming
    (`conductance_at`, before stuck-at faults, which the cell model applies after)."""

    source: str = "no drift or relaxation modelled"

    def sample(self, model: CellModel, cells: Cells, rng: np.random.Generator) -> None:
        """Nothing evolves: nothing to draw."""

    def conductance_at(self, model: CellModel, cells: Cells, t: float) -> np.ndarray:
        return cells.g_prog


@dataclass(frozen=True, slots=True, kw_only=True)
class PowerLawDrift:
    """g(t) = g_prog ((t + t0) / t0)^-nu, nu = |mu(g_T) + sigma(g_T) xi| sampled per device."""

    t0_s: float
    nu_mean: Curve
    nu_std: Curve
    source: str

    def sample(self, model: CellModel, cells: Cells, rng: np.random.Generator) -> None:
        # aihwkit generate_drift_coefficients: nu = |mu(g_T) + sigma(g_T) xi| * drift_scale,
        # both fits in g_T / g_max clipped below at 1e-7
        g_target = cells.g_target
        g_rel = np.abs(g_target / model.g_max)
        mu = self.nu_mean(g_rel, g_target)
        sd = self.nu_std(g_rel, g_target)
        cells.nu = np.abs(mu + sd * rng.standard_normal(g_target.shape)) * model.preset.scales.drift

    def conductance_at(self, model: CellModel, cells: Cells, t: float) -> np.ndarray:
        assert cells.nu is not None
        # aihwkit apply_drift_noise_to_conductance: t = t_inference + t0,
        # g_drift = g_prog (t / t0)^-nu
        g: np.ndarray = cells.g_prog * ((t + self.t0_s) / self.t0_s) ** (-cells.nu)
        return g


@dataclass(frozen=True, slots=True, kw_only=True)
class RelaxationTable:
    """Spread about the target grows to sigma_k(g_T) at times_s[k] (sigma^2 interpolated in
    ln t, held outside the table); each device keeps its direction (a consistent trajectory)."""

    times_s: tuple[float, ...]
    sigma_us: tuple[Curve, ...]
    source: str

    def sample(self, model: CellModel, cells: Cells, rng: np.random.Generator) -> None:
        cells.relax = rng.standard_normal(cells.g_target.shape)

    def conductance_at(self, model: CellModel, cells: Cells, t: float) -> np.ndarray:
        assert cells.relax is not None
        # The spread about the target grows from sigma_0 (programming, the first fit) to
        # sigma(t); the added part keeps each device's own direction: marginally
        # N(g_T, sigma(t)^2) at every tabulated t, as aihwkit's ReRamWan2022 draws afresh.
        # The drift scale multiplies that added spread, independently of programming noise.
        g_rel = cells.g_target / model.g_max
        first = self.sigma_us[0](g_rel, cells.g_target)
        now = self.sigma_at(g_rel, cells.g_target, t)
        extra = np.sqrt(np.maximum(now**2 - first**2, 0.0)) * model.preset.scales.drift
        return model.clip((cells.raw + extra * cells.relax) * cells.factor)

    def sigma_at(self, g_rel: np.ndarray, g_us: np.ndarray, t: float) -> np.ndarray:
        """sigma(t): sigma^2 linear in ln t between tabulated times, held outside them."""
        times = self.times_s
        if t <= times[0]:
            return self.sigma_us[0](g_rel, g_us)
        if t >= times[-1]:
            return self.sigma_us[-1](g_rel, g_us)
        k = int(np.searchsorted(times, t)) - 1
        w = (np.log(t) - np.log(times[k])) / (np.log(times[k + 1]) - np.log(times[k]))
        low = self.sigma_us[k](g_rel, g_us) ** 2
        high = self.sigma_us[k + 1](g_rel, g_us) ** 2
        return np.asarray(np.sqrt(np.maximum((1 - w) * low + w * high, 0.0)))


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRelaxation:
    """g(t) = g_prog + mean_per_ln_s ln t + (sigma_per_ln_s ln t + sigma_at_1s_us) xi (t >= 1 s)."""

    mean_per_ln_s: float
    sigma_per_ln_s: float
    sigma_at_1s_us: float
    source: str

    def sample(self, model: CellModel, cells: Cells, rng: np.random.Generator) -> None:
        cells.relax = rng.standard_normal(cells.g_target.shape)

    def conductance_at(self, model: CellModel, cells: Cells, t: float) -> np.ndarray:
        assert cells.relax is not None
        # aihwkit ReRamCMONoiseModel: mean shift and spread linear in ln t (t in s); the fit
        # starts at 1 s, so shorter times use 1 s.
        log_t = np.log(max(t, 1.0))
        scale = model.preset.scales.drift
        spread = self.sigma_per_ln_s * log_t + self.sigma_at_1s_us
        g = cells.g_prog + scale * (self.mean_per_ln_s * log_t + spread * cells.relax)
        return model.clip(g)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """Charge loss / depolarisation: g moves toward g_rest = g_min + rest (g_max - g_min) by a
    fraction lambda log10(1 + t / tau_s), lambda ~ |N(loss_per_decade_mean, ..._std)| per device."""

    rest: float
    tau_s: float
    loss_per_decade_mean: float
    loss_per_decade_std: float
    source: str

    def sample(self, model: CellModel, cells: Cells, rng: np.random.Generator) -> None:
        shape = cells.g_target.shape
        rate = self.loss_per_decade_mean + self.loss_per_decade_std * rng.standard_normal(shape)
        cells.loss = np.abs(rate) * model.preset.scales.drift

    def conductance_at(self, model: CellModel, cells: Cells, t: float) -> np.ndarray:
        assert cells.loss is not None
        rest = model.g_min + self.rest * (model.g_max - model.g_min)
        fraction = np.minimum(cells.loss * np.log10(1.0 + t / self.tau_s), 1.0)
        g: np.ndarray = cells.g_prog + (rest - cells.g_prog) * fraction
        return g


Drift = NoDrift | PowerLawDrift | RelaxationTable | LogRelaxation | Retention


@dataclass(frozen=True, slots=True, kw_only=True)
class NoReadNoise:
    """Each read-noise kind gives the standard deviation (uS) of the noise one read adds to
    each cell of conductance g at t seconds since programming (`sigma`), or None for none;
    the preset's read scale multiplies it (the cell model skips a scale of 0)."""

    source: str = "no read noise modelled"

    def sigma(self, model: CellModel, cells: Cells, g: np.ndarray, t: float) -> np.ndarray | None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class PcmOneOverF:
    """sigma = |g_drift| Q(|g_prog| / g_max) sqrt(ln((t + t0 + t_read) / (2 t_read))) (aihwkit)."""

    q: Curve
    t0_s: float
    t_read_s: float
    source: str

    def sigma(self, model: CellModel, cells: Cells, g: np.ndarray, t: float) -> np.ndarray | None:
        # aihwkit: Q_s from |g_prog| / g_max (not g_T: IBM/aihwkit#436), the 1/f noise
        # integrated from 1/t to 1/(2 t_read) with t = t_inference + t0
        q = self.q(np.abs(cells.g_prog) / model.g_max, cells.g_prog)
        t_total = t + self.t0_s
        factor = np.sqrt(np.log((t_total + self.t_read_s) / (2 * self.t_read_s)))
        return np.asarray(np.abs(g) * q * factor * model.preset.scales.read)


@dataclass(frozen=True, slots=True, kw_only=True)
class AbsoluteOneOverF:
    """sigma = amplitude(g) sqrt(ln((t + t_read) / (2 t_read))), in uS (aihwkit CMO ReRAM)."""

    amplitude_us: Curve
    t_read_s: float
    source: str

    def sigma(self, model: CellModel, cells: Cells, g: np.ndarray, t: float) -> np.ndarray | None:
        # aihwkit ReRamCMONoiseModel: K log10(g_drift) sqrt(ln((t + t_read) / (2 t_read)));
        # none at t = 0, where the logarithm is negative
        log_term = np.log((t + self.t_read_s) / (2 * self.t_read_s))
        if log_term <= 0:
            return None
        amplitude = self.amplitude_us(g / model.g_max, g)
        return np.asarray(np.maximum(amplitude, 0.0) * np.sqrt(log_term) * model.preset.scales.read)


@dataclass(frozen=True, slots=True, kw_only=True)
class WhiteReadNoise:
    """sigma = sigma_us(g) on every read, independent of time."""

    sigma_us: Curve
    source: str

    def sigma(self, model: CellModel, cells: Cells, g: np.ndarray, t: float) -> np.ndarray | None:
        return np.asarray(
            np.maximum(self.sigma_us(g / model.g_max, g), 0.0) * model.preset.scales.read
        )


ReadNoise = NoReadNoise | PcmOneOverF | AbsoluteOneOverF | WhiteReadNoise


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultSpec:
    stuck_off: float = 0.0  # fraction of cells stuck at g_min
    stuck_on: float = 0.0  # fraction of cells stuck at g_max
    source: str = "none modelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class PeripherySpec:
    """The array's wires and ADCs: IR drop and per-column ADC offset and gain mismatch."""

    wire_ohm: float = 0.0  # resistance of one wire segment between neighbouring cells
    adc_offset_lsb: float = 0.0  # sigma of each column ADC's offset, in ADC LSBs
    adc_gain_sigma: float = 0.0  # sigma of each column ADC's relative gain error
    source: str = "none modelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Scales:
    """Multipliers on each effect, as aihwkit's prog_noise_scale, drift_scale, read_noise_scale."""

    programming: float = 1.0
    drift: float = 1.0
    read: float = 1.0
    source: str = "1 = the fit as published"


@dataclass(frozen=True, slots=True, kw_only=True)
class DevicePreset:
    name: str
    technology: str
    description: str
    model: str  # "analog" (conductances and non-idealities) or "digital" (exact)
    cell: CellSpec
    programming: ConductanceProgramming | ThresholdVoltageProgramming | None
    variation: VariationSpec
    drift: Drift
    read_noise: ReadNoise
    faults: FaultSpec
    periphery: PeripherySpec
    scales: Scales
    origin: str  # preset name or file path it was loaded from
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def exact(self) -> bool:
        return self.model == "digital"

    def with_overrides(self, **changes: Any) -> DevicePreset:
        """The same preset with `section.key` values replaced: `with_overrides(**{
        "scales.programming": 2.0})`; the result is validated like a file."""
        return load_preset(self.origin, (*self.overrides, *changes.items()))

    def describe(self) -> str:
        """Every parameter with its source, for `imcc devices NAME`."""
        lines = [f"{self.name}: {self.description}", f"  technology {self.technology}, "
                 f"model {self.model}, from {self.origin}"]  # fmt: skip
        if self.overrides:
            lines.append("  overrides: " + ", ".join(f"{k}={v}" for k, v in self.overrides))
        for section in SECTIONS:
            value = getattr(self, section)
            if value is None:
                continue
            kind = KIND_OF.get(type(value))
            lines.append(f"  [{section}]" + (f" {kind}" if kind else ""))
            for field in dataclasses.fields(value):
                if field.name == "source":
                    continue
                item = getattr(value, field.name)
                lines.append(f"    {field.name:<22} {_show(item)}")
            lines.append(f"    {'source':<22} {value.source}")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line for `imcc devices`."""
        c = self.cell
        levels = "analog" if c.levels == 0 else f"{c.levels} levels"
        on_off = "inf" if math.isinf(c.on_off) else f"{c.on_off:.3g}"
        if self.exact:
            return f"{self.technology}, exact (digital)"
        effects = [KIND_OF.get(type(self.drift), "")]
        effects.append(KIND_OF.get(type(self.read_noise), ""))
        shown = ", ".join(e for e in effects if e and not e.startswith("none"))
        return (
            f"{self.technology}, {levels}, {c.g_min_us:g}-{c.g_max_us:g} uS (on/off {on_off})"
            + (f", {shown}" if shown else "")
        )


SECTIONS = ("cell", "programming", "variation", "drift", "read_noise", "faults", "periphery",
            "scales")  # fmt: skip

# kind names in the TOML -> section classes
DRIFT_KINDS: dict[str, type] = {
    "none": NoDrift,
    "power-law": PowerLawDrift,
    "relaxation-table": RelaxationTable,
    "log-relaxation": LogRelaxation,
    "retention": Retention,
}
READ_KINDS: dict[str, type] = {
    "none": NoReadNoise,
    "pcm-1/f": PcmOneOverF,
    "absolute-1/f": AbsoluteOneOverF,
    "white": WhiteReadNoise,
}
PROGRAMMING_KINDS: dict[str, type] = {
    "conductance": ConductanceProgramming,
    "threshold-voltage": ThresholdVoltageProgramming,
}
KIND_OF: dict[type, str] = {
    cls: kind for table in (DRIFT_KINDS, READ_KINDS, PROGRAMMING_KINDS) for kind, cls in
    table.items()
}  # fmt: skip


def _show(value: Any) -> str:
    if hasattr(value, "describe"):
        return str(value.describe())
    if isinstance(value, tuple):
        return "[" + "; ".join(_show(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def preset_names() -> list[str]:
    return presets.preset_names("imcc.runtime", "devices/presets")


def load_preset(
    name_or_path: str | Path, overrides: tuple[tuple[str, Any], ...] | list[tuple[str, Any]] = ()
) -> DevicePreset:
    """A preset by name or a TOML file by path, with optional `section.key` overrides."""
    from imcc.runtime.devices import device_names

    data, origin = presets.read_toml(
        "imcc.runtime", "devices/presets", name_or_path, SimulationError, "device", device_names()
    )
    for key, value in overrides:
        _override(data, key, value, origin)
    return _build(data, origin, tuple(overrides))


def parse_override(text: str) -> tuple[str, Any]:
    """'section.key=value' (value in TOML syntax: 2, 0.5, "zero") -> (key, value)."""
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise SimulationError(f"bad device override {text!r}: expected SECTION.KEY=VALUE")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()  # a bare word: take it as a string
    return key.strip(), parsed


def _override(data: dict[str, Any], key: str, value: Any, origin: str) -> None:
    section, _, field = key.partition(".")
    if section not in SECTIONS or not field:
        raise SimulationError(
            f"device {origin!r}: cannot override {key!r}; keys are SECTION.KEY with SECTION one "
            f"of {', '.join(SECTIONS)}"
        )
    table = data.setdefault(section, {})
    if not isinstance(table, dict):
        raise SimulationError(f"device {origin!r}: [{section}] is not a table")
    table[field] = value


def _build(
    data: dict[str, Any], origin: str, overrides: tuple[tuple[str, Any], ...]
) -> DevicePreset:
    where = f"device {origin!r}"
    top = {"name", "technology", "description", "model", *SECTIONS}
    unknown = sorted(set(data) - top)
    if unknown:
        raise SimulationError(f"{where}: unknown keys {unknown}")
    for key in ("name", "technology", "description", "model"):
        if not isinstance(data.get(key), str):
            raise SimulationError(f"{where}: missing or non-string {key!r}")
    if data["model"] not in MODELS:
        raise SimulationError(f"{where}: model must be one of {', '.join(MODELS)}")
    cell = _section(data, "cell", CellSpec, where)
    if not 0 <= cell.g_min_us < cell.g_max_us:
        raise SimulationError(f"{where}: [cell] needs 0 <= g_min_us < g_max_us")
    if cell.levels == 1 or cell.levels < 0:
        raise SimulationError(f"{where}: [cell] levels must be 0 (analog) or at least 2")
    programming = None
    if "programming" in data:
        programming = _kinded(data, "programming", PROGRAMMING_KINDS, where, "conductance")
        if programming.clip not in CLIPS:
            raise SimulationError(f"{where}: [programming] clip must be one of {', '.join(CLIPS)}")
    drift = _kinded(data, "drift", DRIFT_KINDS, where, "none")
    if isinstance(drift, RelaxationTable) and (
        len(drift.times_s) != len(drift.sigma_us) or list(drift.times_s) != sorted(drift.times_s)
    ):
        raise SimulationError(f"{where}: [drift] times_s must be ascending, one per sigma_us curve")
    preset = DevicePreset(
        name=data["name"],
        technology=data["technology"],
        description=data["description"],
        model=data["model"],
        cell=cell,
        programming=programming,
        variation=_section(data, "variation", VariationSpec, where),
        drift=drift,
        read_noise=_kinded(data, "read_noise", READ_KINDS, where, "none"),
        faults=_section(data, "faults", FaultSpec, where),
        periphery=_section(data, "periphery", PeripherySpec, where),
        scales=_section(data, "scales", Scales, where),
        origin=origin,
        overrides=overrides,
    )
    for label, value in (
        ("faults.stuck_off", preset.faults.stuck_off),
        ("faults.stuck_on", preset.faults.stuck_on),
    ):
        if not 0 <= value <= 1:
            raise SimulationError(f"{where}: {label} must be a fraction in [0, 1], not {value}")
    for label, value in (
        ("periphery.wire_ohm", preset.periphery.wire_ohm),
        ("periphery.adc_offset_lsb", preset.periphery.adc_offset_lsb),
        ("periphery.adc_gain_sigma", preset.periphery.adc_gain_sigma),
        ("variation.device_sigma_rel", preset.variation.device_sigma_rel),
        ("variation.chip_sigma_rel", preset.variation.chip_sigma_rel),
        ("scales.programming", preset.scales.programming),
        ("scales.drift", preset.scales.drift),
        ("scales.read", preset.scales.read),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise SimulationError(f"{where}: {label} must be >= 0, not {value}")
    return preset


def _kinded(
    data: dict[str, Any], section: str, kinds: dict[str, type], where: str, default: str
) -> Any:
    table = dict(data.get(section, {}))
    kind = table.pop("kind", default)
    if kind not in kinds:
        raise SimulationError(
            f"{where}: [{section}] kind {kind!r} is unknown; kinds are {', '.join(kinds)}"
        )
    return _section({section: table}, section, kinds[kind], where)


def _section(data: dict[str, Any], section: str, cls: type, where: str) -> Any:
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise SimulationError(f"{where}: [{section}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise SimulationError(
            f"{where}: unknown keys {unknown} in [{section}]; keys are {', '.join(fields)}"
        )
    values: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in table:
            if field.default is dataclasses.MISSING:
                raise SimulationError(f"{where}: [{section}] is missing {name!r}")
            continue
        values[name] = _convert(table[name], str(field.type), f"{where}: [{section}] {name}")
    return cls(**values)


def _convert(value: Any, annotation: str, where: str) -> Any:
    """TOML value -> the field's type (from its annotation string)."""
    try:
        if annotation == "Curve":
            return parse_curve(value, where)
        if annotation == "tuple[Curve, ...]":
            return tuple(parse_curve(v, f"{where}[{i}]") for i, v in enumerate(value))
        if annotation == "tuple[float, ...]":
            return tuple(float(v) for v in value)
        if annotation == "str":
            if not isinstance(value, str):
                raise TypeError("expected a string")
            return value
        if annotation == "int":
            if isinstance(value, bool) or int(value) != value:
                raise TypeError("expected an integer")
            return int(value)
        if annotation in ("float", "float | None"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError("expected a number")
            return float(value)
    except (TypeError, ValueError) as exc:
        raise SimulationError(f"{where}: {exc}, not {value!r}") from None
    raise AssertionError(f"no converter for {annotation}")  # our own dataclasses only
