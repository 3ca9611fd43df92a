"""Fitted curves of a device parameter against conductance, as written in the TOML presets.

A preset gives, say, the programming-noise sigma as `{ kind = "poly", of = "g_rel",
coeffs = [...] }`; this module turns that table into a small value that evaluates on numpy
arrays of relative conductance (g / g_max) and absolute conductance (uS). The kinds are the
functional forms the published fits use (aihwkit, CrossSim): polynomials, clamped logarithms,
clamped power laws, a log10 law and a two-branch piecewise form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from imcc.isa.diagnostics import SimulationError

# aihwkit clips relative conductances below at 1e-7 before taking logs (_ZERO_CLIP in
# src/aihwkit/inference/noise/pcm.py); clamped logs then give the same values as theirs.
ZERO_CLIP = 1e-7


@dataclass(frozen=True, slots=True)
class Poly:
    """sum_i coeffs[i] * x^i with x = g_rel (g / g_max) or g_us (conductance in uS)."""

    coeffs: tuple[float, ...]
    of: str = "g_rel"

    def __call__(self, g_rel: np.ndarray, g_us: np.ndarray) -> np.ndarray:
        x = g_rel if self.of == "g_rel" else g_us
        result = np.zeros_like(x, dtype=np.float64)
        for coeff in reversed(self.coeffs):  # Horner
            result = result * x + coeff
        return result

    def describe(self) -> str:
        x = "(g/g_max)" if self.of == "g_rel" else "g[uS]"
        terms = [f"{c:+.6g}" + ("" if i == 0 else f"*{x}" + (f"^{i}" if i > 1 else ""))
                 for i, c in enumerate(self.coeffs)]  # fmt: skip
        return " ".join(terms).lstrip("+")


@dataclass(frozen=True, slots=True)
class LogClamp:
    """clamp(a * ln(max(g_rel, 1e-7)) + b, lo, hi)."""

    a: float
    b: float
    lo: float = -np.inf
    hi: float = np.inf

    def __call__(self, g_rel: np.ndarray, g_us: np.ndarray) -> np.ndarray:
        value = self.a * np.log(np.maximum(np.abs(g_rel), ZERO_CLIP)) + self.b
        return np.asarray(np.clip(value, self.lo, self.hi), dtype=np.float64)

    def describe(self) -> str:
        return f"clamp({self.a:+.6g}*ln(g/g_max) {self.b:+.6g}, {self.lo:g}, {self.hi:g})"


@dataclass(frozen=True, slots=True)
class PowerClamp:
    """min(c / max(|g_rel|^p, floor), cap): aihwkit's PCM 1/f noise factor Q_s."""

    c: float
    p: float
    floor: float = 0.0
    cap: float = np.inf

    def __call__(self, g_rel: np.ndarray, g_us: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            value = self.c / np.maximum(np.abs(g_rel) ** self.p, self.floor)
        return np.asarray(np.minimum(value, self.cap), dtype=np.float64)

    def describe(self) -> str:
        return f"min({self.c:g} / max((g/g_max)^{self.p:g}, {self.floor:g}), {self.cap:g})"


@dataclass(frozen=True, slots=True)
class Log10:
    """k * log10(g_us): aihwkit's CMO ReRAM read-noise amplitude."""

    k: float

    def __call__(self, g_rel: np.ndarray, g_us: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = self.k * np.log10(np.maximum(g_us, ZERO_CLIP))
        return np.asarray(value, dtype=np.float64)

    def describe(self) -> str:
        return f"{self.k:g}*log10(g[uS])"


@dataclass(frozen=True, slots=True)
class Piecewise:
    """`below` where g_rel < split, `above` elsewhere (aihwkit's HERMES branch fits)."""

    split: float
    below: Curve
    above: Curve

    def __call__(self, g_rel: np.ndarray, g_us: np.ndarray) -> np.ndarray:
        low = np.abs(g_rel) < self.split
        return np.where(low, self.below(g_rel, g_us), self.above(g_rel, g_us))

    def describe(self) -> str:
        return (
            f"g/g_max < {self.split:g}: {self.below.describe()}; otherwise: {self.above.describe()}"
        )


Curve = Poly | LogClamp | PowerClamp | Log10 | Piecewise


def parse_curve(data: Any, where: str) -> Curve:
    """A curve from its TOML table; every malformed table is a SimulationError naming it."""
    if not isinstance(data, dict) or "kind" not in data:
        raise SimulationError(f"{where}: a curve must be a table with a 'kind'")
    kind = data["kind"]
    fields = {k: v for k, v in data.items() if k != "kind"}
    try:
        if kind == "poly":
            of = fields.pop("of", "g_rel")
            if of not in ("g_rel", "g_us"):
                raise SimulationError(f"{where}: 'of' must be 'g_rel' or 'g_us', not {of!r}")
            coeffs = tuple(float(c) for c in fields.pop("coeffs"))
            curve: Curve = Poly(coeffs, of)
        elif kind == "log":
            curve = LogClamp(**{k: float(fields.pop(k)) for k in list(fields)})
        elif kind == "power":
            curve = PowerClamp(**{k: float(fields.pop(k)) for k in list(fields)})
        elif kind == "log10":
            curve = Log10(float(fields.pop("k")))
        elif kind == "piecewise":
            curve = Piecewise(
                float(fields.pop("split")),
                parse_curve(fields.pop("below"), f"{where}.below"),
                parse_curve(fields.pop("above"), f"{where}.above"),
            )
        else:
            raise SimulationError(
                f"{where}: unknown curve kind {kind!r}; kinds are poly, log, power, log10, "
                "piecewise"
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise SimulationError(f"{where}: malformed {kind!r} curve ({exc})") from None
    if fields:
        raise SimulationError(f"{where}: unknown keys {sorted(fields)} in a {kind!r} curve")
    return curve
