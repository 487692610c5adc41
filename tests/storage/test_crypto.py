"""The AEAD layer: one-shot sealing and the segmented STREAM construction."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault.errors import IntegrityError
from vault.storage import crypto

AD = crypto.associated_data("Binary", "binary-1", "document-1", "patient-1")
KEY = bytes(range(32))
SEGMENT_SIZES = st.integers(min_value=1, max_value=64)
fast = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def sealed_parts(content: bytes, segment_size: int, key: bytes = KEY) -> tuple[bytes, list[bytes]]:
    header, *segments = crypto.seal_segments(key, content, AD, segment_size)
    return header, segments


def opened(chunks: list[bytes], segment_size: int, key: bytes = KEY, ad: bytes = AD) -> bytes:
    return b"".join(crypto.open_segments(key, chunks, ad, segment_size))


def rechunk(data: bytes, cuts: list[int]) -> list[bytes]:
    """The same bytes as a blob store might return them: split anywhere."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


@fast
@given(
    content=st.binary(max_size=600),
    segment_size=SEGMENT_SIZES,
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_stream_round_trips_however_the_ciphertext_is_chunked(content, segment_size, cuts):
    header, segments = sealed_parts(content, segment_size)
    ciphertext = header + b"".join(segments)
    assert len(ciphertext) == crypto.sealed_size(len(content), segment_size)
    assert opened(rechunk(ciphertext, cuts), segment_size) == content


def test_empty_content_is_one_authenticated_empty_segment():
    header, segments = sealed_parts(b"", 16)
    assert len(segments) == 1
    assert len(segments[0]) == crypto.TAG_BYTES
    assert crypto.sealed_size(0, 16) == len(header) + crypto.TAG_BYTES
    assert opened([header, *segments], 16) == b""


def test_header_alone_is_refused_as_truncated():
    header, _ = sealed_parts(b"", 16)
    with pytest.raises(IntegrityError):
        opened([header], 16)
    with pytest.raises(IntegrityError):
        opened([], 16)


@fast
@given(segment_size=SEGMENT_SIZES, count=st.integers(min_value=1, max_value=8))
def test_exact_multiple_of_the_segment_size_has_no_trailing_empty_segment(segment_size, count):
    content = os.urandom(segment_size * count)
    header, segments = sealed_parts(content, segment_size)
    assert len(segments) == count
    assert all(len(segment) == segment_size + crypto.TAG_BYTES for segment in segments)
    assert opened([header, *segments], segment_size) == content


@fast
@given(
    segment_size=SEGMENT_SIZES,
    count=st.integers(min_value=2, max_value=8),
    tail=st.integers(min_value=0, max_value=63),
    data=st.data(),
)
def test_stream_cut_at_a_segment_boundary_is_refused(segment_size, count, tail, data):
    content = os.urandom(segment_size * (count - 1) + tail % segment_size + 1)
    header, segments = sealed_parts(content, segment_size)
    kept = data.draw(st.integers(min_value=0, max_value=len(segments) - 1))
    with pytest.raises(IntegrityError):
        opened([header, *segments[:kept]], segment_size)


@fast
@given(segment_size=SEGMENT_SIZES, count=st.integers(min_value=2, max_value=6), data=st.data())
def test_reordered_segments_are_refused(segment_size, count, data):
    content = os.urandom(segment_size * count)
    header, segments = sealed_parts(content, segment_size)
    order = data.draw(st.permutations(range(count)).filter(lambda p: list(p) != sorted(p)))
    with pytest.raises(IntegrityError):
        opened([header, *(segments[i] for i in order)], segment_size)


@fast
@given(segment_size=SEGMENT_SIZES, count=st.integers(min_value=1, max_value=5), data=st.data())
def test_duplicated_or_appended_segment_is_refused(segment_size, count, data):
    content = os.urandom(segment_size * count)
    header, segments = sealed_parts(content, segment_size)
    extra = data.draw(st.sampled_from(segments))
    with pytest.raises(IntegrityError):
        opened([header, *segments, extra], segment_size)


def test_segments_spliced_from_another_stream_under_the_same_key_are_refused():
    first_header, first = sealed_parts(b"a" * 64, 16)
    _, second = sealed_parts(b"b" * 64, 16)
    with pytest.raises(IntegrityError):
        opened([first_header, *first[:2], *second[2:]], 16)


@fast
@given(content=st.binary(min_size=1, max_size=200), segment_size=SEGMENT_SIZES, data=st.data())
def test_any_flipped_bit_is_refused(content, segment_size, data):
    header, segments = sealed_parts(content, segment_size)
    tampered = bytearray(header + b"".join(segments))
    position = data.draw(st.integers(min_value=0, max_value=len(tampered) - 1))
    tampered[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    with pytest.raises(IntegrityError):
        opened([bytes(tampered)], segment_size)


def test_stream_opened_for_another_record_or_key_is_refused():
    header, segments = sealed_parts(b"x" * 100, 32)
    other_record = crypto.associated_data("Binary", "binary-2", "document-1", "patient-1")
    with pytest.raises(IntegrityError):
        opened([header, *segments], 32, ad=other_record)
    with pytest.raises(IntegrityError):
        opened([header, *segments], 32, key=crypto.new_data_key())


def test_stream_with_the_wrong_segment_size_is_refused():
    header, segments = sealed_parts(b"x" * 100, 32)
    with pytest.raises(IntegrityError):
        opened([header, *segments], 16)


def test_only_authentic_segments_are_released_before_a_tampered_one():
    content = b"A" * 16 + b"B" * 16 + b"C" * 16
    header, segments = sealed_parts(content, 16)
    segments[2] = segments[2][:-1] + bytes([segments[2][-1] ^ 1])
    stream = crypto.open_segments(KEY, [header, *segments], AD, 16)
    assert next(stream) == b"A" * 16
    assert next(stream) == b"B" * 16
    with pytest.raises(IntegrityError):
        next(stream)


def test_each_stream_has_its_own_nonce_prefix():
    first, _ = sealed_parts(b"same", 16)
    second, _ = sealed_parts(b"same", 16)
    assert first != second


@fast
@given(plaintext=st.binary(max_size=300))
def test_sealed_value_round_trips_and_never_repeats(plaintext):
    one = crypto.seal(KEY, plaintext, AD)
    two = crypto.seal(KEY, plaintext, AD)
    assert one != two
    assert crypto.open_sealed(KEY, one, AD) == plaintext


@fast
@given(plaintext=st.binary(max_size=100), data=st.data())
def test_sealed_value_tampered_anywhere_is_refused(plaintext, data):
    sealed = bytearray(crypto.seal(KEY, plaintext, AD))
    position = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1))
    sealed[position] ^= 0x80
    with pytest.raises(IntegrityError):
        crypto.open_sealed(KEY, bytes(sealed), AD)


def test_sealed_value_for_another_record_or_truncated_is_refused():
    sealed = crypto.seal(KEY, b"patient resource", AD)
    with pytest.raises(IntegrityError):
        crypto.open_sealed(KEY, sealed, crypto.associated_data("Binary", "other"))
    with pytest.raises(IntegrityError):
        crypto.open_sealed(KEY, sealed[:20], AD)
    with pytest.raises(IntegrityError):
        crypto.open_sealed(KEY, b"", AD)


@fast
@given(
    first=st.lists(st.one_of(st.text(max_size=8), st.integers()), max_size=4),
    second=st.lists(st.one_of(st.text(max_size=8), st.integers()), max_size=4),
)
def test_associated_data_encodings_of_different_records_differ(first, second):
    if [str(part) for part in first] != [str(part) for part in second]:
        assert crypto.associated_data(*first) != crypto.associated_data(*second)


def test_associated_data_is_unambiguous_about_part_boundaries():
    assert crypto.associated_data("ab", "c") != crypto.associated_data("a", "bc")
    assert crypto.associated_data("a\x00", "b") != crypto.associated_data("a", "\x00b")
