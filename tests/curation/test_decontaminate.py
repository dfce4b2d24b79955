"""Tests for decontamination by n-gram coverage, on planted leaks.

Every text is synthetic: numbered pseudo-words, so no n-gram is shared by
chance unless a test plants it.
"""

import itertools
import random

import numpy as np
import pytest

from lm_data.corpus.sources import Document
from lm_data.curation import decontaminate
from lm_data.curation import dedup

N = decontaminate.NGRAM_WORDS


def _words(prefix, n):
  return [f'{prefix}{i}' for i in range(n)]


def _text(words):
  return ' '.join(words)


def _doc(words, i, domain='legal'):
  return Document(_text(words) if isinstance(words, list) else words, domain,
                  'src', f'd{i}')


# A 40-word evaluation text (28 distinct 13-grams), one of 12 words (checked
# whole) and one of 5 words (too short to check).
LONG = _words('e', 40)
SHORT = _words('s', 12)
TINY = _words('t', 5)
# Licence-style boilerplate: 20 words shared by two evaluation texts and by
# documents that are neither of them.
BOILERPLATE = _words('w', 20)
LICENCE_A = _words('a', 30) + BOILERPLATE + _words('a', 60)[30:]
LICENCE_B = _words('b', 30) + BOILERPLATE + _words('b', 60)[30:]
EVAL = {'task_long': [_text(LONG), _text(SHORT)],
        'task_tiny': [_text(TINY)],
        'licences': [_text(LICENCE_A), _text(LICENCE_B)]}


def _planted_corpus():
  """(documents, ids that must be removed)."""
  pad = lambda k: _words(f'p{k}_', 30)  # noqa: E731
  docs = [
      # Removed: a whole evaluation text, upper-cased and re-punctuated.
      _doc(_text(pad(0) + LONG + pad(1)).upper().replace(' ', ',  '), 0),
      # Removed: 26 of the 40 words, 14 of 28 13-grams (coverage 0.5).
      _doc(pad(2) + LONG[:26] + pad(3), 1, 'conversational'),
      # Kept: 25 words, 13 of 28 13-grams (coverage 0.46).
      _doc(pad(4) + LONG[:25] + pad(5), 2, 'conversational'),
      # Kept: every word of LONG, but a word inserted every 12 words.
      _doc(list(itertools.chain.from_iterable(
          LONG[i:i + 12] + ['x'] for i in range(0, 40, 12))), 3),
      # Kept: shared boilerplate (8 of the 68 13-grams of both licences).
      _doc(pad(6) + BOILERPLATE + pad(7), 4),
      # Kept: boilerplate plus another part of licence A (28 of 68: 0.41).
      _doc(LICENCE_A[10:30] + BOILERPLATE + pad(8), 5),
      # Removed: licence B with its first 10 words changed (coverage 0.86).
      _doc(_words('z', 10) + LICENCE_B[10:], 6),
      # Removed: the whole short text (12 words).
      _doc(pad(9) + SHORT + pad(10), 7, 'religious'),
      # Kept: 11 of the short text's 12 words.
      _doc(pad(11) + SHORT[:11] + pad(12), 8, 'religious'),
      # Kept: the tiny text is never checked.
      _doc(pad(13) + TINY + pad(14), 9),
      # Kept: two parts of LONG in two documents, 8 of 28 13-grams each (a
      # 13-gram spanning both would count).
      _doc(LONG[:20], 10), _doc(LONG[20:], 11),
  ]
  return docs, {'d0', 'd1', 'd6', 'd7'}


def test_planted_leaks_are_removed_and_partial_overlaps_kept():
  docs, leaks = _planted_corpus()
  kept, stats = decontaminate.decontaminate(docs, EVAL)
  assert {d.doc_id for d in docs} - {d.doc_id for d in kept} == leaks
  assert [d.doc_id for d in kept] == [d.doc_id for d in docs
                                      if d.doc_id not in leaks]
  assert stats['removed'] == 4 and stats['kept'] == len(docs) - 4
  assert stats['removed_by_domain'] == {'conversational': 1, 'legal': 2,
                                        'religious': 1}
  assert stats['removed_ids'] == ['src/d0', 'src/d1', 'src/d6', 'src/d7']


