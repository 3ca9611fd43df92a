"""Time since programming as users write it: `1s`, `30min`, `1h`, `1d`, `1w`, `1y` or seconds.

Used by the simulator (`time=`), `imcc run --time` and `imcc devices --stats --times`. A year is
365 days (31,536,000 s), the convention of the aihwkit drift figures in
shared/references/device_models.md (drift factor 0.497 at one year for nu = 0.049).
"""

from __future__ import annotations

import math
import numbers
import re

from imcc.isa.diagnostics import SimulationError

UNITS: dict[str, float] = {
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "y": 365 * 86400.0,
}
_PATTERN = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")


def parse_time(value: str | float | int) -> float:
    """Seconds since programming; a SimulationError names anything that is not a time."""
    if isinstance(value, bool):
        raise SimulationError(f"bad time {value!r}: expected seconds or a string such as '1d'")
    if isinstance(value, numbers.Real):
        seconds = float(value)
    elif not isinstance(value, str):
        raise SimulationError(
            f"bad time {value!r}: expected seconds or a string such as '1d', not a "
            f"{type(value).__name__}"
        )
    else:
        match = _PATTERN.match(value)
        if match is None or match.group(2) not in ("", *UNITS):
            raise SimulationError(
                f"bad time {value!r}: expected a number of seconds or a number with a unit "
                f"({', '.join(UNITS)}), e.g. '1d'"
            )
        seconds = float(match.group(1)) * UNITS.get(match.group(2), 1.0)
    if not math.isfinite(seconds) or seconds < 0:
        raise SimulationError(f"bad time {value!r}: time since programming must be >= 0 s")
    return seconds


def parse_times(text: str) -> tuple[float, ...]:
    """A comma-separated list of times, e.g. '0,1h,1d,1y'."""
    return tuple(parse_time(part) for part in text.split(",") if part.strip())


def format_time(seconds: float) -> str:
    """The largest unit that divides the time into a number >= 1: 86400.0 -> '1d'."""
    if seconds == 0:
        return "0s"
    fitting = [(unit, size) for unit, size in sorted(UNITS.items(), key=lambda kv: -kv[1])
               if seconds >= size]  # fmt: skip
    for unit, size in fitting:  # a whole number of the largest unit that gives one: 30d
        count = seconds / size
        if abs(count - round(count)) < 1e-9:
            return f"{round(count)}{unit}"
    if fitting:
        unit, size = fitting[0]
        return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"
