"""Tests for streaming batches from a curated TFDS dataset (no Beam needed)."""

import collections
import json
import zlib

import chex
import numpy as np
import pytest

from lm_data import errors
from lm_data.corpus.sources import Document
from lm_data.curation import dataset
from lm_data.input_pipeline import masking
from lm_data.input_pipeline import packing
from lm_data.input_pipeline import stream

SEQ_LEN = 16
CLS, SEP = 2, 3
# Document ids are token ids from here on; the domain is the hundreds digit.
_FIRST_ID = 100


class WordIdTokenizer:
  """Each word is its integer as a token id (so batches show their documents)."""
  cls_id, sep_id = CLS, SEP

  def encode_batch(self, texts):
    return [[int(w) for w in t.split()] for t in texts]


def _docs(domain: str, base: int, n: int):
  # Document k is one token id, repeated 3 times.
  return [Document(f'{base + k} {base + k} {base + k}', domain, 'toy', f'{k}')
          for k in range(n)]


@pytest.fixture(scope='module')
def curated(tmp_path_factory):
  out = tmp_path_factory.mktemp('curated')
  docs = _docs('news', 1000, 60) + _docs('legal', 2000, 30)
  dataset.write_documents(out, docs, domains=['news', 'legal'], num_shards=2)
  return out


def _mask_cfg():
  return masking.MaskConfig(vocab_size=4000, mask_rate=0.15,
                            max_predictions=3, special_ids=frozenset(range(5)),
                            mask_id=4)


def _iterator(curated, **kwargs):
  kwargs = {'seq_len': SEQ_LEN, 'global_batch_size': 4, 'seed': 7,
            'mask_cfg': _mask_cfg(), **kwargs}
  return stream.make_stream_iterator(curated, WordIdTokenizer(), **kwargs)


def _doc_ids(batches, key='input_ids'):
  """Document ids in batches: the originals, un-masking the predictions."""
  ids = []
  for b in batches:
    tokens = b[key].copy()
    np.put_along_axis(tokens, b['mlm_positions'],
                      np.where(b['mlm_weights'] > 0, b['mlm_ids'],
                               np.take_along_axis(tokens, b['mlm_positions'],
                                                  1)), 1)
    ids += tokens[tokens >= _FIRST_ID].tolist()
  return ids


def test_rows_are_packed_segments_of_whole_documents(curated):
  batch = next(_iterator(curated, docs_per_chunk=8))
  assert batch['input_ids'].shape == (4, SEQ_LEN)
  ids = _doc_ids([batch])
  counts = collections.Counter(ids)
  # 3 copies of a document per segment [CLS] d d d [SEP]: 5 slots; 3 a row,
  # but the last row of a chunk of 8 documents holds 2.
  assert set(counts.values()) == {3}
  np.testing.assert_array_equal(batch['segment_ids'].max(axis=1), [3, 3, 2, 3])


def test_resumed_stream_yields_the_same_batches(curated):
  first = _iterator(curated, docs_per_chunk=8)
  for _ in range(5):  # Part way through a chunk.
    next(first)
  state = json.loads(json.dumps(first.get_state()))
  expected = [next(first) for _ in range(6)]
  resumed = _iterator(curated, docs_per_chunk=8, start_state=state)
  assert resumed.step == 5
  for want, got in zip(expected, [next(resumed) for _ in range(6)]):
    for key in want:
      np.testing.assert_array_equal(want[key], got[key])


def test_state_from_other_settings_is_refused(curated):
  state = _iterator(curated).get_state()
  with pytest.raises(ValueError, match='global_batch_size'):
    _iterator(curated, global_batch_size=8, start_state=state)


def test_each_process_reads_only_its_records(curated):
  seen = []
  for p in range(2):
    it = _iterator(curated, global_batch_size=4, process_index=p,
                   process_count=2)
    seen.append(set(_doc_ids([next(it) for _ in range(30)])))
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(range(1000, 1060)) | set(range(2000, 2030))


def test_weights_set_the_domain_proportions(curated):
  it = _iterator(curated, weights={'news': 1.0, 'legal': 3.0})
  ids = np.array(_doc_ids([next(it) for _ in range(60)]))
  legal = np.mean(ids >= 2000)
  assert abs(legal - 0.75) < 0.03, legal
  natural = _iterator(curated)
  ids = np.array(_doc_ids([next(natural) for _ in range(60)]))
  assert abs(np.mean(ids >= 2000) - 30 / 90) < 0.03


