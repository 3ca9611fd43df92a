"""Named TOML presets shipped inside a package, or a user's TOML file by path.

Shared by the compiler's targets (compiler/targets/) and the runtime's device presets
(runtime/devices/presets/); it lives here because both may import isa and neither the other.
The device names a target may give (`xbar.device`, `acam.device`) are the runtime's registry:
its built-in models and the preset files it ships, listed here without importing the runtime.
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
from enum import Enum
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from imcc.isa.diagnostics import Diagnostic


class DeviceKind(Enum):
    """The kind of array a device models: a target's `[xbar]` or `[acam]` section names one."""

    XBAR = "xbar"
    ACAM = "acam"


# The runtime's device registry, as data: the models it builds without a preset file, with the
# kinds of array each models (runtime/devices/__init__.py attaches the builders and checks at
# import that they are these), and the package folder of its device presets (one TOML file per
# crossbar device).
BUILTIN_DEVICES: dict[str, tuple[DeviceKind, ...]] = {"ideal": (DeviceKind.XBAR, DeviceKind.ACAM)}
DEVICE_PRESETS = ("imcc.runtime", "devices/presets")
PRESET_KIND = DeviceKind.XBAR


def _folder(package: str, folder: str) -> Traversable:
    """`folder` of `package`, found without running the package's __init__ (so that the
    compiler can list the runtime's presets without importing the runtime)."""
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).joinpath(folder)
    return resources.files(package).joinpath(folder)  # pragma: no cover - zipped packages


def preset_names(package: str, folder: str) -> list[str]:
    """Names of the `*.toml` files in `folder` of `package`."""
    files = _folder(package, folder)
    return sorted(p.name[: -len(".toml")] for p in files.iterdir() if p.name.endswith(".toml"))


def preset_file(package: str, folder: str, name: str) -> str:
    """The path of preset `name` of `folder` in `package`, for messages."""
    return str(_folder(package, folder).joinpath(f"{name}.toml"))


def device_kinds() -> dict[str, tuple[DeviceKind, ...]]:
    """Every device a target may name, with the kinds of array it models: the built-in models,
    then the presets (sorted); a built-in name hides a preset file of that name."""
    kinds = dict(BUILTIN_DEVICES)
    for name in preset_names(*DEVICE_PRESETS):
        kinds.setdefault(name, (PRESET_KIND,))
    return kinds


def device_names(kind: DeviceKind = DeviceKind.XBAR) -> list[str]:
    """The devices of one kind a target may name (by default crossbar devices), in the order of
    `device_kinds`."""
    return [name for name, kinds in device_kinds().items() if kind in kinds]


def read_toml(
    package: str,
    folder: str,
    name_or_path: str | os.PathLike[str],
    error: type[Diagnostic],
    what: str,
    names: list[str] | None = None,
) -> tuple[dict[str, Any], str]:
    """(parsed TOML, the name or path it came from) of a preset by name or of a file by path;
    anything else is `error` naming the choices (`names`, by default the folder's files)."""
    name = str(name_or_path)
    text, _ = read_text(package, folder, name_or_path, error, what, names)
    try:
        return tomllib.loads(text), name
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {name!r}: invalid TOML ({exc})") from None


def read_text(
    package: str,
    folder: str,
    name_or_path: str | os.PathLike[str],
    error: type[Diagnostic],
    what: str,
    names: list[str] | None = None,
) -> tuple[str, str]:
    """(text, file path) of a preset by name or of a file by path; anything else is `error`
    naming the choices (`names`, by default the folder's files)."""
    name = str(name_or_path)
    available = preset_names(package, folder)
    if name in available:
        file = _folder(package, folder).joinpath(f"{name}.toml")
        return file.read_text(encoding="utf-8"), str(file)
    if name.endswith(".toml") or Path(name).is_file():
        try:
            return Path(name).read_text(encoding="utf-8"), name
        except OSError as exc:
            raise error(f"cannot read {what} file {name!r}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise error(f"{what} file {name!r} is not UTF-8 text (byte {exc.start})") from None
    listed = ", ".join(names if names is not None else available)
    raise error(f"unknown {what} {name!r}; {what}s are {listed} (or give the path of a "
                ".toml file)")  # fmt: skip
