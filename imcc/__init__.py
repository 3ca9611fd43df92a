"""imcc: compile models for in-memory-computing accelerators and simulate them cycle by cycle.

    binary = imcc.compile("model.onnx", target="edge-rram")
    result = imcc.Simulator(binary, device="ideal").run(x)
    result.outputs, result.report
"""

from imcc.api import compile, load
from imcc.isa.container import Binary
from imcc.isa.diagnostics import Diagnostic
from imcc.runtime.report import RunReport
from imcc.runtime.simulator import RunResult, Simulator

__all__ = ["Binary", "Diagnostic", "RunReport", "RunResult", "Simulator", "compile", "load"]
__version__ = "0.1.0"
