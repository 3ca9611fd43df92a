"""Loops in the emitted code (compiler/codegen/loops.py): the code a core runs, followed
through its control instructions, is exactly the straight-line records it was made from."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnx
import pytest

import imcc
from imcc.compiler.codegen.loops import Record, assemble, roll
from imcc.isa import spec
from imcc.isa.encoding import Instr
from imcc.runtime.simulator import Simulator
from tests.compiler.codegen.graphs import executed

REGISTERS = 32
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def trace(code: list[Instr]) -> list[tuple[str, tuple[int, ...], tuple[int, ...] | None]]:
    """Every instruction but the control as it runs, its register operands replaced by the
    values they hold (a strided copy's stride operand by its three strides)."""
    out = []
    for _, instr, regs in executed(code, REGISTERS):
        row = instr.spec
        if row.unit is spec.Unit.CTL:
            continue
        values = []
        strides = None
        for field, value in zip(row.fields, instr.operands, strict=True):
            if row.strided and field.name == spec.STRIDE_FIELD:
                strides = tuple(regs[value : value + spec.STRIDE_REGS])
                values.append(0)
            elif field.kind is spec.OperandKind.REG:
                values.append(regs[value])
            else:
                values.append(value)
        out.append((row.mnemonic, tuple(values), strides))
    return out


def straight(records: list[Record]) -> list[tuple[str, tuple[int, ...], tuple[int, ...] | None]]:
    return [(r.row.mnemonic, r.operands, r.strides) for r in records]


def add(d: int, a: int, b: int, n: int = 4) -> Record:
    return Record(spec.SIMD_ADD, (d, a, b, n), None, "node")


def copy2d(dst: int, src: int, n: int, m: int, strides: tuple[int, int, int]) -> Record:
    return Record(spec.SIMD_COPY2D, (dst, src, 0, n, m), strides, "node")


def loops_in(code: list[Instr]) -> int:
    return sum(1 for instr in code if instr.spec is spec.CTL_LOOP)


def test_a_run_with_moving_addresses_is_one_loop() -> None:
    records = [add(100 + 4 * k, 500 + 4 * k, 900) for k in range(50)]
    code, nodes = assemble(records, REGISTERS)
    assert trace(code) == straight(records)
    assert loops_in(code) == 1
    # sets of d, a and b; the add; two steps; the counted jump back (its counter is 0)
    assert len(code) == 7
    assert set(nodes) == {"node"}


def test_windows_roll_into_a_nest() -> None:
    """7 x 7 window copies: the destination moves 13 a copy, the source 1 along a row and 38
    from row to row; written out they are 49 copies and 98 address sets."""
    records = [
        copy2d(801 + 13 * (7 * i + j), 2 + 38 * i + j, 13, 3, (2, 266, 637))
        for i in range(7)
        for j in range(7)
    ]
    code, _ = assemble(records, REGISTERS)
    assert trace(code) == straight(records)
    assert loops_in(code) == 2
    assert len(code) < 20


def test_loops_take_no_more_registers_than_there_are() -> None:
    """A body touching 40 fixed addresses needs 40 registers: it stays written out."""
    body = [add(1000 + k, 2000 + k, 3000 + k) for k in range(40)]
    records = body * 3
    code, _ = assemble(records, REGISTERS)
    assert trace(code) == straight(records)
    used = {
        instr.operands[i]
        for instr in code
        for i, f in enumerate(instr.spec.fields)
        if f.kind is spec.OperandKind.REG
    }
    assert max(used) < REGISTERS


def test_a_body_with_more_fixed_addresses_than_registers_still_rolls() -> None:
    """A block loop as a convolution's: 30 adds into one moving output, each reading its
    own fixed partial sum at scattered addresses (30 of them, more than the address
    registers), 12 blocks. The loop holds only the moving output; the fixed addresses are
    set where they are used, so the block is written once."""
    partials = random.Random(0).sample(range(100, 4000), 30)
    records = [add(5000 + 64 * block, partial, 5000 + 64 * block) for block in range(12)
               for partial in partials]  # fmt: skip
    code, _ = assemble(records, REGISTERS)
    assert trace(code) == straight(records)
    assert loops_in(code) >= 1
    assert len(code) < 2 * 30 + 10  # once: 30 adds, a set before each, the loop's own


def test_sibling_loops_share_registers() -> None:
    """Twenty inner loops in one block body, each moving three addresses of its own that do
    not move from block to block: each inner loop sets its registers on entry, so the block
    loop needs only the inner loop's three at a time, not sixty."""
    records = [
        add(1000 * s + 4 * j, 1000 * s + 400 + 4 * j, 1000 * s + 800 + 4 * j)
        for block in range(5)
        for s in range(20)
        for j in range(6)
    ]
    code, _ = assemble(records, REGISTERS)
    assert trace(code) == straight(records)
    assert len(code) < 20 * 10 + 10  # the block once, not five times


def test_strides_change_inside_a_loop_body() -> None:
    records = []
    for k in range(10):
        records.append(copy2d(10 * k, 500 + k, 2, 2, (1, 5, 2)))
        records.append(copy2d(200 + 10 * k, 700 + k, 2, 2, (2, 7, 3)))
    code, _ = assemble(records, REGISTERS)
    assert trace(code) == straight(records)
    assert loops_in(code) == 1


def test_addresses_that_do_not_move_by_a_step_are_not_one_loop() -> None:
    """Triangular numbers: any two trips fit a step, no three do."""
    records = [add(k * (k + 1) // 2, 0, 1) for k in range(30)]
    code, _ = assemble(records, REGISTERS)
    assert trace(code) == straight(records)
    trips = [instr.operand("imm") for instr in code if instr.spec is spec.CTL_SET]
    assert loops_in(code) <= len(records) // 2
    assert len(code) <= len(assemble(records, REGISTERS, loops=False)[0])
    assert trips


def test_loops_off_writes_every_instruction_out() -> None:
    records = [add(100 + 4 * k, 500 + 4 * k, 900) for k in range(50)]
    code, _ = assemble(records, REGISTERS, loops=False)
    assert trace(code) == straight(records)
    assert loops_in(code) == 0
    assert roll(records, REGISTERS)  # what would have rolled


@pytest.mark.parametrize("seed", range(40))
def test_random_streams_run_as_written(seed: int) -> None:
    """Patterns repeated with random steps, nested, between records that do not repeat."""
    rng = random.Random(seed)
    records: list[Record] = []
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.3:
            records.append(add(rng.randrange(10_000), rng.randrange(10_000), 7, rng.randint(1, 9)))
            continue
        outer, inner = rng.randint(1, 6), rng.randint(1, 8)
        shape = [rng.randint(1, 9) for _ in range(rng.randint(1, 3))]
        base = [rng.randrange(5_000) for _ in range(3 * len(shape))]
        step_in = [rng.choice((0, 1, 4, -3, 13)) for _ in base]
        step_out = [rng.choice((0, 2, 64, -40)) for _ in base]
        for i in range(outer):
            for j in range(inner):
                for s, n in enumerate(shape):
                    d, a, b = (
                        max(0, base[3 * s + t] + i * step_out[3 * s + t] + j * step_in[3 * s + t])
                        for t in range(3)
                    )
                    records.append(add(d, a, b, n))
    code, _ = assemble(records, rng.choice((8, 12, REGISTERS)))
    assert trace(code) == straight(records)


@pytest.mark.parametrize("target", ["isaac", "edge-rram"])
def test_a_network_computes_the_same_with_and_without_loops(target: str) -> None:
    """LeNet-5, the same binary but for its loops: outputs bit for bit equal in both
    engines, and the code at least twice as small."""
    model = onnx.load(EXAMPLES / "models" / "lenet5_mnist.onnx")
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    rolled = imcc.compile(model, target=target)
    written = imcc.compile(model, target=target, loops=False)
    size = {id(b): sum(len(c) for c in b.program.code) for b in (rolled, written)}
    assert size[id(written)] > 2 * size[id(rolled)]
    for mode in ("functional", "cycle"):
        ours = Simulator(rolled, mode=mode).run({"image": x}).outputs
        theirs = Simulator(written, mode=mode).run({"image": x}).outputs
        for name in theirs:
            np.testing.assert_array_equal(ours[name], theirs[name])
