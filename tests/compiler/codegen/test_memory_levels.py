"""Values too large for a core's buffer rest in a tile's shared memory or the global memory
(compiler/codegen/emitter.py `Emitter.rest`); convolutions read their input through a line
buffer, elementwise ops, pools and crossbar layers take resting values in parts. Each
mechanism on a small program whose figures follow from the code: results exact against the
IR interpreter (ideal device, lossless ADC), traffic counted from the emitted instructions."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import helper

import imcc
from imcc.compiler.ir.interpreter import evaluate
from imcc.isa import spec
from imcc.isa.diagnostics import CompileError, OptionLoc
from imcc.isa.target import Target, TileSpec
from tests.compiler.codegen.graphs import (
    EXACT_RTOL,
    compile_onnx,
    executed,
    onnx_model,
    rng,
    simulate,
)
from tests.conftest import big_target

TILE = TileSpec(
    cores=4, memory_words=16384, memory_cycles=2, memory_words_per_cycle=8, memory_pj_per_word=1.5
)


def small(buffer_words: int, tile: TileSpec | None = None, cores: int = 8) -> Target:
    t = big_target(cores=cores, arrays=8)
    return dataclasses.replace(
        t, core=dataclasses.replace(t.core, buffer_words=buffer_words), tile=tile
    )


def conv_net(channels: int = 4, size: int = 16) -> tuple[onnx.ModelProto, np.ndarray]:
    """conv 3x3 (pad 1) -> relu -> conv 3x3 (pad 1) -> + the relu (a residual) -> max pool 2
    -> flatten -> gemm 10."""
    g = rng(3)
    c = channels
    inits = {
        "w1": g.normal(size=(c, 3, 3, 3)).astype(np.float32),
        "b1": g.normal(size=c).astype(np.float32),
        "w2": g.normal(size=(c, c, 3, 3)).astype(np.float32),
        "b2": g.normal(size=c).astype(np.float32),
        "f": g.normal(size=(c * (size // 2) ** 2, 10)).astype(np.float32),
        "fb": g.normal(size=10).astype(np.float32),
    }
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        node("Relu", ["c1"], ["r1"]),
        node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        node("Add", ["c2", "r1"], ["a"]),
        node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Flatten", ["p"], ["flat"]),
        node("Gemm", ["flat", "f", "fb"], ["y"]),
    ]
    model = onnx_model(nodes, {"x": ["N", 3, size, size]}, {"y": ["N", 10]}, inits)
    return model, g.normal(size=(2, 3, size, size)).astype(np.float32)


def exact(binary: imcc.Binary, graph, x: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    got = simulate(binary, {"x": x})["y"]
    want = evaluate(graph, {"x": x.astype(np.float64)})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=EXACT_RTOL * np.max(np.abs(want)))


def moved(binary: imcc.Binary, row: spec.InstrSpec, lo: int = 0, hi: int = 1 << 62) -> int:
    """Words the code moves with `row` (a load or store) from or to addresses in [lo, hi) of
    its memory operand, as it runs (registers and loops followed)."""
    memory = next(a.field for a in row.accesses if a.space is not spec.Space.BUFFER)
    total = 0
    for code in binary.program.code:
        for _, instr, regs in executed(code):
            if instr.spec is row and lo <= regs[instr.operand(memory)] < hi:
                total += instr.operand("n")
    return total


def test_a_convolution_reads_each_input_once_through_its_line_buffer() -> None:
    """The first conv's input is the model input, in global memory; with a 1,024-word buffer
    a block is a few output rows, and neighbouring blocks share kh - 1 = 2 input rows, which
    the line buffer keeps. Every input word is loaded exactly twice: once for the map's scale
    (max |x|, in chunks) and once into the line buffer; the windows' kh x kw = 9 copies of it
    come from the buffer. (Copying windows from memory would load it ~9 times.)"""
    model, x = conv_net()
    binary, graph = compile_onnx(model, target=small(1024), weight_bits=16, input_bits=16)
    exact(binary, graph, x)
    (info,) = binary.program.inputs
    map_words = int(np.prod(info.shape))
    assert moved(binary, spec.MEM_LOAD, info.addr, info.addr + info.size) == 2 * map_words
    layers = {layer.node: layer for layer in imcc.Simulator(binary).run(x).report.layers}
    conv = next(node for node in layers if "Conv" in node)
    # several blocks per map: each block's windows are one strided copy per kernel row
    windows = dict(layers[conv].counts)["instructions"]
    assert windows > 4 * 3 * 9  # more than one block of the 3 x 9 kernel rows per core


@pytest.mark.parametrize("tile", [None, TILE], ids=["global", "tile"])
def test_maps_too_large_for_a_buffer_rest_in_memory_with_priced_traffic(
    tile: TileSpec | None,
) -> None:
    """With 1,024-word buffers every 4 x 16 x 16 map (1,024 words) rests in memory: in the
    tile's shared memory when its readers share a tile, else in global memory. The results
    stay exact; the run's traffic and energy at that level are exactly the words the code
    moves there times the word size and the level's energy per word, and its peak occupancy
    is within the level's capacity."""
    model, x = conv_net()
    target = small(1024, tile)
    binary, graph = compile_onnx(model, target=target, weight_bits=16, input_bits=16)
    exact(binary, graph, x)
    report = imcc.Simulator(binary, mode="cycle").run(x[:1]).report
    if tile is None:
        assert moved(binary, spec.TILE_LOAD) == 0
        spilled = moved(binary, spec.MEM_STORE)
        assert spilled >= 1024  # at least one map stored to global memory
    else:
        words = moved(binary, spec.TILE_LOAD) + moved(binary, spec.TILE_STORE)
        assert moved(binary, spec.TILE_STORE) >= 1024
        assert report.traffic["tile"] == words * target.core.word_bytes
        assert report.energy_breakdown_pj["tile_memory"] == pytest.approx(
            words * tile.memory_pj_per_word
        )
        peak, capacity = report.memory["tile"]
        assert 1024 <= peak <= capacity == tile.memory_words
    peak, capacity = report.memory["buffer"]
    assert peak <= capacity == 1024


