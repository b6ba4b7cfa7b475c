"""Thousands of damaged binaries: the reader reports them, it never raises and never trips
over its own code (an IndexError or TypeError as the reason would be a bug)."""

from __future__ import annotations

import io
import random
import struct

from tests.unit.test_gpucode import samples
from wheelforge.audit import gpucode

MUTATIONS = 3000
BUG_TYPES = ("IndexError", "KeyError", "TypeError", "AttributeError", "NameError",
             "RecursionError", "MemoryError", "OverflowError", "ZeroDivisionError",
             "UnboundLocalError", "AssertionError", "NotImplementedError", "struct.error")


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf)) if buf else 0
        if op == 0 and buf:  # flip bits
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1:  # truncate
            del buf[rng.randrange(len(buf) + 1):]
        elif op == 2:  # insert bytes
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 3:  # delete bytes
            del buf[pos:pos + rng.randint(1, 16)]
        elif op == 4 and len(buf) >= 8:  # overwrite a header-sized field with an extreme value
            value = rng.choice([0, 1, 0xFF, 0xFFFF, 0xFFFFFFFF, 2**63, 2**64 - 1, len(buf)])
            pos = rng.randrange(min(len(buf), 128) - 7)
            buf[pos:pos + 8] = struct.pack("<Q", value % 2**64)
        elif op == 5 and buf:  # overwrite a random run
            buf[pos:pos + 4] = rng.randbytes(4)
    return bytes(buf)


def test_mutated_samples_never_raise() -> None:
    rng = random.Random(20261124)
    originals = samples()
    names = sorted(originals)
    kinds_seen: set[str] = set()
    unreadable = 0
    for i in range(MUTATIONS):
        name = names[i % len(names)]
        data = mutate(rng, originals[name])
        blobs = gpucode.scan(gpucode.FileSource(io.BytesIO(data), len(data)))
        for blob in blobs:
            assert isinstance(blob, gpucode.Blob)
            assert all(isinstance(t, str) for t in blob.targets)
            assert not any(bug in blob.problem for bug in BUG_TYPES), (name, i, blob.problem)
            kinds_seen.add(blob.kind)
            unreadable += bool(blob.problem)
    # the mutations reached every reader and some made binaries unreadable
    assert {"code object", "bundle", "compressed bundle (zlib)",
            "offload binary"} <= kinds_seen
    assert unreadable > 100


def test_mutated_samples_through_a_stream_never_raise() -> None:
    rng = random.Random(7)
    originals = samples()
    for i, name in enumerate(sorted(originals) * 40):
        data = mutate(rng, originals[name])
        src = gpucode.StreamSource(lambda data=data: io.BytesIO(data), len(data), tail=256)
        for blob in gpucode.scan(src):
            assert not any(bug in blob.problem for bug in BUG_TYPES), (name, i, blob.problem)
