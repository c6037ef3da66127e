"""TFRecord files and ``tf.train.Example`` records, read without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little-endian) | uint32 masked CRC-32C of the length | data | uint32 masked CRC-32C of the data

Both checksums are verified; a file that is cut short, or whose bytes do not match their checksum, is a
:class:`~screenpilot.errors.SetupError` naming the file and the record. GZIP-compressed files (as AndroidControl
ships them) are recognised by their magic bytes. ``tf.train.Example`` is decoded from the protocol buffer wire
format directly (its three message types are small and fixed).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import IO

import numpy as np

from screenpilot.errors import SetupError

#: A feature's values: a bytes list, an int64 list or a float list.
FeatureValue = list[bytes] | list[int] | list[float]

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
_MASK_DELTA = 0xA282EAD8
#: Data at least this long is checksummed in parallel lanes (numpy); shorter data byte by byte.
_LANE_THRESHOLD = 1 << 16
_LANES = 4096


def _make_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()
_NP_TABLE = np.array(_TABLE, dtype=np.uint32)


def _register(data: bytes | memoryview, reg: int) -> int:
    """The CRC register after feeding ``data`` (no initial or final inversion)."""
    table = _TABLE
    for byte in bytes(data):
        reg = table[(reg ^ byte) & 0xFF] ^ (reg >> 8)
    return reg


def _apply(matrix: list[int], vector: int) -> int:
    """A 32x32 matrix over GF(2), given by its columns, times a 32-bit vector."""
    out = 0
    j = 0
    while vector:
        if vector & 1:
            out ^= matrix[j]
        vector >>= 1
        j += 1
    return out


@cache
def _zeros_operator(length: int) -> tuple[int, ...]:
    """The linear map of feeding ``length`` zero bytes to the register, by squaring the one-byte map."""
    one = [_register(b"\0", 1 << j) for j in range(32)]
    result = [1 << j for j in range(32)]
    power = one
    while length:
        if length & 1:
            result = [_apply(power, col) for col in result]
        power = [_apply(power, col) for col in power]
        length >>= 1
    return tuple(result)


def _register_lanes(data: memoryview, reg: int) -> int:
    """As :func:`_register`, for long data: the data is cut into lanes checksummed side by side (numpy), and the
    lanes' registers are joined (the register is linear in its start value and in the data)."""
    lane = len(data) // _LANES
    body = np.frombuffer(data[: lane * _LANES], dtype=np.uint8).reshape(_LANES, lane).T.copy()
    regs = np.zeros(_LANES, dtype=np.uint32)
    for column in body:
        regs = _NP_TABLE[(regs ^ column) & 0xFF] ^ (regs >> 8)
    shift = list(_zeros_operator(lane))
    for value in regs.tolist():
        reg = _apply(shift, reg) ^ value
    return _register(data[lane * _LANES :], reg)


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C (Castagnoli) of ``data``, as TFRecord uses."""
    view = memoryview(data)
    start = 0xFFFFFFFF
    reg = _register_lanes(view, start) if len(view) >= _LANE_THRESHOLD else _register(view, start)
    return reg ^ 0xFFFFFFFF


def masked_crc(data: bytes | memoryview) -> int:
    """TFRecord's masked CRC-32C: rotated right by 15 bits, plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _open(path: Path) -> IO[bytes] | gzip.GzipFile:
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise SetupError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise SetupError(f"{path} is a folder, not a TFRecord file") from None
    except OSError as exc:
        raise SetupError(f"cannot read {path}: {exc.strerror}") from exc
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def _read_exact(stream: IO[bytes] | gzip.GzipFile, size: int, path: Path, index: int, what: str) -> bytes:
    try:
        data = stream.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise SetupError(f"{path}: record {index}: cannot read the {what}: {exc}") from None
    if len(data) != size:
        raise SetupError(f"{path}: record {index}: the file ends inside the {what} (cut short?)")
    return data


