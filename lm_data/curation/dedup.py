"""Exact and near-duplicate document removal (MinHash LSH), and text hashing.

Exact: documents whose normalised text (lowercase, whitespace collapsed) hashes
equal; the first one in input order is kept.

Near: MinHash over word shingles (Broder 1997) with banded LSH (Leskovec et al.,
Mining of Massive Datasets, ch. 3). Candidate pairs (equal in a band) are
verified by their estimated Jaccard similarity; verified pairs are joined into
clusters (connected components, as in BigCode/text-dedup) and each cluster
keeps its first document in input order. Everything on the hot path is numpy:
one dictionary lookup per word, no Python loop per shingle or permutation.

The word and n-gram hashing here (`words`, `word_hashes`, `ngram_hashes`) is
shared with `quality` and `decontaminate`, so all three see the same words.
"""

from collections.abc import Sequence
import functools
import hashlib
import itertools
import re

import numpy as np

from lm_data import utils
from lm_data.corpus.sources import Document

# MinHash defaults: 128 hash functions, word 5-gram shingles, and a Jaccard
# threshold of 0.8 (near-duplicates as in Lee et al. 2022, "Deduplicating
# training data makes language models better", and BigCode).
NUM_PERM = 128
SHINGLE_SIZE = 5
JACCARD_THRESHOLD = 0.8
# Shingle rows hashed at once ([rows, num_perm] uint64 = 64 MiB at 128 perms).
_BLOCK_ROWS = 1 << 16
# Weight of the false-positive area when choosing bands x rows (false
# negatives get 1 - it). Candidates are verified by estimated Jaccard, so a
# false positive costs only a comparison while a false negative keeps a
# duplicate: at 0.2, 128 perms give 12 bands x 10 rows, which finds 93% of
# pairs at Jaccard 0.85 and 99% at 0.9 (9 x 13 at 0.5: 69% and 93%).
LSH_FALSE_POSITIVE_WEIGHT = 0.2
# Grid points for integrating the LSH false positive / negative areas.
_LSH_GRID = 1001
_HASH_BYTES = 8
_MAX_HASH = np.iinfo(np.uint64).max
# Multiplier of the polynomial n-gram hash (odd, so invertible mod 2^64).
_NGRAM_MULT = 0x9E3779B97F4A7C15
_WORD_RE = re.compile(r'\w+')
_SPACE_RE = re.compile(r'\s+')


def words(text: str) -> list[str]:
  """Normalised words: lowercase runs of word characters, no punctuation."""
  return _WORD_RE.findall(text.lower())


def _stable_hash(s: str) -> int:
  data = s.encode('utf-8', 'surrogatepass')
  return int.from_bytes(
      hashlib.blake2b(data, digest_size=_HASH_BYTES).digest(), 'little')


