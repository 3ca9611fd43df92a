"""Corrupted and hand-crafted binaries: whatever the bytes, loading and running end in an imcc
Diagnostic (or a result), never another exception. Half the mutants get their CRCs recomputed,
so the damage reaches the content checks behind the CRCs."""

from __future__ import annotations

import random
import struct
import zlib

import numpy as np

import imcc
from imcc.isa import container
from tests.conftest import mlp_onnx


def recompute_crcs(data: bytearray) -> None:
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


def test_mutated_binaries_end_in_diagnostics() -> None:
    binary = imcc.compile(mlp_onnx([12, 9, 3], ["relu", "none"], softmax=True), spread=True)
    rng = random.Random(0)
    x = np.ones((2, 12))
    outcomes = {"diagnostic": 0, "ran": 0}
    for trial in range(400):
        data = bytearray(binary.data)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if trial % 2:
            recompute_crcs(data)
        try:
            mutant = imcc.Binary.from_bytes(bytes(data), "mutant.imcb")
            for mode in ("functional", "cycle"):
                imcc.Simulator(mutant, mode=mode, max_cycles=10**6).run(x)
            outcomes["ran"] += 1
        except imcc.Diagnostic:
            outcomes["diagnostic"] += 1
    assert outcomes["diagnostic"] > 200  # most damage is caught, every bit of it cleanly
