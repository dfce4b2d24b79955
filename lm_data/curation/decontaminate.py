"""Removes pretraining documents that contain a downstream evaluation text.

Words are `dedup.words` (lowercase runs of word characters), so every test
below ignores case, punctuation and spacing. The unit is one evaluation text
(each sentence of a pair task counts on its own), as
`finetune.tasks.eval_texts` gives them.

Leak rule. A document *contains* an evaluation text when
  - the text has at least `n` words (13, the n-gram of GPT-3, Brown et al.
    2020, appendix C) and at least `COVERAGE_THRESHOLD` of its distinct word
    13-grams occur in the document (its *coverage*); or
  - the text has `MIN_EVAL_WORDS` to `n - 1` words and its whole word sequence
    occurs in the document (a contiguous run of the document's words: a
    substring match on normalised text, at word boundaries).
A document is removed when it contains any evaluation text. A 13-gram shared
with an evaluation text is not enough on its own: licence boilerplate ("...
without warranty of any kind, express or implied ...") covers a small fraction
of each licence, while a copy of the licence covers nearly all of it.

Split texts. `sources` cuts a text over MAX_DOC_CHARS into parts `ID#0`,
`ID#1`, ...; an evaluation text that no part contains but all parts together
do (coverage counted over their union) removes every part holding any of its
n-grams. Otherwise an evaluation licence cut into three parts (0.45, 0.44 and
0.11 of it) would stay whole in the corpus.

Short texts. Texts under `MIN_EVAL_WORDS` (10) words are not checked and are
counted as skipped: a stock line is in many films, and matching it would
remove documents that merely share a common phrase. Words split at
apostrophes, so 10 words is about 8 written ones: at 8, "i don't know what
you're talking about!" (9 words) alone removed movie-dialogue documents of
other films (47 documents went for one such line each).

Why 0.5: a document that holds half of an example's 13-grams holds at least
half of its words verbatim, in runs of 13 or more. Edits scattered at a rate
f leave about (1 - f)^13 of the 13-grams, so 0.5 still catches a copy with
~5% of its words changed (another name, year or clause: a near-duplicate, Lee
et al. 2022), where 0.8 would miss one with 2%. PaLM (Chowdhery et al. 2022,
"Dataset contamination") calls an example contaminated at 70% of its 8-grams
found anywhere in the corpus; here they must be in one document. The legal
domain is made of variants of a few licence templates, so its coverages spread
over the whole range instead of splitting into leaks and non-leaks: the
threshold decides how much of a template family goes (removals at 0.5 to 1.0
in docs/design.md, 'Decontamination').

Statistics (`decontaminate`'s second result) report, per domain, the
documents seen and removed, and per task, how many of its evaluation texts
were checked and found in the documents (the contamination rate) and how many
documents each task's texts removed.
"""

from collections.abc import Mapping, Sequence
import dataclasses
import hashlib
import re
from typing import Any

import numpy as np

from lm_data.corpus.sources import Document
from lm_data.curation import dedup

NGRAM_WORDS = 13
# Fraction of an evaluation text's distinct 13-grams that a document must hold
# to contain it (module docstring).
COVERAGE_THRESHOLD = 0.5
# Shorter texts are not checked: an exact match of a few common words is not a
# leak (module docstring; GPT-3 used 8- to 13-grams for the same reason).
MIN_EVAL_WORDS = 10
# Ids of removed documents kept in the stats.
MAX_REPORTED_IDS = 100
# Task name given to evaluation texts passed as a plain sequence.
UNNAMED_TASK = 'eval'
# Bump when the rule changes what a given policy removes.
RULE_VERSION = 2
# Bits of the prefilter bitmap (16 MiB; ~3% false positives at 440k keys).
_FILTER_BITS = 24
# Id suffix of the parts of a split text (sources.py: f'{doc_id}#{k}').
_PART_SUFFIX = re.compile(r'#\d+$')

EvalTexts = Mapping[str, Sequence[str]] | Sequence[str]


