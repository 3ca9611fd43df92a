"""Peak occupancy per memory level in the report (issue 13): the compiler records the most
words its allocators held (the fullest core's buffer, the global memory) and the report sets
them beside the target's capacities. Checked independently: the same program runs unchanged
on a chip whose memories are exactly that large."""

from __future__ import annotations

import dataclasses

import numpy as np

import imcc
from imcc.compiler.target import load_target
from imcc.isa.container import Binary
from imcc.isa.program import Program
from tests.conftest import mlp_onnx
from tests.runtime.programs import with_io


def shrunk(program: Program, buffer_words: int, global_words: int) -> Binary:
    target = program.target
    core = dataclasses.replace(target.core, buffer_words=buffer_words)
    chip = dataclasses.replace(target.chip, global_memory_words=global_words)
    small = dataclasses.replace(target, core=core, chip=chip)
    return Binary(dataclasses.replace(program, target=small), name="small.imcb")


def test_the_peaks_are_in_the_report_and_bound_what_the_program_touches() -> None:
    binary = imcc.compile(mlp_onnx([48, 32, 10], ["relu", "none"]), "edge-rram", spread=True)
    x = np.random.default_rng(0).normal(size=(4, 48))
    report = imcc.Simulator(binary, mode="cycle").run(x).report
    target = load_target("edge-rram")
    buffer_peak, buffer_capacity = report.memory["buffer"]
    global_peak, global_capacity = report.memory["global"]
    assert buffer_capacity == target.core.buffer_words
    assert global_capacity == target.chip.global_memory_words
    assert 48 <= buffer_peak <= buffer_capacity and 48 + 10 <= global_peak <= global_capacity
    assert f"buffer {buffer_peak:,} of {buffer_capacity:,} words" in report.table()
    # a chip with exactly these memories runs the program to the same outputs
    expected = imcc.Simulator(binary).run(x).outputs["y"]
    tight = shrunk(binary.program, buffer_peak, global_peak)
    assert np.array_equal(imcc.Simulator(tight).run(x).outputs["y"], expected)


def test_a_hand_written_binary_reports_no_peaks() -> None:
    report = imcc.Simulator(with_io(".core 0\nctl.halt\n")).run(np.zeros(4)).report
    assert report.memory == {}
    assert "memory peak" not in report.table()
