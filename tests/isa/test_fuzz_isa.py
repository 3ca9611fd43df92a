"""Fuzzed assembly text: valid disassembled programs, damaged token by token and byte by byte
(non-UTF-8 bytes included), must assemble or end in an AsmError at file:line:col.

What assembles must also survive the rest of the path: the container writes it and reads it
back to the same bytes, the disassembly reassembles to the same program, and the loader and a
simulation with a bounded cycle budget end in a result or a located Diagnostic.
`IMCC_FUZZ_SCALE=N` runs N times as many cases.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import imcc
from imcc.compiler.target import load_target
from imcc.isa import container, spec
from imcc.isa.assembler import assemble, decode_source
from imcc.isa.diagnostics import AsmError, Diagnostic, SourceLoc
from imcc.isa.disassembler import disassemble
from tests.conftest import mlp_onnx
from tests.fuzzing import Tally, cases
from tests.isa.test_assembler import CANONICAL, TARGET, loader_for
from tests.isa.test_container import small_program

MAX_CYCLES = 5_000
_TOKEN_RE = re.compile(r'"(?:[^"\\\n]|\\.)*"|[A-Za-z_.][\w.\-]*|[-+]?\d[\w.]*|\s+|.', re.S)
# tokens worth putting anywhere: numbers at and past every field's limit, operands of every
# kind, directives, punctuation and the characters the grammar treats specially
VOCABULARY = [
    *(row.mnemonic for row in spec.TABLE),
    ".target", ".core", ".node", ".input", ".output", ".image", ".bind", ".cam", ".cambind",
    ".camcode", ".const", ".adc", ".meta", ".bogus", "r0", "r31", "r32", "a0", "a63", "a64",
    "c4095", "c4096", "m0", "m9", "0", "1", "-1", "32", "33", "63", "64", "255", "4095", "65535",
    "1048575", "1048576", "16777215", "16777216", str(1 << 47), str(1 << 64), "9" * 5000,
    "0x" + "f" * 20, "1e400", "-0.0", "nan", "inf", "nan(0x7ff0000000000001)", "nan(0x1)", '"s"',
    '"\\ud800"', '"', "{", "}", "[", "]", ":", ",", "-", ";", "#", "\n", "\r", "\t", "\x00",
    "\u2028", "\ufeff", "é", "L0", "L9", "label:", '{"name": "x", "shape": [1], "addr": 0}',
    "{" * 50, "[" * 3000, '"AAA="', '"' + "A" * 4000 + '"',
]  # fmt: skip
BAD_BYTES = [b"\xff", b"\xfe", b"\x80", b"\xc3", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
             b"\xe2\x82", b"\x00", b"\r", b"\n", b'"', b"\xef\xbb\xbf"]  # fmt: skip


@pytest.fixture(scope="module")
def sources() -> list[tuple[str, Callable[[str], Any]]]:
    """(valid text, target loader): a hand-written program with every directive, a small
    program with every section (its target as JSON) and a compiled MLP's disassembly."""
    mlp = imcc.compile(mlp_onnx([6, 5, 3], ["relu", "none"]))
    return [
        (CANONICAL, loader_for(TARGET)),
        (disassemble(small_program()), loader_for()),
        (disassemble(mlp.program, load_target), load_target),
    ]


def mutate_tokens(rng: random.Random, text: str) -> bytes:
    tokens = _TOKEN_RE.findall(text)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(tokens))
        choice = rng.randrange(6)
        if choice == 0:
            del tokens[at]
        elif choice == 1:
            tokens.insert(at, rng.choice(tokens))
        elif choice == 2:
            tokens[at] = rng.choice(VOCABULARY)
        elif choice == 3:
            tokens.insert(at, rng.choice(VOCABULARY))
        elif choice == 4:
            other = rng.randrange(len(tokens))
            tokens[at], tokens[other] = tokens[other], tokens[at]
        elif tokens[at][:1].isdigit() or tokens[at][:1] == "-":  # a number, nudged
            try:
                value = int(tokens[at], 0)
            except ValueError:
                continue
            tokens[at] = str(rng.choice([value + 1, value - 1, 2 * value, -value, value << 20]))
    return "".join(tokens).encode("utf-8", "surrogatepass")


def mutate_bytes(rng: random.Random, text: str) -> bytes:
    data = bytearray(text.encode())
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data) + 1)
        choice = rng.randrange(4)
        if choice == 0:
            data[at:at] = rng.choice(BAD_BYTES)
        elif choice == 1 and at < len(data):
            data[at] = rng.randrange(256)
        elif choice == 2:
            del data[at : at + rng.randint(1, 12)]
        else:
            data[at:at] = bytes(rng.randrange(32, 127) for _ in range(rng.randint(1, 4)))
    return bytes(data)


def assemble_bytes(data: bytes, loader: Callable[[str], Any], tally: Tally, case: str) -> None:
    """Assemble; what assembles must write, read back and reassemble the same, then load and
    run (bounded) to a result or a located Diagnostic. Any mismatch is a finding."""
    try:
        program = assemble(decode_source(data, "f.s"), "f.s", loader)
    except AsmError as exc:
        if not isinstance(exc.loc, SourceLoc) or exc.loc.line < 1 or exc.loc.col < 1:
            tally.finding(case, f"AsmError without a file:line:col: {exc!r}")
        str(exc)  # the message and its caret render
        raise
    binary = imcc.Binary(program, name="f.imcb")  # a BinaryFormatError is a clean end
    again = container.from_bytes(binary.data, "f.imcb")
    if container.to_bytes(again) != binary.data:
        tally.finding(case, "the container does not read back what it wrote")
    text = disassemble(again, loader)
    if container.to_bytes(assemble(text, "d.s", loader)) != binary.data:
        tally.finding(case, "the disassembly does not reassemble to the same binary")
    simulator = imcc.Simulator(binary, mode="functional", max_cycles=MAX_CYCLES)
    shapes = {t.name: np.zeros(t.shape) for t in program.inputs}
    simulator.run(shapes)


MUTATIONS = {"tokens": (mutate_tokens, 900), "bytes": (mutate_bytes, 900)}


@pytest.mark.parametrize("kind", MUTATIONS)
def test_damaged_assembly_assembles_or_ends_in_a_located_error(
    kind: str, sources: list[tuple[str, Callable[[str], Any]]]
) -> None:
    mutate, default = MUTATIONS[kind]
    rng = random.Random(f"asm-{kind}")
    tally = Tally(f"asm-{kind}")
    for trial in range(cases(default)):
        text, loader = sources[trial % len(sources)]
        data = mutate(rng, text)
        case = f"{kind} #{trial} on source {trial % len(sources)}: {data[:60]!r}"
        tally.run(case, lambda d=data, t=loader, c=case: assemble_bytes(d, t, tally, c))
    tally.assert_clean()
    assert tally.outcomes["diagnostic"] > cases(default) // 4  # the damage is seen, cleanly


def test_the_undamaged_sources_assemble(sources: list[tuple[str, Callable[[str], Any]]]) -> None:
    tally = Tally("asm-sources")
    for i, (text, loader) in enumerate(sources):
        try:
            assemble_bytes(text.encode(), loader, tally, f"source {i}")
        except Diagnostic as exc:  # the simulation may trap (the hand-written code loops)
            assert exc.loc is not None
    tally.assert_clean()
