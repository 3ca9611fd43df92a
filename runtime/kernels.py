"""Compiled fast paths of the CAM encode, search and leaf read, JIT-built with llvmlite.

The CAM numerics of isa/numerics.py, as the numpy path of semantics/acam.py calls them, are
the definition; these kernels compile the same formulas (cam_encode: rank_code and cell_levels;
cam_search: driven_levels, then an AND of the accept tables runtime/acam.py builds with
accepts; cam_leaf: accumulate_leaves) into one native loop over the batch instead of a dozen
numpy passes, and tests/runtime/test_kernels.py checks them against the numpy path bit for bit.
If llvmlite cannot build them (no native target), `kernels()` is None and the numpy path runs.
IMCC_NO_JIT=1 turns them off.
"""

from __future__ import annotations

import ctypes
import logging
import os
from functools import cache
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Match words are read as `x if 0 <= x < 2^32 else 0`, truncated: the rule of both paths.
_IR = r"""
declare double @llvm.rint.f64(double)
declare double @llvm.maxnum.f64(double, double)
declare double @llvm.minnum.f64(double, double)
declare i32 @llvm.cttz.i32(i32, i1)

define internal i32 @read_word(ptr %p) {
  %x = load double, ptr %p
  %ge = fcmp oge double %x, 0.0
  %lt = fcmp olt double %x, 4294967296.0
  %ok = and i1 %ge, %lt
  %y = select i1 %ok, double %x, double 0.0
  %v = fptoui double %y to i32
  ret i32 %v
}

define internal void @store_word(ptr %out, i64 %k, i64 %batch, i64 %b, i32 %value, i64 %chain) {
entry:
  %row = mul i64 %k, %batch
  %at = add i64 %row, %b
  %p = getelementptr double, ptr %out, i64 %at
  %chained = icmp ne i64 %chain, 0
  br i1 %chained, label %and, label %put
and:
  %old = call i32 @read_word(ptr %p)
  %both = and i32 %value, %old
  br label %put
put:
  %v = phi i32 [ %value, %entry ], [ %both, %and ]
  %f = uitofp i32 %v to double
  store double %f, ptr %p
  ret void
}

; match words of one search, cell by cell over the whole batch (rows of `driven` are
; contiguous): scratch[b * words64 + w] &= accept[(i * levels + level) * words64 + w] for each
; active cell i, level = clip(rint(driven[c][b]), 0, L - 1); then the words are stored
define void @cam_search(ptr %driven, i64 %batch, ptr %active, i64 %nactive, i64 %levels,
                        ptr %accept, i64 %words64, i64 %words32, i64 %lastmask, ptr %out,
                        i64 %chain, ptr %scratch) {
entry:
  %topi = sub i64 %levels, 1
  %top = sitofp i64 %topi to double
  %lastw = sub i64 %words64, 1
  %total = mul i64 %batch, %words64
  br label %init
init:
  %j = phi i64 [ 0, %entry ], [ %j1, %initbody ]
  %jdone = icmp sge i64 %j, %total
  br i1 %jdone, label %iloop, label %initbody
initbody:
  %jp = getelementptr i64, ptr %scratch, i64 %j
  store i64 -1, ptr %jp
  %j1 = add i64 %j, 1
  br label %init
iloop:
  %i = phi i64 [ 0, %init ], [ %i1, %inext ]
  %idone = icmp sge i64 %i, %nactive
  br i1 %idone, label %sloop, label %ihead
ihead:
  %cp = getelementptr i64, ptr %active, i64 %i
  %c = load i64, ptr %cp
  %crow = mul i64 %c, %batch
  %il = mul i64 %i, %levels
  br label %bloop
bloop:
  %b = phi i64 [ 0, %ihead ], [ %b1, %bnext ]
  %bdone = icmp sge i64 %b, %batch
  br i1 %bdone, label %inext, label %bbody
bbody:
  %cat = add i64 %crow, %b
  %xp = getelementptr double, ptr %driven, i64 %cat
  %x = load double, ptr %xp
  %r = call double @llvm.rint.f64(double %x)
  %r0 = call double @llvm.maxnum.f64(double %r, double 0.0)
  %r1 = call double @llvm.minnum.f64(double %r0, double %top)
  %v = fptosi double %r1 to i64
  %ilv = add i64 %il, %v
  %abase = mul i64 %ilv, %words64
  %sbase = mul i64 %b, %words64
  br label %wloop
wloop:
  %w = phi i64 [ 0, %bbody ], [ %w1, %wbody ]
  %wdone = icmp sge i64 %w, %words64
  br i1 %wdone, label %bnext, label %wbody
wbody:
  %aidx = add i64 %abase, %w
  %ap = getelementptr i64, ptr %accept, i64 %aidx
  %a = load i64, ptr %ap
  %sidx = add i64 %sbase, %w
  %sp = getelementptr i64, ptr %scratch, i64 %sidx
  %old = load i64, ptr %sp
  %new = and i64 %old, %a
  store i64 %new, ptr %sp
  %w1 = add i64 %w, 1
  br label %wloop
bnext:
  %b1 = add i64 %b, 1
  br label %bloop
inext:
  %i1 = add i64 %i, 1
  br label %iloop
sloop:
  %sb = phi i64 [ 0, %iloop ], [ %sb1, %sbnext ]
  %sbdone = icmp sge i64 %sb, %batch
  br i1 %sbdone, label %exit, label %swloop
swloop:
  %sw = phi i64 [ 0, %sloop ], [ %sw1, %swnext ]
  %swdone = icmp sge i64 %sw, %words64
  br i1 %swdone, label %sbnext, label %swbody
swbody:
  %srow = mul i64 %sb, %words64
  %sat = add i64 %srow, %sw
  %accp = getelementptr i64, ptr %scratch, i64 %sat
  %acc = load i64, ptr %accp
  %islast = icmp eq i64 %sw, %lastw
  %mask = select i1 %islast, i64 %lastmask, i64 -1
  %accm = and i64 %acc, %mask
  %lo = trunc i64 %accm to i32
  %hish = lshr i64 %accm, 32
  %hi = trunc i64 %hish to i32
  %k = mul i64 %sw, 2
  %klo = icmp slt i64 %k, %words32
  br i1 %klo, label %storelo, label %swnext
storelo:
  call void @store_word(ptr %out, i64 %k, i64 %batch, i64 %sb, i32 %lo, i64 %chain)
  %k1 = add i64 %k, 1
  %khi = icmp slt i64 %k1, %words32
  br i1 %khi, label %storehi, label %swnext
storehi:
  call void @store_word(ptr %out, i64 %k1, i64 %batch, i64 %sb, i32 %hi, i64 %chain)
  br label %swnext
swnext:
  %sw1 = add i64 %sw, 1
  br label %swloop
sbnext:
  %sb1 = add i64 %sb, 1
  br label %sloop
exit:
  ret void
}

; rank coding: per coded feature f and sample b, code = the number of cuts below x (a binary
; search: cut k lies below x when t_k < x, or t_k <= x for an exclusive cut), NaN its own
; level; then cell j of the feature gets clip(code - j (L - 1), 0, L - 1)
define void @cam_encode(ptr %x, i64 %batch, i64 %nfeat, ptr %features, ptr %nanlow, ptr %cells,
                        ptr %offsets, ptr %cuts, ptr %incl, i64 %levels, ptr %out) {
entry:
  %step = sub i64 %levels, 1
  br label %floop
floop:
  %f = phi i64 [ 0, %entry ], [ %f1, %fnext ]
  %cell0 = phi i64 [ 0, %entry ], [ %cell1, %fnext ]
  %fdone = icmp sge i64 %f, %nfeat
  br i1 %fdone, label %exit, label %fhead
fhead:
  %featp = getelementptr i64, ptr %features, i64 %f
  %feat = load i64, ptr %featp
  %lop = getelementptr i64, ptr %offsets, i64 %f
  %lo = load i64, ptr %lop
  %f1 = add i64 %f, 1
  %hip = getelementptr i64, ptr %offsets, i64 %f1
  %hi = load i64, ptr %hip
  %np = getelementptr i64, ptr %cells, i64 %f
  %n = load i64, ptr %np
  %nlp = getelementptr i8, ptr %nanlow, i64 %f
  %nl8 = load i8, ptr %nlp
  %nl = icmp ne i8 %nl8, 0
  %k = sub i64 %hi, %lo
  %kp1 = add i64 %k, 1
  %nancode = select i1 %nl, i64 0, i64 %kp1
  %shift = select i1 %nl, i64 1, i64 0
  %xrow = mul i64 %feat, %batch
  br label %bloop
bloop:
  %b = phi i64 [ 0, %fhead ], [ %b1, %bnext ]
  %bdone = icmp sge i64 %b, %batch
  br i1 %bdone, label %fnext, label %bbody
bbody:
  %xat = add i64 %xrow, %b
  %xp = getelementptr double, ptr %x, i64 %xat
  %v = load double, ptr %xp
  %isnan = fcmp uno double %v, %v
  br i1 %isnan, label %coded, label %search
search:
  %a = phi i64 [ %lo, %bbody ], [ %a2, %sstep ]
  %z = phi i64 [ %hi, %bbody ], [ %z2, %sstep ]
  %more = icmp slt i64 %a, %z
  br i1 %more, label %sstep, label %found
sstep:
  %sum = add i64 %a, %z
  %mid = lshr i64 %sum, 1
  %tp = getelementptr double, ptr %cuts, i64 %mid
  %t = load double, ptr %tp
  %ip = getelementptr i8, ptr %incl, i64 %mid
  %i8 = load i8, ptr %ip
  %inclusive = icmp ne i8 %i8, 0
  %lt = fcmp olt double %t, %v
  %le = fcmp ole double %t, %v
  %below = select i1 %inclusive, i1 %lt, i1 %le
  %mid1 = add i64 %mid, 1
  %a2 = select i1 %below, i64 %mid1, i64 %a
  %z2 = select i1 %below, i64 %z, i64 %mid
  br label %search
found:
  %rank = sub i64 %a, %lo
  %finite = add i64 %rank, %shift
  br label %coded
coded:
  %code = phi i64 [ %nancode, %bbody ], [ %finite, %found ]
  br label %jloop
jloop:
  %j = phi i64 [ 0, %coded ], [ %j1, %jbody ]
  %jdone = icmp sge i64 %j, %n
  br i1 %jdone, label %bnext, label %jbody
jbody:
  %jstep = mul i64 %j, %step
  %d0 = sub i64 %code, %jstep
  %neg = icmp slt i64 %d0, 0
  %d1 = select i1 %neg, i64 0, i64 %d0
  %big = icmp sgt i64 %d1, %step
  %d = select i1 %big, i64 %step, i64 %d1
  %df = sitofp i64 %d to double
  %cell = add i64 %cell0, %j
  %orow = mul i64 %cell, %batch
  %oat = add i64 %orow, %b
  %op = getelementptr double, ptr %out, i64 %oat
  store double %df, ptr %op
  %j1 = add i64 %j, 1
  br label %jloop
bnext:
  %b1 = add i64 %b, 1
  br label %bloop
fnext:
  %cell1 = add i64 %cell0, %n
  br label %floop
exit:
  ret void
}

; leaf read: for each sample, the set bits of its match words in row order; each matched
; row's leaf vector is added to the accumulator rows acc[i * batch + b] one after another,
; in float32 (after rounding the accumulator once) when %single
define void @cam_leaf(ptr %match, i64 %batch, i64 %words32, i64 %rows, ptr %leaves, i64 %n,
                      ptr %acc, i64 %single) {
entry:
  %one = icmp ne i64 %single, 0
  br label %bloop
bloop:
  %b = phi i64 [ 0, %entry ], [ %b1, %bnext ]
  %bdone = icmp sge i64 %b, %batch
  br i1 %bdone, label %exit, label %round
round:
  br i1 %one, label %rloop, label %wloop0
rloop:
  %ri = phi i64 [ 0, %round ], [ %ri1, %rbody ]
  %rdone = icmp sge i64 %ri, %n
  br i1 %rdone, label %wloop0, label %rbody
rbody:
  %rrow = mul i64 %ri, %batch
  %rat = add i64 %rrow, %b
  %rp = getelementptr double, ptr %acc, i64 %rat
  %rv = load double, ptr %rp
  %rt = fptrunc double %rv to float
  %re = fpext float %rt to double
  store double %re, ptr %rp
  %ri1 = add i64 %ri, 1
  br label %rloop
wloop0:
  br label %wloop
wloop:
  %w = phi i64 [ 0, %wloop0 ], [ %w1, %wnext ]
  %wdone = icmp sge i64 %w, %words32
  br i1 %wdone, label %bnext, label %wread
wread:
  %mrow = mul i64 %w, %batch
  %mat = add i64 %mrow, %b
  %mp = getelementptr double, ptr %match, i64 %mat
  %m0 = call i32 @read_word(ptr %mp)
  br label %mloop
mloop:
  %m = phi i32 [ %m0, %wread ], [ %mrest, %mnext ]
  %mzero = icmp eq i32 %m, 0
  br i1 %mzero, label %wnext, label %mbit
mbit:
  %t = call i32 @llvm.cttz.i32(i32 %m, i1 true)
  %t64 = zext i32 %t to i64
  %w32 = mul i64 %w, 32
  %r = add i64 %w32, %t64
  %inrange = icmp slt i64 %r, %rows
  br i1 %inrange, label %iloop, label %mnext
iloop:
  %i = phi i64 [ 0, %mbit ], [ %i1, %ibody ]
  %idone = icmp sge i64 %i, %n
  br i1 %idone, label %mnext, label %ibody
ibody:
  %arow = mul i64 %i, %batch
  %aat = add i64 %arow, %b
  %ap = getelementptr double, ptr %acc, i64 %aat
  %a = load double, ptr %ap
  %lrow = mul i64 %r, %n
  %lat = add i64 %lrow, %i
  %lp = getelementptr double, ptr %leaves, i64 %lat
  %l = load double, ptr %lp
  %s64 = fadd double %a, %l
  %a32 = fptrunc double %a to float
  %l32 = fptrunc double %l to float
  %s32 = fadd float %a32, %l32
  %s32e = fpext float %s32 to double
  %s = select i1 %one, double %s32e, double %s64
  store double %s, ptr %ap
  %i1 = add i64 %i, 1
  br label %iloop
mnext:
  %mm1 = sub i32 %m, 1
  %mrest = and i32 %m, %mm1
  br label %mloop
wnext:
  %w1 = add i64 %w, 1
  br label %wloop
bnext:
  %b1 = add i64 %b, 1
  br label %bloop
exit:
  ret void
}
"""

