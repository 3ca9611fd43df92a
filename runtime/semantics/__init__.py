"""Instruction semantics: one function per instruction, registered by its table row.

This is the living definition of the ISA. Both simulators call `SEMANTICS[mnemonic]`; the
cycle-level one only adds time and energy around the call. A function returns None to fall
through to pc + 1, a pc to jump to, BLOCKED to retry later (a receive whose message has not
arrived), or HALTED. Address ranges were bounds-checked before the call (see engine.py).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import numpy as np

from imcc.isa import spec
from imcc.isa.encoding import Instr
from imcc.isa.numerics import input_planes, quant_range
from imcc.runtime.devices import ArrayState
from imcc.runtime.machine import CoreState, Machine, Message

BLOCKED = -1
HALTED = -2

Semantics = Callable[[Machine, CoreState, Instr], int | None]
SEMANTICS: dict[str, Semantics] = {}


def semantics(*rows: spec.InstrSpec) -> Callable[[Semantics], Semantics]:
    def register(fn: Semantics) -> Semantics:
        for row in rows:
            if row.mnemonic in SEMANTICS:
                raise ValueError(f"two semantics for {row.mnemonic}")
            SEMANTICS[row.mnemonic] = fn
        return fn

    return register


# -- ctl ------------------------------------------------------------------------------------
@semantics(spec.CTL_NOP)
def ctl_nop(m: Machine, c: CoreState, i: Instr) -> int | None:
    return None


@semantics(spec.CTL_HALT)
def ctl_halt(m: Machine, c: CoreState, i: Instr) -> int | None:
    return HALTED


@semantics(spec.CTL_SET)
def ctl_set(m: Machine, c: CoreState, i: Instr) -> int | None:
    d, imm = i.operands
    c.regs[d] = imm
    return None


# Registers are signed 64-bit; a sum outside that range traps rather than wrapping.
_REG_MIN, _REG_MAX = -(1 << 63), (1 << 63) - 1


@semantics(spec.CTL_ADD)
def ctl_add(m: Machine, c: CoreState, i: Instr) -> int | None:
    d, a, imm = i.operands
    value = int(c.regs[a]) + imm
    if not _REG_MIN <= value <= _REG_MAX:
        raise m.trap(c, f"r{a} + {imm} = {value} overflows the 64-bit register r{d}")
    c.regs[d] = value
    return None


@semantics(spec.CTL_LOOP)
def ctl_loop(m: Machine, c: CoreState, i: Instr) -> int | None:
    r, trips, target = i.operands
    count = int(c.regs[r]) + 1
    if count < trips:
        c.regs[r] = count
        return target
    c.regs[r] = 0
    return None


@semantics(spec.CTL_JUMP)
def ctl_jump(m: Machine, c: CoreState, i: Instr) -> int | None:
    return i.operands[0]


_COMPARE: dict[str, Callable[[int, int], bool]] = {
    spec.CTL_BRANCH_EQ.mnemonic: lambda a, b: a == b,
    spec.CTL_BRANCH_NE.mnemonic: lambda a, b: a != b,
    spec.CTL_BRANCH_LT.mnemonic: lambda a, b: a < b,
}


@semantics(spec.CTL_BRANCH_EQ, spec.CTL_BRANCH_NE, spec.CTL_BRANCH_LT)
def ctl_branch(m: Machine, c: CoreState, i: Instr) -> int | None:
    a, b, target = i.operands
    return target if _COMPARE[i.mnemonic](int(c.regs[a]), int(c.regs[b])) else None


# -- xbar -----------------------------------------------------------------------------------
def mvm(m: Machine, c: CoreState, array: int, x: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Column results of one MVM: DAC steps, device reads, ADC, shift-add over steps."""
    state = c.arrays[array]
    assert state is not None  # checked by the engine before the call
    with np.errstate(invalid="ignore"):  # a non-finite value drives some code; which is moot
        x_int = np.rint(x).astype(np.int64)
    adc, lossless = m.adc_for(state.image)
    if m.device.exact and lossless:
        modulus = 1 << bits  # the DAC sees `bits` bits: wrap to the two's complement range
        x_int &= modulus - 1
        if signed:
            x_int -= (x_int >= modulus >> 1) * modulus
        # Exact device, lossless ADC: sum_t weight_t * chunk_t = x, so one matmul is the same
        # integer result as the step-by-step path below (tested bit for bit).
        return m.device.read(state, x_int.astype(np.float64), m.rng)
    # Every step is its own read: stack the steps along the batch axis, read and convert them
    # in one go, then shift-add: acc = sum_t weight_t * ADC(read(chunk_t)).
    planes, weights = input_planes(x_int, bits, signed, m.target.xbar.dac_bits, axis=1)
    rows, steps, batch = planes.shape
    stacked = planes.reshape(rows, steps * batch)
    codes = adc.codes(m.device.read(state, stacked, m.rng)).reshape(state.cols, steps, batch)
    acc: np.ndarray = np.einsum("t,ctb->cb", weights, codes)  # then x lsb, once per column
    if not adc.unit_step:
        acc *= adc.lsb[:, None]
    return acc


