"""Named TOML presets shipped inside a package, or a user's TOML file by path.

Shared by the compiler's targets (compiler/targets/) and the runtime's device presets
(runtime/devices/presets/); it lives here because both may import isa and neither the other.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from imcc.isa.diagnostics import Diagnostic


def preset_names(package: str, folder: str) -> list[str]:
    """Names of the `*.toml` files in `folder` of `package`."""
    files = resources.files(package).joinpath(folder)
    return sorted(p.name[: -len(".toml")] for p in files.iterdir() if p.name.endswith(".toml"))


def read_toml(
    package: str,
    folder: str,
    name_or_path: str | Path,
    error: type[Diagnostic],
    what: str,
    names: list[str] | None = None,
) -> tuple[dict[str, Any], str]:
    """(parsed TOML, the name or path it came from) of a preset by name or of a file by path;
    anything else is `error` naming the choices (`names`, by default the folder's files)."""
    name = str(name_or_path)
    available = preset_names(package, folder)
    if name in available:
        text = resources.files(package).joinpath(folder, f"{name}.toml").read_text()
    elif name.endswith(".toml") or Path(name).is_file():
        try:
            text = Path(name).read_text()
        except OSError as exc:
            raise error(f"cannot read {what} file {name!r}: {exc.strerror}") from None
    else:
        listed = ", ".join(names if names is not None else available)
        raise error(f"unknown {what} {name!r}; {what}s are {listed} (or give the path of a "
                    ".toml file)")  # fmt: skip
    try:
        return tomllib.loads(text), name
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {name!r}: invalid TOML ({exc})") from None