def test_every_document_once_per_epoch(curated):
  it = _iterator(curated, weights={'news': 1.0})
  ids = _doc_ids([next(it) for _ in range(15)])  # 60 documents, 3 a row.
  assert sorted(collections.Counter(ids)) == list(range(1000, 1060))


def _sized_docs(domain, base, n, lengths):
  """Document k: token id base + k, repeated lengths[k % len(lengths)] times."""
  return [Document(' '.join([str(base + k)] * lengths[k % len(lengths)]),
                   domain, 'toy', f'{k}') for k in range(n)]


@pytest.fixture(scope='module')
def uneven(tmp_path_factory):
  """'long' documents of 8-12 tokens, 'short' ones of 2-4: weighting
  documents instead of tokens would give 'long' ~0.77 of the tokens."""
  out = tmp_path_factory.mktemp('uneven')
  docs = (_sized_docs('long', 1000, 50, (8, 10, 12))
          + _sized_docs('short', 2000, 80, (2, 3, 4)))
  dataset.write_documents(out, docs, domains=['long', 'short'], num_shards=2)
  return out, {d.text.split()[0]: len(d.text.split()) for d in docs}


def _token_share(ids, domain_base):
  ids = np.array(ids)
  return np.mean((ids >= domain_base) & (ids < domain_base + 1000))


@pytest.mark.parametrize('weights, long_share', [
    ({'long': 1.0, 'short': 1.0}, 0.5),
    ({'long': 1.0, 'short': 3.0}, 0.25),
    (None, 498 / (498 + 239)),  # Natural: the splits' tokens, 498 and 239.
])
def test_mixture_weights_are_token_proportions(uneven, weights, long_share):
  """Tolerance 0.03: the token share over ~9k emitted tokens (its sampling
  noise is ~0.005 here)."""
  folder, _ = uneven
  it = _iterator(folder, seq_len=32, weights=weights)
  ids = _doc_ids([next(it) for _ in range(80)])
  assert abs(_token_share(ids, 1000) - long_share) < 0.03
  assert abs(_token_share(ids, 2000) - (1 - long_share)) < 0.03
  assert it.mixture['long']['token_share'] == pytest.approx(long_share)
  assert it.mixture['long']['mean_tokens'] == pytest.approx(10.0, abs=0.1)


def test_token_budget_takes_its_share_of_documents_and_cycles(uneven):
  folder, lengths = uneven
  budget = 120
  it = _iterator(folder, seq_len=32, weights={'long': 1.0, 'short': 1.0},
                 token_budget=budget)
  ids = _doc_ids([next(it) for _ in range(60)])  # ~7k tokens: many epochs.
  used = {}
  for base, domain in ((1000, 'long'), (2000, 'short')):
    docs = {i for i in ids if base <= i < base + 1000}
    tokens = sum(lengths[str(i)] for i in docs)
    # Each split's share (60 tokens), overshot by less than one document.
    assert budget / 2 <= tokens < budget / 2 + max(lengths.values())
    assert len(docs) == it.mixture[domain]['documents']
    used[domain] = docs
  assert abs(_token_share(ids, 1000) - 0.5) < 0.03
  larger = _iterator(folder, seq_len=32, weights={'long': 1.0, 'short': 1.0},
                     token_budget=3 * budget)
  more = set(_doc_ids([next(larger) for _ in range(120)]))
  assert used['long'] | used['short'] <= more  # Nested, as prepare's budgets.
  with pytest.raises(ValueError, match='fewer than its share'):
    _iterator(folder, seq_len=32, token_budget=10**6)


def test_budget_is_part_of_the_checked_state(uneven):
  folder, _ = uneven
  state = _iterator(folder, seq_len=32, token_budget=100).get_state()
  with pytest.raises(ValueError, match='token_budget'):
    _iterator(folder, seq_len=32, token_budget=200, start_state=state)


