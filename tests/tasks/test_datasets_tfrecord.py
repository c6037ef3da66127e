"""TFRecord framing, CRC-32C checks and tf.train.Example decoding, on files written here."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from screenpilot.errors import SetupError
from screenpilot.tasks.datasets.tfrecord import crc32c, masked_crc, parse_example, read_records
from tests.tasks.tfrecord_writer import crc32c_bitwise, example, frame, masked, write_tfrecord


def test_crc32c_check_value_and_long_data() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    data = os.urandom(200_003)  # long enough for the parallel lanes, and not a multiple of them
    assert crc32c(data) == crc32c_bitwise(data)
    assert masked_crc(b"abc") == masked(b"abc")


def test_records_and_examples_round_trip(tmp_path: Path) -> None:
    records = [example({"goal": [b"Open the app"], "ids": [7, -1, 1 << 40]}), b"", example({})]
    for compress in (True, False):
        path = write_tfrecord(tmp_path / f"r{compress}.tfrecord", records, compress=compress)
        got = list(read_records(path))
        assert [i for i, _ in got] == [0, 1, 2] and [d for _, d in got] == records
    assert parse_example(records[0]) == {"goal": [b"Open the app"], "ids": [7, -1, 1 << 40]}


def test_a_damaged_record_is_one_line_naming_it(tmp_path: Path) -> None:
    good, bad = frame(b"first"), bytearray(frame(b"second record"))
    bad[14] ^= 0xFF  # a data byte: the data checksum no longer matches
    path = tmp_path / "d.tfrecord.gz"
    path.write_bytes(gzip.compress(good + bytes(bad)))
    with pytest.raises(SetupError, match=r"d\.tfrecord\.gz: record 1: the data's checksum does not match"):
        list(read_records(path))
    path.write_bytes(gzip.compress(good + frame(b"third")[:-3]))
    with pytest.raises(SetupError, match=r"record 1: the file ends inside the data checksum"):
        list(read_records(path))
    path.write_bytes(b"this is not a tfrecord file at all")
    with pytest.raises(SetupError, match=r"record 0: the length's checksum does not match"):
        list(read_records(path))
