"""Tests for Gopher/C4 quality signals and filters and the Cramming filter."""

import dataclasses

import numpy as np
import pytest

from lm_data.corpus.sources import Document
from lm_data.curation import quality

_STOP = sorted(quality.GOPHER_STOP_WORDS)


def _clean_text(seed=0, n_words=120, words_per_line=12):
  """Varied made-up prose: random 3-8 letter words, every 5th a stop word."""
  rng = np.random.default_rng(seed)
  letters = np.array(list('abcdefghijklmnopqrstuvwxyz'))
  words = []
  for i in range(n_words):
    if i % 5 == 4:
      words.append(_STOP[rng.integers(len(_STOP))])
    else:
      words.append(''.join(rng.choice(letters, size=rng.integers(3, 9))))
  lines = [' '.join(words[i:i + words_per_line]) + '.'
           for i in range(0, n_words, words_per_line)]
  return '\n'.join(lines)


def _fails(text, thresholds=quality.DEFAULT_THRESHOLDS):
  return quality.failed_rules(quality.quality_signals(text), thresholds)


def test_clean_text_passes_gopher_and_default_rules():
  for seed in range(3):
    assert _fails(_clean_text(seed)) == []
    assert _fails(_clean_text(seed), quality.GOPHER_THRESHOLDS) == []


def test_word_signals_by_hand():
  s = quality.quality_signals('Hello, world -- foo.')
  assert s['n_words'] == 3
  assert s['mean_word_length'] == pytest.approx(13 / 3)
  assert s['non_alpha_words_frac'] == pytest.approx(1 / 4)
  s = quality.quality_signals('# a ... b \u2026')
  assert s['n_words'] == 2
  assert s['symbol_to_word_ratio'] == pytest.approx(3 / 2)
  s = quality.quality_signals('The cat and THE dog; with 12 ab3')
  assert s['stop_words'] == 4
  assert s['digit_ratio'] == pytest.approx(3 / 25)


def test_line_signals_by_hand():
  s = quality.quality_signals('x y\nx y\n\nz\n- item...\n* two')
  # Lines: 'x y', 'x y', 'z', '- item...', '* two'.
  assert s['dup_line_frac'] == pytest.approx(1 / 5)
  assert s['dup_line_char_frac'] == pytest.approx(3 / 21)
  assert s['bullet_lines_frac'] == pytest.approx(2 / 5)
  assert s['ellipsis_lines_frac'] == pytest.approx(1 / 5)
  s = quality.quality_signals('para one\n\npara two\n\n para one ')
  assert s['dup_para_frac'] == pytest.approx(1 / 3)
  assert s['dup_para_char_frac'] == pytest.approx(8 / 24)


def test_ngram_signals_by_hand():
  # Word lengths 2,1,3,2,1,3,1: 13 characters.
  s = quality.quality_signals('aa b ccc AA b, ccc d')
  # Top 2-gram: 'aa b' and 'b ccc' tie at 2; 'aa b' is first: words 0,1,3,4.
  assert s['top_2gram_char_frac'] == pytest.approx(6 / 13)
  assert s['top_3gram_char_frac'] == pytest.approx(12 / 13)
  assert s['top_4gram_char_frac'] == 0.0
  s = quality.quality_signals('p q r s t u p q r s t v')
  # The 5-gram at position 6 repeats position 0 and covers words 6..10.
  assert s['dup_5gram_char_frac'] == pytest.approx(5 / 12)
  assert s['dup_6gram_char_frac'] == 0.0


def test_markup_ratio_counts_tag_and_wiki_characters():
  assert quality.quality_signals('<b>hi</b>')['markup_ratio'] == (
      pytest.approx(7 / 9))
  assert quality.quality_signals("[[Paris]] is ''big''")['markup_ratio'] == (
      pytest.approx(8 / 20))
  rest = 'Title\n=====\n\nUse ``x`` and :class:`Y`.'
  assert quality.quality_signals(rest)['markup_ratio'] == pytest.approx(
      (5 + 4 + 7 + 2) / len(rest))
  plain = 'Mail <me@example.org> or see <https://example.org>, 3 < 4 > 2.'
  assert quality.quality_signals(plain)['markup_ratio'] == 0.0


def _with(**changes):
  return dataclasses.replace(quality.DEFAULT_THRESHOLDS, **changes)


def _lines(text):
  return text.split('\n')


