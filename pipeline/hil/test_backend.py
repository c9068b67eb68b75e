"""The host's copy of the firmware's deterministic TEST backend (firmware/harness/test_backend.c), so outputs
from a device running it can be checked bit for bit. It is not a model."""
from __future__ import annotations


def test_backend_outputs(data: bytes, output_count: int) -> bytes:
    h = 2166136261
    for byte in data:
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return bytes(((h >> (8 * (i % 4))) & 0xFF) ^ ((37 * i) & 0xFF) for i in range(output_count))
