"""imcc: compile models for in-memory-computing accelerators and simulate them cycle by cycle.

    binary = imcc.compile("model.onnx", target="edge-rram")
    result = imcc.Simulator(binary, device="ideal").run(x)
    result.outputs, result.report

Names are imported on first use, so `imcc.runtime` can be loaded without the compiler or
the frontends (the binary is the only contract between them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imcc.api import compile as compile
    from imcc.api import load as load
    from imcc.isa.container import Binary as Binary
    from imcc.isa.diagnostics import Diagnostic as Diagnostic
    from imcc.runtime.report import RunReport as RunReport
    from imcc.runtime.simulator import RunResult as RunResult
    from imcc.runtime.simulator import Simulator as Simulator

_EXPORTS = {
    "compile": "imcc.api",
    "load": "imcc.api",
    "Binary": "imcc.isa.container",
    "Diagnostic": "imcc.isa.diagnostics",
    "RunReport": "imcc.runtime.report",
    "RunResult": "imcc.runtime.simulator",
    "Simulator": "imcc.runtime.simulator",
}
__all__ = ["Binary", "Diagnostic", "RunReport", "RunResult", "Simulator", "compile", "load"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'imcc' has no attribute {name!r}")