def test_held_out_rows_are_the_validation_split_packed_in_order(tmp_path):
  train = _docs('news', 1000, 20)
  held_out = _sized_docs('news', 1500, 9, (2, 5)) + _sized_docs('legal', 2500, 4, (3,))
  folder = dataset.write_documents(
      tmp_path, train, domains=['news'], held_out=held_out[::-1],
      held_out_domains=['news', 'legal'], num_shards=2)
  rows = stream.held_out_rows(folder, WordIdTokenizer(), seq_len=SEQ_LEN)
  assert set(rows) == {'news', 'legal'}
  for domain in rows:
    docs = sorted((d for d in held_out if d.domain == domain),
                  key=lambda d: (d.source, d.doc_id))
    want = packing.pack([[int(w) for w in d.text.split()] for d in docs],
                        SEQ_LEN, cls_id=CLS, sep_id=SEP)
    np.testing.assert_array_equal(rows[domain].tokens, want[0])
    np.testing.assert_array_equal(rows[domain].segment_ids, want[1])
  # Training reads only the train splits.
  it = _iterator(folder)
  assert set(_doc_ids([next(it) for _ in range(10)])) <= set(range(1000, 1020))


def test_dataset_without_held_out_splits_has_no_held_out_rows(curated):
  assert stream.held_out_rows(curated, WordIdTokenizer(), seq_len=SEQ_LEN) == {}


def test_missing_dataset_is_a_user_error(tmp_path):
  with pytest.raises(errors.UserError, match='beam_main'):
    _iterator(tmp_path)


class HashTokenizer:
  """Words hashed into a small vocabulary (a stand-in for SentencePiece)."""
  cls_id, sep_id, vocab_size = CLS, SEP, 512

  def encode_batch(self, texts):
    return [[5 + zlib.crc32(w.encode()) % (self.vocab_size - 5)
             for w in t.lower().split()] for t in texts]


@pytest.mark.slow
def test_smoke_sized_arm_trains_from_a_curated_dataset(tmp_path):
  """The :smoke training settings (60 steps of 16 x 64) on a curated dataset
  of real news documents: the loss falls, and a run stopped at step 30
  resumes from its checkpointed stream state to the same parameters."""
  from configs import common  # pylint: disable=import-outside-toplevel
  from lm_data.corpus import tfds_builder  # pylint: disable=import-outside-toplevel
  from lm_data.train import trainer  # pylint: disable=import-outside-toplevel
  folder = dataset.write_documents(tmp_path / 'curated',
                                   tfds_builder.load_split('news'),
                                   domains=['news'], num_shards=2)
  cfg = common.smoke(common.base_config())
  cfg.train.async_checkpointing = False
  tokenizer = HashTokenizer()
  mask_cfg = masking.MaskConfig(
      vocab_size=tokenizer.vocab_size, mask_rate=cfg.mask.mask_rate,
      max_predictions=cfg.mask.max_predictions,
      special_ids=frozenset(range(5)), mask_id=4)

  def make_iterator():
    return stream.make_stream_iterator(
        folder, tokenizer, seq_len=cfg.seq_len,
        global_batch_size=cfg.train.global_batch_size, seed=1,
        mask_cfg=mask_cfg)

  def run(workdir, train_iter):
    return trainer.pretrain(cfg, workdir, train_iter=train_iter, eval_sets={},
                            vocab_size=tokenizer.vocab_size, meta={})

  straight = run(tmp_path / 'straight', make_iterator())
  assert straight.finished and straight.step == 60
  records = [json.loads(line) for line in
             (tmp_path / 'straight' / 'metrics.jsonl').read_text().splitlines()]
  losses = [r['loss'] for r in records if 'loss' in r]
  assert losses[-1] < losses[0] - 0.5, losses

  class Crash(Exception):
    pass

  class Crashing:  # Dies at batch 45, after the checkpoint of step 30.
    def __init__(self):
      self.inner = make_iterator()
      self.get_state, self.set_state = (self.inner.get_state,
                                        self.inner.set_state)

    def __next__(self):
      if self.inner.step == 45:
        raise Crash
      return next(self.inner)

  with pytest.raises(Crash):
    run(tmp_path / 'resumed', Crashing())
  resumed = run(tmp_path / 'resumed', make_iterator())
  assert resumed.start_step == 30 and resumed.step == 60
  chex.assert_trees_all_close(resumed.params, straight.params)
