"""Tests for input_pipeline.loader."""

import json

import jax
import numpy as np
import pytest

from lm_data.input_pipeline import loader
from lm_data.input_pipeline import masking
from lm_data.input_pipeline import packing

NUM_ROWS = 48
SEQ_LEN = 8
ROW_ID_BASE = 10  # Row r holds content token ROW_ID_BASE + r.
VOCAB = 100
GLOBAL_BATCH = 8
CFG = masking.MaskConfig(vocab_size=VOCAB)


def _packed(num_rows=NUM_ROWS):
  """Rows [CLS] r r r [SEP] [CLS] r [SEP] with r = ROW_ID_BASE + row index."""
  tokens = np.zeros((num_rows, SEQ_LEN), np.int32)
  tokens[:] = ROW_ID_BASE + np.arange(num_rows)[:, None]
  tokens[:, [0, 5]] = masking.CLS_ID
  tokens[:, [4, 7]] = masking.SEP_ID
  segment_ids = np.tile(np.array([1, 1, 1, 1, 1, 2, 2, 2], np.int32),
                        (num_rows, 1))
  return packing.PackedArrays(tokens, segment_ids)


def _row_ids(batch):
  """Recovers the source row of every batch row (undoing the corruption)."""
  original = batch['input_ids'].copy()
  weights = batch['mlm_weights'] > 0
  rows = np.broadcast_to(np.arange(original.shape[0])[:, None], weights.shape)
  original[rows[weights], batch['mlm_positions'][weights]] = (
      batch['mlm_ids'][weights])
  return original[:, 1] - ROW_ID_BASE


def _iterator(source=None, **kwargs):
  kwargs = {'global_batch_size': GLOBAL_BATCH, 'seed': 0, 'mask_cfg': CFG,
            **kwargs}
  return loader.make_train_iterator(
      _packed() if source is None else source, **kwargs)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_each_epoch_is_a_fresh_permutation_of_all_rows():
  iterator = _iterator()
  steps_per_epoch = NUM_ROWS // GLOBAL_BATCH
  epochs = [np.concatenate([_row_ids(b) for b in _take(iterator,
                                                       steps_per_epoch)])
            for _ in range(2)]
  for order in epochs:
    np.testing.assert_array_equal(np.sort(order), np.arange(NUM_ROWS))
  assert (epochs[0] != epochs[1]).any()
  assert (epochs[0] != np.arange(NUM_ROWS)).any()
  assert iterator.epoch == 2 and iterator.epochs_seen == 2.0
  iterator.close()


def test_seed_changes_order_and_masks():
  a = _take(_iterator(seed=0), 1)[0]
  b = _take(_iterator(seed=1), 1)[0]
  assert (_row_ids(a) != _row_ids(b)).any()


def test_process_shares_are_disjoint_and_make_the_global_batch():
  whole = _take(_iterator(), 8)
  shares = [_take(_iterator(process_index=p, process_count=2), 8)
            for p in range(2)]
  for step, batch in enumerate(whole):
    ids = [_row_ids(s[step]) for s in shares]
    assert not set(ids[0]) & set(ids[1])
    for key in batch:  # Same rows and the same masks, whatever the split.
      np.testing.assert_array_equal(
          batch[key], np.concatenate([s[step][key] for s in shares]))


def test_resumed_iterator_yields_identical_batches():
  iterator = _iterator(process_index=1, process_count=2)
  _take(iterator, 5)
  state = json.loads(json.dumps(iterator.get_state()))
  assert state['step'] == 5
  expected = _take(iterator, 4)
  resumed = _iterator(process_index=1, process_count=2, start_state=state)
  _assert_batches_equal(_take(resumed, 4), expected)
  fresh = _iterator(process_index=1, process_count=2)
  fresh.set_state(state)
  _assert_batches_equal(_take(fresh, 4), expected)
  assert fresh.step == 9
  iterator.set_state(state)  # Rewinds, dropping what was prefetched.
  _assert_batches_equal(_take(iterator, 4), expected)


def test_resume_with_other_settings_is_refused():
  state = _iterator().get_state()
  with pytest.raises(ValueError, match='global_batch_size: saved 8 vs now 16'):
    _iterator(global_batch_size=16, start_state=state)


def test_num_epochs_stops_after_last_full_batch():
  batches = list(_iterator(global_batch_size=10, num_epochs=2))
  assert len(batches) == 2 * NUM_ROWS // 10


def test_memory_mapped_folder_source(tmp_path):
  packing.save_packed(tmp_path, _packed())
  _assert_batches_equal(_take(_iterator(str(tmp_path)), 2),
                        _take(_iterator(), 2))


@pytest.mark.parametrize('kwargs, match', [
    ({'global_batch_size': 9, 'process_count': 2}, 'not divisible'),
    ({'process_index': 2, 'process_count': 2}, 'process_index=2'),
    ({'global_batch_size': 0}, 'must be > 0'),
])
def test_bad_split_raises(kwargs, match):
  with pytest.raises(ValueError, match=match):
    _iterator(**kwargs)


def test_unknown_source_type_raises():
  with pytest.raises(TypeError, match='cannot read packed rows'):
    _iterator([1, 2, 3])


def test_eval_batches_cover_all_rows_with_fixed_masks():
  packed = _packed(num_rows=11)
  batches = loader.eval_batches(packed, batch_size=4, mask_cfg=CFG, seed=3)
  again = loader.eval_batches(packed, batch_size=4, mask_cfg=CFG, seed=3)
  _assert_batches_equal(batches, again)
  assert len(batches) == 3
  ids = np.concatenate([_row_ids(b) for b in batches])
  np.testing.assert_array_equal(ids[:11], np.arange(11))
  last = batches[-1]
  assert not last['mlm_weights'][3:].any() and last['mlm_weights'][:3, 0].all()
  assert not last['input_ids'][3:].any() and not last['segment_ids'][3:].any()
  # Split over two processes: same rows and masks.
  halves = [loader.eval_batches(packed, batch_size=4, mask_cfg=CFG, seed=3,
                                process_index=p, process_count=2)
            for p in range(2)]
  for i, batch in enumerate(batches):
    for key in batch:
      np.testing.assert_array_equal(
          batch[key], np.concatenate([h[i][key] for h in halves]))


class _Prepared:
  train = _packed()
  held_out = {'legal': _packed(num_rows=3)}


def test_eval_batches_by_domain_of_a_prepared():
  batches = loader.eval_batches(_Prepared(), 'legal', batch_size=4,
                                mask_cfg=CFG)
  assert len(batches) == 1 and batches[0]['mlm_weights'][:3, 0].all()
  with pytest.raises(KeyError, match="'lgeal'; known: legal"):
    loader.eval_batches(_Prepared(), 'lgeal', batch_size=4, mask_cfg=CFG)
  _take(_iterator(_Prepared()), 1)


def test_global_batch_to_device():
  batch = _take(_iterator(), 1)[0]
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  sharding = jax.sharding.NamedSharding(mesh,
                                        jax.sharding.PartitionSpec('data'))
  arrays = loader.global_batch_to_device(batch, sharding)
  assert arrays.keys() == batch.keys()
  for key, value in batch.items():
    assert arrays[key].sharding == sharding
    np.testing.assert_array_equal(np.asarray(arrays[key]), value)
