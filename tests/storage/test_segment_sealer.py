"""``SegmentSealer``, the streaming writer exports encrypt with: whatever the pieces it is
written in, its output is exactly what ``open_segments`` reads back, and a cut copy fails."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault.errors import IntegrityError
from vault.storage import crypto

KEY = bytes(range(32))
AD = crypto.associated_data("RecordExport", "job", "patient")


def _sealed(pieces: list[bytes], segment_size: int) -> bytes:
    sink = io.BytesIO()
    sealer = crypto.SegmentSealer(sink, KEY, AD, segment_size)
    for piece in pieces:
        sealer.write(piece)
    sealer.close()
    return sink.getvalue()


@given(
    pieces=st.lists(st.binary(max_size=300), max_size=12),
    segment_size=st.sampled_from([1, 7, 64, 100, 256]),
)
def test_what_is_written_in_any_pieces_reads_back_whole(pieces, segment_size):
    sealed = _sealed(pieces, segment_size)
    plain = b"".join(crypto.open_segments(KEY, [sealed], AD, segment_size))
    assert plain == b"".join(pieces)
    # The same framing as sealing at once: one segment per started segment_size bytes.
    total = sum(len(piece) for piece in pieces)
    assert len(sealed) == crypto.sealed_size(total, segment_size)


@given(size=st.integers(min_value=1, max_value=600), cut=st.integers(min_value=1, max_value=64))
def test_a_cut_archive_does_not_open(size, cut):
    sealed = _sealed([bytes(size)], 64)
    with pytest.raises(IntegrityError):
        b"".join(crypto.open_segments(KEY, [sealed[: max(0, len(sealed) - cut)]], AD, 64))
