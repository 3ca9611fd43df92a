"""Targets as data: TOML presets in compiler/targets/ (or a user's TOML file) -> isa.Target.

The compiler reads the target to map a model; the binary records it, so the runtime needs
nothing from here.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from imcc.isa.diagnostics import TargetError
from imcc.isa.target import Target

DEFAULT_TARGET = "edge-rram"


def preset_names() -> list[str]:
    folder = resources.files("imcc.compiler") / "targets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_target(name_or_path: str | Path | Target | None = None) -> Target:
    """A preset by name, a TOML file by path, or the default target when None."""
    if isinstance(name_or_path, Target):
        return name_or_path
    name = DEFAULT_TARGET if name_or_path is None else str(name_or_path)
    if name in preset_names():
        text = (resources.files("imcc.compiler") / "targets" / f"{name}.toml").read_text()
        origin = f"preset {name!r}"
    elif name.endswith(".toml") or Path(name).exists():
        try:
            text = Path(name).read_text()
        except OSError as exc:
            raise TargetError(f"cannot read target file {name!r}: {exc.strerror}") from None
        origin = name
    else:
        raise TargetError(
            f"unknown target {name!r}; presets are {', '.join(preset_names())} "
            "(or give the path of a .toml file)"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{origin}: invalid TOML ({exc})") from None
    return Target.from_dict(data, origin)
