"""Tests for the shared SentencePiece tokenizer."""

import hashlib
import json
import random
import threading

import pytest

from lm_data.input_pipeline import tokenizer as tokenizer_lib

VOCAB_SIZE = 150
_SYLLABLES = ('ka', 'lo', 'mi', 'ten', 'ra', 'su', 'vo', 'pe', 'din', 'gar',
              'ul', 'bre', 'sto', 'fi', 'nax', 'qu')


def _corpus(seed=0, docs=60, words_per_doc=40):
  """Two tiny synthetic domains of pseudo-words (enough pieces for 150)."""
  rng = random.Random(seed)
  words = [''.join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3)))
           for _ in range(300)]
  return {domain: [' '.join(rng.choice(words) + suffix
                            for _ in range(words_per_doc))
                   for _ in range(docs)]
          for domain, suffix in (('alpha', ''), ('beta', 's'))}


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  path = tmp_path_factory.mktemp('tok') / 'tokenizer' / 'spm.model'
  tokenizer_lib.train_tokenizer(_corpus(), path, vocab_size=VOCAB_SIZE,
                                process_index=0)
  return path


def test_special_tokens_have_fixed_ids(trained):
  tok = tokenizer_lib.Tokenizer.load(trained)
  assert tok.vocab_size == VOCAB_SIZE
  assert [tok.id_to_piece(i) for i in range(5)] == [
      '[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
  assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (
      0, 1, 2, 3, 4)
  assert tok.special_ids == frozenset(range(5))
  # Special pieces typed in text are plain characters, never control ids.
  ids = tok.encode('kalo [CLS] mi [SEP] ten [MASK] [PAD]')
  assert not set(ids) & {0, 2, 3, 4}


def test_round_trip_and_batch_encode(trained):
  tok = tokenizer_lib.Tokenizer.load(trained)
  texts = _corpus(seed=1, docs=3)['beta']
  batch = tok.encode_batch(texts)
  assert batch == [tok.encode(t) for t in texts]
  for text, ids in zip(texts, batch):
    assert tok.decode(ids) == text
    assert all(0 < i < VOCAB_SIZE for i in ids)


def test_surrogates_are_encoded_as_valid_unicode(trained):
  tok = tokenizer_lib.Tokenizer.load(trained)
  # Lone surrogates become U+FFFD (a raw pybind RuntimeError before); a split
  # pair becomes its character.
  assert tok.encode('kalo \ud800mi\udc80') == tok.encode('kalo \ufffdmi\ufffd')
  assert tok.encode('mi \ud83d\ude00') == tok.encode('mi \U0001f600')
  assert tok.encode_batch(['ten', 'ra\udfff']) == [tok.encode('ten'),
                                                  tok.encode('ra\ufffd')]
  assert list(tokenizer_lib._lines(['a\ud800b\nc'])) == ['a\ufffdb', 'c']
  with pytest.raises(TypeError):  # Other errors are not swallowed.
    tok.encode_batch(['ok', 3])


def test_sample_stats_are_written(trained):
  stats = json.loads((trained.parent / 'sample_stats.json').read_text())
  assert stats['model_sha256'] == hashlib.sha256(
      trained.read_bytes()).hexdigest()
  assert stats['vocab_size'] == VOCAB_SIZE
  corpus = _corpus()
  for domain, texts in corpus.items():
    assert stats['domains'][domain]['characters_sampled'] == sum(
        len(t) for t in texts)


def test_balanced_sample_gives_equal_characters_per_domain():
  texts = {'big': ['x' * 500] * 10, 'small': ['y' * 30] * 3}
  sample, stats = tokenizer_lib.balanced_sample(texts, max_chars=400, seed=0)
  assert stats['big']['characters_sampled'] == 200  # One document, cut.
  assert stats['big']['documents_sampled'] == 1
  assert stats['small']['characters_sampled'] == 90  # All it has.
  assert sorted(len(t) for t in sample) == [30, 30, 30, 200]


def test_balanced_sample_is_deterministic_by_seed():
  texts = {'d': [f'doc{i} ' * 5 for i in range(50)]}
  first, _ = tokenizer_lib.balanced_sample(texts, max_chars=100, seed=3)
  again, _ = tokenizer_lib.balanced_sample(texts, max_chars=100, seed=3)
  other, _ = tokenizer_lib.balanced_sample(texts, max_chars=100, seed=4)
  assert first == again
  assert first != other


def test_other_processes_wait_for_process_zero(tmp_path):
  path = tmp_path / 'spm.model'
  results = {}

  def wait():
    results['waiter'] = tokenizer_lib.train_tokenizer(
        iter(()), path, vocab_size=VOCAB_SIZE, process_index=1,
        wait_timeout_s=30)

  waiter = threading.Thread(target=wait)
  waiter.start()
  trained = tokenizer_lib.train_tokenizer(_corpus(), path,
                                          vocab_size=VOCAB_SIZE,
                                          process_index=0)
  waiter.join(timeout=30)
  assert results['waiter'] == trained == path
  # No temporary files are left behind.
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      'sample_stats.json', 'spm.model']


def test_waiting_times_out_with_a_clear_error(tmp_path):
  with pytest.raises(TimeoutError, match='process 0 trains'):
    tokenizer_lib.train_tokenizer(iter(()), tmp_path / 'spm.model',
                                  vocab_size=VOCAB_SIZE, process_index=1,
                                  wait_timeout_s=0.1)


def test_existing_model_is_reused_and_checked(trained):
  before = trained.read_bytes()
  assert tokenizer_lib.train_tokenizer(
      {}, trained, vocab_size=VOCAB_SIZE, process_index=0) == trained
  assert trained.read_bytes() == before
  with pytest.raises(ValueError, match='vocab size 150, not 200'):
    tokenizer_lib.train_tokenizer({}, trained, vocab_size=200,
                                  process_index=0)


def test_unknown_model_type_is_rejected(tmp_path):
  with pytest.raises(ValueError, match="unknown tokenizer model_type 'wordpiece'"):
    tokenizer_lib.train_tokenizer(_corpus(), tmp_path / 'spm.model',
                                  vocab_size=VOCAB_SIZE,
                                  model_type='wordpiece', process_index=0)


def test_bpe_model_type_trains(tmp_path):
  path = tokenizer_lib.train_tokenizer(_corpus(), tmp_path / 'spm.model',
                                       vocab_size=VOCAB_SIZE,
                                       model_type='bpe', process_index=0)
  tok = tokenizer_lib.Tokenizer.load(path)
  assert tok.id_to_piece(4) == '[MASK]'
  assert tok.decode(tok.encode('kalo mi')) == 'kalo mi'
