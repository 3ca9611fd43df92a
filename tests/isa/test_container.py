"""The .imcb container: exact round trips, and a clear error naming the section for every fault.

Also home of the random-Program strategy that the assembler tests reuse.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import os
import stat
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from imcc.isa import container, spec
from imcc.isa.acam import CamCode, CamImage
from imcc.isa.diagnostics import BinaryFormatError, SectionLoc
from imcc.isa.encoding import Instr, encode, make, operand_bounds
from imcc.isa.program import Binding, Program, TensorInfo, XbarImage
from imcc.isa.target import AcamSpec, CostTable, Target

# Hypothesis runs derandomized: the same examples on every machine and every run.
PROPERTY = settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def target_dict(
    name: str = "tiny",
    cores: int = 4,
    registers: int = 32,
    arrays: int = 4,
    clock_ghz: float = 1.0,
    cost: float = 0.5,
    acam: bool = False,
) -> dict[str, Any]:
    """A small, valid target description (what a TOML preset holds); `acam` adds an
    analog-CAM unit of 2 arrays of 16 rows x 8 cells of 4 levels per core."""
    costs: dict[str, int | float] = {
        f.name: (2 if f.type == "int" else cost) for f in dataclasses.fields(CostTable)
    }
    extra: dict[str, Any] = {}
    if acam:
        extra["acam"] = {
            f.name: (2 if f.type == "int" else cost) for f in dataclasses.fields(AcamSpec)
        }
        extra["acam"].update(arrays=2, rows=16, cols=8, levels=4, leaf_words=4, device="ideal")
    return {
        **extra,
        "name": name,
        "description": "a small chip for tests",
        "chip": {
            "cores": cores,
            "mesh_cols": max(1, cores // 2),
            "global_memory_words": 1 << 20,
            "clock_ghz": clock_ghz,
        },
        "core": {
            "registers": registers,
            "buffer_words": 4096,
            "word_bytes": 4,
            "simd_lanes": 8,
            "arrays": arrays,
        },
        "xbar": {
            "rows": 8,
            "cols": 8,
            "cell_bits": 2,
            "dac_bits": 1,
            "adc_bits": 8,
            "cols_per_adc": 4,
            "device": "ideal",
            "sign_encoding": "differential",
            "adc_range": "full-scale",
        },
        "cost": costs,
        "defaults": {"weight_bits": 8},
    }


@st.composite
def targets(draw: st.DrawFn) -> Target:
    data = target_dict(
        name=draw(st.sampled_from(["tiny", "edge-x2", "my chip", "nan", "v1.2"])),
        cores=draw(st.integers(1, 4)),
        registers=draw(st.integers(4, 32)),
        arrays=draw(st.integers(1, 4)),
        clock_ghz=draw(st.floats(0.01, 10.0)),
        cost=draw(st.floats(0.0, 1e6)),
        acam=draw(st.booleans()),
    )
    return Target.from_dict(data)


def float_bits(value: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", value))[0])


# float64 values as bits: ordinary floats, the awkward ones, and NaNs with any sign and payload.
FLOAT_BITS = st.one_of(
    st.floats(allow_nan=False).map(float_bits),
    st.sampled_from([float_bits(v) for v in (-0.0, 0.0, np.inf, -np.inf, np.nan, 5e-324)]),
    st.integers(0, (1 << 64) - 1),
    st.integers(0, (1 << 52) - 1).map(lambda m: 0xFFF0000000000000 | m | 1),
)
NAMES = st.text(min_size=1, max_size=8)
# Quantisation parameters are strict JSON: strings, 64-bit integers, finite numbers.
QUANT_VALUES = st.one_of(
    st.text(max_size=6),
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)


@st.composite
def tensors(draw: st.DrawFn) -> TensorInfo:
    quant = draw(st.dictionaries(st.text(max_size=6), QUANT_VALUES, max_size=3))
    return TensorInfo(
        name=draw(NAMES),
        shape=tuple(draw(st.lists(st.integers(1, 16), max_size=3))),
        addr=draw(st.integers(0, 1 << 40)),
        dtype=draw(st.sampled_from(["float32", "int8", "float64"])),
        batch_axis=draw(st.booleans()),
        # The container stores quant as a JSON object and reads it back sorted.
        quant=tuple(sorted(quant.items())),
    )


# Operand kinds that index a table of the program (only valid when the table is not empty).
TABLE_KINDS = (spec.OperandKind.IMAGE, spec.OperandKind.CAM_IMAGE, spec.OperandKind.CAM_CODE)


def operand_values(
    target: Target, images: int, length: int, cam_images: int = 0, cam_codes: int = 0
) -> dict[spec.OperandKind, Any]:
    """Strategies for each operand kind, within the table's and this program's ranges."""
    limits = {
        spec.OperandKind.REG: target.core.registers,
        spec.OperandKind.ARRAY: target.core.arrays,
        spec.OperandKind.CORE: target.chip.cores,
        spec.OperandKind.IMAGE: images,
        spec.OperandKind.CAM: target.acam.arrays if target.acam else 0,
        spec.OperandKind.CAM_IMAGE: cam_images,
        spec.OperandKind.CAM_CODE: cam_codes,
    }
    out: dict[spec.OperandKind, Any] = {
        kind: st.integers(0, limit - 1) for kind, limit in limits.items() if limit
    }
    out[spec.OperandKind.TARGET] = st.integers(0, length)
    return out


@st.composite
def instructions(
    draw: st.DrawFn,
    target: Target,
    images: int,
    length: int,
    cam_images: int = 0,
    cam_codes: int = 0,
) -> Instr:
    kinds = operand_values(target, images, length, cam_images, cam_codes)
    rows = [
        r
        for r in spec.TABLE
        if all(f.kind in kinds or not (f.kind.prefix or f.kind in TABLE_KINDS) for f in r.fields)
    ]
    row = draw(st.sampled_from(rows))
    values = []
    for field in row.fields:
        lo, hi = operand_bounds(field)
        values.append(draw(kinds.get(field.kind, st.integers(lo, hi))))
    return make(row.mnemonic, *values)


@st.composite
def programs(draw: st.DrawFn) -> Program:
    """A random valid Program: every part of it populated, every operand within range."""
    target = draw(targets())
    images = [
        XbarImage(
            draw(
                hnp.arrays(
                    np.uint16,
                    st.tuples(st.integers(1, 4), st.integers(1, 4)),
                    elements=st.integers(0, 65535),
                )
            )
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    cams = [draw(cam_images()) for _ in range(draw(st.integers(0, 2)))] if target.acam else []
    codes = [draw(cam_codes()) for _ in range(draw(st.integers(0, 2)))]
    code: list[list[Instr]] = []
    debug: dict[tuple[int, int], str] = {}
    for core in range(draw(st.integers(0, target.chip.cores))):
        length = draw(st.integers(0, 6))
        code.append(
            [
                draw(instructions(target, len(images), length, len(cams), len(codes)))
                for _ in range(length)
            ]
        )
        nodes = draw(st.lists(st.one_of(st.none(), NAMES), min_size=length, max_size=length))
        debug.update({(core, pc): node for pc, node in enumerate(nodes) if node is not None})
    pairs = [(c, a) for c in range(target.chip.cores) for a in range(target.core.arrays)]
    bound = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=3)) if images else []
    bindings = [Binding(c, a, draw(st.integers(0, len(images) - 1))) for c, a in bound]
    cam_pairs = [
        (c, a) for c in range(target.chip.cores) for a in range(target.acam.arrays if cams else 0)
    ]
    cam_bound = draw(st.lists(st.sampled_from(cam_pairs), unique=True, max_size=2)) if cams else []
    cam_bindings = [Binding(c, a, draw(st.integers(0, len(cams) - 1))) for c, a in cam_bound]
    constants = [
        (
            draw(st.integers(0, (1 << 64) - 1)),
            np.array(draw(st.lists(FLOAT_BITS, max_size=5)), dtype="<u8").view("<f8"),
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    return Program(
        target=target,
        code=code,
        images=images,
        bindings=bindings,
        constants=constants,
        inputs=draw(st.lists(tensors(), max_size=2)),
        outputs=draw(st.lists(tensors(), max_size=2)),
        debug=debug,
        meta=draw(st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3)),
        adc_ranges={
            index: np.array(
                draw(
                    st.lists(
                        st.floats(1e-3, 1e6, allow_nan=False),
                        min_size=images[index].cols,
                        max_size=images[index].cols,
                    )
                )
            )
            for index in draw(st.sets(st.integers(0, max(len(images) - 1, 0)), max_size=2))
            if index < len(images)
        },
        cam_images=cams,
        cam_bindings=cam_bindings,
        cam_codes=codes,
    )


def floats_from_bits(draw: st.DrawFn, count: int) -> np.ndarray:
    bits = draw(st.lists(FLOAT_BITS, min_size=count, max_size=count))
    return np.array(bits, dtype="<u8").view("<f8")


@st.composite
def cam_images(draw: st.DrawFn) -> CamImage:
    """A CAM image of any shape and bit pattern (the container does not judge values)."""
    rows, cols, width = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(0, 3))
    bounds = hnp.arrays(np.uint16, (rows, cols), elements=st.integers(0, 65535))
    leaves = floats_from_bits(draw, rows * width).reshape(rows, width)
    return CamImage(draw(bounds), draw(bounds), leaves, draw(st.integers(0, (1 << 32) - 1)))


@st.composite
def cam_codes(draw: st.DrawFn) -> CamCode:
    """A coding table of any contents (the loader, not the container, checks its meaning)."""
    counts = draw(st.lists(st.integers(0, 3), max_size=3))
    total = sum(counts)
    return CamCode(
        features=np.array(
            draw(st.lists(st.integers(0, 1 << 40), min_size=len(counts), max_size=len(counts)))
        ),
        nan_low=np.array(
            draw(st.lists(st.integers(0, 1), min_size=len(counts), max_size=len(counts)))
        ),
        cells=np.array(
            draw(st.lists(st.integers(0, 65535), min_size=len(counts), max_size=len(counts)))
        ),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        cuts=floats_from_bits(draw, total),
        inclusive=np.array(draw(st.lists(st.integers(0, 1), min_size=total, max_size=total))),
    )


def same_program(a: Program, b: Program) -> bool:
    """Program.same_as, with constants compared bit for bit.

    same_as compares constants with np.array_equal, for which NaN != NaN and -0.0 == 0.0; the
    bit patterns are what must survive a round trip.
    """

    def bits(p: Program) -> Program:
        constants = [(addr, np.asarray(v, dtype="<f8").view("<u8")) for addr, v in p.constants]
        return dataclasses.replace(p, constants=constants)

    return bits(a).same_as(bits(b))


def small_program() -> Program:
    """A fixed program where every section is non-empty."""
    target = Target.from_dict(target_dict(cores=2, acam=True))
    return Program(
        target=target,
        code=[
            [make("ctl.set", 1, 4), make("xbar.program", 0, 0), make("ctl.halt")],
            [make("ctl.nop")],
        ],
        images=[XbarImage(np.arange(12, dtype=np.uint16).reshape(3, 4))],
        bindings=[Binding(0, 1, 0)],
        constants=[(64, np.array([1.5, -0.0, np.nan]))],
        inputs=[TensorInfo(name="x", shape=(4,), addr=0, quant=(("bits", 8),))],
        outputs=[TensorInfo(name="y", shape=(2,), addr=16)],
        debug={(0, 0): "conv1", (0, 1): "conv1"},
        meta={"model": "test"},
        adc_ranges={0: np.array([1.0, 2.5, 3.0, 400.0])},
        cam_images=[
            CamImage(np.zeros((2, 3)), np.full((2, 3), 4), np.array([[0.5, -1.0], [2.0, 0.0]]))
        ],
        cam_bindings=[Binding(0, 1, 0)],
        cam_codes=[
            CamCode(
                np.array([2]),
                np.array([0]),
                np.array([1]),
                np.array([0, 2]),
                np.array([-1.5, 3.25]),
                np.array([1, 0]),
            )
        ],
    )


# -- round trip


@PROPERTY
@given(programs())
def test_container_round_trip_is_exact(program: Program) -> None:
    data = container.to_bytes(program)
    again = container.from_bytes(data)
    assert same_program(again, program)
    assert container.to_bytes(again) == data


def test_serialisation_is_deterministic() -> None:
    assert container.to_bytes(small_program()) == container.to_bytes(small_program())


# -- a raw view of the layout, to damage files on purpose


def sections(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(kind, index, offset, body) per section table entry."""
    count = container._HEADER.unpack_from(data)[3]
    out = []
    for i in range(count):
        kind, index, _, offset, size, _, _ = container._ENTRY.unpack_from(
            data, container._HEADER.size + i * container._ENTRY.size
        )
        out.append((kind, index, offset, data[offset : offset + size]))
    return out


