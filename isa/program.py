"""A whole chip program: per-core code plus the data it needs (crossbar and CAM images, CAM
coding tables, constants, I/O).

The compiler's `emit` pass and the assembler build a Program; the container (container.py)
turns it into .imcb bytes and back; the runtime loads and runs it. Mutable while being built,
so it is a plain class; its parts are values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from imcc.isa.acam import CamCode, CamImage
from imcc.isa.encoding import Instr
from imcc.isa.target import Target

__all__ = ["Binding", "CamCode", "CamImage", "Program", "TensorInfo", "XbarImage"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorInfo:
    """A model input or output: where it lives in global memory and how it is quantised.

    `shape` is one sample's shape; `batch_axis` says the model had a leading batch axis that
    the binary processes one sample at a time. `quant` records the quantisation chosen by the
    compiler (for inputs: bits and a static scale, or "dynamic" for per-vector abs-max).
    """

    name: str
    shape: tuple[int, ...]
    addr: int
    dtype: str = "float32"
    batch_axis: bool = True
    quant: tuple[tuple[str, str | int | float], ...] = ()

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "addr": self.addr,
            "dtype": self.dtype,
            "batch_axis": self.batch_axis,
            "quant": dict(self.quant),
        }


class XbarImage:
    """Integer cell levels for one crossbar array: `levels[r, c]` in [0, 2^cell_bits)."""

    def __init__(self, levels: np.ndarray) -> None:
        self.levels = np.ascontiguousarray(levels, dtype=np.uint16)

    @property
    def rows(self) -> int:
        return int(self.levels.shape[0])

    @property
    def cols(self) -> int:
        return int(self.levels.shape[1])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, XbarImage) and np.array_equal(self.levels, other.levels)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Binding:
    """The image an array holds when the program starts (programmed before the first run)."""

    core: int
    array: int
    image: int


@dataclass(eq=False)
class Program:
    target: Target
    code: list[list[Instr]]  # one instruction list per core; an empty list is an idle core
    images: list[XbarImage] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)
    constants: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (global addr, values)
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    debug: dict[tuple[int, int], str] = field(default_factory=dict)  # (core, pc) -> node
    # image -> ADC full-scale range per column, in level steps; absent: the array's full scale
    adc_ranges: dict[int, np.ndarray] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    # analog-CAM tree unit: images (bounds + leaf RAM), which CAM array holds which image at
    # start (Binding.array is then a CAM array), and the input coding tables of acam.encode
    cam_images: list[CamImage] = field(default_factory=list)
    cam_bindings: list[Binding] = field(default_factory=list)
    cam_codes: list[CamCode] = field(default_factory=list)

    def same_as(self, other: Program) -> bool:
        """Structural equality over every field, used by round-trip tests: arrays bit for bit
        (NaN equals itself, -0.0 differs from 0.0), everything else by value."""
        return type(self) is type(other) and all(
            _same(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)
        )


def _same(a: object, b: object) -> bool:
    """Value equality through lists, tuples and dicts, with numpy arrays compared by bytes."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.tobytes() == b.tobytes()
        )
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b
