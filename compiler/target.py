"""Targets as data: TOML presets in compiler/targets/ (or a user's TOML file) -> isa.Target.

The compiler reads the target to map a model; the binary records it, so the runtime needs
nothing from here.
"""

from __future__ import annotations

from pathlib import Path

from imcc.isa import presets
from imcc.isa.diagnostics import TargetError
from imcc.isa.target import Target

DEFAULT_TARGET = "edge-rram"


def preset_names() -> list[str]:
    return presets.preset_names("imcc.compiler", "targets")


def load_target(name_or_path: str | Path | Target | None = None) -> Target:
    """A preset by name, a TOML file by path, or the default target when None."""
    if isinstance(name_or_path, Target):
        return name_or_path
    name = DEFAULT_TARGET if name_or_path is None else name_or_path
    data, origin = presets.read_toml("imcc.compiler", "targets", name, TargetError, "target")
    return Target.from_dict(data, f"target {origin!r}")
