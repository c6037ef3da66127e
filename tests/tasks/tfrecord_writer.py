"""A tiny TFRecord writer and tf.train.Example / android_env accessibility encoder, for test fixtures: real
framing, real CRC-32C checksums (computed here, bit by bit, independently of the reader), real wire format."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path


def crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    crc = crc32c_bitwise(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", masked(length)) + record + struct.pack("<I", masked(record))


def write_tfrecord(path: Path, records: list[bytes], *, compress: bool = True) -> Path:
    data = b"".join(frame(r) for r in records)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def message(number: int, payload: bytes) -> bytes:
    return key(number, 2) + varint(len(payload)) + payload


def int_field(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def feature(values: list[bytes] | list[int]) -> bytes:
    """A tf.train.Feature: bytes_list (1) or int64_list (3, packed)."""
    if values and isinstance(values[0], int):
        packed = b"".join(varint(v) for v in values)  # type: ignore[arg-type]
        return message(3, message(1, packed))
    return message(1, b"".join(message(1, v) for v in values))  # type: ignore[arg-type]


def example(features: dict[str, list[bytes] | list[int]]) -> bytes:
    entries = b"".join(
        message(1, message(1, k.encode()) + message(2, feature(v))) for k, v in features.items()
    )
    return message(1, entries)


def forest(boxes: list[tuple[int, int, int, int]]) -> bytes:
    """An AndroidAccessibilityForest with one window whose tree holds a node per box."""
    nodes = b""
    for i, (left, top, right, bottom) in enumerate(boxes):
        rect = int_field(1, left) + int_field(2, top) + int_field(3, right) + int_field(4, bottom)
        nodes += message(1, int_field(1, i) + message(2, rect) + message(7, b"label"))
    window = int_field(3, 7) + message(11, nodes)
    return message(1, window)
