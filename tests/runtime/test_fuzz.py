"""Corrupted and hand-crafted binaries: whatever the bytes, loading and running end in a result
or an imcc Diagnostic with a location, never another exception and never a hang.

Three kinds of damage, on a compiled MLP (crossbars) and a compiled forest (analog CAM): random
bytes (half the mutants get their CRCs recomputed, so the damage reaches the content checks
behind the CRCs), spliced section tables (bodies swapped, dropped, repeated, cut, renumbered),
mutated JSON sections (a field replaced by Infinity, -1, 2^64, a huge string, a wrong type, a
near miss, deleted or added) and instructions with other legal operands, always with valid
CRCs. Every run has a bounded cycle budget.
`IMCC_FUZZ_SCALE=N` runs N times as many cases.
"""

from __future__ import annotations

import json
import random
import struct
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import imcc
from imcc.isa import container, spec
from imcc.isa.encoding import decode_code, encode_code, make, operand_bounds
from tests.conftest import mlp_onnx
from tests.fuzzing import Tally, cases

MAX_CYCLES = 20_000  # every simulation here is bounded: a mutant that loops stops quickly


def recompute_crcs(data: bytearray) -> None:
    """Make every section CRC and the table CRC match the (damaged) bytes."""
    if len(data) < container._HEADER.size:
        return
    count = container._HEADER.unpack_from(data)[3]
    table_end = container._HEADER.size + count * container._ENTRY.size
    if table_end > len(data):
        return
    for i in range(count):
        at = container._HEADER.size + i * container._ENTRY.size
        kind, index, reserved, offset, size, _, spare = container._ENTRY.unpack_from(data, at)
        if offset + size <= len(data):
            crc = zlib.crc32(bytes(data[offset : offset + size]))
            container._ENTRY.pack_into(data, at, kind, index, reserved, offset, size, crc, spare)
    table = bytes(data[container._HEADER.size : table_end])
    struct.pack_into("<I", data, container._HEADER.size - 4, zlib.crc32(table))


Section = tuple[int, int, bytes]  # kind, index, body


def split(data: bytes) -> tuple[bytes, list[Section]]:
    """The target fingerprint and the sections of a well-formed container."""
    count, fingerprint = container._HEADER.unpack_from(data)[3:5]
    parts = []
    for i in range(count):
        at = container._HEADER.size + i * container._ENTRY.size
        kind, index, _, offset, size, _, _ = container._ENTRY.unpack_from(data, at)
        parts.append((kind, index, data[offset : offset + size]))
    return fingerprint, parts


def join(fingerprint: bytes, parts: list[Section]) -> bytes:
    """A container of exactly these sections, with valid CRCs (the writer, by hand)."""
    offset = container._HEADER.size + container._ENTRY.size * len(parts)
    table = b""
    for kind, index, body in parts:
        table += container._ENTRY.pack(kind, index, 0, offset, len(body), zlib.crc32(body), 0)
        offset += len(body)
    header = container._HEADER.pack(
        container.MAGIC, container.VERSION, 0, len(parts), fingerprint, zlib.crc32(table)
    )
    return header + table + b"".join(body for _, _, body in parts)


