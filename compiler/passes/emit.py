"""emit: the scheduled graph -> isa.Program (per-core code, crossbar images, constants, I/O).

Before: every op has attrs["core"]; every QDense has tiles and placement. After:
ctx.results["program"] holds the Program. Global memory holds the constants the SIMD code needs,
then the model inputs, then the outputs. Values live in the local buffers of the cores that
compute them; a value needed on another core is sent over the network once and cached there,
copies fanning out as a tree (each holder forwards). Every send is emitted before its receive
in one global order, so the code cannot deadlock. Registers hold buffer and memory addresses;
an LRU cache avoids re-setting the same address (the top three registers hold the strides of
`simd.copy2d` once a core uses it). Arrays are bound to their images at load, or, when the
model runs in phases, programmed in the code before each use.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, Op, TensorType, Value
from imcc.compiler.passes.convolution import (
    ACTIVATION_ROWS,
    conv_blocks_apply,
    emit_concat,
    emit_conv_blocks,
    emit_movement,
    streams,
    window_rows,
)
from imcc.compiler.passes.manager import Context, Pass, register
from imcc.compiler.passes.tiling import Slicing, Tile, tile_levels
from imcc.compiler.passes.trees import CamTrees, emit_cam_trees
from imcc.isa import spec
from imcc.isa.diagnostics import CompileError
from imcc.isa.encoding import Instr, make
from imcc.isa.program import Binding, Program, TensorInfo, XbarImage
from imcc.isa.target import Target

_UNARY: dict[type[Op], spec.InstrSpec] = {
    ops.Relu: spec.SIMD_RELU,
    ops.Sigmoid: spec.SIMD_SIGMOID,
    ops.Tanh: spec.SIMD_TANH,
    ops.Exp: spec.SIMD_EXP,
    ops.Erf: spec.SIMD_ERF,
    ops.Sqrt: spec.SIMD_SQRT,
    ops.Log: spec.SIMD_LOG,
}
_BINARY: dict[type[Op], tuple[spec.InstrSpec, spec.InstrSpec]] = {
    ops.Add: (spec.SIMD_ADD, spec.SIMD_ADD_S),
    ops.Sub: (spec.SIMD_SUB, spec.SIMD_SUB_S),
    ops.Mul: (spec.SIMD_MUL, spec.SIMD_MUL_S),
    ops.Div: (spec.SIMD_DIV, spec.SIMD_DIV_S),
}
_TAGS = 1 << spec.WIDTH[spec.OperandKind.TAG]
_IO_DTYPES = ("int64", "int32", "float64")


class Buffer:
    """First-fit allocator over one core's local buffer."""

    def __init__(self, words: int, core: int) -> None:
        self.words, self.core = words, core
        self.free: list[tuple[int, int]] = [(0, words)]  # (start, size), sorted
        self.peak = 0

    def alloc(self, size: int, what: str) -> int:
        if size == 0:  # an empty tensor occupies nothing
            return 0
        for i, (start, free) in enumerate(self.free):
            if free >= size:
                self.free[i] = (start + size, free - size)
                if self.free[i][1] == 0:
                    del self.free[i]
                self.peak = max(self.peak, start + size)
                return start
        raise CompileError(
            f"core {self.core}'s {self.words}-word buffer cannot hold {size} more words for "
            f"{what}; use a target with a larger buffer or more cores"
        )

    def release(self, start: int, size: int) -> None:
        if size == 0:
            return
        assert all(start + size <= s or s + n <= start for s, n in self.free), (
            f"core {self.core}: words [{start}, {start + size}) released twice"
        )
        self.free.append((start, size))
        self.free.sort()
        merged: list[tuple[int, int]] = []
        for s, n in self.free:
            if merged and merged[-1][0] + merged[-1][1] == s:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((s, n))
        self.free = merged