def build(parts: list[tuple[int, int, bytes]], fingerprint: bytes) -> bytes:
    """A container with exactly these sections and correct CRCs (the writer, by hand)."""
    offset = container._HEADER.size + container._ENTRY.size * len(parts)
    table = b""
    for kind, index, body in parts:
        table += container._ENTRY.pack(kind, index, 0, offset, len(body), zlib.crc32(body), 0)
        offset += len(body)
    header = container._HEADER.pack(
        container.MAGIC, container.VERSION, 0, len(parts), fingerprint, zlib.crc32(table)
    )
    return header + table + b"".join(body for _, _, body in parts)


def rebuilt(data: bytes, replace: dict[tuple[int, int], bytes | None]) -> bytes:
    """`data` with some section bodies replaced (or removed, for None), CRCs made valid."""
    fingerprint = container._HEADER.unpack_from(data)[4]
    parts = []
    for kind, index, _, body in sections(data):
        new = replace.get((kind, index), body)
        if new is not None:
            parts.append((kind, index, new))
    return build(parts, fingerprint)


def load_error(data: bytes) -> str:
    with pytest.raises(BinaryFormatError) as info:
        container.from_bytes(data, "t.imcb")
    return str(info.value)


def test_rebuilding_unchanged_sections_gives_the_same_bytes() -> None:
    data = container.to_bytes(small_program())
    assert rebuilt(data, {}) == data