@pytest.mark.parametrize('rule, bad, thresholds', [
    ('min_words', 'only five words here now', None),
    ('max_words', _clean_text(n_words=200), _with(max_words=150)),
    ('min_mean_word_length', ' '.join(['a b of it'] * 20), None),
    ('max_mean_word_length',
     ' '.join(['incomprehensibilities the'] * 30), None),
    ('max_symbol_to_word_ratio', _clean_text() + ' #x' * 20, None),
    ('max_bullet_lines_frac',
     '\n'.join('- ' + l for l in _lines(_clean_text())), None),
    ('max_ellipsis_lines_frac',
     '\n'.join(l + '..' for l in _lines(_clean_text())), None),
    ('max_non_alpha_words_frac', _clean_text() + ' 1 2 3 4 5' * 8, None),
    ('min_stop_words',
     ' '.join(w for w in _clean_text().split()
              if w.strip('.') not in quality.GOPHER_STOP_WORDS), None),
    ('max_digit_ratio', _clean_text() + ' 1234567890' * 80, None),
    ('max_dup_line_frac', '\n'.join(['a b'] * 10 + _lines(_clean_text())),
     quality.GOPHER_THRESHOLDS),
    ('max_dup_para_frac', '\n\n'.join(['the short one'] * 3 + [_clean_text()]),
     None),
    ('max_dup_line_char_frac', _clean_text() + '\n' + _clean_text(), None),
    ('max_dup_para_char_frac', _clean_text() + '\n\n' + _clean_text(), None),
    ('max_top_2gram_char_frac', _clean_text() + ' zebra crossing' * 30, None),
    ('max_dup_10gram_char_frac',
     _clean_text(0) + '\n' + _clean_text(0, n_words=60), None),
    ('max_markup_ratio',
     '\n'.join(f'<div class="x"><p>{l}</p></div>'
               for l in _lines(_clean_text())), None),
    ('forbid_lorem_ipsum', _clean_text() + ' Lorem ipsum dolor.', None),
])
def test_each_rule_catches_a_document_made_to_violate_it(rule, bad,
                                                         thresholds):
  thresholds = thresholds or quality.DEFAULT_THRESHOLDS
  assert rule in _fails(bad, thresholds)
  assert _fails(_clean_text(1), thresholds) == []


def test_default_departures_from_gopher():
  # A 30-word notice passes the default, not Gopher's 50-word minimum.
  notice = _clean_text(n_words=30)
  assert _fails(notice) == []
  assert _fails(notice, quality.GOPHER_THRESHOLDS) == ['min_words']
  # Speaker lines of a play repeat (line count) but hold few characters.
  play = '\n'.join(f'Ham.\n{l}' for l in _lines(_clean_text(n_words=240)))
  assert _fails(play) == []
  assert 'max_dup_line_frac' in _fails(play, quality.GOPHER_THRESHOLDS)


def test_unknown_ngram_rule_is_rejected():
  with pytest.raises(ValueError, match='n=11'):
    quality.heuristic_filter(
        [], _with(max_dup_ngram_char_frac=((11, 0.1),)))


def test_heuristic_filter_keeps_order_and_counts_every_removal():
  docs = [Document(_clean_text(0), 'legal', 's', 'ok0'),
          Document('too short', 'legal', 's', 'short'),
          Document(_clean_text(1) + ' lorem ipsum', 'religious', 's', 'lorem'),
          Document(_clean_text(2), 'religious', 's', 'ok1'),
          Document('tiny lorem ipsum', 'legal', 's', 'both')]
  kept, stats = quality.heuristic_filter(docs)
  assert [d.doc_id for d in kept] == ['ok0', 'ok1']
  assert stats['removed'] == 3 and stats['kept'] == 2
  assert stats['removed_by_rule'] == {'forbid_lorem_ipsum': 1, 'min_words': 2}
  # The two short texts also lack stop words.
  assert stats['violations_by_rule'] == {'forbid_lorem_ipsum': 2,
                                         'min_stop_words': 2, 'min_words': 2}
  assert stats['removed_by_domain'] == {'legal': 2, 'religious': 1}


def _counter(counts):
  """A count_tokens callable that looks counts up by text."""
  calls = []

  def count(texts):
    calls.append(len(texts))
    return [counts[t] for t in texts]

  return count, calls


def test_compression_filter_absolute_threshold():
  docs = [Document(t, 'legal' if i % 2 else 'technical', 's', str(i))
          for i, t in enumerate(['a' * 100, 'b' * 100, 'c' * 100, ''])]
  count, _ = _counter({'a' * 100: 25, 'b' * 100: 35, 'c' * 100: 30, '': 0})
  kept, stats = quality.compression_filter(docs, count)
  # Cramming's 0.3 tokens per character: 0.25 and 0.30 stay.
  assert [d.doc_id for d in kept] == ['0', '2']
  assert stats['removed'] == 2 and stats['removed_empty'] == 1
  assert stats['removed_by_domain'] == {'legal': 2}
  assert stats['mean_tokens_per_char_kept'] == pytest.approx(0.275)
  kept, _ = quality.compression_filter(docs, count, max_tokens_per_char=0.26)
  assert [d.doc_id for d in kept] == ['0']


def test_compression_filter_keep_fraction_is_stable_and_batched(monkeypatch):
  monkeypatch.setattr(quality, 'COMPRESSION_BATCH', 2)
  texts = ['w' * 10, 'x' * 10, 'y' * 10, 'z' * 10, 'v' * 10]
  count, calls = _counter(dict(zip(texts, [5, 2, 3, 2, 9])))
  docs = [Document(t, 'legal', 's', str(i)) for i, t in enumerate(texts)]
  kept, stats = quality.compression_filter(docs, count, keep_fraction=0.5)
  # ceil(2.5) = 3 lowest ratios: 0.2 (docs 1, 3) and 0.3 (doc 2).
  assert [d.doc_id for d in kept] == ['1', '2', '3']
  assert stats['max_tokens_per_char'] == pytest.approx(0.3)
  assert calls == [2, 2, 1]


def test_compression_filter_rejects_bad_arguments():
  docs = [Document('abc', 'legal', 's', '0')]
  with pytest.raises(ValueError, match='not both'):
    quality.compression_filter(docs, lambda t: [1], max_tokens_per_char=0.3,
                               keep_fraction=0.5)
  with pytest.raises(ValueError, match='one per text'):
    quality.compression_filter(docs, lambda t: [])
  with pytest.raises(ValueError, match='keep_fraction'):
    quality.compression_filter(docs, lambda t: [1], keep_fraction=1.5)