_I64 = ctypes.c_int64
_PTR = ctypes.c_void_p


class Kernels:
    """The two compiled functions, with numpy-facing wrappers."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine  # keeps the machine code alive
        search = engine.get_function_address("cam_search")
        leaf = engine.get_function_address("cam_leaf")
        encode = engine.get_function_address("cam_encode")
        self._encode = ctypes.CFUNCTYPE(None, _PTR, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR,
                                        _PTR, _I64, _PTR)(encode)  # fmt: skip
        self._search = ctypes.CFUNCTYPE(None, _PTR, _I64, _PTR, _I64, _I64, _PTR, _I64, _I64,
                                        _I64, _PTR, _I64, _PTR)(search)  # fmt: skip
        self._leaf = ctypes.CFUNCTYPE(None, _PTR, _I64, _I64, _I64, _PTR, _I64, _PTR, _I64)(leaf)

    def encode(self, table: Any, x: np.ndarray, levels: int, out: np.ndarray) -> None:
        """x (features, batch) f64 and out (cells, batch) f64, C-contiguous; `table` a
        CamCode checked by the loader (cuts ascending)."""
        self._encode(x.ctypes.data, x.shape[1], table.n_features, table.features.ctypes.data,
                     table.nan_low.ctypes.data, table.cells.ctypes.data,
                     table.offsets.ctypes.data, table.cuts.ctypes.data,
                     table.inclusive.ctypes.data, levels, out.ctypes.data)  # fmt: skip

    def search(self, driven: np.ndarray, active: np.ndarray, accept: np.ndarray, levels: int,
               rows: int, out: np.ndarray, chain: bool) -> None:  # fmt: skip
        """driven (cols, batch) f64, active int64 cells, accept (active * levels, words64) u64,
        out (words32, batch) f64: all C-contiguous; out is written (ANDed when chain)."""
        batch = driven.shape[1]
        words64 = accept.shape[1]
        last = rows - 64 * (words64 - 1)
        lastmask = -1 if last >= 64 else (1 << last) - 1
        scratch = np.empty(batch * words64, dtype=np.uint64)
        self._search(driven.ctypes.data, batch, active.ctypes.data, active.size, levels,
                     accept.ctypes.data, words64, out.shape[0], lastmask, out.ctypes.data,
                     int(chain), scratch.ctypes.data)  # fmt: skip

    def leaf(self, match: np.ndarray, rows: int, leaves: np.ndarray, acc: np.ndarray,
             single: bool) -> None:  # fmt: skip
        """match (words32, batch) f64, leaves (rows, n) f64, acc (n, batch) f64, in place."""
        self._leaf(match.ctypes.data, match.shape[1], match.shape[0], rows, leaves.ctypes.data,
                   leaves.shape[1], acc.ctypes.data, int(single))  # fmt: skip


@cache
def kernels() -> Kernels | None:
    """Build the kernels once per process; None if the JIT is off or unavailable."""
    if os.environ.get("IMCC_NO_JIT"):
        return None
    try:
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        machine = llvm.Target.from_default_triple().create_target_machine(opt=3)
        module = llvm.parse_assembly(_IR)
        module.triple = machine.triple
        module.data_layout = str(machine.target_data)
        module.verify()
        options = llvm.create_pipeline_tuning_options(speed_level=3)
        builder = llvm.create_pass_builder(machine, options)
        builder.getModulePassManager().run(module, builder)
        engine = llvm.create_mcjit_compiler(module, machine)
        engine.finalize_object()
        return Kernels(engine)
    except Exception as exc:  # no native target, an old llvmlite: the numpy path runs
        log.info("CAM kernels unavailable (%s); using numpy", exc)
        return None