# -- every fault is a BinaryFormatError naming the section


def test_truncated_header() -> None:
    data = container.to_bytes(small_program())
    for cut in (0, 7, container._HEADER.size - 1):
        message = load_error(data[:cut])
        assert message.startswith("t.imcb: section header: ")
        assert "truncated?" in message


def test_truncated_table() -> None:
    data = container.to_bytes(small_program())
    message = load_error(data[: container._HEADER.size + container._ENTRY.size])
    assert message.startswith("t.imcb: section table: ")
    assert "truncated?" in message


def test_truncated_data_names_the_cut_section() -> None:
    data = container.to_bytes(small_program())
    kind, index, _, _ = sections(data)[-1]
    message = load_error(data[:-1])
    assert message.startswith(f"t.imcb: section {container.Kind(kind).name}[{index}]: ")
    assert "outside the" in message and "truncated?" in message


def test_flipped_byte_in_each_section_fails_its_crc() -> None:
    data = container.to_bytes(small_program())
    checked = set()
    for kind, index, offset, body in sections(data):
        if not body:
            continue
        damaged = bytearray(data)
        damaged[offset + len(body) // 2] ^= 0x40
        label = f"{container.Kind(kind).name}[{index}]"
        assert (
            load_error(bytes(damaged))
            == f"t.imcb: section {label}: CRC32 mismatch (corrupted file)"
        )
        checked.add(container.Kind(kind).name)
    assert checked == {kind.name for kind in container.Kind}


def test_flipped_byte_in_the_table() -> None:
    data = bytearray(container.to_bytes(small_program()))
    data[container._HEADER.size + 10] ^= 0x01
    assert load_error(bytes(data)) == (
        "t.imcb: section table: section table CRC mismatch (corrupted file)"
    )


def test_wrong_magic() -> None:
    data = b"NOTIMCB!" + container.to_bytes(small_program())[8:]
    message = load_error(data)
    assert message.startswith("t.imcb: section header: bad magic b'NOTIMCB!'")


def test_wrong_version() -> None:
    data = bytearray(container.to_bytes(small_program()))
    struct.pack_into("<H", data, 8, container.VERSION + 1)
    assert load_error(bytes(data)) == (
        f"t.imcb: section header: format version {container.VERSION + 1} is not supported "
        f"(this imcc reads version {container.VERSION})"
    )


@pytest.mark.parametrize("kind", ["TARGET", "IO", "META", "BIND", "CONST", "DEBUG"])
def test_missing_section(kind: str) -> None:
    data = container.to_bytes(small_program())
    message = load_error(rebuilt(data, {(container.Kind[kind], 0): None}))
    assert message == f"t.imcb: section {kind}: required section is missing"


def test_missing_code_section_in_the_middle() -> None:
    program = small_program()
    program.code.append([make("ctl.halt")])
    data = rebuilt(container.to_bytes(program), {(container.Kind.CODE, 1): None})
    assert load_error(data) == (
        "t.imcb: section CODE: code sections must be numbered 0..n-1 by core, found [0, 2]"
    )


def test_bad_fingerprint() -> None:
    data = bytearray(container.to_bytes(small_program()))
    data[20] ^= 0xFF  # inside the 32-byte target fingerprint of the header
    assert load_error(bytes(data)) == (
        "t.imcb: section header: target fingerprint does not match the TARGET section"
    )


def test_unknown_opcode_names_the_core_and_pc() -> None:
    data = container.to_bytes(small_program())
    code = bytearray(sections(data)[3][3])
    unused = next(op for op in range(256) if op not in spec.BY_OPCODE)
    struct.pack_into("<Q", code, 8, unused << spec.OPCODE_LSB)
    message = load_error(rebuilt(data, {(container.Kind.CODE, 0): bytes(code)}))
    assert message.startswith("t.imcb: section CODE[0]: core 0 pc 1: ")
    assert f"unknown opcode {unused:#04x}" in message


def test_code_that_is_not_whole_words() -> None:
    data = container.to_bytes(small_program())
    word = encode(make("ctl.halt")).to_bytes(8, "little")
    message = load_error(rebuilt(data, {(container.Kind.CODE, 1): word + b"\0"}))
    assert message == "t.imcb: section CODE[1]: code of core 1 is 9 bytes, not whole words"


def test_corrupt_image_levels() -> None:
    data = container.to_bytes(small_program())
    body = container._IMAGE.pack(3, 4) + b"not zlib"
    message = load_error(rebuilt(data, {(container.Kind.IMAGE, 0): body}))
    assert message.startswith("t.imcb: section IMAGE[0]: compressed levels are corrupt")


def test_image_with_too_few_levels() -> None:
    data = container.to_bytes(small_program())
    body = container._IMAGE.pack(3, 4) + zlib.compress(b"\0" * 10)
    message = load_error(rebuilt(data, {(container.Kind.IMAGE, 0): body}))
    assert message == "t.imcb: section IMAGE[0]: levels hold 10 bytes, expected 24 for 3x4"


def test_malformed_json_section() -> None:
    data = container.to_bytes(small_program())
    message = load_error(rebuilt(data, {(container.Kind.IO, 0): b"{not json"}))
    assert message.startswith("t.imcb: section IO: not valid JSON")


def test_constant_block_past_the_section_end() -> None:
    data = container.to_bytes(small_program())
    body = container._CONST.pack(0, 1000) + b"\0" * 8
    message = load_error(rebuilt(data, {(container.Kind.CONST, 0): body}))
    assert message == (
        "t.imcb: section CONST at byte 16: constant block of 1000 values runs past the section end"
    )


def test_duplicate_section() -> None:
    data = container.to_bytes(small_program())
    fingerprint = container._HEADER.unpack_from(data)[4]
    parts = [(kind, index, body) for kind, index, _, body in sections(data)]
    message = load_error(build([*parts, parts[2]], fingerprint))
    assert message == "t.imcb: section META[0]: section appears twice"


def test_unknown_section_kind() -> None:
    data = container.to_bytes(small_program())
    fingerprint = container._HEADER.unpack_from(data)[4]
    parts = [(kind, index, body) for kind, index, _, body in sections(data)]
    message = load_error(build([*parts, (99, 0, b"")], fingerprint))
    assert message == f"t.imcb: section table: entry {len(parts)} has unknown section kind 99"


def test_binary_save_and_load(tmp_path: Any) -> None:
    binary = container.Binary(small_program())
    path = tmp_path / "p.imcb"
    binary.save(path)
    again = container.Binary.load(path)
    assert again.data == binary.data
    assert same_program(again.program, binary.program)


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        (np.array([1.0, 2.0]), "16 bytes of ADC ranges; image 0 has 4 columns (8 bytes each)"),
        (np.array([1.0, 2.0, np.nan, 4.0]), "ADC ranges must be finite and positive"),
        (np.array([1.0, 2.0, 0.0, 4.0]), "ADC ranges must be finite and positive"),
    ],
)
def test_bad_adc_ranges_are_rejected(ranges: np.ndarray, message: str) -> None:
    data = container.to_bytes(small_program())
    body = ranges.astype("<f8").tobytes()
    assert load_error(rebuilt(data, {(container.Kind.ADC, 0): body})) == (
        f"t.imcb: section ADC[0]: {message}"
    )
    program = small_program()  # and the writer refuses to write them
    program.adc_ranges = {0: ranges}
    with pytest.raises(BinaryFormatError) as info:
        container.to_bytes(program, "out.imcb")
    assert str(info.value) == (
        f"out.imcb: section ADC[0]: cannot write ADC ranges of shape {ranges.shape} for image 0, "
        "expected one finite positive range per column of an image"
    )


