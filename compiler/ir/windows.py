"""Sliding-window geometry of convolutions and pools, shared by the interpreter and the emitter.

A window op (Conv, Im2Col, Pool) over an input of spatial shape (d_1, ..., d_r) has per axis a
kernel size k, stride s, dilation d and begin/end pads (ONNX order: all begins, then all ends).
`window_index` lists, for every output position and kernel offset, the flat spatial index it
reads, or -1 where it falls in the padding; both the numpy interpreter and the emitted copies
use that one table, so they agree by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod

import numpy as np


@dataclass(frozen=True, slots=True)
class Window:
    """Kernel, strides, dilations (one per spatial axis) and pads (begins, then ends)."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    ceil_mode: bool = False

    @classmethod
    def of(cls, attrs: dict[str, object], rank: int) -> Window:
        kernel = tuple(int(k) for k in attrs["kernel"])  # type: ignore[attr-defined]
        ones = (1,) * rank

        def ints(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
            value = attrs.get(name)
            return tuple(int(v) for v in value) if value else default  # type: ignore[attr-defined]

        return cls(
            kernel,
            ints("strides", ones),
            ints("pads", (0,) * (2 * rank)),
            ints("dilations", ones),
            bool(attrs.get("ceil_mode", False)),
        )

    def check(self, spatial: Sequence[int]) -> str | None:
        """A message when the geometry does not fit `spatial`, else None."""
        r = len(spatial)
        if not (len(self.kernel) == len(self.strides) == len(self.dilations) == r):
            return f"kernel, strides and dilations need {r} values each for {r} spatial axes"
        if len(self.pads) != 2 * r:
            return f"pads need {2 * r} values (begins, then ends), not {len(self.pads)}"
        if min((*self.kernel, *self.strides, *self.dilations), default=1) < 1:
            return "kernel sizes, strides and dilations must be positive"
        if min(self.pads, default=0) < 0:
            return f"negative pads {self.pads} are not supported"
        if 0 in self.output(spatial):
            return f"the window {self.kernel} does not fit the padded input {tuple(spatial)}"
        return None

    def output(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """Output size per spatial axis (ONNX rules, including ceil_mode)."""
        r = len(spatial)
        sizes = []
        for i, n in enumerate(spatial):
            begin, end = self.pads[i], self.pads[r + i]
            span = n + begin + end - ((self.kernel[i] - 1) * self.dilations[i] + 1)
            if span < 0:
                sizes.append(0)
                continue
            s = self.strides[i]
            out = (-(-span // s) if self.ceil_mode else span // s) + 1
            if self.ceil_mode and (out - 1) * s >= n + begin:  # last window starts in the pad
                out -= 1
            sizes.append(out)
        return tuple(sizes)


def window_index(window: Window, spatial: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(index, in_pads): both (output positions, kernel offsets), row-major on each side.

    index[p, j] is the flat spatial index output p reads at offset j, or -1 in the padding (or
    beyond it, for ceil_mode); in_pads[p, j] is True where the offset lies inside the input or
    its explicit pads (what AveragePool's count_include_pad counts)."""
    r = len(spatial)
    out = window.output(spatial)
    flat_strides = [prod(spatial[i + 1 :]) for i in range(r)]
    full = (*out, *window.kernel)
    flat = np.zeros(full, dtype=np.int64)
    valid = np.ones(full, dtype=bool)
    in_pads = np.ones(full, dtype=bool)
    for i in range(r):
        coord = (
            np.arange(out[i])[:, None] * window.strides[i]
            - window.pads[i]
            + np.arange(window.kernel[i])[None, :] * window.dilations[i]
        )
        shape = [1] * (2 * r)
        shape[i], shape[r + i] = out[i], window.kernel[i]
        coord = coord.reshape(shape)
        flat = flat + np.clip(coord, 0, spatial[i] - 1) * flat_strides[i]
        valid = valid & (coord >= 0) & (coord < spatial[i])
        in_pads = in_pads & (coord < spatial[i] + window.pads[r + i])
    positions, offsets = prod(out), prod(window.kernel)
    index = np.where(valid, flat, -1).reshape(positions, offsets)
    return index, in_pads.reshape(positions, offsets)


def im2col_index(window: Window, shape: Sequence[int]) -> np.ndarray:
    """For an input (N, C, *spatial): the flat input index of every element of the im2col
    result (N, P, C * K) (row p holds channel c's K window offsets at c*K..), -1 for zeros."""
    n, c, *spatial = shape
    index, _ = window_index(window, spatial)
    size = prod(spatial)
    base = (np.arange(n)[:, None, None, None] * c + np.arange(c)[None, None, :, None]) * size
    table = np.where(index[None, :, None, :] >= 0, base + index[None, :, None, :], -1)
    return table.reshape(n, index.shape[0], c * index.shape[1])
