"""Tests for recipe -> packed rows (tiny synthetic corpus, no network)."""

import collections
import dataclasses
import json
import os
import random

import numpy as np
import pytest

from lm_data.corpus import sources
from lm_data.corpus import tfds_builder
from lm_data.curation import decontaminate as decontaminate_lib
from lm_data.input_pipeline import prepare as prepare_lib
from lm_data.input_pipeline import tokenizer as tokenizer_lib

D1, D2 = sources.DOMAINS[:2]
SEQ_LEN = 32
VOCAB_SIZE = 150
DOCS_PER_DOMAIN = 80
NUM_DUPLICATES = 10
_STOP_WORDS = ('the', 'and', 'of', 'to', 'that', 'with')
_SYLLABLES = {D1: ('ka', 'lo', 'mi', 'ten', 'ra', 'su', 'vo', 'pe'),
              D2: ('din', 'gar', 'ul', 'bre', 'sto', 'fi', 'nax', 'qu')}


def _domain_docs(domain):
  """Synthetic prose: pseudo-words of the domain and English stop words."""
  rng = random.Random(domain)
  syllables = _SYLLABLES[domain]
  words = [''.join(rng.choice(syllables) for _ in range(rng.randint(2, 3)))
           for _ in range(150)] + list(_STOP_WORDS) * 20
  docs = [sources.Document(
      text=' '.join(rng.choice(words) for _ in range(rng.randint(20, 80))),
      domain=domain, source='synthetic', doc_id=f'{domain}{i:03d}')
          for i in range(DOCS_PER_DOMAIN)]
  # Exact duplicates under new ids: something for dedup to remove.
  docs += [dataclasses.replace(docs[0], doc_id=f'{domain}dup{i}')
           for i in range(NUM_DUPLICATES)]
  return docs


@pytest.fixture(autouse=True)
def fake_corpus(monkeypatch, tmp_path):
  monkeypatch.setenv('LM_DATA_CACHE', str(tmp_path / 'cache'))
  monkeypatch.setattr(sources, 'load_domain', lambda d: (
      _domain_docs(d), collections.Counter(skipped_empty=2)))


@pytest.fixture(scope='module')
def tokenizer(tmp_path_factory):
  texts = {d: [doc.text for doc in _domain_docs(d)] for d in (D1, D2)}
  path = tokenizer_lib.train_tokenizer(
      texts, tmp_path_factory.mktemp('tok') / 'spm.model',
      vocab_size=VOCAB_SIZE, process_index=0)
  return tokenizer_lib.Tokenizer.load(path)


def _content(rows):
  """Multiset of the document tokens in packed rows (no specials, padding)."""
  tokens = np.asarray(rows.tokens)[np.asarray(rows.segment_ids) > 0]
  return collections.Counter(tokens[tokens > tokenizer_lib.MASK_ID].tolist())


def test_budget_and_weights_give_exact_token_counts(tokenizer):
  recipe = {'domains': [D1, D2], 'weights': {D1: 3.0, D2: 1.0},
            'token_budget': 800, 'seed': 0}
  prepared = prepare_lib.prepare(recipe, tokenizer, seq_len=SEQ_LEN)
  domains = prepared.stats['train']['domains']
  assert domains[D1]['tokens'] == 600
  assert domains[D2]['tokens'] == 200
  assert prepared.stats['train']['tokens'] == 800
  # Packing lost no token and padding is counted.
  assert sum(_content(prepared.train).values()) == 800
  assert prepared.train.tokens.shape[1] == SEQ_LEN
  assert prepared.train.tokens.dtype == np.uint16
  padding = np.mean(np.asarray(prepared.train.segment_ids) == 0)
  assert prepared.stats['train']['padding_fraction'] == pytest.approx(padding)
  assert prepared.stats['parse'] == {D1: {'skipped_empty': 2},
                                     D2: {'skipped_empty': 2}}