def read_records(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(index, data)`` for each record of a TFRecord file (GZIP or not), both checksums verified."""
    with _open(path) as stream:
        index = 0
        while True:
            try:
                head = stream.read(12)
            except (OSError, EOFError, zlib.error) as exc:
                raise SetupError(f"{path}: record {index}: cannot read the length: {exc}") from None
            if not head:
                return
            if len(head) != 12:
                raise SetupError(f"{path}: record {index}: the file ends inside the length (cut short?)")
            length, length_crc = struct.unpack("<QI", head)
            if masked_crc(head[:8]) != length_crc:
                raise SetupError(
                    f"{path}: record {index}: the length's checksum does not match (not a TFRecord?)"
                )
            data = _read_exact(stream, length, path, index, "data")
            (data_crc,) = struct.unpack("<I", _read_exact(stream, 4, path, index, "data checksum"))
            if masked_crc(data) != data_crc:
                raise SetupError(f"{path}: record {index}: the data's checksum does not match (damaged file)")
            yield index, data
            index += 1


# -- protocol buffer wire format ------------------------------------------------------------------------------


class WireError(ValueError):
    """Bytes that are not a well-formed protocol buffer message."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` for each field of a message: varints and fixed-width values as
    unsigned ints, length-delimited values as bytes. Groups (wire types 3 and 4) are refused."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1 or wire == 5:
            width = 8 if wire == 1 else 4
            if pos + width > len(buf):
                raise WireError("truncated fixed-width field")
            value = int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise WireError("truncated length-delimited field")
            value = buf[pos : pos + size]
            pos += size
        else:
            raise WireError(f"unsupported wire type {wire}")
        yield number, wire, value


def signed64(value: int) -> int:
    """A varint read as a two's-complement int64 (or int32, which protobuf sign-extends to 64 bits)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_varints(buf: bytes) -> list[int]:
    values, pos = [], 0
    while pos < len(buf):
        value, pos = _varint(buf, pos)
        values.append(signed64(value))
    return values


def _feature(buf: bytes) -> FeatureValue:
    """One ``tf.train.Feature``: bytes_list = 1, float_list = 2, int64_list = 3 (each a message whose field 1
    holds the values; numbers packed or not)."""
    for number, wire, value in fields(buf):
        if wire != 2 or not isinstance(value, bytes):
            raise WireError("a Feature's list must be a message")
        inner = list(fields(value))
        if number == 1:
            return [v for n, w, v in inner if n == 1 and isinstance(v, bytes)]
        if number == 2:
            return _floats(inner)
        if number == 3:
            return _ints(inner)
    return []


def _floats(inner: list[tuple[int, int, int | bytes]]) -> list[float]:
    out: list[float] = []
    for _, wire, v in inner:
        if isinstance(v, bytes):
            out.extend(x for (x,) in struct.iter_unpack("<f", v[: len(v) // 4 * 4]))
        elif wire == 5:
            out.append(struct.unpack("<f", v.to_bytes(4, "little"))[0])
    return out


def _ints(inner: list[tuple[int, int, int | bytes]]) -> list[int]:
    out: list[int] = []
    for _, _, v in inner:
        out.extend(_packed_varints(v) if isinstance(v, bytes) else [signed64(v)])
    return out


def parse_example(data: bytes) -> dict[str, FeatureValue]:
    """A serialised ``tf.train.Example`` as ``{feature name: values}``. Raises :class:`WireError` on bytes that
    are not one."""
    features: dict[str, FeatureValue] = {}
    for number, _, value in fields(data):
        if number != 1 or not isinstance(value, bytes):
            continue
        for entry_number, _, entry in fields(value):  # Features.feature: map<string, Feature> = 1
            if entry_number != 1 or not isinstance(entry, bytes):
                continue
            key, feature = "", b""
            for n, _, v in fields(entry):
                if n == 1 and isinstance(v, bytes):
                    key = v.decode("utf-8", "replace")
                elif n == 2 and isinstance(v, bytes):
                    feature = v
            features[key] = _feature(feature)
    return features