class CoreCode:
    """One core's program under construction."""

    def __init__(self, core: int, target: Target) -> None:
        self.core = core
        self.code: list[Instr] = []
        self.nodes: list[str] = []
        self.buffer = Buffer(target.core.buffer_words, core)
        self.registers: OrderedDict[int, int] = OrderedDict()  # register -> address it holds
        self.holding: dict[int, int] = {}  # address -> the register holding it
        self.register_count = target.core.registers
        self.strides: tuple[int, ...] | None = None  # the stride registers' values, once used
        self.node = ""

    def register_for(self, address: int, pinned: set[int]) -> int:
        reg = self.holding.get(address)
        if reg is not None:
            self.registers.move_to_end(reg)
            return reg
        if len(self.registers) < self.register_count:
            reg = len(self.registers)
        else:
            reg = next(r for r in self.registers if r not in pinned)
            del self.holding[self.registers.pop(reg)]
        self.registers[reg] = address
        self.holding[address] = reg
        self.put(make(spec.CTL_SET, reg, address))
        return reg

    def set_strides(self, inner: int, outer: int, outer_dst: int) -> int:
        """The first of three consecutive registers holding the strides of `simd.copy2d`;
        the top three registers leave the address cache on first use."""
        if self.strides is None:
            self.register_count -= 3
            for reg in range(self.register_count, self.register_count + 3):
                if reg in self.registers:
                    del self.holding[self.registers.pop(reg)]
            self.strides = (-1, -1, -1)
        base = self.register_count
        wanted = (inner, outer, outer_dst)
        for i, value in enumerate(wanted):
            if self.strides[i] != value:
                self.put(make(spec.CTL_SET, base + i, value))
        self.strides = wanted
        return base

    def copy2d(self, dst: int, src: int, n: int, m: int, strides: tuple[int, int, int]) -> None:
        """buf[dst + j*strides[2] + i] = buf[src + j*strides[1] + i*strides[0]], i < n, j < m."""
        if n and m:
            base = self.set_strides(*strides)
            self.emit(spec.SIMD_COPY2D, dst, src, 0, n, m, stride_register=base)

    def put(self, instr: Instr) -> None:
        self.code.append(instr)
        self.nodes.append(self.node)

    def emit(self, row: spec.InstrSpec, *operands: int, stride_register: int = -1) -> None:
        """Append `row` with its operands; REG operands are given as addresses, but for the
        stride operand `s` of a strided copy, which is `stride_register` itself. An
        instruction over zero elements does nothing and is left out; an elementwise one over
        more elements than a count field holds becomes several over consecutive chunks."""
        counts = [i for i, f in enumerate(row.fields) if f.kind is spec.OperandKind.COUNT]
        if counts and operands[counts[-1]] > spec.MAX_COUNT and stride_register < 0:
            self.emit_chunked(row, operands, counts[-1])
            return
        pinned: set[int] = set()
        values = []
        for field, value in zip(row.fields, operands, strict=True):
            kind = field.kind
            if stride_register >= 0 and field.name == "s":
                values.append(stride_register)
            elif kind is spec.OperandKind.REG:
                reg = self.register_for(value, pinned)
                pinned.add(reg)
                values.append(reg)
            elif kind is spec.OperandKind.COUNT and value == 0:
                return  # nothing to do; registers set above stay valid
            else:
                values.append(value)
        self.put(make(row, *values))

    def emit_chunked(self, row: spec.InstrSpec, operands: tuple[int, ...], count: int) -> None:
        """`row` over n > spec.MAX_COUNT elements as instructions over chunks: every n-long range
        moves with the chunk, one-word operands stay. Only elementwise rows split so."""
        names = [f.name for f in row.fields]
        count_name = names[count]
        moving = {a.field for a in row.accesses if a.extent == count_name}
        fixed = {a.field for a in row.accesses if a.extent == "1"}
        if (
            not moving
            or any(a.writes for a in row.accesses if a.field in fixed)
            or (moving | fixed != {a.field for a in row.accesses})
        ):
            raise CompileError(
                f"{row.mnemonic} over {operands[count]:,} elements exceeds the "
                f"{spec.MAX_COUNT:,}-element count field, and it is not elementwise"
            )
        total = operands[count]
        for start in range(0, total, spec.MAX_COUNT):
            chunk = list(operands)
            chunk[count] = min(spec.MAX_COUNT, total - start)
            for i, name in enumerate(names):
                if name in moving:
                    chunk[i] += start
            self.emit(row, *chunk)


@dataclass
class Local:
    addr: int
    size: int


