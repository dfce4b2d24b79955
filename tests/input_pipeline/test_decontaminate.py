"""Tests for n-gram decontamination against evaluation texts."""

import pytest

from lm_data.input_pipeline import decontaminate
from lm_data.input_pipeline.sources import Document

_EVAL = [f'e{i}' for i in range(20)]  # a 20-word evaluation text


def _filler(prefix, n):
  return ' '.join(f'{prefix}{i}' for i in range(n))


def _doc(text, i, domain='legal'):
  return Document(text, domain, 'src', f'd{i}')


def test_thirteen_shared_words_remove_twelve_keep():
  thirteen = ' '.join(_EVAL[3:16]).upper().replace(' ', ',  ')
  twelve = ' '.join(_EVAL[3:15])
  docs = [_doc(f'{_filler("a", 30)} {thirteen}. {_filler("b", 30)}', 0),
          _doc(f'{_filler("c", 30)} {twelve} {_filler("d", 30)}', 1),
          # Every word of the eval text, but never 13 in a row.
          _doc(' '.join(_EVAL[:12] + ['x'] + _EVAL[12:]), 2),
          # Twelve in a row, then the sequence skips a word.
          _doc(f'{twelve} {_EVAL[16]}', 3, 'religious')]
  kept, stats = decontaminate.decontaminate(docs, [' '.join(_EVAL)])
  assert [d.doc_id for d in kept] == ['d1', 'd2', 'd3']
  assert stats['removed'] == 1 and stats['removed_by_domain'] == {'legal': 1}
  assert stats['removed_ids'] == ['src/d0']
  assert stats['eval_ngrams'] == 20 - 13 + 1


def test_ngrams_do_not_span_documents():
  docs = [_doc(' '.join(_EVAL[:7]), 0), _doc(' '.join(_EVAL[7:13]), 1)]
  kept, _ = decontaminate.decontaminate(docs, [' '.join(_EVAL)])
  assert len(kept) == 2


def test_short_eval_text_is_one_ngram_and_tiny_ones_are_skipped():
  short = ' '.join(_EVAL[:10])  # 10 words: between min_words (8) and 13
  docs = [_doc(f'x y {short} z', 0), _doc(' '.join(_EVAL[:9]), 1),
          _doc('tiger cat and more words here to pad it', 2)]
  kept, stats = decontaminate.decontaminate(docs, [short, 'tiger cat'])
  assert [d.doc_id for d in kept] == ['d1', 'd2']
  assert stats['eval_texts'] == 2 and stats['eval_texts_skipped_short'] == 1
  kept, stats = decontaminate.decontaminate(docs, ['tiger cat'], min_words=2)
  assert [d.doc_id for d in kept] == ['d0', 'd1']


def test_index_sizes_and_arguments():
  index = decontaminate.build_ngram_index(
      [' '.join(_EVAL), ' '.join(_EVAL), ' '.join(_EVAL[:9]), 'a b'], n=13)
  assert sorted(index.hashes) == [9, 13]
  assert len(index.hashes[13]) == 8 and len(index.hashes[9]) == 1
  assert index.num_ngrams == 9 and index.skipped_short == 1
  with pytest.raises(ValueError, match='min_words'):
    decontaminate.build_ngram_index(['a'], n=5, min_words=6)


def test_removed_ids_are_capped(monkeypatch):
  monkeypatch.setattr(decontaminate, 'MAX_REPORTED_IDS', 2)
  docs = [_doc(' '.join(_EVAL), i) for i in range(5)]
  kept, stats = decontaminate.decontaminate(docs, [' '.join(_EVAL)])
  assert kept == [] and stats['removed'] == 5
  assert stats['removed_ids'] == ['src/d0', 'src/d1']


def test_no_eval_texts_keeps_everything():
  docs = [_doc(' '.join(_EVAL), 0)]
  kept, stats = decontaminate.decontaminate(docs, [])
  assert kept == docs and stats['removed'] == 0
