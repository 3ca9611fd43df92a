"""Semantics of the analog-CAM unit: encode, search, leaf and program (spec.ACAM_*).

The meaning of the data (rank codes, the spread over cells) is isa/acam.py's, the arithmetic
(coding, driven levels, leaf accumulation) isa/numerics.py's; the device (which thresholds an
array really holds) is runtime/acam.py's. Every buffer word holds one value per sample, so
each function works on a whole batch at once.
"""

from __future__ import annotations

import numpy as np

from imcc.isa import spec
from imcc.isa.acam import codes, spread
from imcc.isa.encoding import Instr
from imcc.isa.numerics import accumulate_leaves, driven_levels
from imcc.runtime.acam import CamState
from imcc.runtime.kernels import kernels
from imcc.runtime.machine import CoreState, Machine
from imcc.runtime.semantics import semantics


def _levels(m: Machine) -> int:
    assert m.target.acam is not None  # the loader rejects CAM work on targets without CAMs
    return m.target.acam.levels


def _cam(m: Machine, c: CoreState, array: int) -> CamState:
    state = c.cams[array]
    assert state is not None  # the engine traps on a CAM array without an image first
    return state


@semantics(spec.ACAM_ENCODE)
def acam_encode(m: Machine, c: CoreState, i: Instr) -> int | None:
    d, a, table_index, n, k = i.operands
    table = m.program.cam_codes[table_index]
    if table.n_cells != n or (table.n_features and int(table.features.max()) >= k):
        raise m.trap(
            c,
            f"coding table {table_index} codes {table.n_cells} cells from features up to "
            f"{int(table.features.max(initial=-1))}; the instruction gives n = {n}, k = {k}",
        )
    start = int(c.regs[a])
    x = c.buffer[start : start + k]
    out = int(c.regs[d])
    fast = kernels()
    if fast is not None:  # the same computation, compiled (runtime/kernels.py)
        fast.encode(table, x, _levels(m), c.buffer[out : out + n])
    else:
        c.buffer[out : out + n] = spread(table, codes(table, x), _levels(m))
    return None


def match_words(state: CamState, levels: np.ndarray) -> np.ndarray:
    """The match vector (words, batch) of 32-bit masks for driven levels (cols, batch).

    Row r matches when every cell accepts its level: AND over cells of accept[c, level_c]
    (exact: see runtime/acam.py), then the 64-bit row masks are split into 32-bit words.
    """
    words = -(-state.rows // spec.MATCH_BITS)
    active = state.active  # cells that accept every level everywhere cannot clear a bit
    if active.size == 0:
        ones = np.full((levels.shape[1], state.accept.shape[2]), ~np.uint64(0))
        rows64 = ones
    else:
        picked = np.take(state.accept_flat, levels[active] + state.offsets, axis=0)
        rows64 = np.bitwise_and.reduce(picked, axis=0)  # (batch, words64)
    if state.rows % 64:  # rows past the image's end never match
        rows64 = rows64.copy()
        rows64[:, -1] &= np.uint64((1 << (state.rows % 64)) - 1)
    halves = np.ascontiguousarray(rows64).view("<u4")[:, :words]  # (batch, words)
    result: np.ndarray = halves.T
    return result


@semantics(spec.ACAM_SEARCH)
def acam_search(m: Machine, c: CoreState, i: Instr) -> int | None:
    array, rin, rout, chain = i.operands
    state = _cam(m, c, array)
    start, out = int(c.regs[rin]), int(c.regs[rout])
    driven = c.buffer[start : start + state.cols]
    target = c.buffer[out : out + -(-state.rows // spec.MATCH_BITS)]
    fast = kernels()
    if fast is not None:  # the same computation, compiled (runtime/kernels.py)
        fast.search(driven, state.active, state.accept_flat, state.levels, state.rows, target,
                    bool(chain))  # fmt: skip
    else:
        search(state, driven, target, bool(chain))
    return None


def search(state: CamState, driven: np.ndarray, target: np.ndarray, chain: bool) -> None:
    """The definition: drive clip(rint(level), 0, L - 1) (NaN drives 0), write the match
    words into `target` (words, batch), ANDed with what it holds when `chain`."""
    words = match_words(state, driven_levels(driven, state.levels))
    if chain:  # a row spread over several arrays: its match lines are ANDed
        words = words & read_words(target)
    target[:] = words


def read_words(values: np.ndarray) -> np.ndarray:
    """Match words as stored: x truncated if 0 <= x < 2^32, else 0 (NaN included)."""
    with np.errstate(invalid="ignore"):
        ok = (values >= 0) & (values < 2.0**32)
    result: np.ndarray = np.where(ok, values, 0.0).astype(np.uint64).astype("<u4")
    return result


@semantics(spec.ACAM_LEAF)
def acam_leaf(m: Machine, c: CoreState, i: Instr) -> int | None:
    array, rm, rd, n, single = i.operands
    state = _cam(m, c, array)
    if n != state.width:
        raise m.trap(c, f"n = {n}, but the leaf RAM of CAM array m{array} is {state.width} wide")
    start, out = int(c.regs[rm]), int(c.regs[rd])
    match = c.buffer[start : start + -(-state.rows // spec.MATCH_BITS)]
    fast = kernels()
    if fast is not None:  # the same computation, compiled (runtime/kernels.py)
        fast.leaf(match, state.rows, state.leaves, c.buffer[out : out + n], bool(single))
    else:
        leaf(state, match, c.buffer[out : out + n], bool(single))
    return None


def leaf(state: CamState, match: np.ndarray, target: np.ndarray, single: bool) -> None:
    """The definition: per sample, add the leaf rows its match words select to `target`
    (n, batch), one after another in row order, in float32 (the accumulator rounded first)
    when `single`."""
    samples, rows = matched_rows(read_words(match), state.rows)
    dtype = np.float32 if single else np.float64  # a float32 sum rounds after every add
    acc = target.T.astype(dtype)  # (batch, n), a copy
    accumulate_leaves(acc, samples, rows, state.leaves)  # in row (tree) order per sample
    target[:] = acc.T


_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.int64)
_BIT_AT = np.array(
    [[b for b in range(8) if v >> b & 1] + [0] * (8 - bin(v).count("1")) for v in range(256)],
    dtype=np.int64,
)  # _BIT_AT[v, k]: the position of the k-th set bit of the byte v


def matched_rows(masks: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(sample, row) of every set bit of the match vectors (words, batch), sample-major and
    rows ascending within a sample."""
    data = np.ascontiguousarray(masks.T).view(np.uint8)  # (batch, bytes), little-endian
    nbytes = data.shape[1]
    flat = data.reshape(-1)
    hit = np.flatnonzero(flat)
    values = flat[hit].astype(np.int64)
    counts = _POPCOUNT[values]
    where = np.repeat(hit, counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    k = np.arange(where.size) - start
    position = (where % nbytes) * 8 + _BIT_AT[np.repeat(values, counts), k]
    keep = position < rows
    return where[keep] // nbytes, position[keep]


@semantics(spec.ACAM_PROGRAM)
def acam_program(m: Machine, c: CoreState, i: Instr) -> int | None:
    array, image = i.operands
    m.program_cam(c.index, array, image)
    return None