class Emitter:
    def __init__(self, graph: Graph, ctx: Context) -> None:
        self.graph, self.target = graph, ctx.target
        self.cores = [CoreCode(c, ctx.target) for c in range(ctx.target.chip.cores)]
        self.copies: dict[int, dict[int, Local]] = {}  # id(value) -> core -> location
        self.global_addr: dict[int, int] = {}  # id(value) -> global memory address
        self.const_blocks: list[tuple[int, np.ndarray]] = []
        self.const_index: dict[bytes, int] = {}
        self.next_global = 0
        self.tags: dict[tuple[int, int], int] = {}
        self.images: list[XbarImage] = []
        self.bindings: list[Binding] = []
        self.adc_ranges: dict[int, np.ndarray] = {}
        self.remaining_uses: dict[int, int] = {}
        self.pinned: set[int] = {id(v) for v in graph.outputs}  # never released
        self.const_cache: dict[tuple[int, bytes], int] = {}
        # id(Im2Col result) -> the Im2Col, whose QDense gathers the windows row by row
        self.streamed: dict[int, Op] = {}
        self.fanout: dict[int, dict[int, int]] = {}  # id(value) -> holder -> its transfers
        # (core, array) -> how many tiles it serves: more than one when the model runs in phases
        self.program_before_mvm: dict[tuple[int, int], int] = {}  # (id(op), tile) -> image
        self.slot_uses = Counter(
            slot
            for op in graph.walk(ops.QDense)
            for placement in (op.attrs["placement"], *op.attrs.get("copies", ()))
            for slot in placement
        )
        # ids of convolution results held channel-major (O, P), as their Transpose wants them
        self.channel_major: set[int] = set()
        # Program fields filled by lowerings that live in other modules (cam_images, ...)
        self.sections: dict[str, Any] = {}

    # -- global memory ----------------------------------------------------------------------
    def global_alloc(self, size: int) -> int:
        addr = self.next_global
        self.next_global += size
        if self.next_global > self.target.chip.global_memory_words:
            raise CompileError(
                f"global memory of {self.target.chip.global_memory_words} words is too small"
            )
        return addr

    def constant_addr(self, values: np.ndarray) -> int:
        flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        key = flat.tobytes()
        if key not in self.const_index:
            addr = self.global_alloc(flat.size)
            self.const_blocks.append((addr, flat))
            self.const_index[key] = addr
        return self.const_index[key]

    # -- values -----------------------------------------------------------------------------
    def local(self, value: Value, core: int) -> int:
        """Address of `value` in `core`'s buffer, loading or receiving it if needed."""
        here = self.copies.setdefault(id(value), {})
        if core in here:
            return here[core].addr
        size = value.type.size
        cc = self.cores[core]
        addr = cc.buffer.alloc(size, f"{value.name!r}")
        constant = self.graph.constant(value)
        if constant is not None:
            cc.emit(spec.MEM_LOAD, addr, self.constant_addr(constant), size)
        elif id(value) in self.global_addr:
            cc.emit(spec.MEM_LOAD, addr, self.global_addr[id(value)], size)
        else:
            # Copies fan out as a tree: the sender is the holder that is free first, counting
            # in transfers of this value (each copy forwards too: 1, 2, 4, ... holders).
            busy = self.fanout.setdefault(id(value), {})
            src = min(here, key=lambda c: (busy.get(c, 0), c))
            self.transfer(src, here[src].addr, core, addr, size)
            busy[src] = busy[core] = busy.get(src, 0) + 1
        here[core] = Local(addr, size)
        return addr

    def transfer(self, src: int, src_addr: int, dst: int, dst_addr: int, size: int) -> None:
        tag = self.tags.get((src, dst), 0)
        self.tags[(src, dst)] = (tag + 1) % _TAGS  # FIFO per tag keeps reuse safe
        self.cores[src].emit(spec.NOC_SEND, dst, tag, src_addr, size)
        self.cores[dst].emit(spec.NOC_RECV, src, tag, dst_addr, size)

    def define(self, value: Value, core: int, addr: int) -> None:
        self.copies[id(value)] = {core: Local(addr, value.type.size)}

    def release_dead(self, op: Op) -> None:
        """Free buffers of operands whose last user was `op` (outputs stay until stored)."""
        for value in op.inputs:
            key = id(value)
            self.remaining_uses[key] -= 1
            if self.remaining_uses[key] == 0 and key not in self.pinned:
                for core, loc in self.copies.pop(key, {}).items():
                    self.cores[core].buffer.release(loc.addr, loc.size)

    # -- the program ------------------------------------------------------------------------
    def run(self, ctx: Context) -> Program:
        graph = self.graph
        for op in graph.ops:
            for value in op.inputs:
                self.remaining_uses[id(value)] = self.remaining_uses.get(id(value), 0) + 1
        for op in graph.ops:  # constants first: addresses in global memory are fixed early
            for value in op.inputs:
                constant = graph.constant(value)
                if constant is not None and not isinstance(op, ops.QDense):
                    self.constant_addr(constant)
        inputs = []
        for value in graph.inputs:
            addr = self.global_alloc(value.type.size)
            self.global_addr[id(value)] = addr
            inputs.append(self.tensor_info(value, addr))
        outputs = []
        names = graph.output_names or [v.name for v in graph.outputs]
        for value, name in zip(graph.outputs, names, strict=True):
            info = self.tensor_info(value, self.global_alloc(value.type.size))
            outputs.append(dataclasses.replace(info, name=name))

        for op in graph.ops:
            core = op.attrs["core"]
            for cc in self.cores:
                cc.node = op.name
            if streams(self.graph, op):  # passes/convolution.py: gathered by its QDense
                self.streamed[id(op.outputs[0])] = op
                continue
            if isinstance(op, ops.QDense):
                self.emit_qdense(op)
            elif isinstance(op, ops.Reshape) or (
                isinstance(op, ops.Transpose) and id(op.inputs[0]) in self.channel_major
            ):  # the same words under another shape: an alias, no code
                here = self.copies.get(id(op.inputs[0]))
                if here is None:
                    self.local(op.inputs[0], core)
                    here = self.copies[id(op.inputs[0])]
                self.copies[id(op.outputs[0])] = dict(here)
                # Both names share one buffer: keep it for the rest of the program.
                self.pinned.update((id(op.inputs[0]), id(op.outputs[0])))
            elif type(op) in _UNARY:
                src = self.local(op.inputs[0], core)
                dst = self.cores[core].buffer.alloc(op.outputs[0].type.size, op.name)
                self.cores[core].emit(_UNARY[type(op)], dst, src, op.outputs[0].type.size)
                self.define(op.outputs[0], core, dst)
            elif type(op) in _BINARY:
                self.emit_binary(op, core)
            elif isinstance(op, ops.Softmax):
                self.emit_softmax(op, core)
            elif isinstance(op, ops.ArgMax):
                self.emit_argmax(op, core)
            elif isinstance(op, ops.Reduce):
                self.emit_reduce(op, core)
            elif isinstance(op, ops.LayerNorm):
                self.emit_layer_norm(op, core)
            elif isinstance(op, ops.MatMul):  # two activations: not a crossbar weight
                self.emit_matmul(op, core)
            elif isinstance(op, ops.Im2Col | ops.Pool | ops.Transpose | ops.Select):
                emit_movement(self, op, core)  # passes/convolution.py
            elif isinstance(op, ops.Concat):
                emit_concat(self, op, core)
            elif isinstance(op, CamTrees):  # the analog-CAM tree unit: passes/trees.py
                emit_cam_trees(self, op)
            else:
                raise op.error(f"the emitter has no lowering for {op.kind}")
            self.release_dead(op)

        for value, info in zip(graph.outputs, outputs, strict=True):
            here = self.copies.get(id(value)) or {}
            core = next(iter(here)) if here else 0
            for cc in self.cores:
                cc.node = value.name
            src = self.local(value, core)
            self.cores[core].emit(spec.MEM_STORE, info.addr, src, info.size)
        for cc in self.cores:
            cc.node = ""
            if cc.code or cc.core == 0:  # core 0 always runs, even when nothing is computed
                cc.put(make(spec.CTL_HALT))
        last = max((c.core for c in self.cores if c.code), default=0)
        code = [cc.code for cc in self.cores[: last + 1]]
        debug = {
            (cc.core, pc): node for cc in self.cores for pc, node in enumerate(cc.nodes) if node
        }
        meta = {**graph.meta, "model": graph.name, "producer": "imcc"}
        meta.update({f"option.{k}": str(v) for k, v in sorted(ctx.options.items())})
        return Program(
            target=self.target,
            code=code,
            images=self.images,
            bindings=self.bindings,
            constants=self.const_blocks,
            inputs=inputs,
            outputs=outputs,
            debug=debug,
            meta=meta,
            adc_ranges=self.adc_ranges,
            **self.sections,
        )

    def tensor_info(self, value: Value, addr: int) -> TensorInfo:
        shape = value.shape[1:] if self.graph.batch_axis and value.shape else value.shape
        quant: dict[str, Any] = {}
        for user in self.graph.users(value):
            if isinstance(user, ops.QDense):
                scale = user.attrs["input_scale"]
                quant = {
                    "bits": user.attrs["input_bits"],
                    "signed": int(user.attrs["input_signed"]),
                    "scale": "dynamic" if scale is None else float(scale),
                }
        return TensorInfo(
            name=value.name,
            shape=tuple(shape),
            addr=addr,
            # float64 models keep float64 outputs (the SIMD unit computes in float64), integer
            # outputs (indices, folded integer constants) their integer type
            dtype=value.type.dtype if value.type.dtype in _IO_DTYPES else "float32",
            batch_axis=self.graph.batch_axis,
            quant=tuple(sorted(quant.items())),
        )

    # -- lowering of each op ----------------------------------------------------------------
    def emit_binary(self, op: Op, core: int) -> None:
        vector_row, scalar_row = _BINARY[type(op)]
        a, b = op.inputs
        out = op.outputs[0]
        size = out.type.size
        cc = self.cores[core]
        temps: list[tuple[int, int]] = []
        if b.type.size == 1:  # x op s: the scalar operand is read once by every lane
            operands = [self.broadcast(a, core, out.shape, temps), self.local(b, core)]
            row = scalar_row
        else:
            operands = [self.broadcast(v, core, out.shape, temps) for v in (a, b)]
            row = vector_row
        dst = cc.buffer.alloc(size, op.name)
        cc.emit(row, dst, operands[0], operands[1], size)
        for addr, words in temps:
            cc.buffer.release(addr, words)
        self.define(out, core, dst)

    def broadcast(
        self, value: Value, core: int, shape: tuple[int, ...], temps: list[tuple[int, int]]
    ) -> int:
        """`value` as a full `shape` vector in `core`'s buffer (numpy broadcasting rules).
        A constant is broadcast at compile time; a computed value by copying the runs of
        consecutive elements that the broadcast repeats. Scratch buffers go on `temps`."""
        size = int(np.prod(shape, dtype=np.int64))
        if value.type.size == size:
            return self.local(value, core)
        cc = self.cores[core]
        addr = cc.buffer.alloc(size, f"{value.name!r} broadcast")
        temps.append((addr, size))
        constant = self.graph.constant(value)
        if constant is not None:
            cc.emit(spec.MEM_LOAD, addr, self.constant_addr(np.broadcast_to(constant, shape)), size)
            return addr
        source = self.local(value, core)
        index = np.broadcast_to(np.arange(value.type.size).reshape(value.shape), shape).ravel()
        # runs where the source index goes up by one: each is one vector copy
        breaks = np.flatnonzero(np.diff(index) != 1) + 1
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, size], strict=True):
            cc.emit(
                spec.SIMD_COPY, addr + int(start), source + int(index[start]), int(stop - start)
            )
        return addr

    def emit_softmax(self, op: Op, core: int) -> None:
        """softmax(x) = exp(x - max x) / sum exp(x - max x) along `axis`.

        Along the last axis each row is reduced with the row-max and row-sum reductions. Along
        another axis the input is `outer` blocks of `n` rows of `inner` consecutive elements
        (the axis strides by `inner`); the max and sum over the axis are then elementwise
        vector max and add over the block's rows, so every instruction still covers `inner`
        lanes and no gather is needed."""
        x = op.inputs[0]
        axis = op.attrs.get("axis", -1) % len(x.shape)
        size = x.type.size
        cc = self.cores[core]
        src = self.local(x, core)
        dst = cc.buffer.alloc(size, op.name)
        inner = int(np.prod(x.shape[axis + 1 :], dtype=np.int64))
        n = x.shape[axis]
        if inner == 1 and size:
            width = n
            scalar = cc.buffer.alloc(1, f"{op.name} scalar")
            for row in range(0, size, width):
                cc.emit(spec.SIMD_RMAX, scalar, src + row, width)
                cc.emit(spec.SIMD_SUB_S, dst + row, src + row, scalar, width)
                cc.emit(spec.SIMD_EXP, dst + row, dst + row, width)
                cc.emit(spec.SIMD_RSUM, scalar, dst + row, width)
                cc.emit(spec.SIMD_DIV_S, dst + row, dst + row, scalar, width)
            cc.buffer.release(scalar, 1)
        elif size:
            acc = cc.buffer.alloc(inner, f"{op.name} accumulator")
            block = n * inner
            for start in range(0, size, block):
                rows = [start + k * inner for k in range(n)]
                cc.emit(spec.SIMD_COPY, acc, src + rows[0], inner)  # acc = max over the axis
                for row in rows[1:]:
                    cc.emit(spec.SIMD_MAX, acc, acc, src + row, inner)
                for row in rows:
                    cc.emit(spec.SIMD_SUB, dst + row, src + row, acc, inner)
                    cc.emit(spec.SIMD_EXP, dst + row, dst + row, inner)
                cc.emit(spec.SIMD_COPY, acc, dst + rows[0], inner)  # acc = sum over the axis
                for row in rows[1:]:
                    cc.emit(spec.SIMD_ADD, acc, acc, dst + row, inner)
                for row in rows:
                    cc.emit(spec.SIMD_DIV, dst + row, dst + row, acc, inner)
            cc.buffer.release(acc, inner)
        self.define(op.outputs[0], core, dst)

    def emit_reduce(self, op: Op, core: int) -> None:
        """Sum, mean or max over `axes`, by whichever of two instruction streams is shorter.

        Think of x as a matrix (kept positions j, reduced positions r). By groups: for each
        output j, one row reduction (sum or max) over each run of consecutive elements of its
        group, combined by scalar add or max (best when the reduced axes are trailing). By
        lanes: for each r, one vector add or max of the column into the output, a vector per
        run of consecutive elements (best when they are leading). A mean is then the sum
        times the constant 1/count (vector-scalar multiply)."""
        x, out = op.inputs[0], op.outputs[0]
        axes = tuple(op.attrs["axes"])
        mode = op.attrs["mode"]
        cc = self.cores[core]
        src = self.local(x, core)
        dst = cc.buffer.alloc(out.type.size, op.name)
        kept = [a for a in range(len(x.shape)) if a not in axes]
        index = np.arange(x.type.size).reshape(x.shape).transpose(*kept, *axes)
        n_out = out.type.size
        count = x.type.size // n_out if n_out else 0
        if n_out and not count:  # an empty set reduces to the identity (ONNX: -inf for max)
            identity = {"sum": 0.0, "max": -np.inf, "mean": np.nan}[mode]
            cc.emit(spec.MEM_LOAD, dst, self.constant_addr(np.full(n_out, identity)), n_out)
            self.define(out, core, dst)
            return
        matrix = index.reshape(n_out, count)
        combine = spec.SIMD_MAX if mode == "max" else spec.SIMD_ADD
        reduce = spec.SIMD_RMAX if mode == "max" else spec.SIMD_RSUM

        def runs(positions: np.ndarray) -> list[tuple[int, int]]:
            """(offset, length) of each run of consecutive values in `positions`."""
            breaks = np.flatnonzero(np.diff(positions) != 1) + 1
            starts, stops = np.r_[0, breaks], np.r_[breaks, positions.size]
            return [(int(a), int(b - a)) for a, b in zip(starts, stops, strict=True)]

        by_group = [runs(matrix[j]) for j in range(n_out)] if n_out else []
        by_lane = [runs(matrix[:, r]) for r in range(count)] if n_out else []
        group_cost = sum(2 * len(g) - 1 for g in by_group)
        lane_cost = sum(len(lane) for lane in by_lane)
        if not axes or count == 1:  # nothing is reduced: a copy
            cc.emit(spec.SIMD_COPY, dst, src, n_out)
        elif group_cost <= lane_cost:
            scalar = cc.buffer.alloc(1, f"{op.name} scalar")
            for j, group in enumerate(by_group):
                for k, (offset, length) in enumerate(group):
                    start = src + int(matrix[j, offset])
                    cc.emit(reduce, dst + j if k == 0 else scalar, start, length)
                    if k:
                        cc.emit(combine, dst + j, dst + j, scalar, 1)
            cc.buffer.release(scalar, 1)
        else:
            for r, lane in enumerate(by_lane):
                for offset, length in lane:
                    start = src + int(matrix[offset, r])
                    if r == 0:
                        cc.emit(spec.SIMD_COPY, dst + offset, start, length)
                    else:
                        cc.emit(combine, dst + offset, dst + offset, start, length)
        if mode == "mean" and count > 1:
            cc.emit(spec.SIMD_MUL_S, dst, dst, self.const_local(core, 1.0 / count), n_out)
        self.define(out, core, dst)

    def emit_layer_norm(self, op: Op, core: int) -> None:
        """Per row of the normalised width w: mean = sum(x) / w; d = x - mean;
        var = sum(d * d) / w; y = d / sqrt(var + epsilon); then y * scale + bias over the
        whole tensor, scale and bias broadcast to it. All on the vector unit, in float64."""
        x, scale, bias = op.inputs
        out = op.outputs[0]
        size = x.type.size
        width = int(np.prod(x.shape[op.attrs["axis"] :], dtype=np.int64))
        cc = self.cores[core]
        src = self.local(x, core)
        dst = cc.buffer.alloc(size, op.name)
        if size:
            square = cc.buffer.alloc(width, f"{op.name} squares")
            stat = cc.buffer.alloc(1, f"{op.name} statistic")
            inverse_width = self.const_local(core, 1.0 / width)
            epsilon = self.const_local(core, float(op.attrs["epsilon"]))
            for row in range(0, size, width):
                cc.emit(spec.SIMD_RSUM, stat, src + row, width)
                cc.emit(spec.SIMD_MUL_S, stat, stat, inverse_width, 1)
                cc.emit(spec.SIMD_SUB_S, dst + row, src + row, stat, width)
                cc.emit(spec.SIMD_MUL, square, dst + row, dst + row, width)
                cc.emit(spec.SIMD_RSUM, stat, square, width)
                cc.emit(spec.SIMD_MUL_S, stat, stat, inverse_width, 1)
                cc.emit(spec.SIMD_ADD_S, stat, stat, epsilon, 1)
                cc.emit(spec.SIMD_SQRT, stat, stat, 1)
                cc.emit(spec.SIMD_DIV_S, dst + row, dst + row, stat, width)
            cc.buffer.release(stat, 1)
            cc.buffer.release(square, width)
            temps: list[tuple[int, int]] = []
            cc.emit(spec.SIMD_MUL, dst, dst, self.broadcast(scale, core, out.shape, temps), size)
            cc.emit(spec.SIMD_ADD, dst, dst, self.broadcast(bias, core, out.shape, temps), size)
            for addr, words in temps:
                cc.buffer.release(addr, words)
        self.define(out, core, dst)

    def emit_matmul(self, op: Op, core: int) -> None:
        """y = a @ b on the vector unit, for a b that no crossbar holds (attention's scores
        and context). Row m of y is sum_k a[m, k] * b[k, :]: per k one vector-scalar multiply
        of row k of b (contiguous, so no column gather or transpose is needed) and one vector
        add, i.e. M * (2K - 1) instructions of N lanes per product. The cost model charges
        exactly those instructions; the crossbars are not used."""
        a, b = op.inputs
        out = op.outputs[0]
        cc = self.cores[core]
        if len(a.shape) < 2:
            raise op.error(f"a product of activations needs a matrix on the left, not {a.shape}")
        m, k = a.shape[-2:]
        n = b.shape[-1]
        lead = out.shape[:-2]
        a_index = np.broadcast_to(
            np.arange(int(np.prod(a.shape[:-2], dtype=np.int64))).reshape(a.shape[:-2]), lead
        ).ravel()
        b_index = np.broadcast_to(
            np.arange(int(np.prod(b.shape[:-2], dtype=np.int64))).reshape(b.shape[:-2]), lead
        ).ravel()
        src_a, src_b = self.local(a, core), self.local(b, core)
        dst = cc.buffer.alloc(out.type.size, op.name)
        if out.type.size and not k:  # an empty sum: zeros
            zeros = np.zeros(out.type.size)
            cc.emit(spec.MEM_LOAD, dst, self.constant_addr(zeros), out.type.size)
        elif out.type.size:
            term = cc.buffer.alloc(n, f"{op.name} term")
            for batch, (i, j) in enumerate(zip(a_index, b_index, strict=True)):
                a0, b0 = src_a + int(i) * m * k, src_b + int(j) * k * n
                for row in range(m):
                    y = dst + (batch * m + row) * n
                    for col in range(k):
                        scaled = y if col == 0 else term
                        cc.emit(spec.SIMD_MUL_S, scaled, b0 + col * n, a0 + row * k + col, n)
                        if col:
                            cc.emit(spec.SIMD_ADD, y, y, term, n)
            cc.buffer.release(term, n)
        self.define(out, core, dst)

    def emit_argmax(self, op: Op, core: int) -> None:
        x = op.inputs[0]
        if op.attrs.get("axis", -1) % len(x.shape) != len(x.shape) - 1:
            raise op.error("argmax along an axis other than the last is not supported yet")
        width = x.shape[-1]
        cc = self.cores[core]
        src = self.local(x, core)
        dst = cc.buffer.alloc(op.outputs[0].type.size, op.name)
        for row in range(x.type.size // width):
            cc.emit(spec.SIMD_ARGMAX, dst + row, src + row * width, width)
        self.define(op.outputs[0], core, dst)

    def emit_qdense(self, op: Op) -> None:
        """Program the tiles once; then a 2-D convolution runs in pixel blocks
        (passes/convolution.py) and anything else one MVM pass per k-long input row."""
        x, w_int = op.inputs[:2]
        k, n = w_int.shape
        rows = x.type.size // k
        home = op.attrs["core"]
        tiles: tuple[Tile, ...] = op.attrs["tiles"]
        images = []
        placement = op.attrs["placement"]
        tile_by_tile = len(set(placement)) < len(placement)  # a one-row layer over the chip
        for index, (tile, (core, array)) in enumerate(zip(tiles, placement, strict=True)):
            image = len(self.images)
            self.images.append(XbarImage(tile_levels(self.graph, op, tile)))
            if tile_by_tile:  # programmed right before its MVM (emit_qdense_row)
                self.program_before_mvm[(id(op), index)] = image
            elif self.slot_uses[(core, array)] == 1:  # programmed once, before the first run
                self.bindings.append(Binding(core, array, image))
            else:  # phases share this array: program it at every use, every inference
                self.cores[core].emit(spec.XBAR_PROGRAM, array, image)
            if "adc_ranges" in op.attrs:
                self.adc_ranges[image] = np.array(op.attrs["adc_ranges"][index], dtype=np.float64)
            images.append(image)
        for copy in op.attrs.get("copies", ()):  # schedule = balanced: the same images again
            self.bindings += [Binding(c, a, i) for (c, a), i in zip(copy, images, strict=True)]
        # Quantise where the input already is (the home core for a model input).
        im2col = self.streamed.pop(id(x), None)
        here = self.copies.get(id(x if im2col is None else im2col.inputs[0]))
        qcore = home if not here or home in here else next(iter(here))
        if im2col is not None and not tile_by_tile and conv_blocks_apply(self, op, im2col):
            emit_conv_blocks(self, op, im2col, qcore)  # passes/convolution.py
            return
        y_addr = self.cores[home].buffer.alloc(rows * n, op.name)
        if im2col is not None:  # one window row at a time, never the whole im2col matrix
            shared = None
            if op.attrs.get("scale_over") == "map" and op.attrs["input_scale"] is None:
                shared = self.map_scale(op, im2col.inputs[0], qcore)
            for row, x_addr in enumerate(window_rows(self, im2col, qcore)):
                self.emit_qdense_row(op, qcore, x_addr, y_addr + row * n, shared)
            if shared is not None:
                self.cores[qcore].buffer.release(shared, 1)
        else:
            x_addr = self.local(x, qcore)
            for row in range(rows):
                self.emit_qdense_row(op, qcore, x_addr + row * k, y_addr + row * n)
        self.define(op.outputs[0], home, y_addr)

    def map_scale(self, op: Op, source: Value, core: int) -> int:
        """A one-word buffer holding max|source| / qmax (source: an Im2Col's input map)."""
        cc = self.cores[core]
        bits, signed = op.attrs["input_bits"], op.attrs["input_signed"]
        qmax = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        scale = cc.buffer.alloc(1, f"{op.name} input scale")
        self.reduce(core, spec.SIMD_RABSMAX, scale, self.local(source, core), source.type.size)
        cc.emit(spec.SIMD_DIV_S, scale, scale, self.const_local(core, qmax), 1)
        return scale

    def reduce(self, core: int, row: spec.InstrSpec, dst: int, src: int, n: int) -> None:
        """buf[dst] = the reduction `row` (rsum, rmax, rabsmax) of n words, in chunks that fit
        a count field, then the same reduction over the chunks' results."""
        cc = self.cores[core]
        if n <= spec.MAX_COUNT:
            cc.emit(row, dst, src, n)
            return
        chunks = -(-n // spec.MAX_COUNT)
        partial = cc.buffer.alloc(chunks, "partial reductions")
        for i in range(chunks):
            cc.emit(
                row,
                partial + i,
                src + i * spec.MAX_COUNT,
                min(spec.MAX_COUNT, n - i * spec.MAX_COUNT),
            )
        cc.emit(row, dst, partial, chunks)
        cc.buffer.release(partial, chunks)

    def emit_qdense_row(
        self, op: Op, qcore: int, x_addr: int, y_addr: int, shared_scale: int | None = None
    ) -> None:
        """y = act((x_int . w_int - offset * sum(x_int)) * s_x * s_w + b) for one row x;
        s_x is copied from `shared_scale` if given (a convolution's map scale)."""
        graph = self.graph
        x, w_int, w_scale, bias = op.inputs
        k, n = w_int.shape
        home = op.attrs["core"]
        bits, signed = op.attrs["input_bits"], op.attrs["input_signed"]
        slicing: Slicing = op.attrs["slicing"]
        placement: tuple[tuple[int, int], ...] = op.attrs["placement"]

        # 1. Quantise the row. `scale` holds the input scale and, for the offset encoding,
        # offset * sum(x_int) in the word after it.
        qc = self.cores[qcore]
        offset = slicing.offset
        n_scalars = 2 if offset else 1
        scale = qc.buffer.alloc(n_scalars, f"{op.name} input scale")
        qmax = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        if shared_scale is not None:
            qc.emit(spec.SIMD_COPY, scale, shared_scale, 1)
        elif op.attrs["input_scale"] is None:  # s = max|x| / qmax, per input vector
            qc.emit(spec.SIMD_RABSMAX, scale, x_addr, k)
            qc.emit(spec.SIMD_DIV_S, scale, scale, self.const_local(qcore, qmax), 1)
        else:
            qc.emit(
                spec.MEM_LOAD, scale, self.constant_addr(np.array([op.attrs["input_scale"]])), 1
            )
        xq = Value(f"{op.name}.xq", TensorType((k,), x.type.dtype))  # one row
        xq_addr = qc.buffer.alloc(k, f"{op.name} quantised input")
        qc.emit(spec.SIMD_QUANT, xq_addr, x_addr, scale, bits, int(signed), k)
        self.define(xq, qcore, xq_addr)
        if offset:  # the stored weights are w + offset: y = x.(w + offset) - offset * sum(x)
            qc.emit(spec.SIMD_RSUM, scale + 1, xq_addr, k)
            qc.emit(spec.SIMD_MUL_S, scale + 1, scale + 1, self.const_local(qcore, offset), 1)

        # 2.-3. Every tile's MVM, its slices recombined; partial sums meet on the home core.
        for core in dict.fromkeys(core for core, _ in placement):
            self.local(xq, core)  # the row reaches every tile's core before any MVM starts
        self.tile_products(
            op, lambda core, tile: self.local(xq, core) + tile.row0, y_addr, vectors=1
        )
        hc = self.cores[home]
        for core, loc in self.copies.pop(id(xq)).items():
            self.cores[core].buffer.release(loc.addr, loc.size)

        # 4. y = act((y_int - offset * sum(x_int)) * s_x * s_w + b) on the home core.
        if qcore != home:
            incoming = hc.buffer.alloc(n_scalars, f"{op.name} input scale")
            self.transfer(qcore, scale, home, incoming, n_scalars)
            qc.buffer.release(scale, n_scalars)
            scale, qc = incoming, hc
        if offset:
            hc.emit(spec.SIMD_SUB_S, y_addr, y_addr, scale + 1, n)
        hc.emit(spec.SIMD_MUL_S, y_addr, y_addr, scale, n)
        qc.buffer.release(scale, n_scalars)
        hc.emit(spec.SIMD_MUL, y_addr, y_addr, self.vector_local(home, graph.constants[w_scale]), n)
        hc.emit(spec.SIMD_ADD, y_addr, y_addr, self.vector_local(home, graph.constants[bias]), n)
        activation = op.attrs.get("activation", "none")
        if activation in ACTIVATION_ROWS:
            hc.emit(ACTIVATION_ROWS[activation], y_addr, y_addr, n)

    def tile_products(
        self,
        op: Op,
        x_at: Callable[[int, Tile], int],
        y: int,
        vectors: int,
        copy: tuple[tuple[tuple[int, int], ...], int] | None = None,
    ) -> None:
        """y (outputs x vectors, on the home core) = the integer products of `vectors` input
        vectors with the QDense's weights: each tile's MVM (`xbar.mvm` for one vector, else
        `xbar.mvmb`, whose output keeps each slice's columns contiguous) on the input at
        x_at(core, tile); slices recombined, row blocks' partial sums added where they are
        made, then sent to the home core and added there. `copy` = (placement, home) runs
        on a copy of the weights (schedule = balanced) instead of the op's own arrays."""
        placement: tuple[tuple[int, int], ...] = op.attrs["placement"]
        home = op.attrs["core"]
        if copy is not None:
            placement, home = copy
        bits, signed = op.attrs["input_bits"], int(op.attrs["input_signed"])
        slicing: Slicing = op.attrs["slicing"]
        tiles: tuple[Tile, ...] = op.attrs["tiles"]
        partial: dict[tuple[int, int], int] = {}  # (core, out0) -> address of its partial sum
        temps: list[tuple[int, int, int]] = []
        for index, (tile, (core, array)) in enumerate(zip(tiles, placement, strict=True)):
            cc = self.cores[core]
            nb, cols = tile.outputs * vectors, tile.outputs * slicing.cols_per_output * vectors
            x_in = x_at(core, tile)
            raw = cc.buffer.alloc(cols, f"{op.name} columns")
            image = self.program_before_mvm.get((id(op), index))
            if image is not None:
                cc.emit(spec.XBAR_PROGRAM, array, image)
            if vectors == 1:
                cc.emit(spec.XBAR_MVM, array, x_in, raw, bits, signed)
            else:
                cc.emit(spec.XBAR_MVM_BLOCK, array, x_in, raw, bits, signed, vectors)
            key = (core, tile.out0)
            first = key not in partial
            if first:
                if core == home:
                    partial[key] = y + tile.out0 * vectors
                else:
                    partial[key] = cc.buffer.alloc(nb, f"{op.name} partial")
                    temps.append((core, partial[key], nb))
            acc = partial[key] if first else cc.buffer.alloc(nb, f"{op.name} partial")
            self.recombine(cc, raw, acc, nb, slicing)
            if not first:
                cc.emit(spec.SIMD_ADD, partial[key], partial[key], acc, nb)
                cc.buffer.release(acc, nb)
            cc.buffer.release(raw, cols)
        hc = self.cores[home]
        home_blocks = {out0 for core, out0 in partial if core == home}
        for (core, out0), addr in sorted(partial.items()):
            if core == home:
                continue
            nb = next(t.outputs for t in tiles if t.out0 == out0) * vectors
            at = y + out0 * vectors
            if out0 in home_blocks:
                incoming = hc.buffer.alloc(nb, f"{op.name} incoming partial")
                self.transfer(core, addr, home, incoming, nb)
                hc.emit(spec.SIMD_ADD, at, at, incoming, nb)
                hc.buffer.release(incoming, nb)
            else:
                self.transfer(core, addr, home, at, nb)
                home_blocks.add(out0)
        for core, addr, size in temps:
            self.cores[core].buffer.release(addr, size)

    def recombine(self, cc: CoreCode, raw: int, acc: int, nb: int, slicing: Slicing) -> None:
        """acc = sum_s 2^(s*cb) * slice_s, by Horner from the top slice, where slice_s is
        col[s, +] - col[s, -] for differential pairs and col[s] for the offset encoding."""

        def column(s: int, p: int = 0) -> int:
            return raw + (s * slicing.signs + p) * nb

        def slice_value(s: int, into: int) -> int:
            if slicing.signs == 1:
                return column(s)
            cc.emit(spec.SIMD_SUB, into, column(s, 0), column(s, 1), nb)
            return into

        top = slicing.slices - 1
        if top == 0:
            source = slice_value(0, acc)
            if source != acc:
                cc.emit(spec.SIMD_COPY, acc, source, nb)
            return
        high = slice_value(top, column(top))
        low = slice_value(top - 1, column(top - 1))
        cc.emit(spec.SIMD_SHIFTADD, acc, low, high, slicing.cell_bits, nb)
        for s in range(top - 2, -1, -1):
            cc.emit(spec.SIMD_SHIFTADD, acc, slice_value(s, column(s)), acc, slicing.cell_bits, nb)

    def const_local(self, core: int, value: float) -> int:
        return self.vector_local(core, np.array([value], dtype=np.float64))

    def vector_local(self, core: int, values: np.ndarray) -> int:
        """A constant vector in `core`'s buffer, loaded once per program and kept."""
        flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        key = (core, flat.tobytes())
        cache = self.const_cache
        if key not in cache:
            cc = self.cores[core]
            addr = cc.buffer.alloc(flat.size, "constants")
            cc.emit(spec.MEM_LOAD, addr, self.constant_addr(flat), flat.size)
            cache[key] = addr
        return cache[key]


@register
@dataclass(frozen=True, slots=True)
class EmitPass(Pass):
    """After: ctx.results["program"] is the isa.Program for the graph."""

    name = "emit"
    requires = ("schedule",)  # reads attrs["core"] (and, through it, tiles and placement)

    def needs(self, graph: Graph, ctx: Context) -> tuple[str, ...]:
        """Also `adc-range` when the target's ADC ranges are per column or per slice."""
        if ctx.target.xbar.adc_range != "full-scale":
            return (*self.requires, "adc-range")
        return self.requires

    def run(self, graph: Graph, ctx: Context) -> None:
        ctx.results["program"] = Emitter(graph, ctx).run(ctx)
