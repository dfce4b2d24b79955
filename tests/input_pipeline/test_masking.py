"""Tests for input_pipeline.masking."""

import math

import numpy as np
import pytest

from lm_data.input_pipeline import masking

VOCAB = 1000
SEQ_LEN = 64
NUM_ROWS = 2000
SPECIAL = np.array(sorted(masking.DEFAULT_SPECIAL_IDS))
SIGMAS = 5  # Tolerance of the statistical checks, in standard deviations.
BATCH_KEYS = {'input_ids', 'type_ids', 'position_ids', 'segment_ids',
              'mlm_positions', 'mlm_ids', 'mlm_weights'}


def _rows(num_rows=NUM_ROWS, seq_len=SEQ_LEN, seed=0):
  """Random packed rows: 1-3 segments [CLS] ... [SEP], a few [UNK]s, padding."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(len(SPECIAL), VOCAB, size=(num_rows, seq_len))
  tokens[rng.random(tokens.shape) < 0.02] = masking.UNK_ID
  segment_ids = np.zeros((num_rows, seq_len), np.int64)
  for r in range(num_rows):
    used = rng.integers(0, seq_len + 1)
    cuts = np.sort(rng.choice(np.arange(1, max(used, 2)), size=2))
    segment_ids[r, :used] = 1 + (np.arange(used) >= cuts[0]) + (
        np.arange(used) >= cuts[1])
  starts = np.ones(tokens.shape, bool)
  starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
  ends = np.ones(tokens.shape, bool)
  ends[:, :-1] = segment_ids[:, :-1] != segment_ids[:, 1:]
  tokens[starts] = masking.CLS_ID
  tokens[ends] = masking.SEP_ID
  tokens[segment_ids == 0] = masking.PAD_ID
  return tokens.astype(np.int32), segment_ids.astype(np.int32)


def _mask(tokens, segment_ids, cfg, *, seed=0, step=0, row_offset=0):
  return masking.mask_batch(tokens, segment_ids, seed=seed, step=step,
                            row_offset=row_offset, cfg=cfg)


def _within(count, total, p):
  return abs(count - total * p) <= SIGMAS * math.sqrt(total * p * (1 - p))


def test_batch_keys_shapes_and_dtypes():
  tokens, segment_ids = _rows(num_rows=4)
  cfg = masking.MaskConfig(vocab_size=VOCAB)
  batch = _mask(tokens, segment_ids, cfg)
  assert set(batch) == BATCH_KEYS
  num_slots = math.ceil(0.15 * SEQ_LEN)
  for key in BATCH_KEYS:
    width = num_slots if key.startswith('mlm') else SEQ_LEN
    assert batch[key].shape == (4, width), key
    assert batch[key].dtype == (np.float32 if key == 'mlm_weights'
                                else np.int32), key
  assert not batch['type_ids'].any()
  np.testing.assert_array_equal(batch['segment_ids'], segment_ids)


def test_default_max_predictions_is_bert_value():
  assert masking.MaskConfig(vocab_size=VOCAB).num_predictions(128) == 20
  assert masking.MaskConfig(vocab_size=VOCAB,
                            max_predictions=7).num_predictions(128) == 7


def test_number_of_predictions_per_row_and_eligibility():
  tokens, segment_ids = _rows()
  cfg = masking.MaskConfig(vocab_size=VOCAB)
  batch = _mask(tokens, segment_ids, cfg)
  eligible = (segment_ids > 0) & ~np.isin(tokens, SPECIAL)
  n = eligible.sum(axis=1)
  expected = np.where(n > 0, np.maximum(np.floor(0.15 * n + 0.5), 1), 0)
  np.testing.assert_array_equal(batch['mlm_weights'].sum(axis=1), expected)

  weights = batch['mlm_weights'] > 0
  positions = batch['mlm_positions']
  rows = np.broadcast_to(np.arange(NUM_ROWS)[:, None], positions.shape)
  assert eligible[rows[weights], positions[weights]].all()
  # Real slots first, in increasing position, then (0, 0, 0) padding slots.
  np.testing.assert_array_equal(weights, np.cumsum(~weights, axis=1) == 0)
  assert (np.diff(positions, axis=1)[weights[:, 1:]] > 0).all()
  assert not positions[~weights].any() and not batch['mlm_ids'][~weights].any()
  np.testing.assert_array_equal(batch['mlm_ids'][weights],
                                tokens[rows[weights], positions[weights]])


def test_selection_is_uniform_over_eligible_positions():
  tokens, segment_ids = _rows()
  cfg = masking.MaskConfig(vocab_size=VOCAB)
  batch = _mask(tokens, segment_ids, cfg, seed=3)
  eligible = (segment_ids > 0) & ~np.isin(tokens, SPECIAL)
  chosen = np.zeros_like(eligible)
  weights = batch['mlm_weights'] > 0
  rows = np.broadcast_to(np.arange(NUM_ROWS)[:, None], weights.shape)
  chosen[rows[weights], batch['mlm_positions'][weights]] = True
  # Among eligible tokens, the first and second half of rows are hit alike.
  half = SEQ_LEN // 2
  rate = chosen.sum() / eligible.sum()
  for part in (slice(0, half), slice(half, SEQ_LEN)):
    assert _within(chosen[:, part].sum(), eligible[:, part].sum(), rate)


def test_corruption_split_80_10_10():
  tokens, segment_ids = _rows()
  cfg = masking.MaskConfig(vocab_size=VOCAB)
  batch = _mask(tokens, segment_ids, cfg, step=5)
  weights = batch['mlm_weights'] > 0
  rows = np.broadcast_to(np.arange(NUM_ROWS)[:, None], weights.shape)
  new = batch['input_ids'][rows[weights], batch['mlm_positions'][weights]]
  old = batch['mlm_ids'][weights]
  total = weights.sum()
  masked = new == masking.MASK_ID
  unchanged = new == old
  replaced = ~masked & ~unchanged
  p_collide = 0.1 / (VOCAB - len(SPECIAL))  # A random draw of the same id.
  assert _within(masked.sum(), total, 0.8)
  assert _within(replaced.sum(), total, 0.1 - p_collide)
  assert _within(unchanged.sum(), total, 0.1 + p_collide)
  assert not np.isin(new[replaced], SPECIAL).any()
  # Only predicted positions change.
  changed = batch['input_ids'] != tokens
  changed[rows[weights], batch['mlm_positions'][weights]] = False
  assert not changed.any()


def test_rows_without_eligible_tokens_get_no_prediction():
  tokens = np.array([[2, 3, 0, 0], [0, 0, 0, 0], [2, 1, 3, 0]], np.int32)
  segment_ids = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]], np.int32)
  batch = _mask(tokens, segment_ids, masking.MaskConfig(vocab_size=VOCAB))
  assert not batch['mlm_weights'].any()
  np.testing.assert_array_equal(batch['input_ids'], tokens)


def test_max_predictions_caps_each_row():
  tokens, segment_ids = _rows(num_rows=50)
  cfg = masking.MaskConfig(vocab_size=VOCAB, max_predictions=2)
  batch = _mask(tokens, segment_ids, cfg)
  n = ((segment_ids > 0) & ~np.isin(tokens, SPECIAL)).sum(axis=1)
  uncapped = np.where(n > 0, np.maximum(np.floor(0.15 * n + 0.5), 1), 0)
  assert (uncapped > 2).any()
  np.testing.assert_array_equal(batch['mlm_weights'].sum(axis=1),
                                np.minimum(uncapped, 2))


def test_mask_is_a_function_of_seed_step_and_row():
  tokens, segment_ids = _rows(num_rows=8)
  cfg = masking.MaskConfig(vocab_size=VOCAB)
  first = _mask(tokens, segment_ids, cfg, seed=1, step=4)
  again = _mask(tokens, segment_ids, cfg, seed=1, step=4)
  for key in BATCH_KEYS:
    np.testing.assert_array_equal(first[key], again[key])
  for other in (_mask(tokens, segment_ids, cfg, seed=1, step=5),
                _mask(tokens, segment_ids, cfg, seed=2, step=4),
                _mask(tokens, segment_ids, cfg, seed=1, step=4, row_offset=8)):
    assert (other['mlm_positions'] != first['mlm_positions']).any()


def test_mask_independent_of_process_split():
  tokens, segment_ids = _rows(num_rows=8)
  cfg = masking.MaskConfig(vocab_size=VOCAB)
  whole = _mask(tokens, segment_ids, cfg, seed=7, step=3)
  halves = [_mask(tokens[i:i + 4], segment_ids[i:i + 4], cfg, seed=7, step=3,
                  row_offset=i) for i in (0, 4)]
  for key in BATCH_KEYS:
    np.testing.assert_array_equal(
        whole[key], np.concatenate([h[key] for h in halves]))


@pytest.mark.parametrize('kwargs, match', [
    ({'mask_rate': 0.0}, 'mask_rate'),
    ({'mask_prob': 0.95, 'random_prob': 0.1}, 'sum <= 1'),
    ({'max_predictions': 0}, 'max_predictions'),
    ({'vocab_size': 5}, 'no non-special'),
])
def test_bad_config_raises(kwargs, match):
  with pytest.raises(ValueError, match=match):
    masking.MaskConfig(**{'vocab_size': VOCAB, **kwargs})


def test_too_many_predictions_for_row_length():
  tokens, segment_ids = _rows(num_rows=2, seq_len=8)
  cfg = masking.MaskConfig(vocab_size=VOCAB, max_predictions=9)
  with pytest.raises(ValueError, match='exceeds seq_len'):
    _mask(tokens, segment_ids, cfg)


@pytest.mark.parametrize('bad_id', [VOCAB, VOCAB + 5, -1])
def test_ids_outside_the_vocabulary_are_rejected(bad_id):
  tokens, segment_ids = _rows(num_rows=4, seq_len=16)
  tokens[2, 3] = bad_id
  cfg = masking.MaskConfig(vocab_size=VOCAB)
  with pytest.raises(ValueError, match=rf'must be in \[0, {VOCAB}\).*another vocabulary'):
    _mask(tokens, segment_ids, cfg)