def test_stats_per_domain_and_per_task():
  docs, _ = _planted_corpus()
  _, stats = decontaminate.decontaminate(docs, EVAL)
  assert stats['by_domain'] == {
      'conversational': {'input': 2, 'removed': 1, 'rate': 0.5},
      'legal': {'input': 8, 'removed': 2, 'rate': 0.25},
      'religious': {'input': 2, 'removed': 1, 'rate': 0.5}}
  assert stats['by_task'] == {
      'task_long': {'texts': 2, 'checked': 2, 'found': 2, 'rate': 1.0,
                    'documents': 3,
                    'documents_by_domain': {'conversational': 1, 'legal': 1,
                                            'religious': 1}},
      'task_tiny': {'texts': 1, 'checked': 0, 'found': 0, 'rate': 0.0,
                    'documents': 0, 'documents_by_domain': {}},
      'licences': {'texts': 2, 'checked': 2, 'found': 1, 'rate': 0.5,
                   'documents': 1, 'documents_by_domain': {'legal': 1}}}
  assert stats['eval_texts'] == 5 and stats['eval_texts_skipped_short'] == 1
  assert stats['eval_texts_found'] == 3
  # 28 + 1 + 2 * 68 keys, less the 8 boilerplate 13-grams both licences hold.
  assert stats['eval_ngrams'] == 28 + 1 + 2 * 68 - 8
  assert stats['coverage_threshold'] == decontaminate.COVERAGE_THRESHOLD
  assert stats['ngram_words'] == N
  assert stats['min_eval_words'] == decontaminate.MIN_EVAL_WORDS


def test_a_text_in_two_tasks_counts_for_both():
  docs = [_doc(LONG, 0)]
  _, stats = decontaminate.decontaminate(
      docs, {'x': [_text(LONG)], 'y': [_text(LONG), _text(SHORT)]})
  assert stats['eval_texts'] == 2
  assert stats['by_task']['x']['found'] == 1
  assert stats['by_task']['y'] == {
      'texts': 2, 'checked': 2, 'found': 1, 'rate': 0.5, 'documents': 1,
      'documents_by_domain': {'legal': 1}}


def test_threshold_and_min_words_are_arguments():
  docs, _ = _planted_corpus()
  # At 0.25 the boilerplate-plus-part document (d5) is a leak of licence A,
  # and the parts of LONG (d2, d10, d11) too; the boilerplate alone (d4) is
  # not.
  kept, _ = decontaminate.decontaminate(docs, EVAL, coverage_threshold=0.25)
  removed = {d.doc_id for d in docs} - {d.doc_id for d in kept}
  assert removed == {'d0', 'd1', 'd2', 'd5', 'd6', 'd7', 'd10', 'd11'}
  kept, stats = decontaminate.decontaminate(docs, EVAL, coverage_threshold=1.0)
  assert {d.doc_id for d in docs} - {d.doc_id for d in kept} == {'d0', 'd7'}
  # With min_words=5 the tiny text is checked and its document goes.
  kept, stats = decontaminate.decontaminate(docs, EVAL, min_words=5)
  assert 'd9' not in {d.doc_id for d in kept}
  assert stats['by_task']['task_tiny']['rate'] == 1.0
  with pytest.raises(ValueError, match='coverage_threshold'):
    decontaminate.decontaminate(docs, EVAL, coverage_threshold=0.0)
  with pytest.raises(ValueError, match='min_words'):
    decontaminate.build_index(['a'], n=5, min_words=6)


def test_plain_sequence_is_one_task_and_no_texts_keep_everything():
  docs, leaks = _planted_corpus()
  texts = [t for ts in EVAL.values() for t in ts]
  kept, stats = decontaminate.decontaminate(docs, texts)
  assert len(kept) == len(docs) - len(leaks)
  assert list(stats['by_task']) == [decontaminate.UNNAMED_TASK]
  kept, stats = decontaminate.decontaminate(docs, [])
  assert kept == docs and stats['removed'] == 0 and stats['by_task'] == {}
  kept, stats = decontaminate.decontaminate(docs, {'t': [_text(TINY)]})
  assert kept == docs and stats['eval_ngrams'] == 0


def test_removed_ids_are_capped(monkeypatch):
  monkeypatch.setattr(decontaminate, 'MAX_REPORTED_IDS', 2)
  docs = [_doc(LONG, i) for i in range(5)]
  kept, stats = decontaminate.decontaminate(docs, [_text(LONG)])
  assert kept == [] and stats['removed'] == 5
  assert stats['removed_ids'] == ['src/d0', 'src/d1']