def test_smaller_budget_is_nested_in_larger(tokenizer):
  small = prepare_lib.prepare({'domains': [D1, D2], 'token_budget': 300,
                               'seed': 5}, tokenizer, seq_len=SEQ_LEN)
  large = prepare_lib.prepare({'domains': [D1, D2], 'token_budget': 1200,
                               'seed': 5}, tokenizer, seq_len=SEQ_LEN)
  assert small.path != large.path
  assert not _content(small.train) - _content(large.train)


def test_second_call_loads_the_cache(tokenizer, monkeypatch):
  recipe = {'domains': [D1], 'token_budget': 400, 'seed': 1}
  first = prepare_lib.prepare(recipe, tokenizer, seq_len=SEQ_LEN)

  def no_rebuild(*args, **kwargs):
    raise AssertionError('prepare rebuilt a cached recipe')

  monkeypatch.setattr(prepare_lib, '_build', no_rebuild)
  second = prepare_lib.prepare(recipe, tokenizer, seq_len=SEQ_LEN)
  assert second.path == first.path
  np.testing.assert_array_equal(second.train.tokens, first.train.tokens)
  np.testing.assert_array_equal(second.train.segment_ids,
                                first.train.segment_ids)
  assert second.stats == first.stats
  assert not [p for p in first.path.parent.iterdir()
              if p.name.startswith('.')]  # No temporary folder is left.


def test_gcs_cache_holds_the_same_rows_and_is_read_back(tokenizer, fake_gcs, monkeypatch):
  recipe = {'domains': [D1, D2], 'token_budget': 500, 'seed': 2}
  local = prepare_lib.prepare(recipe, tokenizer, seq_len=SEQ_LEN)
  remote = prepare_lib.prepare(recipe, tokenizer, seq_len=SEQ_LEN,
                               cache='gs://bucket/prepared')
  assert os.fspath(remote.path) == f'gs://bucket/prepared/{local.path.name}'
  assert f'bucket/prepared/{local.path.name}/{prepare_lib.STATS_FILE}' in fake_gcs
  monkeypatch.setattr(prepare_lib, '_build', lambda *a, **k: pytest.fail('rebuilt'))
  again = prepare_lib.prepare(recipe, tokenizer, seq_len=SEQ_LEN,
                              cache='gs://bucket/prepared')
  for got in (remote, again):
    assert got.stats == local.stats
    np.testing.assert_array_equal(got.train.tokens, local.train.tokens)
    np.testing.assert_array_equal(got.train.segment_ids, local.train.segment_ids)
    assert got.held_out.keys() == local.held_out.keys()
    for d in local.held_out:
      np.testing.assert_array_equal(got.held_out[d].tokens, local.held_out[d].tokens)


def test_curated_held_out_rows_equal_the_prepared_ones(tokenizer, tmp_path):
  """A curated dataset holding the corpus' validation split gives the streamed
  run the held-out rows prepare gives the in-memory run."""
  from lm_data.curation import dataset  # pylint: disable=import-outside-toplevel
  from lm_data.input_pipeline import stream  # pylint: disable=import-outside-toplevel
  prepared = prepare_lib.prepare({'domains': [D1, D2], 'token_budget': 400},
                                 tokenizer, seq_len=SEQ_LEN)
  validation = [doc for d in (D1, D2)
                for doc in tfds_builder.load_split(d, tfds_builder.VALIDATION)]
  folder = dataset.write_documents(
      tmp_path / 'curated', tfds_builder.load_split(D1), domains=[D1],
      held_out=validation[::-1], held_out_domains=[D1, D2], num_shards=2)
  rows = stream.held_out_rows(folder, tokenizer, seq_len=SEQ_LEN)
  assert set(rows) == {D1, D2}
  for d in (D1, D2):
    np.testing.assert_array_equal(rows[d].tokens, prepared.held_out[d].tokens)
    np.testing.assert_array_equal(rows[d].segment_ids,
                                  prepared.held_out[d].segment_ids)


