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
CamCode.to_bytes); ADC per image, when given (float64 full-scale range per column). Each kind
is one row of SECTIONS, its encoder and decoder: writing and reading loop over that table.
Reading checks everything that can be checked without the runtime: sizes, bounds, CRCs, magic,
version, the target fingerprint, JSON shapes and instruction words. Every failure is a
BinaryFormatError naming the section.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import math
import os
import secrets
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imcc.isa import spec
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
_MAX_SIDE = 1 << 16  # rows, columns and leaf words of an image


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


# -- JSON sections: one checked reader. Every value is checked against a shape (type and
# range), on reading and, with the same shapes, on writing: the writer never produces a
# section the reader refuses. A fault names its entry: `inputs[0].shape[1]`, `[3].image`.


class JsonFault(Exception):
    """A JSON value that does not fit its shape; `path` names the entry ("" for the root)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"entry {path}: {message}" if path else message)
        self.path = path
        self.message = message


def _shown(value: Any) -> str:
    """A value as its JSON text (Python repr if it has none), shortened for a message."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Shape:
    noun = "a value"

    def check(self, value: Any, path: str) -> None:
        raise NotImplementedError

    def fault(self, value: Any, path: str) -> JsonFault:
        return JsonFault(path, f"found {_shown(value)}, expected {self.noun}")


@dataclass(frozen=True, slots=True)
class JsonInt(_Shape):
    lo: int
    hi: int

    @property
    def noun(self) -> str:  # type: ignore[override]
        return f"an integer in [{self.lo}, {self.hi}]"

    def check(self, value: Any, path: str) -> None:
        if not (type(value) is int and self.lo <= value <= self.hi):
            raise self.fault(value, path)


@dataclass(frozen=True, slots=True)
class JsonStr(_Shape):
    noun = "a string of Unicode text"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise self.fault(value, path)
        try:  # lone surrogates (from \\ud800 escapes or undecodable names) are not text
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise JsonFault(
                path,
                f"found {_shown(value)}, a string with a lone surrogate at character {exc.start}",
            ) from None


@dataclass(frozen=True, slots=True)
class JsonBool(_Shape):
    noun = "true or false"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            raise self.fault(value, path)


@dataclass(frozen=True, slots=True)
class JsonScalar(_Shape):
    """A string, a 64-bit integer or a finite number: a quantisation parameter."""

    noun = "a string, a 64-bit integer or a finite number"

    def check(self, value: Any, path: str) -> None:
        if isinstance(value, str):
            JsonStr().check(value, path)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise self.fault(value, path)
        elif type(value) is not int or not -(1 << 63) <= value < 1 << 63:
            raise self.fault(value, path)


@dataclass(frozen=True, slots=True)
class JsonList(_Shape):
    item: _Shape
    max_len: int = 1 << 32

    @property
    def noun(self) -> str:  # type: ignore[override]
        return f"a list of at most {self.max_len} entries"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list | tuple) or len(value) > self.max_len:
            raise self.fault(value, path)
        for i, item in enumerate(value):
            self.item.check(item, f"{path}[{i}]")


@dataclass(frozen=True, slots=True)
class JsonRow(_Shape):
    """A fixed-length list whose entries have names and shapes of their own."""

    items: tuple[tuple[str, _Shape], ...]

    @property
    def noun(self) -> str:  # type: ignore[override]
        return f"a list [{', '.join(name for name, _ in self.items)}]"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list | tuple) or len(value) != len(self.items):
            raise self.fault(value, path)
        for (name, shape), item in zip(self.items, value, strict=True):
            shape.check(item, f"{path}.{name}")


