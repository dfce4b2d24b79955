"""Tests for controlled degradation: realised rates, structure, determinism."""

import math
import re

import numpy as np
import pytest

from lm_data.corpus.sources import Document
from lm_data.curation import degrade

# Realised rates must fall within this many binomial standard errors.
_SIGMAS = 4


def _within(count, trials, p):
  return abs(count - p * trials) <= _SIGMAS * math.sqrt(trials * p * (1 - p))


def _osa_distance(a, b):
  """Optimal string alignment distance (Levenshtein plus adjacent swaps)."""
  d = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
  d[:, 0] = np.arange(len(a) + 1)
  d[0, :] = np.arange(len(b) + 1)
  for i in range(1, len(a) + 1):
    for j in range(1, len(b) + 1):
      d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1,
                    d[i - 1, j - 1] + (a[i - 1] != b[j - 1]))
      if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
        d[i, j] = min(d[i, j], d[i - 2, j - 2] + 1)
  return d[-1, -1]


def _docs(texts):
  return [Document(t, 'legal', 'src', f'd{i}') for i, t in enumerate(texts)]


def test_char_noise_rate_and_edit_distance():
  text = 'abcdefghij klmnopqrst'
  docs = _docs([text] * 1000)
  out, stats = degrade.degrade(docs, {'char_noise': 0.05}, seed=0)
  s = stats['char_noise']
  assert s['units'] == 20 * 1000
  assert _within(s['changed_units'], s['units'], 0.05)
  # Measured independently: each typo is one edit at distance 1, except that
  # neighbouring typos can merge into fewer.
  distance = sum(_osa_distance(text, d.text) for d in out)
  assert 0.9 * s['changed_units'] <= distance <= s['changed_units']
  assert all(d.text.count(' ') == 1 for d in out)  # whitespace untouched
  lengths = sum(len(d.text) - len(text) for d in out)
  assert lengths == s['inserts'] - s['deletes']
  assert min(s['substitutes'], s['deletes'], s['inserts'], s['swaps']) > 0


def test_word_shuffle_rate_keeps_words_and_end_punctuation():
  sentences = [f'a{i} b{i} c{i} d{i} e{i}.' for i in range(1000)]
  text = ' '.join(sentences)
  (out,), stats = degrade.degrade(_docs([text]), {'word_shuffle': 0.3}, 1)
  got = re.findall(r'[^.]+\.', out.text)
  assert len(got) == 1000
  shuffled = 0
  for before, after in zip(sentences, got):
    after = after.strip()
    assert after.endswith('.') and sorted(after[:-1].split()) == sorted(
        before[:-1].split())
    shuffled += after != before
  assert _within(shuffled, 1000, 0.3)
  assert stats['word_shuffle']['changed_units'] == shuffled


def test_boilerplate_rate_and_removal_restores_text():
  paragraphs = [f'Paragraph {i} says something.\nSecond line {i}.'
                for i in range(1000)]
  text = '\n\n'.join(paragraphs)
  (out,), stats = degrade.degrade(_docs([text]), {'boilerplate': 0.2}, 2)
  lines = out.text.split('\n')
  injected = [line for line in lines if line in degrade.BOILERPLATE_LINES]
  assert _within(len(injected), 1000, 0.2)
  assert '\n'.join(l for l in lines
                   if l not in degrade.BOILERPLATE_LINES) == text
  assert stats['boilerplate']['changed_units'] == len(injected)
  assert stats['boilerplate']['chars_changed'] == len(out.text) - len(text)


def test_markup_rate_and_stripping_tags_restores_text():
  paragraphs = [f'Paragraph {i} says something.' for i in range(1000)]
  text = '\n\n'.join(paragraphs)
  (out,), stats = degrade.degrade(_docs([text]), {'markup': 0.4}, 3)
  wrapped = [p for p in out.text.split('\n\n') if p.startswith('<')]
  assert _within(len(wrapped), 1000, 0.4)
  assert re.sub(r'<[^>]*>', '', out.text) == text
  assert stats['markup']['rate'] == pytest.approx(len(wrapped) / 1000)


def test_markup_open_puts_the_same_opening_tags_and_no_closing_ones():
  paragraphs = [f'Paragraph {i} says something.' for i in range(200)]
  text = '\n\n'.join(paragraphs)
  (closed,), _ = degrade.degrade(_docs([text]), {'markup': 0.5}, 3)
  (opened,), stats = degrade.degrade(_docs([text]), {'markup_open': 0.5}, 3)
  assert '</' not in opened.text and re.sub(r'<[^>]*>', '', opened.text) == text
  for c, o, plain in zip(closed.text.split('\n\n'), opened.text.split('\n\n'), paragraphs):
    # Drawn alike, so the same blocks get the same template, cut after the block.
    assert o == c[:c.index(plain) + len(plain)]
  assert stats['markup_open']['changed_units'] == sum(p.startswith('<') for p in
                                                      opened.text.split('\n\n'))


def test_blocks_are_lines_when_a_document_has_no_blank_line():
  (out,), stats = degrade.degrade(_docs(['one\ntwo\n\nthree\nfour']),
                                  {'markup': 1.0}, 0)
  assert stats['markup']['units'] == 2
  assert out.text.count('\n') == 4
  (out,), stats = degrade.degrade(_docs(['one\ntwo\n\n\n']),
                                  {'markup': 1.0}, 0)
  assert stats['markup']['units'] == 2
  assert re.fullmatch(r'<[^\n]*>one<[^\n]*>\n<[^\n]*>two<[^\n]*>\n\n\n',
                      out.text)


def test_deterministic_per_document_and_seed_dependent():
  texts = [f'Sentence one of doc {i}. Another one here!\n\nMore text {i}.'
           for i in range(20)]
  rates = {'char_noise': 0.1, 'word_shuffle': 0.5, 'boilerplate': 0.5,
           'markup': 0.5}
  docs = _docs(texts)
  first, stats = degrade.degrade(docs, rates, seed=7)
  again, _ = degrade.degrade(docs, rates, seed=7)
  assert first == again
  # A document's noise does not depend on the other documents.
  alone, _ = degrade.degrade(docs[5:6], rates, seed=7)
  assert alone[0] == first[5]
  other, _ = degrade.degrade(docs, rates, seed=8)
  assert other != first
  assert [d.doc_id for d in first] == [d.doc_id for d in docs]
  assert stats['char_noise']['documents_changed'] == sum(
      a.text != b.text for a, b in zip(first, docs))


def test_zero_rates_change_nothing():
  docs = _docs(['Some text here. And more.'])
  out, stats = degrade.degrade(docs, {'char_noise': 0.0}, 0)
  assert out == docs and stats == {}


def test_bad_rates_have_clear_errors():
  with pytest.raises(ValueError, match="unknown degradation 'typos'; known: "
                     'word_shuffle, boilerplate, markup, markup_open, char_noise'):
    degrade.degrade([], {'typos': 0.1}, 0)
  with pytest.raises(ValueError, match=r'markup=1.5 must be in \[0, 1\]'):
    degrade.degrade([], {'markup': 1.5}, 0)