@pytest.mark.parametrize(
    ("change", "section", "message"),
    [
        (
            lambda p: p.constants.append((1 << 64, np.zeros(1))),
            "CONST",
            f"cannot write constants at address {1 << 64}, expected an integer in "
            f"[0, {(1 << 64) - 1}]",
        ),
        (
            lambda p: p.constants.append((-1, np.zeros(1))),
            "CONST",
            f"cannot write constants at address -1, expected an integer in [0, {(1 << 64) - 1}]",
        ),
        (
            lambda p: p.images.append(XbarImage(np.zeros((0, 4)))),
            "IMAGE[1]",
            "cannot write an image of shape 0x4, expected 1..65536 rows and columns",
        ),
        (
            lambda p: p.cam_images.append(
                CamImage(np.zeros((2, 3)), np.ones((2, 3)), np.zeros((2, 1)), 1 << 32)
            ),
            "CAM[1]",
            "cannot write a CAM image of 2x3 with 1 leaf words and 4294967296 trees, expected "
            "1..65536 rows and cells, at most 65536 leaf words and 2^32 trees",
        ),
    ],
)
def test_the_writer_refuses_binary_sections_the_reader_would(
    change: Any, section: str, message: str
) -> None:
    program = small_program()
    change(program)
    with pytest.raises(BinaryFormatError) as info:
        container.to_bytes(program, "out.imcb")
    assert info.value.loc == SectionLoc("out.imcb", section)
    assert info.value.message == message


