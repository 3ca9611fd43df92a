"""The .imcb binary container: the only contract between the compiler and the runtime.

Layout (little-endian):
    header   magic(8) version(u16) reserved(u16) sections(u32) target sha256(32) table crc32(u32)
    table    per section: kind(u16) index(u16) reserved(u32) offset(u64) size(u64) crc32(u32)
             reserved(u32)
    data     the sections, in table order
Sections: TARGET (JSON), IO (JSON), META (JSON), CODE per core (64-bit words), IMAGE per crossbar
image (rows u32, cols u32, then zlib of uint16 levels), BIND (JSON), CONST (addr u64, count u64,
float64 values, repeated), DEBUG (JSON runs of pcs per node); for the analog-CAM unit, when
present: CAM per CAM image (rows, cols, leaf width, trees: u32 each, then zlib of uint16 low bounds,
uint16 high bounds and float64 leaf RAM), CAMBIND (JSON), CAMCODE per coding table (isa/acam.py
CamCode.to_bytes). Reading checks everything that can
be checked without the runtime: sizes, bounds, CRCs, magic, version, the target fingerprint,
JSON shapes and instruction words. Every failure is a BinaryFormatError naming the section.
"""

from __future__ import annotations

import enum
import json
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from imcc.isa.acam import CamCode, CamImage
from imcc.isa.diagnostics import BinaryFormatError, Diagnostic, SectionLoc, TargetError
from imcc.isa.encoding import decode_code, encode_code
from imcc.isa.program import Binding, Program, TensorInfo, XbarImage
from imcc.isa.target import Target

MAGIC = b"\x89IMCB\r\n\x1a"  # the PNG trick: text-mode transfers and truncation show up at once
VERSION = 1
_HEADER = struct.Struct("<8sHHI32sI")
_ENTRY = struct.Struct("<HHIQQII")
_IMAGE = struct.Struct("<II")
_CONST = struct.Struct("<QQ")
_CAM = struct.Struct("<IIII")
MAX_SECTIONS = 1 << 16


class Kind(enum.IntEnum):
    TARGET = 1
    IO = 2
    META = 3
    CODE = 4
    IMAGE = 5
    BIND = 6
    CONST = 7
    DEBUG = 8
    ADC = 9  # per image, optional: float64 ADC full-scale range of each column
    CAM = 10  # per CAM image, optional: bounds and leaf RAM
    CAMBIND = 11  # optional: which CAM array holds which CAM image at start
    CAMCODE = 12  # per coding table, optional: the rank coding of acam.encode


def _json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def to_bytes(program: Program) -> bytes:
    """Serialise deterministically: the same program always gives the same bytes."""
    sections: list[tuple[Kind, int, bytes]] = [
        (Kind.TARGET, 0, program.target.to_json().encode()),
        (
            Kind.IO,
            0,
            _json(
                {
                    "inputs": [t.to_dict() for t in program.inputs],
                    "outputs": [t.to_dict() for t in program.outputs],
                }
            ),
        ),
        (Kind.META, 0, _json(program.meta)),
    ]
    for core, code in enumerate(program.code):
        sections.append((Kind.CODE, core, encode_code(code)))
    for index, image in enumerate(program.images):
        head = _IMAGE.pack(image.rows, image.cols)
        # level 6: as small as level 9 on cell levels, and ten times faster
        sections.append((Kind.IMAGE, index, head + zlib.compress(image.levels.tobytes(), 1)))
    sections.append((Kind.BIND, 0, _json([[b.core, b.array, b.image] for b in program.bindings])))
    blob = b"".join(
        _CONST.pack(addr, len(values)) + np.asarray(values, dtype="<f8").tobytes()
        for addr, values in program.constants
    )
    sections.append((Kind.CONST, 0, blob))
    sections.append((Kind.DEBUG, 0, _json(_debug_runs(program.debug))))
    for index, ranges in sorted(program.adc_ranges.items()):
        sections.append((Kind.ADC, index, np.asarray(ranges, dtype="<f8").tobytes()))
    for index, cam in enumerate(program.cam_images):
        head = _CAM.pack(cam.rows, cam.cols, cam.width, cam.trees)
        body = cam.low.astype("<u2").tobytes() + cam.high.astype("<u2").tobytes()
        body += cam.leaves.astype("<f8").tobytes()
        sections.append((Kind.CAM, index, head + zlib.compress(body, 1)))
    if program.cam_bindings:
        bound = [[b.core, b.array, b.image] for b in program.cam_bindings]
        sections.append((Kind.CAMBIND, 0, _json(bound)))
    for index, coding in enumerate(program.cam_codes):
        sections.append((Kind.CAMCODE, index, coding.to_bytes()))

    offset = _HEADER.size + _ENTRY.size * len(sections)
    table = b""
    for kind, index, data in sections:
        table += _ENTRY.pack(kind, index, 0, offset, len(data), zlib.crc32(data), 0)
        offset += len(data)
    header = _HEADER.pack(
        MAGIC, VERSION, 0, len(sections), program.target.fingerprint, zlib.crc32(table)
    )
    return header + table + b"".join(data for _, _, data in sections)


