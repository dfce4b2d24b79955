"""Removes pretraining documents that overlap downstream evaluation texts.

A document is contaminated when it contains a run of `n` consecutive words
(default 13, as in GPT-3, Brown et al. 2020, appendix C) of an evaluation text.
Words are `dedup.words` (lowercase, punctuation dropped), so the test ignores
case, punctuation and spacing. An evaluation text shorter than `n` words counts
as one n-gram of its own length (the GPT-3 rule), but only down to `min_words`
words: a two-word text ("tiger cat") would otherwise remove every document that
mentions it. Shorter texts are skipped and counted.
"""

from collections.abc import Sequence
import dataclasses

import numpy as np

from lm_data.input_pipeline import dedup
from lm_data.input_pipeline.sources import Document

NGRAM_WORDS = 13
# GPT-3 used n of 8 to 13 words; a shorter sequence is too common to be a leak.
MIN_EVAL_WORDS = 8
# Ids of removed documents kept in the stats.
MAX_REPORTED_IDS = 100


@dataclasses.dataclass(frozen=True)
class NgramIndex:
  """Hashed word n-grams of evaluation texts, by n-gram length."""
  n: int
  # length -> sorted unique uint64 hashes; `n` for long texts, shorter
  # lengths (>= min_words) for whole short texts.
  hashes: dict[int, np.ndarray]
  num_texts: int
  skipped_short: int  # texts with fewer than min_words words

  @property
  def num_ngrams(self) -> int:
    return sum(len(h) for h in self.hashes.values())


def build_ngram_index(eval_texts: Sequence[str], n: int = NGRAM_WORDS, *,
                      min_words: int = MIN_EVAL_WORDS) -> NgramIndex:
  """Hashes every word n-gram of the evaluation texts (see module docstring)."""
  if not 1 <= min_words <= n:
    raise ValueError(f'need 1 <= min_words <= n, got min_words={min_words}, '
                     f'n={n}')
  word_lists = [dedup.words(t) for t in eval_texts]
  hashes, offsets = dedup.word_hashes(word_lists)
  grams, _ = dedup.segment_ngrams(hashes, offsets, n)
  by_length = {n: [grams]}
  lengths = np.diff(offsets)
  for i in np.flatnonzero((lengths >= min_words) & (lengths < n)):
    by_length.setdefault(int(lengths[i]), []).append(
        dedup.ngram_hashes(hashes[offsets[i]:offsets[i + 1]], lengths[i]))
  return NgramIndex(
      n=n,
      hashes={k: np.unique(np.concatenate(v)) for k, v in by_length.items()},
      num_texts=len(eval_texts),
      skipped_short=int(np.sum(lengths < min_words)))


def contaminated(texts: Sequence[str], index: NgramIndex) -> np.ndarray:
  """Boolean mask: which texts contain an n-gram of the index."""
  hashes, offsets = dedup.word_hashes([dedup.words(t) for t in texts])
  hit = np.zeros(len(texts), dtype=bool)
  for length, table in index.hashes.items():
    if not len(table):
      continue
    grams, owner = dedup.segment_ngrams(hashes, offsets, length)
    hit[owner[np.isin(grams, table)]] = True
  return hit


def decontaminate(docs: Sequence[Document], eval_texts: Sequence[str],
                  n: int = NGRAM_WORDS, *, min_words: int = MIN_EVAL_WORDS
                  ) -> tuple[list[Document], dict]:
  """Drops the documents sharing an n-gram with any evaluation text."""
  index = build_ngram_index(eval_texts, n, min_words=min_words)
  hit = contaminated([d.text for d in docs], index)
  kept = [d for d, h in zip(docs, hit) if not h]
  removed = [d for d, h in zip(docs, hit) if h]
  by_domain: dict[str, int] = {}
  for d in removed:
    by_domain[d.domain] = by_domain.get(d.domain, 0) + 1
  stats = {
      'input': len(docs), 'kept': len(kept), 'removed': len(removed),
      'removed_by_domain': dict(sorted(by_domain.items())),
      'removed_ids': [f'{d.source}/{d.doc_id}'
                      for d in removed[:MAX_REPORTED_IDS]],
      'ngram_words': n,
      'eval_texts': index.num_texts,
      'eval_texts_skipped_short': index.skipped_short,
      'eval_ngrams': index.num_ngrams,
  }
  return kept, stats
