"""place: every QDense's tiles -> (core, array).

Each Tile of each QDense gets one array of one core. By default arrays fill core by core in
layer order, so a layer's tiles share a core and its partial sums rarely cross the network;
`spread=true` deals tiles round-robin over the cores (to use every core's ADCs in parallel, and
to exercise multi-core code); `by_outputs=true` (schedule = latency) spreads each layer's output
blocks over all cores, each block's row tiles together; `balance=true` (schedule = balanced)
gives the slowest convolutions copies on spare arrays. A model that needs more arrays than the
chip has runs in phases (packed placement only): when the chip is full, the next layer starts
over at the first array, and `emit` reprograms every array that serves more than one layer
before each use (`xbar.program`, priced per row and cell, once per inference). A one-row layer
(a classifier) larger than the chip reuses arrays tile by tile, each programmed just before its
MVM; any other layer larger than the chip is an error naming it, and so is the first layer on
a target without crossbars.
"""

from __future__ import annotations

from dataclasses import dataclass

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph
from imcc.compiler.ir.windows import Window
from imcc.compiler.passes.manager import Context, Pass, register
from imcc.isa.diagnostics import CompileError


@register
@dataclass(frozen=True, slots=True)
class PlacePass(Pass):
    """After: every QDense has `placement`, one distinct (core, array) per tile."""

    name = "place"
    requires = ("tile",)  # reads `tiles`
    provides = ("QDense.placement", "QDense.copies")
    spread: bool = False
    by_outputs: bool = False  # schedule = latency: each layer's output blocks over all cores
    phases: bool = True  # a model larger than the chip runs in phases (else: an error)
    balance: bool = False  # schedule = balanced: spare arrays hold copies of slow layers

    def run(self, graph: Graph, ctx: Context) -> None:
        cores, arrays = ctx.target.chip.cores, ctx.target.core.arrays
        needed = sum(len(op.tiles) for op in graph.walk(ops.QDense))
        first = next(iter(graph.walk(ops.QDense)), None)
        if first is not None and arrays == 0:
            cam = "; its analog-CAM unit runs tree ensembles only" if ctx.target.acam else ""
            raise first.error(
                f"this layer's matrix multiply needs crossbar arrays, but target "
                f"{ctx.target.name!r} has none (core.arrays = 0{cam}); use a target with "
                "crossbars, such as edge-rram"
            )
        for op in graph.walk(ops.QDense):
            rows = op.inputs[0].type.size // max(op.inputs[1].shape[0], 1)
            if len(op.tiles) > cores * arrays and rows != 1:
                raise op.error(
                    f"this layer alone needs {len(op.tiles)} crossbar arrays but "
                    f"target {ctx.target.name!r} has {cores * arrays} ({cores} cores x "
                    f"{arrays}), and it multiplies {rows} rows, so its arrays cannot be "
                    "reprogrammed tile by tile; use a larger target or fewer weight bits"
                )
        if needed > cores * arrays and not self.phases:
            raise CompileError(
                f"the model needs {needed} crossbar arrays but target {ctx.target.name!r} has "
                f"{cores * arrays} ({cores} cores x {arrays}), and phases are off"
            )
        if needed > cores * arrays and (self.by_outputs or self.spread):
            raise CompileError(
                f"the model needs {needed} crossbar arrays but target {ctx.target.name!r} has "
                f"{cores * arrays} ({cores} cores x {arrays}): only the packed placement "
                "runs it in phases, reprogramming arrays between them"
            )
        if self.by_outputs:
            self.place_by_outputs(graph, cores, arrays)
            return
        if self.spread:
            slots = [(i % cores, i // cores) for i in range(cores * arrays)]
        else:
            slots = [(c, a) for c in range(cores) for a in range(arrays)]
        next_slot = 0
        for op in graph.walk(ops.QDense):
            count = len(op.tiles)
            if next_slot + count > len(slots):  # the chip is full: a new phase starts over
                next_slot = 0
            # a one-row layer larger than the chip reuses arrays tile by tile (modulo)
            op.placement = tuple(slots[(next_slot + i) % len(slots)] for i in range(count))
            next_slot = (
                (next_slot + count) % len(slots) if count > len(slots) else next_slot + count
            )
        if self.balance and needed <= len(slots):
            self.copy_slowest(graph, slots[needed:], arrays)

    @staticmethod
    def copy_slowest(graph: Graph, spare: list[tuple[int, int]], arrays: int) -> None:
        """ISAAC's balancing, greedily: while the spare arrays hold another copy of the 2-D
        convolution whose MVMs take longest, give it one (`copies`: their placements).
        Copies take turns by block of output rows, each on its own cores from the windows to
        the finished block, so a layer gets at most one copy per output row. A layer's time:
        its pixels over its copies, times its tiles on the busiest core (one array at a time)."""
        layers = [op for op in graph.walk(ops.QDense) if _output_rows(op)]
        pixels = {id(op): op.inputs[0].type.size // op.inputs[1].shape[0] for op in layers}
        copies = {id(op): 1 for op in layers}
        for op in layers:
            op.copies = ()

        def time(op: ops.QDense) -> float:
            busiest = min(len(op.tiles), arrays)
            return pixels[id(op)] / copies[id(op)] * busiest

        while layers:
            slowest = max(layers, key=time)
            count = len(slowest.tiles)
            if count > len(spare) or copies[id(slowest)] >= _output_rows(slowest):
                return  # the bottleneck cannot get another copy: others would not help
            slowest.copies = (*slowest.copies, tuple(spare[:count]))
            spare = spare[count:]
            copies[id(slowest)] += 1

    @staticmethod
    def place_by_outputs(graph: Graph, cores: int, arrays: int) -> None:
        """Every layer over as many cores as it has output blocks: block j (with all its row
        tiles, so its partial sums add up where they are made) on the j-th core after where
        the previous layer began, or the next core with enough free arrays. One input runs
        on every core at once; the price is a copy of each layer's input per core."""
        free = [arrays] * cores
        used = [0] * cores
        start = 0
        for op in graph.walk(ops.QDense):
            tiles = op.tiles
            blocks = sorted({t.out0 for t in tiles})
            placement: dict[int, tuple[int, int]] = {}
            for j, out0 in enumerate(blocks):
                members = [i for i, t in enumerate(tiles) if t.out0 == out0]
                core = (start + j) % cores
                for _ in range(cores):
                    if free[core] >= len(members):
                        break
                    core = (core + 1) % cores
                else:  # no core holds the block whole: its tiles go wherever there is room
                    core = -1
                for i in members:
                    here = core if core >= 0 else max(range(cores), key=lambda c: free[c])
                    placement[i] = (here, used[here])
                    used[here] += 1
                    free[here] -= 1
            op.placement = tuple(placement[i] for i in range(len(tiles)))
            start = (start + len(blocks)) % cores


def _output_rows(op: ops.QDense) -> int:
    """Output rows of a QDense that is a lowered 2-D convolution (its copies' turns), else 0."""
    im2col = op.inputs[0].producer
    if isinstance(im2col, ops.Im2Col) and len(im2col.inputs[0].shape) == 4:
        return Window.of(im2col.attrs, 2).output(im2col.inputs[0].shape[2:])[0]
    return 0
