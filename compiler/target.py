"""Targets as data: TOML presets in compiler/targets/ (or a user's TOML file) -> isa.Target.

The compiler reads the target to map a model; the binary records it, so the runtime needs
nothing from here. Loading checks every key of every table (an unknown key names the closest
known one), the [defaults] against the compile options a target may default, and the device
names against the runtime's device registry (isa/presets.py), each error at file:line:col.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from imcc.isa import presets
from imcc.isa.diagnostics import SourceLoc, TargetError
from imcc.isa.target import Locate, Target, XbarSpec, suggest

DEFAULT_TARGET = "edge-rram"

# The compile options a target's [defaults] may set, with their types (driver.OPTIONS says what
# each means; a test pins that the two agree). Hardware options belong in [xbar].
DEFAULTABLE: dict[str, tuple[type, ...]] = {
    "weight_bits": (int,),
    "input_bits": (int,),
    "calibration": (str,),
    "percentile": (int, float),
    "spread": (bool,),
    "schedule": (str,),
    "phases": (bool,),
    "loops": (bool,),
}


def preset_names() -> list[str]:
    return presets.preset_names("imcc.compiler", "targets")


def load_target(name_or_path: str | os.PathLike[str] | Target | None = None) -> Target:
    """A preset by name, a TOML file by path, or the default target when None."""
    if isinstance(name_or_path, Target):
        return name_or_path
    name = DEFAULT_TARGET if name_or_path is None else name_or_path
    text, file = presets.read_text("imcc.compiler", "targets", name, TargetError, "target")
    # a preset by its name; a user's file is named by the location (file:line:col)
    origin = "target file" if file == str(name) else f"target {str(name)!r}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        at = re.search(r"at line (\d+), column (\d+)", str(exc))
        line, col = (int(at.group(1)), int(at.group(2))) if at else (1, 1)
        raise TargetError(
            f"{origin}: invalid TOML ({exc})", SourceLoc(file, line, col, _line(text, line))
        ) from None
    locate = locator(text, file)
    target = Target.from_dict(data, origin, locate)
    check_defaults(data.get("defaults", {}), origin, locate)
    check_devices(target, origin, locate)
    return target


def check_defaults(defaults: dict[str, Any], origin: str, locate: Locate) -> None:
    """Every key of [defaults] is a compile option a target may default, of its type."""
    hardware = {f.name for f in dataclasses.fields(XbarSpec)}  # driver.HARDWARE_OPTIONS
    for key, value in defaults.items():
        if key in hardware:
            raise TargetError(
                f"{origin}: [defaults] sets {key!r}, a hardware option: set it in [xbar]",
                locate("defaults", key),
            )
        if key not in DEFAULTABLE:
            raise TargetError(
                f"{origin}: [defaults] has unknown key {key!r}{suggest(key, DEFAULTABLE)}; "
                f"expected {', '.join(DEFAULTABLE)}",
                locate("defaults", key),
            )
        kinds = DEFAULTABLE[key]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            expected = " or ".join(k.__name__ for k in kinds)
            raise TargetError(
                f"{origin}: [defaults]: {key} = {value!r} must be of type {expected}",
                locate("defaults", key),
            )


def check_devices(target: Target, origin: str, locate: Locate) -> None:
    """`xbar.device` names a device of the runtime's registry (or a preset file) and
    `acam.device` a CAM device, so a misspelt device fails here and not at run time."""
    devices = presets.device_names()
    device = target.xbar.device
    if device not in devices and not (device.endswith(".toml") and Path(device).is_file()):
        raise TargetError(
            f"{origin}: [xbar]: device = {device!r} is not a known device"
            f"{suggest(device, devices)}; devices are {', '.join(devices)} (or the path of a "
            "device preset .toml file)",
            locate("xbar", "device"),
        )
    cam_devices = presets.device_names(presets.DeviceKind.ACAM)
    if target.acam is not None and target.acam.device not in cam_devices:
        raise TargetError(
            f"{origin}: [acam]: device = {target.acam.device!r} is not a known CAM device"
            f"{suggest(target.acam.device, cam_devices)}; CAM devices are "
            f"{', '.join(cam_devices)}",
            locate("acam", "device"),
        )


_HEADER = re.compile(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
_KEY = re.compile(r"\s*([A-Za-z0-9_-]+)\s*=")


def locator(text: str, file: str) -> Locate:
    """Where `key` of `[table]` (or the table's header, for key None) is in a TOML text:
    file:line:col of simple `key = value` lines; the table's header, else line 1, otherwise."""
    lines = text.splitlines()
    keys: dict[tuple[str, str | None], tuple[int, int]] = {}
    table = ""
    for number, line in enumerate(lines, start=1):
        header = _HEADER.match(line)
        if header:
            table = header.group(1)
            keys.setdefault((table, None), (number, header.start(1) + 1))
            continue
        key = _KEY.match(line)
        if key:
            keys.setdefault((table, key.group(1)), (number, key.start(1) + 1))

    def locate(table: str, key: str | None) -> SourceLoc:
        line, col = keys.get((table, key)) or keys.get((table, None)) or (1, 1)
        return SourceLoc(file, line, col, _line(text, line))

    return locate


def _line(text: str, number: int) -> str:
    lines = text.splitlines()
    return lines[number - 1] if 0 < number <= len(lines) else ""