def _held(c: CoreState, first: int, k: int) -> list[ArrayState]:
    """The states of arrays first..first+k-1, which all hold images of one shape (the engine
    checks it before the call)."""
    states = c.arrays[first : first + k]
    assert all(state is not None for state in states)
    return states  # type: ignore[return-value]


@semantics(spec.XBAR_MVM)
def xbar_mvm(m: Machine, c: CoreState, i: Instr) -> int | None:
    first, rin, rout, bits, signed, k = i.operands
    states = _held(c, first, k)
    rows, cols = states[0].rows, states[0].cols
    start, out = int(c.regs[rin]), int(c.regs[rout])
    x = c.buffer[start : start + rows]
    # the k arrays read the same input at once: every read before any write
    ys = [mvm(m, c, first + j, x, bits, bool(signed)) for j in range(k)]
    c.buffer[out : out + cols * k] = np.concatenate(ys) if k > 1 else ys[0]
    return None


@semantics(spec.XBAR_MVM_BLOCK)
def xbar_mvm_block(m: Machine, c: CoreState, i: Instr) -> int | None:
    first, rin, rout, bits, signed, count, k = i.operands
    states = _held(c, first, k)
    rows, cols = states[0].rows, states[0].cols
    start, out, batch = int(c.regs[rin]), int(c.regs[rout]), c.buffer.shape[1]
    # (rows, count, batch) -> one MVM over count * batch vectors: each vector is its own read
    x = c.buffer[start : start + rows * count].reshape(rows, count * batch)
    ys = [mvm(m, c, first + j, x, bits, bool(signed)) for j in range(k)]
    y = np.concatenate(ys) if k > 1 else ys[0]
    c.buffer[out : out + cols * count * k] = y.reshape(cols * count * k, batch)
    return None


@semantics(spec.XBAR_PROGRAM)
def xbar_program(m: Machine, c: CoreState, i: Instr) -> int | None:
    array, image = i.operands
    m.program_array(c.index, array, image)
    return None


# -- simd -----------------------------------------------------------------------------------
def _vec(c: CoreState, reg: int, n: int) -> np.ndarray:
    start = int(c.regs[reg])
    return c.buffer[start : start + n]


# Elementwise rows d = f(a, b): f is the numpy ufunc the row's `function` names; b is read as
# one word when its access extent is 1 (the vector-scalar forms).
_ELEMENTWISE = tuple(row for row in spec.TABLE if row.function)
_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    row.mnemonic: getattr(np, row.function) for row in _ELEMENTWISE
}
_SCALAR_B = {
    row.mnemonic
    for row in _ELEMENTWISE
    if any(a.field == "b" and a.extent == "1" for a in row.accesses)
}


@semantics(*_ELEMENTWISE)
def simd_binary(m: Machine, c: CoreState, i: Instr) -> int | None:
    d, a, b, n = i.operands
    rhs = _vec(c, b, 1) if i.mnemonic in _SCALAR_B else _vec(c, b, n)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        result = _BINARY[i.mnemonic](_vec(c, a, n), rhs)
    _vec(c, d, n)[:] = result
    return None


@semantics(spec.SIMD_COPY2D)
def simd_copy2d(m: Machine, c: CoreState, i: Instr) -> int | None:
    d, a, s, n, count = i.operands
    inner, outer_src, outer_dst = (int(v) for v in c.regs[s : s + 3])
    if count > 1 and outer_dst < n:
        # Rows of the destination overlap: of the n * count reads (up to 2^40) only the last
        # write to each of the (count - 1) * outer_dst + n destination words counts, the one of
        # row j = min(count - 1, o // outer_dst) for the word at offset o (row count - 1 if
        # outer_dst = 0), column o - j * outer_dst < n. Work stays within the range checked.
        offset = np.arange((count - 1) * outer_dst + n)
        row = np.full(offset.shape, count - 1) if outer_dst == 0 else offset // outer_dst
        row = np.minimum(row, count - 1)
        col = offset - row * outer_dst
        src = int(c.regs[a]) + outer_src * row + inner * col
        dst = int(c.regs[d]) + offset
    else:  # distinct destination words, n * count of them inside the checked range
        src = int(c.regs[a]) + outer_src * np.arange(count)[:, None] + inner * np.arange(n)
        dst = int(c.regs[d]) + outer_dst * np.arange(count)[:, None] + np.arange(n)
    c.buffer[dst.reshape(-1)] = c.buffer[src.reshape(-1)]  # reads all, then writes
    return None


@semantics(spec.SIMD_SHIFTADD)
def simd_shiftadd(m: Machine, c: CoreState, i: Instr) -> int | None:
    d, a, b, shift, n = i.operands
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf is NaN, as in simd.add
        _vec(c, d, n)[:] = _vec(c, a, n) + _vec(c, b, n) * float(2.0**shift)
    return None