def test_cores_that_share_memory_are_ordered_by_tokens() -> None:
    """A map one core stores and others load needs no data message, so the emitter sends a
    one-word token from the writer to each reader before the reader's first load: both
    simulators agree and the results are exact, which they would not be if a reader could
    run ahead of the store."""
    model, x = conv_net(channels=16)
    binary, graph = compile_onnx(model, target=small(2048, cores=16), weight_bits=16,
                                 input_bits=16)  # fmt: skip
    exact(binary, graph, x)
    cycle = imcc.Simulator(binary, mode="cycle").run(x).outputs["y"]
    np.testing.assert_array_equal(cycle, simulate(binary, {"x": x})["y"])
    tokens = sum(
        1
        for code in binary.program.code
        for i in code
        if i.spec is spec.NOC_SEND and i.operand("n") == 1
    )
    assert tokens > 0


def test_a_model_that_cannot_fit_names_the_layer_the_level_and_the_bytes() -> None:
    """Two 1,024-word maps rest in global memory at once (the residual's operands) beside
    789 words of constants and I/O: 2,000 words cannot hold them."""
    model, _ = conv_net()
    target = small(1024)
    target = dataclasses.replace(
        target, chip=dataclasses.replace(target.chip, global_memory_words=2000)
    )
    with pytest.raises(CompileError) as caught:
        compile_onnx(model, target=target, weight_bits=16, input_bits=16)
    message = str(caught.value)
    assert "node '#2 Conv'" in message
    assert "2,000-word global memory cannot hold 1,024 more words = 4,096 bytes" in message


def test_replicas_would_share_resting_values_so_throughput_refuses() -> None:
    """schedule = throughput copies the code onto other cores with the same memory
    addresses; values resting in tile or global memory would collide, so it is an error
    naming the option, not a silent race."""
    model, _ = conv_net()
    with pytest.raises(CompileError, match=r"schedule = throughput replicates.*rest") as info:
        compile_onnx(model, target=small(1024), weight_bits=16, input_bits=16,
                     schedule="throughput")  # fmt: skip
    assert info.value.loc == OptionLoc("schedule")


@pytest.mark.parametrize(
    "attrs",
    [
        {"pads": [1, 1, 1, 1]},
        {"pads": [2, 1, 0, 2], "strides": [2, 2]},
        {"pads": [2, 2, 2, 2], "dilations": [2, 2]},
    ],
    ids=["same", "strided", "dilated"],
)
def test_a_line_buffer_of_part_of_a_row_when_a_row_is_too_wide(attrs: dict[str, list[int]]) -> None:
    """A 4 x 6 x 160 map on 1,024-word buffers: one padded row of its 4 channels' window rows
    (4 x 3 x 162 words) is more than half a buffer, so the line buffer covers only the
    columns of a block, which goes down its column of blocks first. Exact, with the map loaded
    in row segments shorter than a row."""
    g = rng(7)
    w = g.normal(size=(4, 4, 3, 3)).astype(np.float32)
    b = g.normal(size=4).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)]
    model = onnx_model(nodes, {"x": ["N", 4, 6, 160]}, {"y": None}, {"w": w, "b": b})
    x = g.normal(size=(2, 4, 6, 160)).astype(np.float32)
    binary, graph = compile_onnx(model, target=small(1024), weight_bits=16, input_bits=16)
    exact(binary, graph, x)
    (info,) = binary.program.inputs
    code = binary.program.code[0]
    regs: dict[int, int] = {}
    segments = []
    for instr in code:
        if instr.spec is spec.CTL_SET:
            regs[instr.operand("d")] = instr.operand("imm")
        elif instr.spec is spec.MEM_LOAD and regs[instr.operand("a")] < info.addr + info.size:
            segments.append(instr.operand("n"))
    # the line buffer loads row segments, never a whole row (longer loads are the scale's
    # chunks of max |x|)
    assert 160 not in segments and min(segments) < 160


def test_a_crossbar_layer_whose_input_rests_loads_only_its_rows() -> None:
    """With 8 channels the pooled map (8 x 8 x 8 = 512 words) is more than a quarter of a
    1,024-word buffer, so it rests in memory and the Gemm runs as a 1x1 convolution over it:
    each core that holds the Gemm's tiles loads only the rows of x its tiles read. Exact."""
    model, x = conv_net(channels=8)
    binary, graph = compile_onnx(model, target=small(1024), weight_bits=16, input_bits=16)
    exact(binary, graph, x)
    gemm = {core for (core, _), node in binary.program.debug.items() if "Gemm" in node}
    loads = [
        i.operand("n")
        for core in gemm
        for pc, i in enumerate(binary.program.code[core])
        if i.spec is spec.MEM_LOAD and "Gemm" in binary.program.debug.get((core, pc), "")
    ]
    assert 512 not in loads  # never the whole input row on one core
    assert sum(n for n in loads if n > 16) >= 512  # its rows, from memory
