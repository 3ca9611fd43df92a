"""Elementwise ops on the vector unit: one instruction per op, a table row per op class.

A unary op is its row over the whole tensor. A binary op whose second operand is one word
uses the row's vector-scalar form (that word read by every lane); otherwise both operands are
broadcast to the result's shape first (Emitter.broadcast: at compile time for a constant, by
copies of runs for a computed value).

An op whose operand rests in memory, or whose result is too large for a buffer
(Emitter.large), works in chunks: each chunk of every operand is loaded, computed and, for
a large result, stored to where the result rests, so the buffer holds a few chunks only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcc.compiler.codegen.emitter import Emitter, Resident, lowers
from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Op, Value
from imcc.isa import spec

UNARY: dict[type[Op], spec.InstrSpec] = {
    ops.Relu: spec.SIMD_RELU,
    ops.Sigmoid: spec.SIMD_SIGMOID,
    ops.Tanh: spec.SIMD_TANH,
    ops.Exp: spec.SIMD_EXP,
    ops.Erf: spec.SIMD_ERF,
    ops.Sqrt: spec.SIMD_SQRT,
    ops.Log: spec.SIMD_LOG,
}
# op class -> (vector row, vector-scalar row or None: then the scalar is broadcast)
BINARY: dict[type[Op], tuple[spec.InstrSpec, spec.InstrSpec | None]] = {
    ops.Add: (spec.SIMD_ADD, spec.SIMD_ADD_S),
    ops.Sub: (spec.SIMD_SUB, spec.SIMD_SUB_S),
    ops.Mul: (spec.SIMD_MUL, spec.SIMD_MUL_S),
    ops.Div: (spec.SIMD_DIV, spec.SIMD_DIV_S),
    ops.Min: (spec.SIMD_MIN, None),
}


def chunked(em: Emitter, op: Op) -> bool:
    """Whether `op` works in chunks: a computed operand rests in memory (not a model input
    a small layer loads whole), or the result is too large for a buffer."""
    resting = any(
        em.resting(v) is not None and (em.large(v) or em.root(id(v)) in em.resident)
        for v in op.inputs
        if v.type.size > 1
    )
    return resting or em.large(op.outputs[0], op.core)


@dataclass(frozen=True, slots=True)
class _Part:
    """How emit_chunked reads an operand: by chunks from where it rests (`memory`), by chunks
    of a constant broadcast at compile time into global memory at `addr`, or from the
    buffer at `addr` (held whole, or one word read by every lane when `scalar`)."""

    addr: int = -1
    memory: Resident | None = None
    constant: bool = False
    scalar: bool = False

    @property
    def loaded(self) -> bool:
        return self.memory is not None or self.constant


def emit_chunked(
    em: Emitter, op: Op, row: spec.InstrSpec, scalar_row: spec.InstrSpec | None
) -> None:
    """`row` over the result in chunks (module docstring); `scalar_row`, when given, takes the
    second operand as one word."""
    core, out = op.core, op.outputs[0]
    cc = em.cores[core]
    size = out.type.size
    target = em.rest(out, em.readers(out) | {core}) if em.large(out, core) else None
    dst = -1 if target is not None else cc.buffer.alloc(size, op.name)
    temps: list[tuple[int, int]] = []
    parts = [_part(em, core, v, out, temps, scalar_row is not None and i == 1)
             for i, v in enumerate(op.inputs)]  # fmt: skip
    loaded = sum(p.loaded for p in parts) + (target is not None)
    chunk = max(1, min(size, spec.MAX_COUNT, cc.buffer.largest() // (2 * max(loaded, 1))))
    scratch = cc.buffer.alloc(chunk * loaded, f"{op.name} chunks")
    for start in range(0, size, chunk):
        n = min(chunk, size - start)
        slot = scratch
        addrs = []
        for part in parts:
            if part.memory is not None:
                em.move(core, part.memory, start, slot, n, load=True)
            elif part.constant:
                cc.emit(spec.MEM_LOAD, slot, part.addr + start, n)
            addrs.append(slot if part.loaded else part.addr + (0 if part.scalar else start))
            slot += chunk if part.loaded else 0
        d = slot if target is not None else dst + start
        cc.emit(row if scalar_row is None else scalar_row, d, *addrs, n)
        if target is not None:
            em.move(core, target, start, d, n, load=False)
    cc.buffer.release(scratch, chunk * loaded)
    for addr, words in temps:
        cc.buffer.release(addr, words)
    if target is None:
        em.define(out, core, dst)


def _part(
    em: Emitter, core: int, v: Value, out: Value, temps: list[tuple[int, int]], scalar: bool
) -> _Part:
    if scalar:
        return _Part(em.local(v, core), scalar=True)
    constant = em.graph.constant(v)
    if constant is not None:
        return _Part(em.constant_addr(np.broadcast_to(constant, out.shape)), constant=True)
    res = em.resting(v)
    reachable = res is not None and (res.space is spec.Space.GLOBAL or res.tile == em.tile(core))
    if res is not None and reachable and v.type.size == out.type.size:
        return _Part(memory=res)
    return _Part(em.broadcast(v, core, out.shape, temps))


@lowers(*UNARY)
def lower_unary(em: Emitter, op: Op) -> None:
    if chunked(em, op):
        emit_chunked(em, op, UNARY[type(op)], None)
        return
    core = op.core
    size = op.outputs[0].type.size
    src = em.local(op.inputs[0], core)
    dst = em.cores[core].buffer.alloc(size, op.name)
    em.cores[core].emit(UNARY[type(op)], dst, src, size)
    em.define(op.outputs[0], core, dst)


@lowers(*BINARY)
def lower_binary(em: Emitter, op: Op) -> None:
    vector_row, scalar_row = BINARY[type(op)]
    a, b = op.inputs
    if chunked(em, op):
        scalar = b.type.size == 1 and scalar_row is not None
        emit_chunked(em, op, vector_row, scalar_row if scalar else None)
        return
    core = op.core
    out = op.outputs[0]
    size = out.type.size
    cc = em.cores[core]
    temps: list[tuple[int, int]] = []
    if b.type.size == 1 and scalar_row is not None:  # the scalar is read once by every lane
        operands = [em.broadcast(a, core, out.shape, temps), em.local(b, core)]
        row = scalar_row
    else:
        operands = [em.broadcast(v, core, out.shape, temps) for v in (a, b)]
        row = vector_row
    dst = cc.buffer.alloc(size, op.name)
    cc.emit(row, dst, operands[0], operands[1], size)
    for addr, words in temps:
        cc.buffer.release(addr, words)
    em.define(out, core, dst)
