"""The IDX reader/writer: round trips, and every kind of corrupt file gives a DataError naming the file."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mnistbench.data import read_idx, read_images, read_labels, read_pair, write_idx
from mnistbench.data.idx import encode_idx, parse_idx
from mnistbench.errors import DataError


@given(arrays(np.uint8, st.tuples(st.integers(0, 5), st.integers(1, 4), st.integers(1, 4))), st.booleans())
@settings(max_examples=30, deadline=None)
def test_round_trip(tmp_path_factory, array, gz):
    path = tmp_path_factory.mktemp("rt") / ("x.gz" if gz else "x")
    write_idx(path, array)
    np.testing.assert_array_equal(read_idx(path), array)


# Headers that look right (the unsigned-byte magic, 1-4 dimensions) with any 32-bit sizes, huge ones included,
# followed by a short body: the length check must hold for sizes whose product overflows 64 bits.
headers = st.integers(1, 4).flatmap(lambda ndim: st.tuples(
    st.just(bytes([0, 0, 8, ndim])),
    st.lists(st.one_of(st.integers(0, 8), st.integers(0, 2**32 - 1), st.sampled_from([2**16, 2**32 - 1])),
             min_size=ndim, max_size=ndim),
    st.binary(max_size=64))).map(lambda t: t[0] + struct.pack(f">{len(t[1])}I", *t[1]) + t[2])


@given(st.one_of(st.binary(max_size=200), headers))
@settings(max_examples=300, deadline=None)
def test_any_bytes_give_an_array_or_a_data_error(blob):
    try:
        out = parse_idx(blob)
    except DataError as exc:
        assert "<bytes>" in str(exc)
    else:
        assert out.dtype == np.uint8


def test_a_zero_size_beside_huge_ones_is_a_data_error():
    # Found by the property above: (0, 2164460828, 4261281277) passes the length check, numpy refuses the shape.
    blob = b"\x00\x00\x08\x03\x00\x00\x00\x00\x81\x03\t\x1c\xfd\xfd\xfd\xfd"
    with pytest.raises(DataError, match="impossible shape"):
        parse_idx(blob)


def test_sizes_whose_product_wraps_around_64_bits_are_a_data_error():
    # 65536**4 = 2**64: a 64-bit product wraps to 0 and would accept a header with no images at all.
    blob = bytes([0, 0, 8, 4]) + struct.pack(">4I", *[2**16] * 4)
    with pytest.raises(DataError, match="truncated"):
        parse_idx(blob)


def _labels(tmp_path, values):
    return write_idx(tmp_path / "labels", np.array(values, dtype=np.uint8))


def test_truncated_file(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(encode_idx(np.zeros((3, 28, 28), np.uint8))[:-5])
    with pytest.raises(DataError, match="images: truncated"):
        read_images(path)


def test_wrong_magic(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(b"\x00\x00\x0d\x03" + encode_idx(np.zeros((1, 2, 2), np.uint8))[4:])
    with pytest.raises(DataError, match="magic number 0x00000d03"):
        read_images(path)


def test_labels_given_as_images(tmp_path):
    with pytest.raises(DataError, match="expected an image file"):
        read_images(_labels(tmp_path, [1, 2]))


def test_label_ten_is_rejected(tmp_path):
    with pytest.raises(DataError, match="label 10 at index 1"):
        read_labels(_labels(tmp_path, [3, 10, 2]))


def test_counts_must_agree(tmp_path):
    images = write_idx(tmp_path / "images", np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match="3 images but labels has 2 labels"):
        read_pair(images, _labels(tmp_path, [1, 2]))


def test_gzip_garbage(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(b"x" * 100)[:20])
    with pytest.raises(DataError, match="images.gz: damaged gzip"):
        read_images(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_images(tmp_path / "nope")
