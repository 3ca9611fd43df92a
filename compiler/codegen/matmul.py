"""Products of two activations (attention's scores and context) on the vector unit."""

from __future__ import annotations

import numpy as np

from imcc.compiler.codegen.emitter import Emitter, lowers
from imcc.compiler.ir import ops
from imcc.isa import spec


@lowers(ops.MatMul)  # two activations: no crossbar holds b
def lower_matmul(em: Emitter, op: ops.MatMul) -> None:
    """y = a @ b on the vector unit, for a b that no crossbar holds (attention's scores
    and context). Row m of y is sum_k a[m, k] * b[k, :]: per k one vector-scalar multiply
    of row k of b (contiguous, so no column gather or transpose is needed) and one vector
    add, i.e. M * (2K - 1) instructions of N lanes per product. The cost model charges
    exactly those instructions; the crossbars are not used."""
    core = op.core
    a, b = op.inputs
    out = op.outputs[0]
    cc = em.cores[core]
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
    src_a, src_b = em.local(a, core), em.local(b, core)
    dst = cc.buffer.alloc(out.type.size, op.name)
    if out.type.size and not k:  # an empty sum: zeros
        zeros = np.zeros(out.type.size)
        cc.emit(spec.MEM_LOAD, dst, em.constant_addr(zeros), out.type.size)
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
    em.define(out, core, dst)