@dataclass(frozen=True, slots=True)
class JsonObject(_Shape):
    """An object with these keys (`optional` ones may be absent) and no others."""

    required: tuple[tuple[str, _Shape], ...]
    optional: tuple[tuple[str, _Shape], ...] = ()

    @property
    def noun(self) -> str:  # type: ignore[override]
        return f"an object with keys {', '.join(name for name, _ in self.required)}"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise self.fault(value, path)
        known = dict(self.required + self.optional)
        for key in value:
            if key not in known:
                raise JsonFault(
                    path, f"unknown key {_shown(key)}; expected {', '.join(map(repr, known))}"
                )
        for key, _ in self.required:
            if key not in value:
                raise JsonFault(path, f"missing key {key!r}")
        for key, item in value.items():
            known[key].check(item, f"{path}.{key}" if path else key)


@dataclass(frozen=True, slots=True)
class JsonMap(_Shape):
    """An object of string keys to values of one shape."""

    value: _Shape

    @property
    def noun(self) -> str:  # type: ignore[override]
        return f"an object of strings to {self.value.noun}"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise self.fault(value, path)
        for key, item in value.items():
            JsonStr().check(key, f"{path} key" if path else "key")
            self.value.check(item, f"{path}.{key}" if path else key)


def _reject_constant(name: str) -> Any:
    raise JsonFault("", f"found {name}, which is not a JSON number (expected finite numbers)")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise JsonFault("", f"duplicate key {_shown(key)}")
        seen[key] = value
    return seen


