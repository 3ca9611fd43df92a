"""Code for CamTrees ops: per ensemble one encode, per block its searches and one leaf read
(spec.ACAM_*), then the divisor and base values on the SIMD unit."""

from __future__ import annotations

import numpy as np

from imcc.compiler.codegen.emitter import Emitter, lowers
from imcc.compiler.ir.cam import CamPlan, CamTrees
from imcc.compiler.ir.core import TensorType, Value
from imcc.isa import spec
from imcc.isa.program import Binding


@lowers(CamTrees)
def lower_cam_trees(em: Emitter, op: CamTrees) -> None:
    """Encode on the input's core, then per block its searches and leaf read, the accumulator
    passing from core to core in block order; then divisor and late base on the last core."""
    plan: CamPlan = op.plan
    cam_images, cam_bindings = em.sections.cam_images, em.sections.cam_bindings
    cam_codes = em.sections.cam_codes
    x = op.inputs[0]
    home = op.core
    table = len(cam_codes)
    cam_codes.append(plan.code)
    n, k = plan.code.n_cells, x.type.size
    hc = em.cores[home]
    x_addr = em.local(x, home)
    driven = Value(f"{op.name}.levels", TensorType((1, n), "float64"))
    dl = hc.buffer.alloc(n, f"{op.name} CAM levels")
    hc.emit(spec.ACAM_ENCODE, dl, x_addr, table, n, k)
    em.define(driven, home, dl)

    targets = plan.targets
    base = np.asarray(plan.base, dtype=np.float64)
    acc_value = Value(f"{op.name}.acc", TensorType((1, targets), "float64"))
    core = plan.blocks[0].core
    cc = em.cores[core]
    acc = cc.buffer.alloc(targets, f"{op.name} accumulator")
    start = base if plan.base_first else np.zeros(targets)
    cc.emit(spec.MEM_LOAD, acc, em.constant_addr(start), targets)
    for block in plan.blocks:
        if block.core != core:  # hand the accumulator on, in block (tree) order
            em.define(acc_value, core, acc)
            moved = em.local(acc_value, block.core)
            cc.buffer.release(acc, targets)
            core, acc, cc = block.core, moved, em.cores[block.core]
        levels_at = em.local(driven, core)
        rows = block.images[0].rows
        words = -(-rows // spec.MATCH_BITS)
        match = cc.buffer.alloc(words, f"{op.name} match vector")
        for i, (segment, array, image) in enumerate(
            zip(block.segments, block.arrays, block.images, strict=True)
        ):
            cam_bindings.append(Binding(core, array, len(cam_images)))
            cam_images.append(image)
            cc.emit(spec.ACAM_SEARCH, array, levels_at + segment * plan.cols, match, int(i > 0))
        c0, c1 = block.leaf_cols
        cc.emit(spec.ACAM_LEAF, block.arrays[0], match, acc + c0, c1 - c0, int(plan.single))
        cc.buffer.release(match, words)
    for at, loc in em.copies.pop(id(driven)).items():
        em.cores[at].buffer.release(loc.addr, loc.size)
    if plan.divisor != 1.0:
        cc.emit(spec.SIMD_DIV_S, acc, acc, em.const_local(core, plan.divisor), targets)
    if not plan.base_first:
        cc.emit(spec.SIMD_ADD, acc, acc, em.vector_local(core, base), targets)
    em.define(op.outputs[0], core, acc)
