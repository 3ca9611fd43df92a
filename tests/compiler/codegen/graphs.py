"""Shared builders for the code generation tests: tiny ONNX graphs, onnxruntime as the
reference, and compile + functional simulation of the same model.

Each test module in this folder covers one lowering module of compiler/codegen/ and compares
what the functional simulator computes with an independent reference.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import imcc
from imcc.compiler.driver import compile_graph
from imcc.compiler.ir.core import Graph
from imcc.frontends.onnx import import_onnx
from imcc.isa import spec
from imcc.isa.encoding import Instr

TARGET = "edge-rram"
OPSET = 17  # LayerNormalization needs 17; every other op here exists at 13 or earlier

# The vector unit computes in float64 and the outputs are float32, while onnxruntime computes
# in float32: one float32 rounding of the result (2^-24 ~ 6e-8 relative) plus onnxruntime's
# own float32 error, a few ulp for its exp / tanh / erf kernels and for sums of a few terms.
# 1e-6 relative is ~8 float32 ulp; SIMD_ATOL covers results that cancel to near zero
# (x - mean, sigmoid far in its tail), where a relative bound means nothing.
SIMD_RTOL = 1e-6
SIMD_ATOL = 1e-6
# Against onnxruntime: one scale for the whole input map (scale_over "map") and per output
# channel for the weights, 8 bits each. Each product is off by at most
# (|x| s_w + |w| s_x) / 2 + s_x s_w / 4 with s = max / 127, so over a window of K = C*kh*kw
# terms the error is at most ~K/127 * max|x| * max|w| (every error of one sign);
# with errors of random sign it grows like sqrt(K) instead, and the outputs here are also
# ~sqrt(K) max|x| max|w|: ~1/127 of their magnitude. 0.1 is ~10x that; the errors seen are
# 8e-3 to 1e-2 of the largest output.
CONV_REL_TOL = 0.1
# Against the interpreter: both compute y_int * s_x * s_w + b in float64 from the same exact
# integer product; the simulator's output is then rounded to float32 (2^-24 relative), so
# 1e-6 of the output's magnitude is ~16 float32 ulp of it.
EXACT_RTOL = 1e-6

Shape = Sequence[int | str]


def onnx_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Mapping[str, Shape],
    outputs: Mapping[str, Shape | None],
    initializers: Mapping[str, np.ndarray] | None = None,
    *,
    int_outputs: Sequence[str] = (),
    opset: int = OPSET,
) -> onnx.ModelProto:
    """A checked ONNX model of `nodes`: float32 inputs of the given shapes, float32 outputs
    (int64 for the names in `int_outputs`; a None shape leaves it to shape inference)."""
    graph = helper.make_graph(
        list(nodes),
        "codegen_test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs.items()],
        [
            helper.make_tensor_value_info(
                name,
                TensorProto.INT64 if name in int_outputs else TensorProto.FLOAT,
                None if shape is None else list(shape),
            )
            for name, shape in outputs.items()
        ],
        [numpy_helper.from_array(np.asarray(a), name) for name, a in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if any(shape is None for shape in outputs.values()):  # ONNX's shape inference fills them
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def reference(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime's outputs by name, float32 inputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in feeds.items()}
    return dict(zip(names, session.run(names, arrays), strict=True))


def simulate(binary: imcc.Binary, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The functional simulator's outputs by name (ideal device: the target's own)."""
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in feeds.items()}
    return dict(imcc.Simulator(binary, mode="functional").run(arrays).outputs)


def compile_onnx(
    model: onnx.ModelProto, target: str = TARGET, **options: object
) -> tuple[imcc.Binary, Graph]:
    """The binary and the compiled graph (after emit), for the IR interpreter's reference."""
    result = compile_graph(import_onnx(model), target, **options)
    return imcc.Binary(result.program), result.graph


def assert_matches_onnxruntime(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    *,
    target: str = TARGET,
    rtol: float = SIMD_RTOL,
    atol: float = SIMD_ATOL,
    **options: object,
) -> imcc.Binary:
    """`model` compiled by imcc.compile for `target` and simulated: every output equals
    onnxruntime's within the tolerances (the SIMD ones by default), with the same shape and
    dtype kind. Returns the binary, for checks on its code."""
    binary = imcc.compile(model, target, **options)
    got = simulate(binary, feeds)
    expected = reference(model, feeds)
    assert set(got) == set(expected)
    for name, want in expected.items():
        assert got[name].shape == want.shape, name
        assert got[name].dtype.kind == want.dtype.kind, name
        np.testing.assert_allclose(got[name], want, rtol=rtol, atol=atol, err_msg=name)
    return binary


def executed(code: Sequence[Instr], registers: int = 32) -> Iterator[tuple[int, Instr, list[int]]]:
    """Each instruction of one core's code as it runs (pc, instruction, the registers as it
    runs), its control followed: ctl.set, ctl.add, ctl.loop, jumps and branches, an
    independent reading of the ISA's scalar part (registers never depend on data)."""
    regs = [0] * registers
    compare = {spec.CTL_BRANCH_EQ: int.__eq__, spec.CTL_BRANCH_NE: int.__ne__,
               spec.CTL_BRANCH_LT: int.__lt__}  # fmt: skip
    pc, steps = 0, 0
    while pc < len(code):
        steps += 1
        assert steps < 10_000_000, "the code does not halt"
        instr = code[pc]
        row = instr.spec
        yield pc, instr, regs
        pc += 1
        if row is spec.CTL_HALT:
            return
        if row is spec.CTL_SET:
            regs[instr.operand("d")] = instr.operand("imm")
        elif row is spec.CTL_ADD:
            regs[instr.operand("d")] = regs[instr.operand("a")] + instr.operand("imm")
        elif row is spec.CTL_LOOP:
            counter = instr.operand("c")
            regs[counter] += 1
            if regs[counter] < instr.operand("trips"):
                pc = instr.operand("target")
            else:
                regs[counter] = 0
        elif row is spec.CTL_JUMP or (
            row in compare and compare[row](regs[instr.operand("a")], regs[instr.operand("b")])
        ):
            pc = instr.operand("target")


def mnemonics(binary: imcc.Binary) -> Counter[str]:
    """How often each mnemonic runs on all cores (an instruction in a loop once a trip)."""
    return Counter(instr.mnemonic for code in binary.program.code for _, instr, _ in executed(code))


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)
