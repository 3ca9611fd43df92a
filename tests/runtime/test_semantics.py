"""Instruction semantics: the vector unit against independent references, and every operand
value the instruction table allows either runs or traps naming core and pc."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

import imcc
from imcc.isa import spec
from imcc.isa.acam import CamCode, CamImage
from imcc.isa.diagnostics import (
    BinaryFormatError,
    CoreLoc,
    SectionLoc,
    SimulationError,
)
from imcc.isa.encoding import make, operand_bounds
from imcc.isa.program import Binding, Program, TensorInfo, XbarImage
from imcc.isa.target import Target
from imcc.runtime.devices import make_device
from imcc.runtime.machine import Machine
from imcc.runtime.semantics import _UNARY, SEMANTICS
from tests.isa.test_container import target_dict


def test_erf_matches_math_erf_within_1e_7() -> None:
    x = np.concatenate([np.linspace(-6, 6, 1201), [0.0, -0.0, 1e-300, np.inf, -np.inf]])
    got = _UNARY[spec.SIMD_ERF.mnemonic](x)
    expected = np.array([math.erf(v) for v in x])
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)
    assert _UNARY[spec.SIMD_ERF.mnemonic](np.zeros(0)).shape == (0,)


def test_sqrt_is_the_ieee_square_root() -> None:
    x = np.random.default_rng(0).uniform(0, 100, 64)
    assert np.array_equal(_UNARY[spec.SIMD_SQRT.mnemonic](x), np.sqrt(x))


# -- every operand value the table allows runs or traps at its core and pc

TARGET = Target.from_dict(target_dict(cores=2, acam=True))  # 8x8 crossbars, 16x8 CAMs
CAM = CamImage(np.zeros((16, 8)), np.full((16, 8), 4), np.ones((16, 4)), trees=1)
CODE = CamCode(
    np.array([0]), np.array([0]), np.array([8]), np.array([0, 1]), np.array([0.5]), np.array([0])
)
WORDS = TARGET.core.buffer_words
# register values: addresses at both ends of the buffer and memory, and far outside them
REGISTER_VALUES = (0, 1, 7, WORDS - 1, WORDS, TARGET.chip.global_memory_words - 1, -1,
                   -(1 << 47), (1 << 47) - 1)  # fmt: skip


def operand_choices(row: spec.InstrSpec, length: int) -> list[list[int]]:
    """Per field: its extremes and a middle value, cut to what this target and program have."""
    have = {
        spec.OperandKind.REG: TARGET.core.registers,
        spec.OperandKind.ARRAY: TARGET.core.arrays,
        spec.OperandKind.CORE: TARGET.chip.cores,
        spec.OperandKind.CAM: TARGET.acam.arrays if TARGET.acam else 0,
        spec.OperandKind.IMAGE: 1,
        spec.OperandKind.CAM_IMAGE: 1,
        spec.OperandKind.CAM_CODE: 1,
        spec.OperandKind.TARGET: length + 1,
    }
    choices = []
    for field in row.fields:
        lo, hi = operand_bounds(field)
        if field.kind in have:
            hi = min(hi, have[field.kind] - 1)
        choices.append(sorted({lo, hi, (lo + hi) // 2, min(hi, lo + 1)}))
    return choices


def run_one(row: spec.InstrSpec, operands: tuple[int, ...], registers: list[int]) -> None:
    """Core 0: set every register, jump to the instruction (so the loader cannot follow the
    registers and the simulator's own checks run), run it, halt; core 1 sends 8 words to core
    0 with tag 0 for a receive. Ends in a result, a trap naming core 0 and the instruction's
    pc, or a load error naming a section."""
    setup = [make(spec.CTL_SET, r, v) for r, v in enumerate(registers)]
    pc = len(setup) + 1
    code0 = [*setup, make(spec.CTL_JUMP, pc), make(row, *operands), make(spec.CTL_HALT)]
    code1 = [make(spec.CTL_SET, 0, 0), make(spec.NOC_SEND, 0, 0, 0, 0, 8), make(spec.CTL_HALT)]
    program = Program(
        target=TARGET,
        code=[code0, code1],
        images=[XbarImage(np.full((8, 8), 3))],
        bindings=[Binding(0, a, 0) for a in range(TARGET.core.arrays)],
        outputs=[TensorInfo(name="y", shape=(4,), addr=0)],
        cam_images=[CAM],
        cam_bindings=[Binding(0, 0, 0), Binding(0, 1, 0)],
        cam_codes=[CODE],
    )
    binary = imcc.Binary(program, name="p.imcb")
    for mode in ("functional", "cycle"):
        try:
            simulator = imcc.Simulator(binary, mode=mode, max_cycles=10_000)
        except BinaryFormatError as exc:
            assert isinstance(exc.loc, SectionLoc)
            return
        try:
            simulator.run({})
        except SimulationError as exc:
            assert isinstance(exc.loc, CoreLoc), exc
            # a jump back loops until the budget stops it, wherever the core then is
            if "budget exhausted" not in exc.message:
                assert (exc.loc.core, exc.loc.pc) == (0, pc), exc


@pytest.mark.parametrize("row", spec.TABLE, ids=lambda row: row.mnemonic)
def test_every_legal_operand_value_runs_or_traps_at_its_pc(row: spec.InstrSpec) -> None:
    rng = random.Random(row.opcode)
    choices = operand_choices(row, TARGET.core.registers + 2)
    combos = [tuple(c[0] for c in choices), tuple(c[-1] for c in choices)]
    combos += [tuple(rng.choice(c) for c in choices) for _ in range(6)]
    for operands in combos:
        registers = [rng.choice(REGISTER_VALUES) for _ in range(TARGET.core.registers)]
        run_one(row, operands, registers)
        run_one(row, operands, [0] * TARGET.core.registers)


def test_an_add_past_the_64_bit_register_traps() -> None:
    program = Program(
        target=TARGET,
        code=[[make(spec.CTL_SET, 1, 1), make(spec.CTL_ADD, 2, 1, 5), make(spec.CTL_HALT)]],
        outputs=[TensorInfo(name="y", shape=(1,), addr=0)],
    )
    machine = Machine(program, make_device("ideal"), seed=0)
    core = machine.cores[0]
    core.regs[1] = (1 << 63) - 3
    core.pc = 1
    with pytest.raises(SimulationError) as info:
        SEMANTICS[spec.CTL_ADD.mnemonic](machine, core, program.code[0][1])
    assert str(info.value) == (
        f"core 0 pc 1 (ctl.add): r1 + 5 = {(1 << 63) + 2} overflows the 64-bit register r2"
    )
    core.regs[1] = (1 << 63) - 6
    SEMANTICS[spec.CTL_ADD.mnemonic](machine, core, program.code[0][1])
    assert int(core.regs[2]) == (1 << 63) - 1


def naive_copy2d(buffer: np.ndarray, d: int, a: int, n: int, m: int, strides: tuple) -> None:
    """The definition, written out: every read, then every write in row-major order."""
    reads = [buffer[a + j * strides[1] + i * strides[0]].copy() for j in range(m) for i in range(n)]
    for k, (j, i) in enumerate((j, i) for j in range(m) for i in range(n)):
        buffer[d + j * strides[2] + i] = reads[k]


@pytest.mark.parametrize(
    ("n", "m", "strides"),
    [(3, 4, (1, 3, 3)), (3, 4, (1, 3, 0)), (5, 3, (2, 1, 2)), (4, 4, (0, 0, 1)), (1, 1, (0, 0, 0)),
     (2, 5, (3, 1, 7)), (6, 3, (1, 2, 4)), (3, 1, (2, 0, 0))],
)  # fmt: skip
def test_copy2d_with_overlapping_rows_keeps_the_last_write(n: int, m: int, strides: tuple) -> None:
    rng = np.random.default_rng(n * 100 + m)
    program = Program(target=TARGET, code=[[make(spec.SIMD_COPY2D, 1, 2, 3, n, m)]])
    machine = Machine(program, make_device("ideal"), seed=0)
    core = machine.cores[0]
    core.buffer = rng.normal(size=(64, 2))
    core.regs[1:6] = (20, 5, *strides)
    expected = core.buffer.copy()
    naive_copy2d(expected, 20, 5, n, m, strides)
    SEMANTICS[spec.SIMD_COPY2D.mnemonic](machine, core, program.code[0][0])
    assert np.array_equal(core.buffer, expected)


def test_a_huge_copy2d_onto_itself_needs_no_huge_memory() -> None:
    """n * m = 2^40 reads onto n destination words (outer destination stride 0): the old
    index arrays of n * m entries were a MemoryError; only the last row's writes count."""
    n = m = spec.MAX_COUNT
    program = Program(target=TARGET, code=[[make(spec.SIMD_COPY2D, 1, 2, 3, n, m)]])
    machine = Machine(program, make_device("ideal"), seed=0)
    core = machine.cores[0]
    core.buffer = np.arange(2.0 * n + 8)[:, None]
    core.regs[1:6] = (n + 8, 0, 1, 0, 0)  # d, a, inner 1, outer source 0, outer destination 0
    SEMANTICS[spec.SIMD_COPY2D.mnemonic](machine, core, program.code[0][0])
    assert np.array_equal(core.buffer[n + 8 :, 0], np.arange(float(n)))
    assert np.array_equal(core.buffer[: n + 8, 0], np.arange(n + 8.0))
