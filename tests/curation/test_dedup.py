"""Tests for exact and MinHash-LSH near-duplicate removal."""

import numpy as np
import pytest

from lm_data.corpus.sources import Document
from lm_data.curation import dedup

_MASK64 = (1 << 64) - 1


def _random_words(rng, n, vocab_size=5000, prefix='w'):
  return [f'{prefix}{i}' for i in rng.integers(vocab_size, size=n)]


def _edit(words, fraction, rng):
  """A copy with `fraction` of the words replaced by new ones."""
  out = list(words)
  for i in rng.choice(len(words), size=round(fraction * len(words)),
                      replace=False):
    out[i] = f'changed{i}'
  return out


def _shingle_jaccard(a, b, n=dedup.SHINGLE_SIZE):
  sa = {tuple(a[i:i + n]) for i in range(len(a) - n + 1)}
  sb = {tuple(b[i:i + n]) for i in range(len(b) - n + 1)}
  return len(sa & sb) / len(sa | sb)


def _doc(text, i, domain='legal'):
  return Document(text, domain, 'test', f'd{i}')


def _splitmix64(x):
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
  x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
  return x ^ (x >> 31)


def test_words_lowercase_and_drop_punctuation():
  assert dedup.words("Hello, WORLD! It's  3pm.") == [
      'hello', 'world', 'it', 's', '3pm']


def test_word_hashes_are_per_word_and_offsets_split_texts():
  hashes, offsets = dedup.word_hashes([['a', 'b', 'a'], [], ['b']])
  np.testing.assert_array_equal(offsets, [0, 3, 3, 4])
  assert hashes[0] == hashes[2] and hashes[1] == hashes[3]
  assert hashes[0] != hashes[1]
  again, _ = dedup.word_hashes([['b', 'a']])
  np.testing.assert_array_equal(again, [hashes[1], hashes[0]])


def test_ngram_hashes_match_python_reference():
  rng = np.random.default_rng(0)
  words = rng.integers(0, 2**64, size=7, dtype=np.uint64)
  got = dedup.ngram_hashes(words, 3)
  want = []
  for i in range(5):
    h = 0
    for w in words[i:i + 3]:
      h = (h * 0x9E3779B97F4A7C15 + int(w)) & _MASK64
    want.append(_splitmix64(h))
  np.testing.assert_array_equal(got, np.array(want, dtype=np.uint64))
  assert len(dedup.ngram_hashes(words, 8)) == 0


def test_segment_ngrams_never_cross_texts():
  hashes, offsets = dedup.word_hashes([['a', 'b', 'c'], ['d'], ['e', 'f']])
  grams, owner = dedup.segment_ngrams(hashes, offsets, 2)
  np.testing.assert_array_equal(owner, [0, 0, 2])
  np.testing.assert_array_equal(grams[:2], dedup.ngram_hashes(hashes[:3], 2))
  np.testing.assert_array_equal(grams[2:], dedup.ngram_hashes(hashes[4:], 2))


@pytest.mark.parametrize('edit_fraction', [0.02, 0.1, 0.3])
def test_minhash_estimates_shingle_jaccard(edit_fraction):
  rng = np.random.default_rng(1)
  a = _random_words(rng, 400)
  b = _edit(a, edit_fraction, rng)
  sig = dedup.minhash_signatures([' '.join(a), ' '.join(b)])
  true = _shingle_jaccard(a, b)
  # Standard error of the estimate is sqrt(J (1 - J) / 128) <= 0.044.
  assert dedup.estimate_jaccard(sig[0], sig[1]) == pytest.approx(true,
                                                                 abs=0.15)