@semantics(spec.SIMD_QUANT)
def simd_quant(m: Machine, c: CoreState, i: Instr) -> int | None:
    d, a, s, bits, signed, n = i.operands
    lo, hi = quant_range(bits, bool(signed))
    scale = _vec(c, s, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.rint(_vec(c, a, n) / np.where(scale == 0, 1.0, scale))
    _vec(c, d, n)[:] = np.clip(np.where(scale == 0, 0.0, q), lo, hi)
    return None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        result: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return result


# math.erf is correctly rounded to a few ulps; numpy has no erf and scipy is no dependency.
_erf = np.vectorize(math.erf, otypes=[np.float64])


_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    spec.SIMD_COPY.mnemonic: np.copy,
    spec.SIMD_RELU.mnemonic: lambda x: np.maximum(x, 0.0),
    spec.SIMD_SIGMOID.mnemonic: _sigmoid,
    spec.SIMD_TANH.mnemonic: np.tanh,
    spec.SIMD_EXP.mnemonic: np.exp,
    spec.SIMD_ERF.mnemonic: _erf,
    spec.SIMD_SQRT.mnemonic: np.sqrt,
    spec.SIMD_LOG.mnemonic: np.log,
}


@semantics(
    spec.SIMD_COPY,
    spec.SIMD_RELU,
    spec.SIMD_SIGMOID,
    spec.SIMD_TANH,
    spec.SIMD_EXP,
    spec.SIMD_ERF,
    spec.SIMD_SQRT,
    spec.SIMD_LOG,
)
def simd_unary(m: Machine, c: CoreState, i: Instr) -> int | None:
    d, a, n = i.operands
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        _vec(c, d, n)[:] = _UNARY[i.mnemonic](_vec(c, a, n))
    return None


_REDUCE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    spec.SIMD_RMAX.mnemonic: lambda x: np.max(x, axis=0),
    spec.SIMD_RSUM.mnemonic: lambda x: np.sum(x, axis=0),
    spec.SIMD_RABSMAX.mnemonic: lambda x: np.max(np.abs(x), axis=0),
    spec.SIMD_ARGMAX.mnemonic: lambda x: np.argmax(x, axis=0).astype(np.float64),
}


@semantics(spec.SIMD_RMAX, spec.SIMD_RSUM, spec.SIMD_RABSMAX, spec.SIMD_ARGMAX)
def simd_reduce(m: Machine, c: CoreState, i: Instr) -> int | None:
    d, a, n = i.operands
    _vec(c, d, 1)[0] = _REDUCE[i.mnemonic](_vec(c, a, n))
    return None


# -- mem ------------------------------------------------------------------------------------
@semantics(spec.MEM_LOAD)
def mem_load(m: Machine, c: CoreState, i: Instr) -> int | None:
    d, a, n = i.operands
    _vec(c, d, n)[:] = m.global_range(int(c.regs[a]), n)
    return None


@semantics(spec.MEM_STORE)
def mem_store(m: Machine, c: CoreState, i: Instr) -> int | None:
    d, a, n = i.operands
    m.global_range(int(c.regs[d]), n)[:] = _vec(c, a, n)
    return None


# -- tile -----------------------------------------------------------------------------------
@semantics(spec.TILE_LOAD)
def tile_load(m: Machine, c: CoreState, i: Instr) -> int | None:
    d, a, n = i.operands
    _vec(c, d, n)[:] = m.tile_range(c.index, int(c.regs[a]), n)
    return None


@semantics(spec.TILE_STORE)
def tile_store(m: Machine, c: CoreState, i: Instr) -> int | None:
    d, a, n = i.operands
    m.tile_range(c.index, int(c.regs[d]), n)[:] = _vec(c, a, n)
    return None


# -- noc ------------------------------------------------------------------------------------
@semantics(spec.NOC_SEND)
def noc_send(m: Machine, c: CoreState, i: Instr) -> int | None:
    _, _, tag, a, n = i.operands
    dst = m.peer(c, i)
    box = m.mailboxes.setdefault((c.index, dst, tag), deque())
    box.append(Message(_vec(c, a, n).copy(), m.now))
    return None


@semantics(spec.NOC_RECV)
def noc_recv(m: Machine, c: CoreState, i: Instr) -> int | None:
    _, _, tag, d, n = i.operands
    src = m.peer(c, i)
    box = m.mailboxes.get((src, c.index, tag))
    if not box:
        return BLOCKED
    message = box.popleft()
    if message.data.shape[0] != n:
        raise m.trap(
            c,
            f"message from core {src} tag {tag} holds {message.data.shape[0]} words, "
            f"the receive expects {n}",
        )
    _vec(c, d, n)[:] = message.data
    c.received = message
    return None


from imcc.runtime.semantics import acam as _acam  # noqa: E402, F401  (registers acam.*)

missing = sorted(set(spec.BY_MNEMONIC) - set(SEMANTICS))
assert not missing, f"instructions without semantics: {missing}"
