"""Tests for input_pipeline.packing."""

import numpy as np
import pytest

from lm_data.input_pipeline import packing

CLS = 2
SEP = 3
FIRST_CONTENT_ID = 5  # Content ids above the special ones.


def _random_docs(rng, num_docs, max_len):
  return [rng.integers(FIRST_CONTENT_ID, 1000, size=n).tolist()
          for n in rng.integers(0, max_len, size=num_docs)]


def _segments(tokens, segment_ids):
  """Reference unpacking: list of (row, token list) per segment, in order."""
  out = []
  for r in range(tokens.shape[0]):
    for k in range(1, segment_ids[r].max() + 1):
      out.append((r, tokens[r][segment_ids[r] == k].tolist()))
  return out


def test_pack_hand_example():
  docs = [[10, 11, 12], [20], list(range(30, 41)), [], [50, 51]]
  tokens, segment_ids = packing.pack(docs, 8, cls_id=CLS, sep_id=SEP)
  np.testing.assert_array_equal(tokens, [
      [2, 10, 11, 12, 3, 2, 20, 3],
      [2, 30, 31, 32, 33, 34, 35, 3],
      [2, 36, 37, 38, 39, 40, 3, 0],
      [2, 50, 51, 3, 0, 0, 0, 0]])
  np.testing.assert_array_equal(segment_ids, [
      [1, 1, 1, 1, 1, 2, 2, 2],
      [1, 1, 1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 1, 1, 0],
      [1, 1, 1, 1, 0, 0, 0, 0]])
  assert tokens.dtype == segment_ids.dtype == np.int32


@pytest.mark.parametrize('seq_len', [3, 4, 16, 64])
def test_pack_keeps_every_token_in_order_and_never_mixes_documents(seq_len):
  rng = np.random.default_rng(seq_len)
  docs = _random_docs(rng, num_docs=200, max_len=3 * seq_len)
  tokens, segment_ids = packing.pack(docs, seq_len, cls_id=CLS, sep_id=SEP)
  assert tokens.shape == segment_ids.shape and tokens.shape[1] == seq_len

  pieces = []
  for _, seg in _segments(tokens, segment_ids):
    assert seg[0] == CLS and seg[-1] == SEP and len(seg) >= 3
    pieces.append(seg[1:-1])
  # Segment contents, in order, are exactly the documents' tokens.
  flat = [t for d in docs for t in d]
  assert [t for p in pieces for t in p] == flat
  # Every document boundary is a segment boundary: no segment mixes two.
  piece_ends = set(np.cumsum([len(p) for p in pieces]).tolist())
  assert set(np.cumsum([len(d) for d in docs if d]).tolist()) <= piece_ends


def test_pack_pads_only_at_row_end_and_at_most_two_slots():
  rng = np.random.default_rng(0)
  docs = _random_docs(rng, num_docs=300, max_len=40)
  tokens, segment_ids = packing.pack(docs, 32, cls_id=CLS, sep_id=SEP)
  padding = segment_ids == 0
  # Padding is a suffix of each row and holds token 0.
  np.testing.assert_array_equal(padding, np.cumsum(padding, axis=1) > 0)
  assert (tokens[padding] == 0).all()
  assert padding[:-1].sum(axis=1).max() <= 2
  # Segment ids count 1..k without gaps.
  for row in segment_ids:
    ids = row[row > 0]
    assert ids[0] == 1 and set(np.diff(ids).tolist()) <= {0, 1}


def test_long_document_split_into_consecutive_chunks():
  doc = list(range(100, 100 + 2 * 6 + 1))  # Two full rows of S=8, then one.
  tokens, segment_ids = packing.pack([doc], 8, cls_id=CLS, sep_id=SEP)
  np.testing.assert_array_equal(tokens, [
      [2, 100, 101, 102, 103, 104, 105, 3],
      [2, 106, 107, 108, 109, 110, 111, 3],
      [2, 112, 3, 0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(segment_ids[2], [1, 1, 1, 0, 0, 0, 0, 0])


def test_pack_accepts_arrays_and_empty_input():
  docs = [np.array([7, 8], np.int64), np.array([9], np.int64)]
  tokens, _ = packing.pack(docs, 8, cls_id=CLS, sep_id=SEP)
  np.testing.assert_array_equal(tokens, [[2, 7, 8, 3, 2, 9, 3, 0]])
  tokens, segment_ids = packing.pack([[], []], 8, cls_id=CLS, sep_id=SEP)
  assert tokens.shape == segment_ids.shape == (0, 8)


def test_pack_rejects_too_short_rows():
  with pytest.raises(ValueError, match='seq_len >= 3'):
    packing.pack([[7]], 2, cls_id=CLS, sep_id=SEP)


def test_positions_restart_per_segment():
  segment_ids = np.array([[1, 1, 1, 2, 2, 3, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
  np.testing.assert_array_equal(packing.positions_from_segments(segment_ids), [
      [0, 1, 2, 0, 1, 0, 0, 0], [0, 1, 2, 3, 4, 5, 6, 7]])


def test_positions_match_loop_reference():
  rng = np.random.default_rng(1)
  _, segment_ids = packing.pack(_random_docs(rng, 100, 30), 16, cls_id=CLS,
                                sep_id=SEP)
  expected = np.zeros_like(segment_ids)
  for r, row in enumerate(segment_ids):
    for i in range(1, len(row)):
      if row[i] and row[i] == row[i - 1]:
        expected[r, i] = expected[r, i - 1] + 1
  positions = packing.positions_from_segments(segment_ids)
  assert positions.dtype == np.int32
  np.testing.assert_array_equal(positions, expected)


def test_save_and_load_packed_memory_mapped(tmp_path):
  tokens, segment_ids = packing.pack([[7, 8, 9], [10]], 8, cls_id=CLS,
                                     sep_id=SEP)
  packing.save_packed(tmp_path, packing.PackedArrays(tokens, segment_ids))
  loaded = packing.load_packed(tmp_path)
  assert isinstance(loaded.tokens, np.memmap)
  np.testing.assert_array_equal(loaded.tokens, tokens)
  np.testing.assert_array_equal(loaded.segment_ids, segment_ids)
  with pytest.raises(FileNotFoundError, match='missing tokens.npy'):
    packing.load_packed(tmp_path / 'nothing')