def _debug_runs(debug: dict[tuple[int, int], str]) -> list[list[Any]]:
    """(core, pc) -> node as runs [core, first_pc, last_pc, node]: a layer is many pcs."""
    runs: list[list[Any]] = []
    for (core, pc), node in sorted(debug.items()):
        last = runs[-1] if runs else None
        if last and last[0] == core and last[2] == pc - 1 and last[3] == node:
            last[2] = pc
        else:
            runs.append([core, pc, pc, node])
    return runs


def from_bytes(data: bytes, name: str = "<binary>") -> Program:
    """Parse and check a container; raise BinaryFormatError naming the section at fault."""

    def fail(section: str, message: str, offset: int | None = None) -> BinaryFormatError:
        return BinaryFormatError(message, SectionLoc(name, section, offset))

    if len(data) < _HEADER.size:
        raise fail(
            "header",
            f"file is {len(data)} bytes, shorter than the {_HEADER.size}-byte header (truncated?)",
        )
    magic, version, _, count, fingerprint, table_crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise fail("header", f"bad magic {magic!r}: not an imcc binary (expected {MAGIC!r})")
    if version != VERSION:
        raise fail(
            "header",
            f"format version {version} is not supported (this imcc reads version {VERSION})",
        )
    if not 0 < count <= MAX_SECTIONS:
        raise fail("header", f"section count {count} is out of range")
    table_end = _HEADER.size + count * _ENTRY.size
    if table_end > len(data):
        raise fail(
            "table",
            f"section table needs {table_end} bytes but the file has {len(data)} (truncated?)",
        )
    table = data[_HEADER.size : table_end]
    if zlib.crc32(table) != table_crc:
        raise fail("table", "section table CRC mismatch (corrupted file)")

    entries: dict[tuple[Kind, int], bytes] = {}
    for i in range(count):
        raw_kind, index, _, offset, size, crc, _ = _ENTRY.unpack_from(table, i * _ENTRY.size)
        try:
            kind = Kind(raw_kind)
        except ValueError:
            raise fail("table", f"entry {i} has unknown section kind {raw_kind}") from None
        label = f"{kind.name}[{index}]"
        if offset < table_end or offset + size > len(data):
            raise fail(
                label,
                f"section spans bytes [{offset}, {offset + size}) outside the "
                f"{len(data)}-byte file (truncated?)",
            )
        body = data[offset : offset + size]
        if zlib.crc32(body) != crc:
            raise fail(label, "CRC32 mismatch (corrupted file)")
        if (kind, index) in entries:
            raise fail(label, "section appears twice")
        entries[(kind, index)] = body

    for kind in (Kind.TARGET, Kind.IO, Kind.META, Kind.BIND, Kind.CONST, Kind.DEBUG):
        if (kind, 0) not in entries:
            raise fail(kind.name, "required section is missing")

    try:
        target = Target.from_json(
            entries[(Kind.TARGET, 0)].decode("utf-8", "replace"), f"{name}: section TARGET"
        )
    except TargetError as exc:
        raise fail("TARGET", exc.message) from None
    if target.fingerprint != fingerprint:
        raise fail("header", "target fingerprint does not match the TARGET section")

    io = _load_json(entries, Kind.IO, fail)
    meta = _load_json(entries, Kind.META, fail)
    try:
        inputs = [_tensor(t) for t in io["inputs"]]
        outputs = [_tensor(t) for t in io["outputs"]]
        if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
        ):
            raise ValueError("META must map strings to strings")
    except (KeyError, TypeError, ValueError) as exc:
        raise fail("IO", f"malformed I/O metadata ({exc})") from None

    codes = sorted(index for kind, index in entries if kind is Kind.CODE)
    if codes != list(range(len(codes))):
        raise fail("CODE", f"code sections must be numbered 0..n-1 by core, found {codes}")
    code = []
    for core in codes:
        try:
            code.append(decode_code(entries[(Kind.CODE, core)], core))
        except Diagnostic as exc:
            message = f"{exc.loc}: {exc.message}" if exc.loc else exc.message
            raise fail(f"CODE[{core}]", message) from None
    images = []
    image_ids = sorted(index for kind, index in entries if kind is Kind.IMAGE)
    if image_ids != list(range(len(image_ids))):
        raise fail("IMAGE", f"images must be numbered 0..n-1, found {image_ids}")
    for index in image_ids:
        images.append(
            _image(entries[(Kind.IMAGE, index)], lambda m, i=index: fail(f"IMAGE[{i}]", m))
        )

    bind_data = _load_json(entries, Kind.BIND, fail)
    try:
        bindings = [Binding(int(c), int(a), int(i)) for c, a, i in bind_data]
    except (TypeError, ValueError) as exc:
        raise fail("BIND", f"malformed bindings ({exc})") from None

    constants = _constants(entries[(Kind.CONST, 0)], lambda m, o: fail("CONST", m, o))
    runs = _load_json(entries, Kind.DEBUG, fail)
    debug: dict[tuple[int, int], str] = {}
    try:
        for core, first, last, node in runs:
            if not (isinstance(node, str) and 0 <= int(first) <= int(last) < 1 << 24):
                raise ValueError(f"bad run {[core, first, last, node]}")
            for pc in range(int(first), int(last) + 1):
                debug[(int(core), pc)] = node
    except (TypeError, ValueError) as exc:
        raise fail("DEBUG", f"malformed debug map ({exc})") from None

    adc_ranges: dict[int, np.ndarray] = {}
    for kind, index in sorted(entries):
        if kind is not Kind.ADC:
            continue
        body = entries[(kind, index)]
        if index >= len(images):
            raise fail(
                f"ADC[{index}]",
                f"ADC ranges for image {index}; the binary has {len(images)} images",
            )
        if len(body) != 8 * images[index].cols:
            raise fail(
                f"ADC[{index}]",
                f"{len(body)} bytes of ADC ranges; image {index} has "
                f"{images[index].cols} columns (8 bytes each)",
            )
        ranges = np.frombuffer(body, dtype="<f8").copy()
        if not np.all(np.isfinite(ranges) & (ranges > 0)):
            raise fail(f"ADC[{index}]", "ADC ranges must be finite and positive")
        adc_ranges[index] = ranges

    cam_images = [
        _cam(entries[(Kind.CAM, index)], lambda m, i=index: fail(f"CAM[{i}]", m))
        for index in _numbered(entries, Kind.CAM, fail)
    ]
    cam_bindings: list[Binding] = []
    if (Kind.CAMBIND, 0) in entries:
        try:
            cam_bindings = [
                Binding(int(c), int(a), int(i))
                for c, a, i in _load_json(entries, Kind.CAMBIND, fail)
            ]
        except (TypeError, ValueError) as exc:
            raise fail("CAMBIND", f"malformed CAM bindings ({exc})") from None
    cam_codes = []
    for index in _numbered(entries, Kind.CAMCODE, fail):
        try:
            cam_codes.append(CamCode.from_bytes(entries[(Kind.CAMCODE, index)]))
        except ValueError as exc:
            raise fail(f"CAMCODE[{index}]", f"malformed coding table ({exc})") from None

    return Program(
        target=target,
        code=code,
        images=images,
        bindings=bindings,
        constants=constants,
        inputs=inputs,
        outputs=outputs,
        debug=debug,
        meta=meta,
        adc_ranges=adc_ranges,
        cam_images=cam_images,
        cam_bindings=cam_bindings,
        cam_codes=cam_codes,
    )


