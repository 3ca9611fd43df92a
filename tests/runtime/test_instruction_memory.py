"""Instruction memory as a target figure (issue 13): with core.instruction_words set, the
compiler rejects code that does not fit a core's instruction memory, naming the core and the
node, and the loader rejects such a binary, naming the core's code section."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import imcc
from imcc.compiler.target import load_target
from imcc.isa.container import Binary
from imcc.isa.diagnostics import BinaryFormatError, CompileError, SectionLoc, TargetError
from imcc.isa.target import Target
from tests.conftest import mlp_onnx


def with_memory(target: Target, words: int) -> Target:
    core = dataclasses.replace(target.core, instruction_words=words)
    return dataclasses.replace(target, core=core)


MODEL = mlp_onnx([16, 8, 4], ["relu", "none"])


def test_code_that_fits_compiles_and_runs_as_without_the_limit() -> None:
    target = load_target("edge-rram")
    unbounded = imcc.compile(MODEL, target)
    longest = max(len(code) for code in unbounded.program.code)
    exact = imcc.compile(MODEL, with_memory(target, longest))  # fits exactly
    assert exact.program.code == unbounded.program.code
    x = np.random.default_rng(0).normal(size=(3, 16))
    assert np.array_equal(
        imcc.Simulator(exact).run(x).outputs["y"], imcc.Simulator(unbounded).run(x).outputs["y"]
    )


def test_code_that_does_not_fit_is_an_error_naming_core_and_node() -> None:
    target = load_target("edge-rram")
    program = imcc.compile(MODEL, target).program
    longest = max(range(len(program.code)), key=lambda c: len(program.code[c]))
    size = len(program.code[longest])
    with pytest.raises(CompileError) as info:
        imcc.compile(MODEL, with_memory(target, size - 1))
    message = str(info.value)
    assert f"core {longest} needs {size:,} instructions" in message
    assert f"instruction memory holds {size - 1:,}" in message
    # the node named is the one with the most code on that core, counted independently
    nodes = [program.debug.get((longest, pc), "") for pc in range(size)]
    top = max(set(nodes), key=nodes.count)
    assert f"emits {nodes.count(top):,} of them" in message
    loc = info.value.loc  # located at that node
    assert loc is not None and getattr(loc, "node", None) == top


def test_the_loader_rejects_a_binary_whose_code_does_not_fit() -> None:
    target = load_target("edge-rram")
    program = imcc.compile(MODEL, target).program
    size = max(len(code) for code in program.code)
    core = next(c for c, code in enumerate(program.code) if len(code) == size)
    small = dataclasses.replace(program, target=with_memory(target, size - 1))
    with pytest.raises(BinaryFormatError) as info:
        imcc.Simulator(Binary(small, name="small.imcb"))
    assert info.value.loc == SectionLoc("small.imcb", f"CODE[{core}]")
    assert f"core {core} has {size:,} instructions" in str(info.value)


def test_a_negative_instruction_memory_is_a_target_error_naming_it() -> None:
    data = load_target("edge-rram").to_dict()
    data["core"]["instruction_words"] = -1
    with pytest.raises(TargetError, match=r"core\.instruction_words = -1"):
        Target.from_dict(data)


def test_the_figure_is_recorded_only_when_set() -> None:
    target = load_target("edge-rram")
    assert "instruction_words" not in target.to_json()
    assert '"instruction_words":512' in with_memory(target, 512).to_json()