# -- analog-CAM sections


def test_cam_image_with_too_few_bytes() -> None:
    data = container.to_bytes(small_program())
    body = container._CAM.pack(2, 3, 2, 1) + zlib.compress(b"\0" * 10)
    message = load_error(rebuilt(data, {(container.Kind.CAM, 0): body}))
    assert message == (
        "t.imcb: section CAM[0]: CAM image holds 10 bytes, expected 56 for 2x3 with 2 leaf words"
    )


def test_malformed_cam_bindings() -> None:
    data = container.to_bytes(small_program())
    message = load_error(rebuilt(data, {(container.Kind.CAMBIND, 0): b"[[0, 1]]"}))
    assert message == (
        "t.imcb: section CAMBIND: entry [0]: found [0, 1], expected a list [core, array, image]"
    )


def test_truncated_coding_table() -> None:
    data = container.to_bytes(small_program())
    body = small_program().cam_codes[0].to_bytes()[:-3]
    message = load_error(rebuilt(data, {(container.Kind.CAMCODE, 0): body}))
    assert message.startswith("t.imcb: section CAMCODE[0]: malformed coding table (")
    assert "do not hold 1 features and 2 cuts" in message


def test_cam_sections_must_be_numbered_from_zero() -> None:
    data = container.to_bytes(small_program())
    body = dict(((k, i), b) for k, i, _, b in sections(data))[(container.Kind.CAM, 0)]
    parts = [(k, i, b) for k, i, _, b in sections(data) if k != container.Kind.CAM]
    parts.append((container.Kind.CAM, 1, body))
    fingerprint = container._HEADER.unpack_from(data)[4]
    message = load_error(build(parts, fingerprint))
    assert message == "t.imcb: section CAM: CAM sections must be numbered 0..n-1, found [1]"