# -- the three kinds of damage


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        at = rng.randrange(len(damaged))
        if choice < 0.6:
            damaged[at] = rng.randrange(256)
        elif choice < 0.8:
            damaged[at] ^= 1 << rng.randrange(8)
        elif choice < 0.9:
            del damaged[at : at + rng.randint(1, 16)]
        else:
            damaged[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    if rng.random() < 0.5:
        recompute_crcs(damaged)
    return bytes(damaged)


def splice(rng: random.Random, data: bytes) -> bytes:
    fingerprint, parts = split(data)
    for _ in range(rng.randint(1, 3)):
        i, j = rng.randrange(len(parts)), rng.randrange(len(parts))
        kind, index, body = parts[i]
        choice = rng.randrange(7)
        if choice == 0:  # another section's body
            parts[i] = (kind, index, parts[j][2])
        elif choice == 1:  # gone
            del parts[i]
        elif choice == 2:  # twice
            parts.insert(j, parts[i])
        elif choice == 3:  # cut short
            parts[i] = (kind, index, body[: rng.randrange(len(body) + 1)])
        elif choice == 4:  # renumbered
            parts[i] = (kind, rng.choice([index + 1, max(index - 1, 0), 7, 65535]), body)
        elif choice == 5:  # another kind
            parts[i] = (rng.randrange(1, 14), index, body)
        else:  # swapped places
            parts[i], parts[j] = parts[j], parts[i]
        if not parts:
            break
    if not parts:
        return data[: container._HEADER.size]
    return join(fingerprint, parts)


HUGE = 1 << 64
BAD_VALUES: list[Any] = [
    float("inf"), float("-inf"), float("nan"), -1, 0, HUGE, HUGE - 1, 1 << 63, -(1 << 63) - 1,
    1e308, 1.5, True, None, "", "x" * 100_000, "\udcff", [], {}, [[[]]], {"a": 1}, "0",
    10**30, -(10**30), 4096, 65535, 1 << 24, 1 << 32,
]  # fmt: skip
K = container.Kind
JSON_KINDS = (K.TARGET, K.IO, K.META, K.BIND, K.DEBUG, K.CAMBIND)


def places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every node of a JSON value (root included)."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += places(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += places(item, (*path, i))
    return found


def mutate_json(rng: random.Random, data: bytes) -> bytes:
    fingerprint, parts = split(data)
    candidates = [i for i, (kind, _, _) in enumerate(parts) if kind in JSON_KINDS]
    for _ in range(rng.randint(1, 2)):
        i = rng.choice(candidates)
        kind, index, body = parts[i]
        value = json.loads(body)
        path = rng.choice(places(value))
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        choice = rng.random()
        here = parent[path[-1]] if path else value
        if not path:
            value = rng.choice(BAD_VALUES)
        elif type(here) is int and choice < 0.4:  # a near miss, past the type checks
            parent[path[-1]] = rng.choice([here - 1, here + 1, 2 * here + 1, here + 1000, 0])
        elif choice < 0.75:
            parent[path[-1]] = rng.choice(BAD_VALUES)
        elif choice < 0.85:
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["extra", path[-1] + "x"]) if isinstance(path[-1], str) else "k"] = 1
        else:
            parent.append(rng.choice(BAD_VALUES))
        text = json.dumps(value)  # Infinity and NaN as Python writes them; \udcff escaped
        if rng.random() < 0.05:
            text = text.encode("utf-8", "surrogatepass").decode("latin-1")  # not UTF-8 then
            raw = text.encode("latin-1")
        else:
            raw = text.encode()
        parts[i] = (kind, index, raw)
    return join(fingerprint, parts)


def mutate_code(rng: random.Random, data: bytes) -> bytes:
    """Legal words with other operands: past the decoder, into the loader and the simulator."""
    fingerprint, parts = split(data)
    codes = [i for i, (kind, _, body) in enumerate(parts) if kind == container.Kind.CODE and body]
    for _ in range(rng.randint(1, 3)):
        i = rng.choice(codes)
        kind, core, body = parts[i]
        code = decode_code(body, core)
        pc = rng.randrange(len(code))
        if rng.random() < 0.2:  # another instruction altogether
            row = rng.choice(spec.TABLE)
            operands = [rng.randint(*operand_bounds(f)) for f in row.fields]
        else:
            row = code[pc].spec
            operands = list(code[pc].operands)
            if not operands:
                continue
            at = rng.randrange(len(operands))
            lo, hi = operand_bounds(row.fields[at])
            near = [lo, hi, lo + 1, operands[at] + 1, operands[at] - 1, rng.randint(lo, hi)]
            operands[at] = rng.choice(near)
            operands[at] = min(max(operands[at], lo), hi)
        code[pc] = make(row, *operands)
        parts[i] = (kind, core, encode_code(code))
    return join(fingerprint, parts)


@pytest.fixture(scope="module")
def binaries() -> dict[str, tuple[imcc.Binary, np.ndarray]]:
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y)
    mlp = imcc.compile(mlp_onnx([12, 9, 3], ["relu", "none"], softmax=True), spread=True)
    return {
        "mlp": (mlp, np.ones((2, 12))),
        "forest": (imcc.compile(forest, target="xtime"), x[:2]),
    }


def load_and_run(data: bytes, x: np.ndarray, mode: str) -> object:
    mutant = imcc.Binary.from_bytes(data, "mutant.imcb")
    return imcc.Simulator(mutant, mode=mode, max_cycles=MAX_CYCLES).run(x)


MUTATIONS: dict[str, tuple[Callable[[random.Random, bytes], bytes], int]] = {
    "bytes": (mutate_bytes, 400),
    "splice": (splice, 200),
    "json": (mutate_json, 500),
    "code": (mutate_code, 400),
}


@pytest.mark.parametrize("kind", MUTATIONS)
def test_damaged_binaries_end_in_a_result_or_a_located_diagnostic(
    kind: str, binaries: dict[str, tuple[imcc.Binary, np.ndarray]]
) -> None:
    mutate, default = MUTATIONS[kind]
    rng = random.Random(f"binaries-{kind}")
    tally = Tally(f"binaries-{kind}")
    for trial in range(cases(default)):
        name = ("mlp", "forest")[trial % 2]
        binary, x = binaries[name]
        data = mutate(rng, binary.data)
        mode = ("functional", "cycle")[trial // 2 % 2]
        tally.run(
            f"{kind} {name} #{trial} ({mode})", lambda d=data, x=x, m=mode: load_and_run(d, x, m)
        )
    tally.assert_clean()
    # the damage reaches the checks: most mutants are refused, cleanly
    assert tally.outcomes["diagnostic"] > cases(default) // 4