def parse_json(body: bytes, shape: _Shape | None = None) -> Any:
    """Strict JSON (RFC 8259: UTF-8, no NaN or Infinity, no duplicate keys) checked against
    `shape`; every fault, including nesting too deep for the parser, is a JsonFault."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonFault("", f"byte {exc.start} (0x{body[exc.start]:02x}) is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise JsonFault("", f"not valid JSON ({exc})") from None
    except RecursionError:
        raise JsonFault("", "not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise JsonFault("", f"not valid JSON ({str(exc).split(':')[0]})") from None
    if shape is not None:
        shape.check(value, "")
    return value


def dump_json(value: Any, shape: _Shape) -> bytes:
    """The canonical bytes of `value` after checking it against `shape` (JsonFault if not)."""
    shape.check(value, "")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _limit(kind: spec.OperandKind) -> int:
    """The largest value an operand field of this kind holds."""
    return (1 << spec.WIDTH[kind]) - 1


MAX_RANK = 32  # numpy's limit on dimensions
MAX_ELEMENTS = 1 << 62  # a tensor's size fits a signed 64-bit integer with room
TENSOR = JsonObject(
    required=(
        ("name", JsonStr()),
        ("shape", JsonList(JsonInt(0, MAX_ELEMENTS), MAX_RANK)),
        ("addr", JsonInt(0, (1 << 64) - 1)),  # global addresses are u64, as in CONST
        ("dtype", JsonStr()),
        ("batch_axis", JsonBool()),
    ),
    optional=(("quant", JsonMap(JsonScalar())),),
)
IO_SHAPE = JsonObject(required=(("inputs", JsonList(TENSOR)), ("outputs", JsonList(TENSOR))))
META_SHAPE = JsonMap(JsonStr())
CORE = JsonInt(0, _limit(spec.OperandKind.CORE))
PC = JsonInt(0, _limit(spec.OperandKind.TARGET))
BIND_SHAPE = JsonList(
    JsonRow(
        (
            ("core", CORE),
            ("array", JsonInt(0, _limit(spec.OperandKind.ARRAY))),
            ("image", JsonInt(0, _limit(spec.OperandKind.IMAGE))),
        )
    )
)
CAMBIND_SHAPE = JsonList(
    JsonRow(
        (
            ("core", CORE),
            ("array", JsonInt(0, _limit(spec.OperandKind.CAM))),
            ("image", JsonInt(0, _limit(spec.OperandKind.CAM_IMAGE))),
        )
    )
)
DEBUG_SHAPE = JsonList(JsonRow((("core", CORE), ("first", PC), ("last", PC), ("node", JsonStr()))))


def tensor_from_dict(data: dict[str, Any], path: str = "") -> TensorInfo:
    """A TensorInfo from its checked JSON form (TENSOR), with the rules across keys."""
    TENSOR.check(data, path)
    size = math.prod(data["shape"])
    if size > MAX_ELEMENTS:
        raise JsonFault(
            f"{path}.shape" if path else "shape",
            f"found {_shown(data['shape'])}, {size} elements; expected at most {MAX_ELEMENTS}",
        )
    return TensorInfo(
        name=data["name"],
        shape=tuple(data["shape"]),
        addr=data["addr"],
        dtype=data["dtype"],
        batch_axis=data["batch_axis"],
        quant=tuple(sorted(data.get("quant", {}).items())),
    )


def _debug_map(runs: Sequence[Sequence[Any]], lengths: Sequence[int]) -> dict[tuple[int, int], str]:
    """(core, pc) -> node from checked DEBUG runs; every run names instructions that exist."""
    debug: dict[tuple[int, int], str] = {}
    for i, (core, first, last, node) in enumerate(runs):
        have = lengths[core] if core < len(lengths) else 0
        if not first <= last < have:
            raise JsonFault(
                f"[{i}]",
                f"found the run of pcs {first}..{last} on core {core}, expected pcs of its "
                f"{have} instructions",
            )
        for pc in range(first, last + 1):
            debug[(core, pc)] = node
    return debug


# -- the sections: one table of codecs. A row names its kind, how it is written from a Program
# and how it is read back into the Program's fields; `to_bytes` and `from_bytes` loop over the
# table, so a new section is one new row (and its Program field).


@dataclass(frozen=True, slots=True)
class Writer:
    """What a section's encoder needs: the file name, and the section its faults name."""

    name: str
    section: str = ""

    def at(self, section: str) -> Writer:
        return Writer(self.name, section)

    def refuse(self, message: str) -> BinaryFormatError:
        """What the reader would refuse, as a fault of the writer."""
        return BinaryFormatError(f"cannot write {message}", SectionLoc(self.name, self.section))

    def json(self, value: Any, shape: _Shape) -> bytes:
        try:
            return dump_json(value, shape)
        except JsonFault as exc:
            raise self.refuse(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Reader:
    """What a section's decoder needs: the fields decoded so far (in table order), the header's
    target fingerprint, and the section its faults name."""

    name: str
    fingerprint: bytes
    fields: dict[str, Any]
    section: str = ""

    def at(self, section: str) -> Reader:
        return Reader(self.name, self.fingerprint, self.fields, section)

    def fail(self, message: str, offset: int | None = None) -> BinaryFormatError:
        return BinaryFormatError(message, SectionLoc(self.name, self.section, offset))

    def json(self, body: bytes, shape: _Shape | None = None) -> Any:
        """A JSON section, checked against its shape: the fault names the section and entry."""
        try:
            return parse_json(body, shape)
        except JsonFault as exc:
            raise self.fail(str(exc)) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    """One kind of section. `encode` gives the (index, body) of each section of this kind the
    program needs, in order; `decode` takes the bodies by index (a `required` kind always has
    index 0) and gives Program fields. `kind` is any IntEnum member: its value is the table's
    kind field, its name the label of every fault."""

    kind: enum.IntEnum
    required: bool
    encode: Callable[[Program, Writer], list[tuple[int, bytes]]]
    decode: Callable[[dict[int, bytes], Reader], dict[str, Any]]


def single(
    kind: enum.IntEnum,
    encode: Callable[[Program, Writer], bytes | None],
    decode: Callable[[bytes, Reader], dict[str, Any]],
    required: bool = True,
) -> Section:
    """A kind with one section, index 0 (an optional one is written when `encode` gives bytes
    and read when present; other indices are ignored)."""

    def encode_all(program: Program, writer: Writer) -> list[tuple[int, bytes]]:
        body = encode(program, writer.at(kind.name))
        return [] if body is None else [(0, body)]

    def decode_all(bodies: dict[int, bytes], reader: Reader) -> dict[str, Any]:
        return decode(bodies[0], reader.at(kind.name)) if 0 in bodies else {}

    return Section(kind=kind, required=required, encode=encode_all, decode=decode_all)


def numbered(
    kind: enum.IntEnum,
    field: str,
    encode: Callable[[Any, Writer], bytes],
    decode: Callable[[bytes, int, Reader], Any],
    numbering: str = "",
) -> Section:
    """One section per item of the list field `field`, numbered 0..n-1; `numbering` opens the
    fault when they are not ("KIND sections must be numbered 0..n-1" unless given)."""
    numbering = numbering or f"{kind.name} sections must be numbered 0..n-1"

    def encode_all(program: Program, writer: Writer) -> list[tuple[int, bytes]]:
        items = getattr(program, field)
        return [(i, encode(item, writer.at(f"{kind.name}[{i}]"))) for i, item in enumerate(items)]

    def decode_all(bodies: dict[int, bytes], reader: Reader) -> dict[str, Any]:
        found = sorted(bodies)
        if found != list(range(len(found))):
            raise reader.at(kind.name).fail(f"{numbering}, found {found}")
        return {field: [decode(bodies[i], i, reader.at(f"{kind.name}[{i}]")) for i in found]}

    return Section(kind=kind, required=False, encode=encode_all, decode=decode_all)


def keyed(
    kind: enum.IntEnum,
    field: str,
    encode: Callable[[int, Any, Program, Writer], bytes],
    decode: Callable[[bytes, int, Reader], Any],
) -> Section:
    """One section per entry of the dict field `field`, by its integer key, in key order."""

    def encode_all(program: Program, writer: Writer) -> list[tuple[int, bytes]]:
        return [
            (i, encode(i, item, program, writer.at(f"{kind.name}[{i}]")))
            for i, item in sorted(getattr(program, field).items())
        ]

    def decode_all(bodies: dict[int, bytes], reader: Reader) -> dict[str, Any]:
        return {
            field: {i: decode(bodies[i], i, reader.at(f"{kind.name}[{i}]")) for i in sorted(bodies)}
        }

    return Section(kind=kind, required=False, encode=encode_all, decode=decode_all)


# TARGET (JSON, its own reader in target.py) -----------------------------------------------


def _write_target(program: Program, writer: Writer) -> bytes:
    return program.target.to_json().encode()


def _read_target(body: bytes, reader: Reader) -> dict[str, Any]:
    try:
        target = Target.from_dict(reader.json(body), f"{reader.name}: section TARGET")
    except TargetError as exc:
        raise reader.fail(exc.message) from None
    if target.fingerprint != reader.fingerprint:
        raise reader.at("header").fail("target fingerprint does not match the TARGET section")
    return {"target": target}


# IO, META, BIND, CAMBIND (JSON) -----------------------------------------------------------


def _write_io(program: Program, writer: Writer) -> bytes:
    io = {
        "inputs": [t.to_dict() for t in program.inputs],
        "outputs": [t.to_dict() for t in program.outputs],
    }
    body = writer.json(io, IO_SHAPE)
    for side in ("inputs", "outputs"):
        for i, tensor in enumerate(io[side]):
            try:
                tensor_from_dict(tensor, f"{side}[{i}]")
            except JsonFault as exc:
                raise writer.refuse(str(exc)) from None
    return body


def _read_io(body: bytes, reader: Reader) -> dict[str, Any]:
    io = reader.json(body, IO_SHAPE)
    try:
        return {
            side: [tensor_from_dict(t, f"{side}[{i}]") for i, t in enumerate(io[side])]
            for side in ("inputs", "outputs")
        }
    except JsonFault as exc:
        raise reader.fail(str(exc)) from None


def _write_meta(program: Program, writer: Writer) -> bytes:
    return writer.json(program.meta, META_SHAPE)


def _read_meta(body: bytes, reader: Reader) -> dict[str, Any]:
    return {"meta": reader.json(body, META_SHAPE)}


def _bindings(
    field: str, shape: _Shape, optional: bool = False
) -> tuple[Callable[[Program, Writer], bytes | None], Callable[[bytes, Reader], dict[str, Any]]]:
    """The codec of a JSON list of bindings [core, array, image] in the Program field `field`;
    an `optional` kind writes no section for no bindings."""

    def encode(program: Program, writer: Writer) -> bytes | None:
        bound = [[b.core, b.array, b.image] for b in getattr(program, field)]
        return None if optional and not bound else writer.json(bound, shape)

    def decode(body: bytes, reader: Reader) -> dict[str, Any]:
        return {field: [Binding(c, a, i) for c, a, i in reader.json(body, shape)]}

    return encode, decode


_write_bind, _read_bind = _bindings("bindings", BIND_SHAPE)
_write_cambind, _read_cambind = _bindings("cam_bindings", CAMBIND_SHAPE, optional=True)


# CODE (64-bit words per core) --------------------------------------------------------------


def _write_code(code: list[Any], writer: Writer) -> bytes:
    return encode_code(code)


def _read_code(body: bytes, core: int, reader: Reader) -> list[Any]:
    try:
        return decode_code(body, core)
    except Diagnostic as exc:
        message = f"{exc.loc}: {exc.message}" if exc.loc else exc.message
        raise reader.fail(message) from None


# IMAGE (rows u32, cols u32, zlib of uint16 levels) ----------------------------------------


def _write_image(image: XbarImage, writer: Writer) -> bytes:
    if not (0 < image.rows <= _MAX_SIDE and 0 < image.cols <= _MAX_SIDE):
        raise writer.refuse(
            f"an image of shape {image.rows}x{image.cols}, expected 1..{_MAX_SIDE} rows and columns"
        )
    head = _IMAGE.pack(image.rows, image.cols)
    # level 6: as small as level 9 on cell levels, and ten times faster
    return head + zlib.compress(image.levels.tobytes(), 1)


def _inflate(body: bytes, expected: int) -> tuple[bytes, bool]:
    """Bounded decompression: a hand-crafted stream cannot make us allocate more than declared.
    The bytes (at most one more than expected) and whether the stream ended."""
    inflater = zlib.decompressobj()
    raw = inflater.decompress(body, expected + 1)
    return raw, inflater.eof


def _read_image(body: bytes, index: int, reader: Reader) -> XbarImage:
    if len(body) < _IMAGE.size:
        raise reader.fail(f"image header is {len(body)} bytes, expected {_IMAGE.size}")
    rows, cols = _IMAGE.unpack_from(body)
    if not (0 < rows <= _MAX_SIDE and 0 < cols <= _MAX_SIDE):
        raise reader.fail(f"image shape {rows}x{cols} is out of range")
    expected = rows * cols * 2
    try:
        raw, ended = _inflate(body[_IMAGE.size :], expected)
    except zlib.error as exc:
        raise reader.fail(f"compressed levels are corrupt ({exc})") from None
    if len(raw) != expected or not ended:
        raise reader.fail(f"levels hold {len(raw)} bytes, expected {expected} for {rows}x{cols}")
    return XbarImage(np.frombuffer(raw, dtype="<u2").reshape(rows, cols))


# CONST (addr u64, count u64, float64 values, repeated) -------------------------------------


def _write_constants(program: Program, writer: Writer) -> bytes:
    for addr, _ in program.constants:
        if not (type(addr) is int or isinstance(addr, np.integer)) or not 0 <= addr < 1 << 64:
            raise writer.refuse(
                f"constants at address {addr!r}, expected an integer in [0, {(1 << 64) - 1}]"
            )
    return b"".join(
        _CONST.pack(addr, len(values)) + np.asarray(values, dtype="<f8").tobytes()
        for addr, values in program.constants
    )


def _read_constants(blob: bytes, reader: Reader) -> dict[str, Any]:
    constants = []
    offset = 0
    while offset < len(blob):
        if offset + _CONST.size > len(blob):
            raise reader.fail("truncated constant block header", offset)
        addr, count = _CONST.unpack_from(blob, offset)
        offset += _CONST.size
        if count > (len(blob) - offset) // 8:
            raise reader.fail(f"constant block of {count} values runs past the section end", offset)
        values = np.frombuffer(blob, dtype="<f8", count=count, offset=offset).copy()
        offset += 8 * count
        constants.append((int(addr), values))
    return {"constants": constants}


# DEBUG (JSON runs of pcs per node; after CODE, whose lengths it is checked against) --------


def _write_debug(program: Program, writer: Writer) -> bytes:
    runs = _debug_runs(program.debug)
    body = writer.json(runs, DEBUG_SHAPE)
    try:
        _debug_map(runs, [len(code) for code in program.code])
    except JsonFault as exc:
        raise writer.refuse(str(exc)) from None
    return body


def _read_debug(body: bytes, reader: Reader) -> dict[str, Any]:
    runs = reader.json(body, DEBUG_SHAPE)
    try:
        return {"debug": _debug_map(runs, [len(c) for c in reader.fields["code"]])}
    except JsonFault as exc:
        raise reader.fail(str(exc)) from None


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


# ADC (per image: float64 full-scale range per column; after IMAGE) -------------------------


def _write_adc(index: int, ranges: Any, program: Program, writer: Writer) -> bytes:
    values = np.asarray(ranges, dtype="<f8")
    cols = program.images[index].cols if 0 <= index < len(program.images) else None
    if cols is None or values.shape != (cols,) or not np.all(np.isfinite(values) & (values > 0)):
        raise writer.refuse(
            f"ADC ranges of shape {values.shape} for image {index}, "
            "expected one finite positive range per column of an image"
        )
    return values.tobytes()


def _read_adc(body: bytes, index: int, reader: Reader) -> np.ndarray:
    images = reader.fields["images"]
    if index >= len(images):
        raise reader.fail(f"ADC ranges for image {index}; the binary has {len(images)} images")
    if len(body) != 8 * images[index].cols:
        raise reader.fail(
            f"{len(body)} bytes of ADC ranges; image {index} has "
            f"{images[index].cols} columns (8 bytes each)"
        )
    ranges = np.frombuffer(body, dtype="<f8").copy()
    if not np.all(np.isfinite(ranges) & (ranges > 0)):
        raise reader.fail("ADC ranges must be finite and positive")
    return ranges


# CAM (rows, cols, leaf width, trees: u32 each, then zlib of low and high bounds and leaves) --


def _write_cam(cam: CamImage, writer: Writer) -> bytes:
    if not (
        0 < cam.rows <= _MAX_SIDE
        and 0 < cam.cols <= _MAX_SIDE
        and 0 <= cam.width <= _MAX_SIDE
        and 0 <= cam.trees < 1 << 32
    ):
        raise writer.refuse(
            f"a CAM image of {cam.rows}x{cam.cols} with "
            f"{cam.width} leaf words and {cam.trees} trees, expected 1..{_MAX_SIDE} "
            f"rows and cells, at most {_MAX_SIDE} leaf words and 2^32 trees"
        )
    head = _CAM.pack(cam.rows, cam.cols, cam.width, cam.trees)
    body = cam.low.astype("<u2").tobytes() + cam.high.astype("<u2").tobytes()
    body += cam.leaves.astype("<f8").tobytes()
    return head + zlib.compress(body, 1)


def _read_cam(body: bytes, index: int, reader: Reader) -> CamImage:
    if len(body) < _CAM.size:
        raise reader.fail(f"CAM image header is {len(body)} bytes, expected {_CAM.size}")
    rows, cols, width, trees = _CAM.unpack_from(body)
    if not (0 < rows <= _MAX_SIDE and 0 < cols <= _MAX_SIDE and width <= _MAX_SIDE):
        raise reader.fail(f"CAM image shape {rows}x{cols} with {width} leaf words is out of range")
    expected = rows * cols * 4 + rows * width * 8
    try:
        raw, ended = _inflate(body[_CAM.size :], expected)
    except zlib.error as exc:
        raise reader.fail(f"compressed CAM image is corrupt ({exc})") from None
    if len(raw) != expected or not ended:
        raise reader.fail(
            f"CAM image holds {len(raw)} bytes, expected {expected} for {rows}x{cols} with "
            f"{width} leaf words"
        )
    cells = rows * cols
    low = np.frombuffer(raw, dtype="<u2", count=cells).reshape(rows, cols)
    high = np.frombuffer(raw, dtype="<u2", count=cells, offset=2 * cells).reshape(rows, cols)
    leaves = np.frombuffer(raw, dtype="<f8", offset=4 * cells).reshape(rows, width)
    return CamImage(low, high, leaves, trees)


# CAMCODE (per coding table: isa/acam.py CamCode.to_bytes) ----------------------------------


def _write_cam_code(coding: CamCode, writer: Writer) -> bytes:
    body = coding.to_bytes()
    try:
        CamCode.from_bytes(body)
    except ValueError as exc:
        raise writer.refuse(f"a coding table the reader refuses ({exc})") from None
    return body


def _read_cam_code(body: bytes, index: int, reader: Reader) -> CamCode:
    try:
        return CamCode.from_bytes(body)
    except ValueError as exc:
        raise reader.fail(f"malformed coding table ({exc})") from None


# In file order. A decoder may read the fields of rows above it (DEBUG the code, ADC the images).
SECTIONS: tuple[Section, ...] = (
    single(Kind.TARGET, _write_target, _read_target),
    single(Kind.IO, _write_io, _read_io),
    single(Kind.META, _write_meta, _read_meta),
    numbered(
        Kind.CODE, "code", _write_code, _read_code, "code sections must be numbered 0..n-1 by core"
    ),
    numbered(Kind.IMAGE, "images", _write_image, _read_image, "images must be numbered 0..n-1"),
    single(Kind.BIND, _write_bind, _read_bind),
    single(Kind.CONST, _write_constants, _read_constants),
    single(Kind.DEBUG, _write_debug, _read_debug),
    keyed(Kind.ADC, "adc_ranges", _write_adc, _read_adc),
    numbered(Kind.CAM, "cam_images", _write_cam, _read_cam),
    single(Kind.CAMBIND, _write_cambind, _read_cambind, required=False),
    numbered(Kind.CAMCODE, "cam_codes", _write_cam_code, _read_cam_code),
)


def check_sections(sections: Sequence[Section]) -> None:
    """Reject a table with two rows of one kind value (the file could not tell them apart)."""
    seen: dict[int, str] = {}
    for row in sections:
        if int(row.kind) in seen:
            raise ValueError(
                f"section kind {int(row.kind)} of {row.kind.name} already belongs to "
                f"{seen[int(row.kind)]}"
            )
        seen[int(row.kind)] = row.kind.name


check_sections(SECTIONS)


def to_bytes(
    program: Program, name: str = "<binary>", *, sections: Sequence[Section] = SECTIONS
) -> bytes:
    """Serialise deterministically: the same program always gives the same bytes.

    What the reader would refuse (a name that is not text, a number JSON cannot hold, a debug
    entry for no instruction) is a BinaryFormatError naming the section and entry instead.
    """
    writer = Writer(name)
    parts = [
        (row.kind, index, body) for row in sections for index, body in row.encode(program, writer)
    ]
    offset = _HEADER.size + _ENTRY.size * len(parts)
    table = b""
    for kind, index, data in parts:
        table += _ENTRY.pack(kind, index, 0, offset, len(data), zlib.crc32(data), 0)
        offset += len(data)
    header = _HEADER.pack(
        MAGIC, VERSION, 0, len(parts), program.target.fingerprint, zlib.crc32(table)
    )
    return header + table + b"".join(data for _, _, data in parts)


def from_bytes(
    data: bytes,
    name: str = "<binary>",
    *,
    sections: Sequence[Section] = SECTIONS,
    program_type: type[Program] = Program,
) -> Program:
    """Parse and check a container; raise BinaryFormatError naming the section at fault.

    `sections` and `program_type` (a Program with a field per extra section) read a container
    with more kinds of section than this one."""

    def fail(section: str, message: str) -> BinaryFormatError:
        return BinaryFormatError(message, SectionLoc(name, section))

    count, fingerprint, table_end = _read_header(data, fail)
    rows = {int(row.kind): row for row in sections}
    bodies: dict[int, dict[int, bytes]] = {kind: {} for kind in rows}
    for i in range(count):
        kind, index, body = _read_entry(data, i, table_end, rows, fail)
        if index in bodies[kind]:
            raise fail(f"{rows[kind].kind.name}[{index}]", "section appears twice")
        bodies[kind][index] = body
    for row in sections:
        if row.required and 0 not in bodies[int(row.kind)]:
            raise fail(row.kind.name, "required section is missing")
    reader = Reader(name, fingerprint, {})
    for row in sections:
        reader.fields.update(row.decode(bodies[int(row.kind)], reader))
    return program_type(**reader.fields)


def _read_header(
    data: bytes, fail: Callable[[str, str], BinaryFormatError]
) -> tuple[int, bytes, int]:
    """(section count, target fingerprint, end of the table) of a checked header and table."""
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
    if zlib.crc32(data[_HEADER.size : table_end]) != table_crc:
        raise fail("table", "section table CRC mismatch (corrupted file)")
    return count, fingerprint, table_end


def _read_entry(
    data: bytes,
    i: int,
    table_end: int,
    rows: dict[int, Section],
    fail: Callable[[str, str], BinaryFormatError],
) -> tuple[int, int, bytes]:
    """(kind, index, body) of table entry i, its bounds and CRC checked."""
    kind, index, _, offset, size, crc, _ = _ENTRY.unpack_from(data, _HEADER.size + i * _ENTRY.size)
    if kind not in rows:
        raise fail("table", f"entry {i} has unknown section kind {kind}")
    label = f"{rows[kind].kind.name}[{index}]"
    if offset < table_end or offset + size > len(data):
        raise fail(
            label,
            f"section spans bytes [{offset}, {offset + size}) outside the "
            f"{len(data)}-byte file (truncated?)",
        )
    body = data[offset : offset + size]
    if zlib.crc32(body) != crc:
        raise fail(label, "CRC32 mismatch (corrupted file)")
    return kind, index, body


class Binary:
    """A compiled program together with its bytes; what `imcc.compile` returns."""

    def __init__(self, program: Program, data: bytes | None = None, name: str = "<binary>"):
        self.program = program
        self.data = to_bytes(program, name) if data is None else data
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
    """Write to a temporary file beside `path`, then rename over it.

    The file gets the mode any new file gets (0o666 less the umask): the temporary file is
    created with that mode, as `open` would, not mkstemp's 0o600. Whatever fails, including an
    interrupt, the temporary file is removed. The error has no location: the caller (the CLI)
    knows which option named the path.
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    tmp = None
    try:
        for _ in range(100):  # a name taken by another writer: draw another
            candidate = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
            try:
                fd = os.open(candidate, flags, 0o666)  # the kernel applies the umask
            except FileExistsError:
                continue
            tmp = candidate
            break
        else:  # pragma: no cover - 100 collisions of 48 random bits
            raise FileExistsError(errno.EEXIST, "no free temporary name")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise BinaryFormatError(f"cannot write {os.fspath(path)!r}: {exc.strerror}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