def _reference_grams(text, size):
  w = dedup.words(text)
  return {tuple(w[i:i + size]) for i in range(len(w) - size + 1)}


def _reference_coverage(doc_texts, eval_text, n, min_words):
  """Coverage by the definition, with Python sets (None: not checked)."""
  size = min(len(dedup.words(eval_text)), n)
  if size < min_words:
    return None
  wanted = _reference_grams(eval_text, size)
  held = set().union(*(_reference_grams(t, size) for t in doc_texts))
  return len(wanted & held) / len(wanted)


def test_coverage_matches_a_set_based_reference():
  # A 6-word vocabulary makes n-grams repeat within and across texts.
  rng = random.Random(0)
  vocab = _words('v', 6)
  texts = [_text(rng.choices(vocab, k=rng.randint(0, 40))) for _ in range(30)]
  evals = [_text(rng.choices(vocab, k=rng.randint(1, 12))) for _ in range(40)]
  evals += texts[:5]  # some exact copies
  sources = np.array([rng.randrange(12) for _ in texts])
  index = decontaminate.build_index(evals, 4, min_words=3)
  doc, eval_text, fraction, source_fraction = decontaminate.coverage(
      texts, index, sources)
  got = {(int(d), index.texts[int(e)]): (f, g) for d, e, f, g
         in zip(doc, eval_text, fraction, source_fraction)}
  expected = {}
  for d, text in enumerate(texts):
    parts = [t for t, s in zip(texts, sources) if s == sources[d]]
    for e in index.texts:
      value = _reference_coverage([text], e, 4, 3)
      if value:
        expected[d, e] = (value, _reference_coverage(parts, e, 4, 3))
  assert got.keys() == expected.keys()
  for key, value in expected.items():
    assert got[key] == pytest.approx(value)
  assert len(index.texts) == len(set(evals))
  np.testing.assert_array_equal(
      index.checked, [len(dedup.words(t)) >= 3 for t in index.texts])
  # Without sources, a document is its own source.
  alone = decontaminate.coverage(texts, index)
  np.testing.assert_array_equal(alone[2], alone[3])
  np.testing.assert_array_equal(alone[2], fraction)


def test_parts_of_a_split_text_count_together():
  # LONG cut into two parts holding 12 and 11 of its 28 13-grams (0.43 and
  # 0.39; 0.82 together), as sources.py cuts a giant text; a third part holds
  # nothing of it.
  docs = [_doc(LONG[:24], 0), _doc(LONG[17:], 1), _doc(_words('q', 30), 2)]
  docs = [Document(d.text, 'legal', 'src', f'big#{k}')
          for k, d in enumerate(docs)]
  # The same parts under unrelated ids stay: each holds under half.
  loose = [Document(d.text, 'legal', 'src', f'loose{k}')
           for k, d in enumerate(docs)]
  # A part of another source document that only shares 10 words with LONG.
  other = [Document(_text(LONG[:10] + _words('r', 30)), 'legal', 'src2',
                    'big#0')]
  # A split text whose part #0 holds all of LONG: only that part goes, not
  # part #1 that shares 14 words (2 13-grams) with it.
  whole = [Document(_text(LONG), 'legal', 'src3', 'big#0'),
           Document(_text(LONG[:14] + _words('u', 30)), 'legal', 'src3',
                    'big#1')]
  kept, stats = decontaminate.decontaminate(docs + loose + other + whole,
                                            {'t': [_text(LONG)]})
  assert [f'{d.source}/{d.doc_id}' for d in kept] == [
      'src/big#2', 'src/loose0', 'src/loose1', 'src/loose2', 'src2/big#0',
      'src3/big#1']
  assert stats['by_task']['t']['documents'] == 3
  np.testing.assert_array_equal(
      decontaminate.source_ids(docs + loose + other + whole),
      [0, 0, 0, 1, 2, 3, 4, 5, 5])


def test_fingerprint_and_policy():
  fp = decontaminate.fingerprint
  assert fp({'a': ['x'], 'b': ['y']}) == fp({'b': ['y'], 'a': ['x']})
  assert fp({'a': ['x'], 'b': ['y']}) != fp({'a': ['x', 'y']})
  assert fp(['x']) == fp({decontaminate.UNNAMED_TASK: ['x']})
  assert fp([]) == fp({})
  assert decontaminate.policy(coverage=0.8)['coverage_threshold'] == 0.8
