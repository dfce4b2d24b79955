"""Synthetic documents with something for every curation step to act on."""

import dataclasses
import random

from lm_data import curation
from lm_data.corpus.sources import Document

_WORDS = ('the', 'and', 'of', 'to', 'that', 'with', 'river', 'stone', 'light',
          'winter', 'garden', 'letter', 'market', 'window', 'silver', 'story')


def docs(seed: int = 0) -> list[Document]:
  """Prose, exact and near duplicates, a junk text, the parts of a split text
  and a text that quotes `EVAL_TEXT`, in (source, doc_id) order."""
  rng = random.Random(seed)
  out = [Document(' '.join(rng.choice(_WORDS) for _ in range(rng.randint(40, 90)))
                  + '.', 'news' if i % 2 else 'legal', 'synthetic', f'd{i:03d}')
         for i in range(40)]
  out.append(dataclasses.replace(out[3], doc_id='d100'))  # Exact duplicate.
  near = out[5].text.split()
  near[10] = 'zebra'  # One word of ~60 changed: Jaccard ~0.9.
  out.append(dataclasses.replace(out[5], text=' '.join(near), doc_id='d101'))
  out.append(Document('# 1 2 3 ... ## ...', 'legal', 'synthetic', 'd102'))
  out.append(Document(EVAL_TEXT_HALVES[0], 'legal', 'synthetic', 'd103#0'))
  out.append(Document(EVAL_TEXT_HALVES[1], 'legal', 'synthetic', 'd103#1'))
  return sorted(out, key=lambda d: (d.source, d.doc_id))


# 60 words: each half holds 18 of its 48 13-grams (0.375), both 36 (0.75).
EVAL_TEXT = ' '.join(f'{w}{i}' for i, w in enumerate((_WORDS * 4)[:60]))
# The two parts of a split text that hold the evaluation text only together.
EVAL_TEXT_HALVES = (' '.join(EVAL_TEXT.split()[:30]) + ' and then more words'
                    ' follow here',
                    'more words here ' + ' '.join(EVAL_TEXT.split()[30:]))


class FakeTokenizer:
  """One token per word; three per word of a text with '#' (junk)."""

  def encode_batch(self, texts):
    return [[0] * (len(t.split()) * (3 if '#' in t else 1)) for t in texts]


def context(**kwargs) -> curation.Context:
  """Settings under which every step acts on `docs()`."""
  return curation.Context(seed=3, degrade={'char_noise': 0.05},
                          eval_texts={'probe': [EVAL_TEXT]},
                          _tokenizer=FakeTokenizer(), **kwargs)