def test_minhash_signature_is_independent_of_batch_and_deterministic():
  rng = np.random.default_rng(2)
  texts = [' '.join(_random_words(rng, n)) for n in (3, 50, 0, 200)]
  together = dedup.minhash_signatures(texts, seed=5)
  alone = np.stack([dedup.minhash_signatures([t], seed=5)[0] for t in texts])
  np.testing.assert_array_equal(together, alone)
  assert np.all(together[2] == np.iinfo(np.uint64).max)  # no words
  # A text shorter than a shingle is one shingle of all its words.
  short = dedup.minhash_signatures(['W3 w5, W7', 'w3 w5 w7'], seed=5)
  np.testing.assert_array_equal(short[0], short[1])
  other_seed = dedup.minhash_signatures(texts, seed=6)
  assert not np.array_equal(together[1], other_seed[1])


def test_lsh_params_put_the_s_curve_at_the_threshold():
  bands, rows = dedup.lsh_params(0.8, 128)
  assert bands * rows <= 128
  candidate = lambda s: 1 - (1 - s**rows)**bands
  assert candidate(0.9) > 0.98
  assert candidate(0.6) < 0.1
  with pytest.raises(ValueError, match='threshold'):
    dedup.lsh_params(1.5, 128)


def test_exact_dedup_normalises_case_and_whitespace_and_keeps_first():
  docs = [_doc('Hello  World\n', 0), _doc('other text', 1),
          _doc('hello world', 2, 'religious'), _doc('HELLO\tworld', 3)]
  kept, stats = dedup.exact_dedup(docs)
  assert [d.doc_id for d in kept] == ['d0', 'd1']
  assert stats['removed_exact'] == 2
  assert stats['removed_exact_by_domain'] == {'legal': 1, 'religious': 1}


def test_near_dedup_removes_planted_copies_only():
  rng = np.random.default_rng(3)
  base = _random_words(rng, 300)
  other_base = _random_words(rng, 300)
  slight = _edit(base, 0.01, rng)  # 5-gram Jaccard ~0.9
  assert _shingle_jaccard(base, slight) > 0.85
  docs = [_doc(' '.join(other_base), 0), _doc(' '.join(base), 1),
          _doc(' '.join(_random_words(rng, 300)), 2),
          _doc(' '.join(slight), 3, 'religious'),
          _doc(' '.join(_edit(other_base, 0.01, rng)), 4)]
  kept, stats = dedup.near_dedup(docs)
  assert [d.doc_id for d in kept] == ['d0', 'd1', 'd2']
  assert stats['removed_near'] == 2 and stats['clusters'] == 2
  assert stats['removed_near_by_domain'] == {'legal': 1, 'religious': 1}


def test_near_dedup_threshold_07_catches_three_percent_word_edits():
  rng = np.random.default_rng(4)
  base = _random_words(rng, 300)
  copy = _edit(base, 0.03, rng)
  # 3% random edits break ~14% of the 5-grams: Jaccard ~0.75, below 0.8.
  assert 0.7 < _shingle_jaccard(base, copy) < 0.8
  docs = [_doc(' '.join(base), 0), _doc(' '.join(copy), 1),
          _doc(' '.join(_random_words(rng, 300)), 2)]
  kept, _ = dedup.near_dedup(docs, threshold=0.7)
  assert [d.doc_id for d in kept] == ['d0', 'd2']


def test_near_dedup_clusters_keep_first_in_input_order():
  rng = np.random.default_rng(5)
  base = _random_words(rng, 300)
  copies = [' '.join(_edit(base, 0.005, rng)) for _ in range(4)]
  docs = [_doc(t, i) for i, t in enumerate(copies)]
  kept, stats = dedup.near_dedup(docs)
  assert [d.doc_id for d in kept] == ['d0']
  assert stats['clusters'] == 1 and stats['removed_near'] == 3
  kept_rev, _ = dedup.near_dedup(docs[::-1])
  assert [d.doc_id for d in kept_rev] == ['d3']


def test_near_dedup_ignores_empty_documents_and_handles_no_input():
  docs = [_doc('', 0), _doc('  ', 1), _doc('a b c d e f', 2)]
  kept, stats = dedup.near_dedup(docs)
  assert len(kept) == 3 and stats['removed_near'] == 0
  kept, stats = dedup.near_dedup([])
  assert kept == [] and stats['removed_near'] == 0