# -- the table of section codecs: a new kind of section is one row and one Program field


class ExtraKind(enum.IntEnum):
    NOTE = 99


@dataclasses.dataclass(eq=False)
class NotedProgram(Program):
    notes: list[str] = dataclasses.field(default_factory=list)


def _read_note(body: bytes, index: int, reader: container.Reader) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise reader.fail("a note is not UTF-8") from None


NOTES = (
    *container.SECTIONS,
    container.numbered(ExtraKind.NOTE, "notes", lambda note, _: note.encode(), _read_note),
)


def noted_program(notes: list[str]) -> NotedProgram:
    plain = small_program()
    values = {f.name: getattr(plain, f.name) for f in dataclasses.fields(Program)}
    return NotedProgram(**values, notes=notes)


def test_an_extra_section_codec_round_trips() -> None:
    program = noted_program(["first", "zweite Notiz"])
    data = container.to_bytes(program, sections=NOTES)
    again = container.from_bytes(data, sections=NOTES, program_type=NotedProgram)
    assert isinstance(again, NotedProgram) and again.notes == ["first", "zweite Notiz"]
    assert again.same_as(program)
    assert not again.same_as(noted_program(["first"]))
    assert container.to_bytes(again, sections=NOTES) == data
    # the extra rows come last: the sections before them are the plain container's
    plain = container.to_bytes(small_program())
    assert [s[::3] for s in sections(data)][: len(sections(plain))] == [
        s[::3] for s in sections(plain)
    ]
    # a reader without the row refuses the kind; with it, faults name the new section
    assert load_error(data) == (
        f"t.imcb: section table: entry {len(sections(plain))} has unknown section kind 99"
    )
    damaged = rebuilt(data, {(ExtraKind.NOTE, 1): b"\xff"})
    with pytest.raises(BinaryFormatError) as info:
        container.from_bytes(damaged, "t.imcb", sections=NOTES, program_type=NotedProgram)
    assert str(info.value) == "t.imcb: section NOTE[1]: a note is not UTF-8"
    fingerprint = container._HEADER.unpack_from(data)[4]
    gap = [(k, i, b) for k, i, _, b in sections(data) if (k, i) != (ExtraKind.NOTE, 0)]
    with pytest.raises(BinaryFormatError) as info:
        container.from_bytes(build(gap, fingerprint), "t.imcb", sections=NOTES)
    assert (
        str(info.value) == "t.imcb: section NOTE: NOTE sections must be numbered 0..n-1, found [1]"
    )


def test_no_notes_is_the_plain_container() -> None:
    data = container.to_bytes(noted_program([]), sections=NOTES)
    assert data == container.to_bytes(small_program())


def test_the_section_table_has_one_row_per_kind() -> None:
    assert [int(row.kind) for row in container.SECTIONS] == sorted(container.Kind)
    container.check_sections(NOTES)
    again = container.single(container.Kind.META, lambda p, w: b"{}", lambda b, r: {})
    with pytest.raises(ValueError, match="section kind 3 of META already belongs to META"):
        container.check_sections((*container.SECTIONS, again))