def by_task(eval_texts: EvalTexts) -> dict[str, list[str]]:
  """Evaluation texts as {task: texts}; a plain sequence is one task."""
  if isinstance(eval_texts, Mapping):
    return {str(k): list(v) for k, v in eval_texts.items()}
  texts = list(eval_texts)
  return {UNNAMED_TASK: texts} if texts else {}


def fingerprint(eval_texts: EvalTexts) -> str:
  """sha256 of the task names and their texts (order of tasks ignored)."""
  digest = hashlib.sha256()
  for task, texts in sorted(by_task(eval_texts).items()):
    digest.update(task.encode('utf-8') + b'\1')
    for text in texts:
      digest.update(text.encode('utf-8', 'surrogatepass') + b'\0')
  return digest.hexdigest()


def policy(*, coverage: float = COVERAGE_THRESHOLD, n: int = NGRAM_WORDS,
           min_words: int = MIN_EVAL_WORDS) -> dict[str, Any]:
  """The settings that decide what is removed (part of prepare's cache key)."""
  return {'rule_version': RULE_VERSION, 'coverage_threshold': coverage,
          'ngram_words': n, 'min_eval_words': min_words}


@dataclasses.dataclass(frozen=True)
class EvalIndex:
  """Hashed word n-grams of the distinct evaluation texts.

  Text t owns the keys `text_of_key == t`: its distinct n-grams when it has at
  least `n` words, or one key (the hash of all its words) when it has
  `min_words` to `n - 1`; `keys_per_text[t]` counts them (0: not checked).
  `keys` is sorted; `text_of_key` is aligned with it.
  """
  n: int
  min_words: int
  tasks: tuple[str, ...]
  texts: tuple[str, ...]          # distinct texts over all tasks
  text_tasks: np.ndarray          # bool [texts, tasks]: which tasks hold it
  keys: np.ndarray                # uint64, sorted, may repeat
  text_of_key: np.ndarray         # int64
  keys_per_text: np.ndarray       # int64 [texts]
  short_lengths: tuple[int, ...]  # word counts of checked short texts

  @property
  def checked(self) -> np.ndarray:
    return self.keys_per_text > 0

  @property
  def num_ngrams(self) -> int:
    return len(np.unique(self.keys))


def build_index(eval_texts: EvalTexts, n: int = NGRAM_WORDS, *,
                min_words: int = MIN_EVAL_WORDS) -> EvalIndex:
  """Indexes every distinct evaluation text (see the module docstring)."""
  if not 1 <= min_words <= n:
    raise ValueError(f'need 1 <= min_words <= n, got min_words={min_words}, '
                     f'n={n}')
  tasks = by_task(eval_texts)
  texts = list(dict.fromkeys(t for ts in tasks.values() for t in ts))
  position = {t: i for i, t in enumerate(texts)}
  text_tasks = np.zeros((len(texts), len(tasks)), dtype=bool)
  for j, task_texts in enumerate(tasks.values()):
    text_tasks[[position[t] for t in task_texts], j] = True
  hashes, offsets = dedup.word_hashes([dedup.words(t) for t in texts])
  lengths = np.diff(offsets)
  grams, owner = dedup.segment_ngrams(hashes, offsets, n)
  short = np.flatnonzero((lengths >= min_words) & (lengths < n))
  short_lengths = tuple(sorted({int(k) for k in lengths[short]}))
  for length in short_lengths:
    # A short text's one key: the hash of the window at its first word.
    whole = short[lengths[short] == length]
    grams = np.concatenate(
        [grams, dedup.ngram_hashes(hashes, length)[offsets[whole]]])
    owner = np.concatenate([owner, whole])
  # Distinct (key, text) pairs, sorted by key.
  order = np.lexsort((owner, grams))
  keys, text_of_key = grams[order], owner[order]
  distinct = np.ones(len(keys), dtype=bool)
  distinct[1:] = (keys[1:] != keys[:-1]) | (text_of_key[1:] != text_of_key[:-1])
  keys, text_of_key = keys[distinct], text_of_key[distinct]
  return EvalIndex(
      n=n, min_words=min_words, tasks=tuple(tasks), texts=tuple(texts),
      text_tasks=text_tasks, keys=keys, text_of_key=text_of_key,
      keys_per_text=np.bincount(text_of_key, minlength=len(texts)),
      short_lengths=short_lengths)