def _numbered(entries: dict[tuple[Kind, int], bytes], kind: Kind, fail: Any) -> list[int]:
    """The indices of a numbered kind of section, which must be 0..n-1."""
    found = sorted(index for k, index in entries if k is kind)
    if found != list(range(len(found))):
        raise fail(kind.name, f"{kind.name} sections must be numbered 0..n-1, found {found}")
    return found


def _cam(body: bytes, fail: Any) -> CamImage:
    if len(body) < _CAM.size:
        raise fail(f"CAM image header is {len(body)} bytes, expected {_CAM.size}")
    rows, cols, width, trees = _CAM.unpack_from(body)
    if not (0 < rows <= 1 << 16 and 0 < cols <= 1 << 16 and width <= 1 << 16):
        raise fail(f"CAM image shape {rows}x{cols} with {width} leaf words is out of range")
    expected = rows * cols * 4 + rows * width * 8
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(body[_CAM.size :], expected + 1)
    except zlib.error as exc:
        raise fail(f"compressed CAM image is corrupt ({exc})") from None
    if len(raw) != expected or not inflater.eof:
        raise fail(
            f"CAM image holds {len(raw)} bytes, expected {expected} for {rows}x{cols} with "
            f"{width} leaf words"
        )
    cells = rows * cols
    low = np.frombuffer(raw, dtype="<u2", count=cells).reshape(rows, cols)
    high = np.frombuffer(raw, dtype="<u2", count=cells, offset=2 * cells).reshape(rows, cols)
    leaves = np.frombuffer(raw, dtype="<f8", offset=4 * cells).reshape(rows, width)
    return CamImage(low, high, leaves, trees)


