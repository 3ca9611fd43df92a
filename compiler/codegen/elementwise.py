"""Elementwise ops on the vector unit: one instruction per op, a table row per op class.

A unary op is its row over the whole tensor. A binary op whose second operand is one word
uses the row's vector-scalar form (that word read by every lane); otherwise both operands are
broadcast to the result's shape first (Emitter.broadcast: at compile time for a constant, by
copies of runs for a computed value).
"""

from __future__ import annotations

from imcc.compiler.codegen.emitter import Emitter, lowers
from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Op
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


@lowers(*UNARY)
def lower_unary(em: Emitter, op: Op) -> None:
    core = op.core
    size = op.outputs[0].type.size
    src = em.local(op.inputs[0], core)
    dst = em.cores[core].buffer.alloc(size, op.name)
    em.cores[core].emit(UNARY[type(op)], dst, src, size)
    em.define(op.outputs[0], core, dst)


@lowers(*BINARY)
def lower_binary(em: Emitter, op: Op) -> None:
    vector_row, scalar_row = BINARY[type(op)]
    core = op.core
    a, b = op.inputs
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