def _pair_counts(owner: np.ndarray, key: np.ndarray, index: EvalIndex,
                 first: np.ndarray, ends: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Distinct (owner, key) pairs -> (owner, eval text, keys shared)."""
  # Expand each pair to every evaluation text holding that key.
  per_key = ends[key] - first[key]
  owner = np.repeat(owner, per_key)
  starts = np.repeat(first[key] - np.cumsum(per_key) + per_key, per_key)
  eval_text = index.text_of_key[starts + np.arange(len(owner))]
  pair, count = np.unique(owner * len(index.texts) + eval_text,
                          return_counts=True)
  return pair // len(index.texts), pair % len(index.texts), count


def coverage(texts: Sequence[str], index: EvalIndex,
             sources: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Every (text, evaluation text) pair that shares a key, with its coverage.

  Args:
    texts: document texts.
    index: the evaluation texts.
    sources: optional int id per text of the source document it is a part of
      (parts of one text split by `sources.MAX_DOC_CHARS`); default: each
      text is its own source.

  Returns:
    `(doc, eval_text, fraction, source_fraction)`: the fraction of the
    evaluation text's keys found in the document (1.0 for a whole short
    text), and found in all parts of its source document together.
  """
  empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0),
           np.zeros(0))
  if not len(index.keys):
    return empty
  hashes, offsets = dedup.word_hashes([dedup.words(t) for t in texts])
  text_of_word = np.repeat(np.arange(len(texts)), np.diff(offsets))
  text_end = offsets[1:][text_of_word]
  unique_keys, first = np.unique(index.keys, return_index=True)
  ends = np.append(first[1:], len(index.keys))
  # A bitmap of the keys' low bits rules out most windows before the (slow,
  # cache-missing) binary search.
  low_bits = np.uint64((1 << _FILTER_BITS) - 1)
  maybe = np.zeros(1 << _FILTER_BITS, dtype=bool)
  maybe[(unique_keys & low_bits).astype(np.intp)] = True
  hit_docs, hit_keys = [], []
  for length in (index.n,) + index.short_lengths:
    grams = dedup.ngram_hashes(hashes, length)
    start = np.flatnonzero(maybe[(grams & low_bits).astype(np.intp)])
    start = start[start + length <= text_end[start]]  # inside one text
    slot = np.minimum(np.searchsorted(unique_keys, grams[start]),
                      len(unique_keys) - 1)
    hit = unique_keys[slot] == grams[start]
    hit_docs.append(text_of_word[start[hit]])
    hit_keys.append(slot[hit])
  # Distinct (document, key) pairs: a repeated n-gram counts once.
  num_keys = len(unique_keys)
  doc_key = np.unique(np.concatenate(hit_docs) * num_keys
                      + np.concatenate(hit_keys))
  if not len(doc_key):
    return empty
  doc, key = doc_key // num_keys, doc_key % num_keys
  pair_doc, eval_text, count = _pair_counts(doc, key, index, first, ends)
  fraction = count / index.keys_per_text[eval_text]
  if sources is None:
    return pair_doc, eval_text, fraction, fraction
  source_key = np.unique(sources[doc] * num_keys + key)
  source, source_eval, source_count = _pair_counts(
      source_key // num_keys, source_key % num_keys, index, first, ends)
  # Every (document, text) pair has its (source, text) pair.
  row = np.searchsorted(source * len(index.texts) + source_eval,
                        sources[pair_doc] * len(index.texts) + eval_text)
  return (pair_doc, eval_text, fraction,
          source_count[row] / index.keys_per_text[eval_text])


def source_key(doc: Document) -> tuple[str, str]:
  """(source, id of the text): the parts `ID#0`, `ID#1`, ... that `sources`
  makes of a text over MAX_DOC_CHARS share one."""
  return doc.source, _PART_SUFFIX.sub('', doc.doc_id)


def source_ids(docs: Sequence[Document]) -> np.ndarray:
  """Int id per document of its source text (`source_key`)."""
  ids: dict[tuple[str, str], int] = {}
  return np.array([ids.setdefault(source_key(d), len(ids)) for d in docs],
                  dtype=np.int64)


def _task_stats(index: EvalIndex, found: np.ndarray, doc: np.ndarray,
                eval_text: np.ndarray, domains: np.ndarray
                ) -> dict[str, dict[str, Any]]:
  stats = {}
  for j, task in enumerate(index.tasks):
    mine = index.text_tasks[:, j]
    checked = int(np.sum(mine & index.checked))
    hits = int(np.sum(mine & found))
    removed = np.unique(doc[mine[eval_text]])
    names, counts = np.unique(domains[removed], return_counts=True)
    stats[task] = {
        'texts': int(mine.sum()), 'checked': checked, 'found': hits,
        'rate': hits / checked if checked else 0.0,
        'documents': len(removed),
        'documents_by_domain': dict(zip(names.tolist(), counts.tolist()))}
  return stats


def decontaminate(docs: Sequence[Document], eval_texts: EvalTexts,
                  n: int = NGRAM_WORDS, *,
                  coverage_threshold: float = COVERAGE_THRESHOLD,
                  min_words: int = MIN_EVAL_WORDS
                  ) -> tuple[list[Document], dict]:
  """Drops the documents that contain an evaluation text (module docstring).

  Args:
    docs: pretraining documents.
    eval_texts: {task: texts}, or a plain sequence (one task, UNNAMED_TASK).
    n: n-gram length in words.
    coverage_threshold: fraction of a long text's distinct n-grams a document
      must hold to contain it, in (0, 1].
    min_words: shorter evaluation texts are not checked.

  Returns:
    (kept documents in input order, stats). Stats: 'removed_by_domain' and
    'by_domain' (documents seen, removed, rate); 'by_task' ({task: texts,
    checked, found, rate = found / checked, documents removed and their
    domains}); the policy and index sizes.
  """
  if not 0.0 < coverage_threshold <= 1.0:
    raise ValueError(f'coverage_threshold must be in (0, 1], got '
                     f'{coverage_threshold}')
  index = build_index(eval_texts, n, min_words=min_words)
  sources = source_ids(docs)
  doc, eval_text, fraction, source_fraction = coverage(
      [d.text for d in docs], index, sources)
  alone = fraction >= coverage_threshold
  # A text that only the parts of a split text hold together removes the
  # parts that hold any of it; one that a part holds alone removes that part.
  source_text = sources[doc] * len(index.texts) + eval_text
  spread = ((source_fraction >= coverage_threshold)
            & ~np.isin(source_text, source_text[alone]))
  doc, eval_text = doc[alone | spread], eval_text[alone | spread]
  removed_mask = np.zeros(len(docs), dtype=bool)
  removed_mask[doc] = True
  found = np.zeros(len(index.texts), dtype=bool)
  found[eval_text] = True
  kept = [d for d, r in zip(docs, removed_mask) if not r]
  removed = [d for d, r in zip(docs, removed_mask) if r]
  domains = np.array([d.domain for d in docs], dtype=object)
  by_domain = {}
  for domain in sorted(set(domains.tolist())):
    mine = domains == domain
    count = int(np.sum(removed_mask & mine))
    by_domain[domain] = {'input': int(mine.sum()), 'removed': count,
                         'rate': count / int(mine.sum())}
  stats = {
      'input': len(docs), 'kept': len(kept), 'removed': len(removed),
      'removed_by_domain': {k: v['removed'] for k, v in by_domain.items()
                            if v['removed']},
      'removed_ids': [f'{d.source}/{d.doc_id}'
                      for d in removed[:MAX_REPORTED_IDS]],
      'by_domain': by_domain,
      'by_task': _task_stats(index, found, doc, eval_text, domains),
      **policy(coverage=coverage_threshold, n=n, min_words=min_words),
      'eval_texts': len(index.texts),
      'eval_texts_skipped_short': int(np.sum(~index.checked)),
      'eval_texts_found': int(found.sum()),
      'eval_ngrams': index.num_ngrams,
  }
  return kept, stats