def word_hashes(
    word_lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
  """Stable 64-bit hashes of the words of several texts, concatenated.

  Returns `(hashes, offsets)`: text i owns `hashes[offsets[i]:offsets[i+1]]`.
  Hashes are process-independent (blake2b of each distinct word, once).
  """
  lengths = np.fromiter((len(w) for w in word_lists), dtype=np.int64,
                        count=len(word_lists))
  offsets = np.concatenate([[0], np.cumsum(lengths)])
  flat = list(itertools.chain.from_iterable(word_lists))
  # The id of a word is the position of its first occurrence.
  vocab: dict[str, int] = {}
  ids = np.fromiter(map(vocab.setdefault, flat, itertools.count()),
                    dtype=np.int64, count=len(flat))
  lookup = np.zeros(len(flat), dtype=np.uint64)
  lookup[np.fromiter(vocab.values(), np.int64, len(vocab))] = np.fromiter(
      map(_stable_hash, vocab), np.uint64, len(vocab))
  return lookup[ids], offsets


def ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
  """The hash of every window of `n` consecutive words (len - n + 1 values)."""
  count = len(hashes) - n + 1
  if count <= 0:
    return np.zeros(0, dtype=np.uint64)
  out = np.zeros(count, dtype=np.uint64)
  for k in range(n):
    out = out * _NGRAM_MULT + hashes[k:k + count]
  return utils.mix64(out)


def segment_ngrams(hashes: np.ndarray, offsets: np.ndarray,
                   n: int) -> tuple[np.ndarray, np.ndarray]:
  """n-gram hashes of concatenated texts, none crossing a text boundary.

  Returns `(ngrams, text_index)`, ordered by text then position.
  """
  grams = ngram_hashes(hashes, n)
  if not len(grams):
    return grams, np.zeros(0, dtype=np.int64)
  text_of_word = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
  starts = np.arange(len(grams))
  text = text_of_word[starts]
  valid = starts + n <= offsets[text + 1]
  return grams[valid], text[valid]


def normalized_text_hash(text: str) -> bytes:
  """Digest of the text lowercased with whitespace runs collapsed."""
  norm = _SPACE_RE.sub(' ', text.lower()).strip()
  return hashlib.blake2b(norm.encode('utf-8', 'surrogatepass'),
                         digest_size=16).digest()


def _count_by_domain(docs: Sequence[Document]) -> dict[str, int]:
  counts: dict[str, int] = {}
  for d in docs:
    counts[d.domain] = counts.get(d.domain, 0) + 1
  return dict(sorted(counts.items()))


def exact_dedup(docs: Sequence[Document]) -> tuple[list[Document], dict]:
  """Drops documents whose normalised text equals an earlier one's."""
  seen: set[bytes] = set()
  kept, removed = [], []
  for doc in docs:
    key = normalized_text_hash(doc.text)
    (removed if key in seen else kept).append(doc)
    seen.add(key)
  stats = {'input': len(docs), 'kept': len(kept),
           'removed_exact': len(removed),
           'removed_exact_by_domain': _count_by_domain(removed)}
  return kept, stats


def _perm_params(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  rng = utils.rng(seed, num_perm)
  a = rng.integers(0, _MAX_HASH, size=num_perm, dtype=np.uint64,
                   endpoint=True) | np.uint64(1)
  b = rng.integers(0, _MAX_HASH, size=num_perm, dtype=np.uint64,
                   endpoint=True)
  return a, b


def _shingles(texts: Sequence[str],
              shingle_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Shingle hashes and their text index; a text shorter than the shingle
  size is one shingle of all its words; an empty text has none."""
  word_lists = [words(t) for t in texts]
  hashes, offsets = word_hashes(word_lists)
  grams, text = segment_ngrams(hashes, offsets, shingle_size)
  lengths = np.diff(offsets)
  short = np.flatnonzero((lengths > 0) & (lengths < shingle_size))
  if len(short):
    short_grams = np.concatenate(
        [ngram_hashes(hashes[offsets[i]:offsets[i + 1]], lengths[i])
         for i in short])
    grams = np.concatenate([grams, short_grams])
    text = np.concatenate([text, short])
    order = np.argsort(text, kind='stable')
    grams, text = grams[order], text[order]
  return grams, text


def minhash_signatures(texts: Sequence[str], *, num_perm: int = NUM_PERM,
                       shingle_size: int = SHINGLE_SIZE,
                       seed: int = 0) -> np.ndarray:
  """MinHash signatures [len(texts), num_perm] (uint64) over word shingles.

  Hash function i is x -> a_i * x + b_i (mod 2^64, a_i odd) applied to the
  mixed 64-bit shingle hash. A text without words gets the all-max signature.
  """
  grams, text = _shingles(texts, shingle_size)
  a, b = _perm_params(num_perm, seed)
  sig = np.full((len(texts), num_perm), _MAX_HASH, dtype=np.uint64)
  # [num_perm, rows]: reducing contiguous rows is ~15x faster than columns.
  buffer = np.empty((num_perm, min(len(grams), _BLOCK_ROWS)), dtype=np.uint64)
  for lo in range(0, len(grams), _BLOCK_ROWS):
    block, owner = grams[lo:lo + _BLOCK_ROWS], text[lo:lo + _BLOCK_ROWS]
    values = buffer[:, :len(block)]
    np.multiply(a[:, None], block[None, :], out=values)
    values += b[:, None]
    starts = np.flatnonzero(np.diff(owner, prepend=-1))
    partial = np.minimum.reduceat(values, starts, axis=1)
    rows = owner[starts]
    sig[rows] = np.minimum(sig[rows], partial.T)
  return sig


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
  """Estimated Jaccard similarity: the fraction of equal signature entries."""
  return np.mean(np.asarray(sig_a) == np.asarray(sig_b), axis=-1)


@functools.cache
def lsh_params(threshold: float, num_perm: int,
               fp_weight: float = LSH_FALSE_POSITIVE_WEIGHT) -> tuple[int, int]:
  """(bands, rows) with bands * rows <= num_perm minimising the weighted
  false positive and false negative areas of the S-curve 1-(1-s^r)^b on
  either side of `threshold` (the datasketch criterion)."""
  if not 0.0 < threshold < 1.0:
    raise ValueError(f'threshold must be in (0, 1), got {threshold}')
  s = np.linspace(0.0, 1.0, _LSH_GRID)
  below, above = s <= threshold, s >= threshold
  best, best_err = (1, num_perm), np.inf
  for bands in range(1, num_perm + 1):
    for rows in range(1, num_perm // bands + 1):
      p = 1.0 - (1.0 - s**rows)**bands
      err = (fp_weight * np.trapezoid(p[below], s[below]) +
             (1.0 - fp_weight) * np.trapezoid(1.0 - p[above], s[above]))
      if err < best_err:
        best, best_err = (bands, rows), err
  return best


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
  """LSH bucket key of each signature in each band, [len(sig), bands]."""
  keys = np.zeros((len(sig), bands), dtype=np.uint64)
  for band in range(bands):
    for col in range(band * rows, (band + 1) * rows):
      keys[:, band] = keys[:, band] * _NGRAM_MULT + sig[:, col]
  return keys


def _band_edges(sig: np.ndarray, bands: int,
                rows: int) -> tuple[np.ndarray, np.ndarray]:
  """Pairs (first member, other member) of every LSH bucket of every band."""
  firsts, others = [], []
  keys = band_keys(sig, bands, rows)
  for band in range(bands):
    key = keys[:, band]
    order = np.argsort(key, kind='stable')
    sorted_key = key[order]
    is_start = np.ones(len(order), dtype=bool)
    is_start[1:] = sorted_key[1:] != sorted_key[:-1]
    group_start = np.maximum.accumulate(
        np.where(is_start, np.arange(len(order)), 0))
    firsts.append(order[group_start[~is_start]])
    others.append(order[~is_start])
  return np.concatenate(firsts), np.concatenate(others)


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Label of each node = smallest node index in its connected component."""
  labels = np.arange(n)
  while True:
    low = np.minimum(labels[a], labels[b])
    new = labels.copy()
    np.minimum.at(new, a, low)
    np.minimum.at(new, b, low)
    new = new[new]
    if np.array_equal(new, labels):
      return labels
    labels = new


def near_dedup(docs: Sequence[Document], *,
               threshold: float = JACCARD_THRESHOLD,
               num_perm: int = NUM_PERM, shingle_size: int = SHINGLE_SIZE,
               seed: int = 0) -> tuple[list[Document], dict]:
  """Drops near-duplicates (estimated Jaccard >= threshold on word shingles).

  Each cluster of documents linked by verified LSH pairs keeps its first
  document in input order. Documents without words are never near-duplicates
  (exact dedup handles them). With 5-gram shingles, editing a fraction f of
  the words at random leaves Jaccard ~ q / (2 - q), q = (1 - f)^5: 1% -> 0.91,
  2% -> 0.82, 3% -> 0.75; pass threshold=0.7 to catch 3% edits.
  """
  bands, rows = lsh_params(threshold, num_perm)
  sig = minhash_signatures([d.text for d in docs], num_perm=num_perm,
                           shingle_size=shingle_size, seed=seed)
  has_words = np.any(sig != _MAX_HASH, axis=1)
  first, other = _band_edges(sig, bands, rows)
  ok = has_words[first] & has_words[other]
  first, other = first[ok], other[ok]
  pair_key = np.unique(first * len(docs) + other)
  first, other = pair_key // max(len(docs), 1), pair_key % max(len(docs), 1)
  verified = estimate_jaccard(sig[first], sig[other]) >= threshold
  labels = _components(len(docs), first[verified], other[verified])
  keep = labels == np.arange(len(docs))
  sizes = np.bincount(labels, minlength=len(docs))
  kept = [d for d, k in zip(docs, keep) if k]
  removed = [d for d, k in zip(docs, keep) if not k]
  stats = {'input': len(docs), 'kept': len(kept),
           'removed_near': len(removed),
           'removed_near_by_domain': _count_by_domain(removed),
           'clusters': int(np.sum(sizes[keep] > 1)),
           'candidate_pairs': len(pair_key),
           'verified_pairs': int(verified.sum()),
           'bands': bands, 'rows': rows}
  return kept, stats