def _load_json(entries: dict[tuple[Kind, int], bytes], kind: Kind, fail: Any) -> Any:
    try:
        return json.loads(entries[(kind, 0)].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(kind.name, f"not valid JSON ({exc})") from None


def _tensor(data: dict[str, Any]) -> TensorInfo:
    shape = tuple(int(d) for d in data["shape"])
    if any(d < 0 for d in shape) or not isinstance(data["name"], str):
        raise ValueError(f"bad tensor {data!r}")
    quant = data.get("quant", {})
    if not isinstance(quant, dict):
        raise ValueError("quant must be a table")
    return TensorInfo(
        name=data["name"],
        shape=shape,
        addr=int(data["addr"]),
        dtype=str(data["dtype"]),
        batch_axis=bool(data["batch_axis"]),
        quant=tuple(sorted(quant.items())),
    )


def _image(body: bytes, fail: Any) -> XbarImage:
    if len(body) < _IMAGE.size:
        raise fail(f"image header is {len(body)} bytes, expected {_IMAGE.size}")
    rows, cols = _IMAGE.unpack_from(body)
    if not (0 < rows <= 1 << 16 and 0 < cols <= 1 << 16):
        raise fail(f"image shape {rows}x{cols} is out of range")
    expected = rows * cols * 2
    try:
        # Bounded decompression: a hand-crafted stream cannot make us allocate more than declared.
        inflater = zlib.decompressobj()
        raw = inflater.decompress(body[_IMAGE.size :], expected + 1)
    except zlib.error as exc:
        raise fail(f"compressed levels are corrupt ({exc})") from None
    if len(raw) != expected or not inflater.eof:
        raise fail(f"levels hold {len(raw)} bytes, expected {expected} for {rows}x{cols}")
    return XbarImage(np.frombuffer(raw, dtype="<u2").reshape(rows, cols))


def _constants(blob: bytes, fail: Any) -> list[tuple[int, np.ndarray]]:
    constants = []
    offset = 0
    while offset < len(blob):
        if offset + _CONST.size > len(blob):
            raise fail("truncated constant block header", offset)
        addr, count = _CONST.unpack_from(blob, offset)
        offset += _CONST.size
        if count > (len(blob) - offset) // 8:
            raise fail(f"constant block of {count} values runs past the section end", offset)
        values = np.frombuffer(blob, dtype="<f8", count=count, offset=offset).copy()
        offset += 8 * count
        constants.append((int(addr), values))
    return constants


class Binary:
    """A compiled program together with its bytes; what `imcc.compile` returns."""

    def __init__(self, program: Program, data: bytes | None = None, name: str = "<binary>"):
        self.program = program
        self.data = to_bytes(program) if data is None else data
        self.name = name

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<binary>") -> Binary:
        return cls(from_bytes(data, name), data, name)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Binary:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise BinaryFormatError(f"cannot read {os.fspath(path)!r}: {exc.strerror}") from None
        return cls.from_bytes(data, os.fspath(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically: a crash or a full disk never leaves a half-written binary."""
        write_atomic(Path(path), self.data)

    @property
    def target(self) -> Target:
        return self.program.target

    def __repr__(self) -> str:
        cores = sum(1 for c in self.program.code if c)
        return (
            f"<imcc.Binary {self.name} target={self.target.name!r} cores={cores} "
            f"images={len(self.program.images)} bytes={len(self.data)}>"
        )


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename over it."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    except OSError as exc:
        raise BinaryFormatError(f"cannot write {os.fspath(path)!r}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise BinaryFormatError(f"cannot write {os.fspath(path)!r}: {exc.strerror}") from None
