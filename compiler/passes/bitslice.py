"""bitslice: every QDense's integer weights -> slices of cell levels (a Slicing).

The Slicing follows the target's sign encoding:
- differential: |w| < 2^(b-1) splits into S = ceil((b-1) / cell_bits) slices, each stored on a
  G+ and a G- cell: w = sum_s 2^(s*cell_bits) * (pos_s - neg_s);
- offset (ISAAC): the unsigned u = w + 2^(b-1) in [1, 2^b - 1] splits into
  S = ceil(b / cell_bits) slices on one cell each; the SIMD code subtracts 2^(b-1) * sum(x).
It runs before `tile` because the columns an output needs (S x signs) decide how many outputs
fit one array.
"""

from __future__ import annotations

from dataclasses import dataclass

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph
from imcc.compiler.ir.crossbar import Slicing
from imcc.compiler.passes.manager import Context, Pass, register
from imcc.isa.target import SignEncoding


def make_slicing(weight_bits: int, cell_bits: int, encoding: str) -> Slicing:
    if encoding == SignEncoding.OFFSET:
        return Slicing(cell_bits, -(-weight_bits // cell_bits), 1, 1 << (weight_bits - 1))
    return Slicing(cell_bits, -(-(weight_bits - 1) // cell_bits), 2, 0)


@register
@dataclass(frozen=True, slots=True)
class BitslicePass(Pass):
    """After: every QDense has `slicing`; every stored level fits `cell_bits`."""

    name = "bitslice"
    requires = ("quantize",)  # reads QDense weight_bits
    provides = ("QDense.slicing",)

    def run(self, graph: Graph, ctx: Context) -> None:
        xbar = ctx.target.xbar
        for op in graph.walk(ops.QDense):
            op.slicing = make_slicing(op.attrs["weight_bits"], xbar.cell_bits, xbar.sign_encoding)