def test_quality_steps_count_removals_and_leave_held_out_raw(tokenizer):
  raw = prepare_lib.prepare({'domains': [D1]}, tokenizer, seq_len=SEQ_LEN)
  deduped = prepare_lib.prepare({'domains': [D1], 'quality': ['dedup_exact']},
                                tokenizer, seq_len=SEQ_LEN)
  train_texts = [d.text for d in tfds_builder.load_split(D1)]
  expected = len(train_texts) - len(set(train_texts))
  assert expected > 0
  [step] = deduped.stats['steps']
  assert step['step'] == 'dedup_exact'
  assert step['removed'] == {D1: expected}
  assert (deduped.stats['corpus'][D1]['documents']
          == raw.stats['corpus'][D1]['documents'] - expected)
  # Held-out rows are the raw validation documents, whatever the steps.
  np.testing.assert_array_equal(deduped.held_out[D1].tokens,
                                raw.held_out[D1].tokens)
  validation = tfds_builder.load_split(D1, tfds_builder.VALIDATION)
  reference = collections.Counter(
      t for doc in validation for t in tokenizer.encode(doc.text))
  assert _content(raw.held_out[D1]) == reference
  assert raw.stats['held_out'][D1]['documents'] == len(validation)


def test_degrade_and_decontaminate_are_recorded(tokenizer):
  train = tfds_builder.load_split(D1)
  raw = prepare_lib.prepare({'domains': [D1]}, tokenizer, seq_len=SEQ_LEN)
  recipe = {'domains': [D1], 'degrade': {'word_shuffle': 1.0},
            'decontaminate': True}
  prepared = prepare_lib.prepare(recipe, tokenizer, seq_len=SEQ_LEN,
                                 eval_texts=[train[3].text])
  decontaminate_step, degrade_step = prepared.stats['steps']
  assert degrade_step['step'] == 'degrade'
  assert degrade_step['details']['word_shuffle']['documents_changed'] > 0
  assert decontaminate_step['step'] == 'decontaminate'
  removed = sum(d.text == train[3].text for d in train)
  assert decontaminate_step['removed'] == {D1: removed}
  np.testing.assert_array_equal(prepared.held_out[D1].tokens,
                                raw.held_out[D1].tokens)
  # Other evaluation texts make another cache entry.
  other = prepare_lib.prepare(recipe, tokenizer, seq_len=SEQ_LEN,
                              eval_texts=[train[4].text])
  assert other.path != prepared.path


def test_decontamination_stats_by_task_and_domain(tokenizer):
  train = tfds_builder.load_split(D1)
  leaked = train[3].text
  # 20 words of another document and 20 new ones: a partial overlap (8 of
  # its 28 13-grams), kept.
  partial = train[5].text.split()[:20] + [f'zz{i}' for i in range(20)]
  recipe = {'domains': [D1, D2], 'decontaminate': True}
  prepared = prepare_lib.prepare(
      recipe, tokenizer, seq_len=SEQ_LEN,
      eval_texts={'leaky': [leaked, ' '.join(partial)],
                  'clean': ['nothing of this is in the corpus at all, '
                            'not one word of it anywhere']})
  [step] = prepared.stats['steps']
  details = step['details']
  copies = sum(d.text == leaked for d in train)
  assert step['removed'] == {D1: copies, D2: 0}
  assert details['by_domain'][D1]['removed'] == copies
  assert details['by_domain'][D2] == {
      'input': len(tfds_builder.load_split(D2)), 'removed': 0, 'rate': 0.0}
  assert details['by_task']['leaky']['found'] == 1
  assert details['by_task']['leaky']['documents_by_domain'] == {D1: copies}
  assert details['by_task']['clean']['found'] == 0
  assert details['coverage_threshold'] == prepare_lib.Recipe.from_config(
      recipe).decontaminate_coverage