def test_same_as_compares_every_field() -> None:
    """same_as reads the dataclass fields: changing any one of them is seen."""
    program = small_program()
    assert program.same_as(small_program())
    changes = {
        "code": [[make("ctl.halt")], []],
        "images": [],
        "bindings": [],
        "constants": [(64, np.array([1.5, 0.0, np.nan]))],  # -0.0 became 0.0
        "inputs": [],
        "outputs": [],
        "debug": {},
        "adc_ranges": {},
        "meta": {"other": "x"},
        "cam_images": [],
        "cam_bindings": [],
        "cam_codes": [],
        "target": Target.from_dict(target_dict(cores=3, acam=True)),
    }
    assert set(changes) == {f.name for f in dataclasses.fields(Program)}
    for name, value in changes.items():
        assert not dataclasses.replace(program, **{name: value}).same_as(program), name


# -- JSON sections: every field checked for type and range, on reading and on writing


BIG = str(1 << 64)


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        (
            "IO",
            '{"inputs":[{"addr":0,"batch_axis":true,"dtype":"float32","name":"x",'
            '"shape":[Infinity]}],"outputs":[]}',
            "found Infinity, which is not a JSON number (expected finite numbers)",
        ),
        (
            "IO",
            '{"inputs":[{"addr":0,"batch_axis":true,"dtype":"float32","name":"x",'
            f'"shape":[{BIG}]}}],"outputs":[]}}',
            f"entry inputs[0].shape[0]: found {BIG}, expected an integer in [0, {1 << 62}]",
        ),
        (
            "IO",
            '{"inputs":[{"addr":0,"batch_axis":true,"dtype":"float32","name":"x",'
            f'"shape":[{1 << 40},{1 << 40}]}}],"outputs":[]}}',
            f"entry inputs[0].shape: found [{1 << 40}, {1 << 40}], {1 << 80} elements; "
            f"expected at most {1 << 62}",
        ),
        (
            "IO",
            f'{{"inputs":[],"outputs":[{{"addr":{BIG},"batch_axis":true,"dtype":"float32",'
            '"name":"y","shape":[2]}]}',
            f"entry outputs[0].addr: found {BIG}, expected an integer in [0, {(1 << 64) - 1}]",
        ),
        (
            "IO",
            '{"inputs":[],"outputs":[{"addr":0,"batch_axis":1,"dtype":"float32",'
            '"name":"y","shape":[2]}]}',
            "entry outputs[0].batch_axis: found 1, expected true or false",
        ),
        (
            "IO",
            '{"inputs":[],"outputs":[{"addr":0,"batch_axis":true,"dtype":"float32",'
            '"name":"y","shape":[2],"quant":{"scale":1e999}}]}',
            "entry outputs[0].quant.scale: found Infinity, expected a string, a 64-bit "
            "integer or a finite number",
        ),
        ("IO", '{"inputs":[]}', "missing key 'outputs'"),
        (
            "IO",
            '{"inputs":[],"outputs":[],"extra":1}',
            "unknown key \"extra\"; expected 'inputs', 'outputs'",
        ),
        ("META", '{"model":3}', "entry model: found 3, expected a string of Unicode text"),
        ("META", "[]", "found [], expected an object of strings to a string of Unicode text"),
        ("BIND", f"[[0,{BIG},0]]", f"entry [0].array: found {BIG}, expected an integer in [0, 63]"),
        ("BIND", "[[0,0,NaN]]", "found NaN, which is not a JSON number (expected finite numbers)"),
        ("BIND", "[[-1,0,0]]", "entry [0].core: found -1, expected an integer in [0, 4095]"),
        (
            "CAMBIND",
            "[[0,1,Infinity]]",
            "found Infinity, which is not a JSON number (expected finite numbers)",
        ),
        ("CAMBIND", '[[0,"1",0]]', 'entry [0].array: found "1", expected an integer in [0, 63]'),
        (
            "DEBUG",
            f'[[{BIG},0,0,"n"]]',
            f"entry [0].core: found {BIG}, expected an integer in [0, 4095]",
        ),
        (
            "DEBUG",
            '[[0,0,1e400,"n"]]',
            "entry [0].last: found Infinity, expected an integer in [0, 16777215]",
        ),
        (
            "DEBUG",
            '[[0,0,0,"\\udcff"]]',
            'entry [0].node: found "\\udcff", a string with a lone surrogate at character 0',
        ),
        (
            "DEBUG",
            '[[0,0,7,"n"]]',
            "entry [0]: found the run of pcs 0..7 on core 0, expected pcs of its 3 instructions",
        ),
        (
            "DEBUG",
            '[[0,2,1,"n"]]',
            "entry [0]: found the run of pcs 2..1 on core 0, expected pcs of its 3 instructions",
        ),
        ("DEBUG", "[" * 100_000, "not valid JSON (nested too deeply)"),
        (
            "DEBUG",
            f'[[0,0,{"9" * 5000},"n"]]',
            "not valid JSON (Exceeds the limit (4300 digits) for integer string conversion)",
        ),
        (
            "TARGET",
            '{"name": NaN}',
            "found NaN, which is not a JSON number (expected finite numbers)",
        ),
    ],
)
def test_json_fields_are_checked_for_type_and_range(kind: str, body: str, message: str) -> None:
    data = container.to_bytes(small_program())
    raw = body.encode()
    with pytest.raises(BinaryFormatError) as info:
        container.from_bytes(rebuilt(data, {(container.Kind[kind], 0): raw}), "t.imcb")
    assert info.value.loc == SectionLoc("t.imcb", kind)
    assert info.value.message.startswith(message), info.value.message


