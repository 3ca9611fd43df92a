"""Hand-written programs for runtime tests, assembled from text."""

from __future__ import annotations

import numpy as np

from imcc.compiler.target import load_target
from imcc.isa.assembler import assemble
from imcc.isa.container import Binary
from imcc.isa.program import Program


def program(text: str) -> Program:
    return assemble(text, "test.s", target_loader=load_target)


def binary(text: str) -> Binary:
    return Binary(program(text), name="test.imcb")


IO = """
.target edge-rram
.input {"name": "x", "shape": [4], "addr": 0, "dtype": "float32", "batch_axis": true, "quant": {}}
.output {"name": "y", "shape": [4], "addr": 16, "dtype": "float32", "batch_axis": true, "quant": {}}
"""


def with_io(body: str) -> Binary:
    return binary(IO + body)


def image_directive(index: int, levels: np.ndarray) -> str:
    """`.image` for integer levels, in the assembler's base64 form."""
    import base64

    data = base64.b64encode(np.ascontiguousarray(levels, dtype="<u2").tobytes()).decode()
    return f'.image {index} {levels.shape[0]} {levels.shape[1]} "{data}"\n'