def test_cache_key_covers_eval_texts_by_task_and_the_policy(monkeypatch):
  def key(texts, **fields):
    recipe = prepare_lib.Recipe.from_config({'domains': [D1], **fields})
    return prepare_lib.cache_key(recipe, 'sha', seq_len=SEQ_LEN,
                                 held_out_domains=[D1], eval_texts=texts)

  on = {'decontaminate': True}
  base = key({'a': ['x y'], 'b': ['z']}, **on)
  assert key({'b': ['z'], 'a': ['x y']}, **on) == base
  assert key({'a': ['x y', 'z']}, **on) != base
  assert key({'a': ['x y'], 'b': ['w']}, **on) != base
  assert key({'a': ['x y'], 'b': ['z']}, decontaminate_coverage=0.9,
             **on) != base
  monkeypatch.setattr(decontaminate_lib, 'RULE_VERSION', -1)
  assert key({'a': ['x y'], 'b': ['z']}, **on) != base
  # Without decontamination the evaluation texts do not matter.
  assert key({'a': ['x y']}) == key({})


def test_held_out_domains_can_extend_the_recipe(tokenizer):
  prepared = prepare_lib.prepare({'domains': [D1], 'token_budget': 100},
                                 tokenizer, seq_len=SEQ_LEN,
                                 held_out_domains=[D1, D2])
  assert sorted(prepared.held_out) == sorted([D1, D2])
  assert prepared.held_out[D2].num_rows > 0


@pytest.mark.parametrize('recipe, message', [
    ({'domains': ['lgeal']}, "unknown domain 'lgeal'; known: "),
    ({'domains': [D1], 'quality': ['perplexity']},
     "unknown quality step 'perplexity'; known: heuristic, dedup_exact"),
    ({'domains': [D1, D2], 'weights': {D1: 1.0}},
     'give one weight per domain'),
    ({'domains': [D1], 'token_budget': 0}, 'token_budget must be a positive'),
    ({'domains': [D1], 'budget': 10}, r"unknown recipe field\(s\) \['budget'\]"),
    ({'domains': [D1], 'degrade': {'typos': 0.1}}, "unknown degradation 'typos'"),
    ({'domains': [D1], 'decontaminate_coverage': 1.5},
     r'decontaminate_coverage must be in \(0, 1\]'),
])
def test_bad_recipes_fail_before_any_work(tokenizer, recipe, message,
                                          monkeypatch):
  monkeypatch.setattr(sources, 'load_domain', None)  # Must not be reached.
  with pytest.raises(ValueError, match=message):
    prepare_lib.prepare(recipe, tokenizer, seq_len=SEQ_LEN)


def test_budget_larger_than_corpus_says_its_size(tokenizer):
  everything = prepare_lib.prepare({'domains': [D1]}, tokenizer,
                                   seq_len=SEQ_LEN)
  size = everything.stats['corpus'][D1]['tokens']
  with pytest.raises(ValueError, match=f'hold {size:,} tokens'):
    prepare_lib.prepare({'domains': [D1], 'token_budget': 10**9}, tokenizer,
                        seq_len=SEQ_LEN)


def test_shared_tokenizer_sees_only_train_documents(tmp_path):
  path = prepare_lib.train_shared_tokenizer(
      [D1, D2], tmp_path / 'tokenizer' / 'spm.model', vocab_size=VOCAB_SIZE,
      process_index=0)
  stats = json.loads((path.parent / 'sample_stats.json').read_text())
  for domain in (D1, D2):
    assert stats['domains'][domain]['documents_available'] == len(
        tfds_builder.load_split(domain))
  assert tokenizer_lib.Tokenizer.load(path).vocab_size == VOCAB_SIZE


def test_waiting_processes_never_read_the_corpus(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, 'load_domain', None)  # Must not be reached.
  with pytest.raises(TimeoutError):
    prepare_lib.train_shared_tokenizer(
        [D1], tmp_path / 'spm.model', vocab_size=VOCAB_SIZE, process_index=1,
        wait_timeout_s=0.1)