def test_json_that_is_not_utf8_names_the_byte() -> None:
    data = container.to_bytes(small_program())
    body = '[[0,0,0,"n\xe9"]]'.encode("latin-1")
    assert load_error(rebuilt(data, {(container.Kind.DEBUG, 0): body})) == (
        "t.imcb: section DEBUG: byte 10 (0xe9) is not UTF-8"
    )


@pytest.mark.parametrize(
    ("change", "section", "message"),
    [
        (
            lambda p: p.debug.__setitem__((0, 1), b"\xffnode"),
            "DEBUG",
            "cannot write entry [1].node: found b'\\xffnode', expected a string of Unicode text",
        ),
        (
            lambda p: p.debug.__setitem__((0, 1), "conv\udcff"),
            "DEBUG",
            'cannot write entry [1].node: found "conv\\udcff", a string with a lone surrogate '
            "at character 4",
        ),
        (
            lambda p: p.debug.__setitem__((1, 4), "ghost"),
            "DEBUG",
            "cannot write entry [1]: found the run of pcs 4..4 on core 1, expected pcs of its 1 "
            "instructions",
        ),
        (
            lambda p: p.meta.__setitem__("seed", 3),
            "META",
            "cannot write entry seed: found 3, expected a string of Unicode text",
        ),
        (
            lambda p: p.outputs.__setitem__(
                0, dataclasses.replace(p.outputs[0], quant=(("scale", float("nan")),))
            ),
            "IO",
            "cannot write entry outputs[0].quant.scale: found NaN, expected a string, a 64-bit "
            "integer or a finite number",
        ),
        (
            lambda p: p.inputs.__setitem__(0, dataclasses.replace(p.inputs[0], name=b"x")),
            "IO",
            "cannot write entry inputs[0].name: found b'x', expected a string of Unicode text",
        ),
        (
            lambda p: p.bindings.append(Binding(0, 1 << 20, 0)),
            "BIND",
            f"cannot write entry [1].array: found {1 << 20}, expected an integer in [0, 63]",
        ),
    ],
)
def test_the_writer_refuses_what_the_reader_would(change: Any, section: str, message: str) -> None:
    program = small_program()
    change(program)
    with pytest.raises(BinaryFormatError) as info:
        container.Binary(program, name="out.imcb")
    assert info.value.loc == SectionLoc("out.imcb", section)
    assert info.value.message == message


# -- writing files


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o000])
def test_written_files_get_the_mode_the_umask_allows(tmp_path: Any, umask: int) -> None:
    old = os.umask(umask)
    try:
        container.write_atomic(tmp_path / "new.imcb", b"data")
        container.write_atomic(tmp_path / "new.imcb", b"again")  # replacing an existing file
    finally:
        os.umask(old)
    path = tmp_path / "new.imcb"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert path.read_bytes() == b"again"
    assert os.listdir(tmp_path) == ["new.imcb"]


@pytest.mark.parametrize(
    "failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()]
)
def test_a_failed_write_leaves_no_temporary_file(
    tmp_path: Any, monkeypatch: Any, failure: BaseException
) -> None:
    (tmp_path / "old.imcb").write_bytes(b"old")

    def fail(src: Any, dst: Any) -> None:
        raise failure

    monkeypatch.setattr(container.os, "replace", fail)
    expected = BinaryFormatError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as info:
        container.write_atomic(tmp_path / "old.imcb", b"new")
    if expected is BinaryFormatError:
        assert str(info.value) == (
            f"cannot write {str(tmp_path / 'old.imcb')!r}: No space left on device"
        )
    assert os.listdir(tmp_path) == ["old.imcb"]
    assert (tmp_path / "old.imcb").read_bytes() == b"old"


def test_writing_over_a_directory_is_an_error_and_leaves_nothing(tmp_path: Any) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(BinaryFormatError) as info:
        container.write_atomic(tmp_path / "out", b"data")
    assert str(info.value) == f"cannot write {str(tmp_path / 'out')!r}: Is a directory"
    assert os.listdir(tmp_path) == ["out"]
    with pytest.raises(BinaryFormatError) as info:
        container.write_atomic(tmp_path / "missing" / "x.imcb", b"data")
    assert "No such file or directory" in str(info.value)
