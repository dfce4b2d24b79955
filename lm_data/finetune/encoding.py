"""Examples -> fixed-length numpy features for the BERT task heads.

Rows are `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` (type id 0 for the first
part with its [CLS]/[SEP], 1 for b and its [SEP]), padded with [PAD]. One row is
one segment: `segment_ids` is 1 on real tokens and 0 on padding, positions run
0..n-1. Token-classification labels sit on the first sub-token of each word
(weight 1); other sub-tokens and special tokens get label 0 with weight 0.
"""

from collections.abc import Sequence
import dataclasses
import re
from typing import Protocol

import jax
import numpy as np

from lm_data.finetune.tasks import base

# [CLS] and [SEP] of a single row; a pair row has one more [SEP].
SINGLE_SPECIALS = 2
PAIR_SPECIALS = 3
# QA questions longer than this are cut so that the context keeps its room.
MAX_QUESTION_TOKENS = 64
# On CPU, batches are cut to their longest row rounded up to a multiple of
# this many tokens (cost is linear in the width there; a few compiled shapes).
# Accelerators keep the full width: padding is nearly free, compiles are not.
LENGTH_BUCKET = 16
_WORD = re.compile(r'\S+')


class Tokenizer(Protocol):
  sha256: str   # identifies the vocabulary (results of equal ones are shared)
  pad_id: int
  unk_id: int
  cls_id: int
  sep_id: int

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    ...


@dataclasses.dataclass
class Encoded:
  """Model inputs, targets and what was lost to truncation.

  features: input_ids, type_ids, position_ids, segment_ids (int32 [N, S])
  targets:  'labels' [N] (int32 class / float32 value) or [N, S] with
            'label_weights' [N, S]; QA: 'start_positions', 'end_positions' [N]
  kept:     indices of the source examples that made it into rows
  truncated: examples whose text was cut (or, for QA, dropped because the answer
            fell outside the window)
  """
  features: dict[str, np.ndarray]
  targets: dict[str, np.ndarray]
  kept: np.ndarray
  truncated: int

  def __len__(self) -> int:
    return len(self.kept)


def truncate_pair(a: Sequence[int], b: Sequence[int],
                  budget: int) -> tuple[list[int], list[int]]:
  """Cuts tokens from the end of the longer side first until both fit `budget`.

  Same result as google-research/bert's `_truncate_seq_pair` (which pops from b
  on ties).
  """
  la, lb = len(a), len(b)
  excess = la + lb - budget
  if excess > 0:
    cut = min(excess, abs(la - lb))
    if la > lb:
      la -= cut
    else:
      lb -= cut
    rest = excess - cut
    la -= rest // 2
    lb -= rest - rest // 2
  return list(a[:la]), list(b[:lb])


def _pack(rows: list[tuple[list[int], list[int]]], max_len: int,
          pad_id: int) -> dict[str, np.ndarray]:
  """(input ids, type ids) rows -> padded feature arrays."""
  n = len(rows)
  input_ids = np.full((n, max_len), pad_id, np.int32)
  type_ids = np.zeros((n, max_len), np.int32)
  segment_ids = np.zeros((n, max_len), np.int32)
  for i, (ids, types) in enumerate(rows):
    input_ids[i, :len(ids)] = ids
    type_ids[i, :len(types)] = types
    segment_ids[i, :len(ids)] = 1
  position_ids = np.where(segment_ids > 0, np.arange(max_len), 0)
  return {'input_ids': input_ids, 'type_ids': type_ids,
          'position_ids': position_ids.astype(np.int32),
          'segment_ids': segment_ids}


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str],
                 texts_b: Sequence[str] | None, max_len: int
                 ) -> tuple[dict[str, np.ndarray], int]:
  """Single or pair rows; returns features and the number of truncated rows."""
  cls, sep = [tokenizer.cls_id], [tokenizer.sep_id]
  ids_a = tokenizer.encode_batch(list(texts))
  rows, truncated = [], 0
  if texts_b is None:
    for a in ids_a:
      kept = a[:max_len - SINGLE_SPECIALS]
      truncated += len(kept) < len(a)
      rows.append((cls + kept + sep, [0] * (len(kept) + SINGLE_SPECIALS)))
  else:
    for a, b in zip(ids_a, tokenizer.encode_batch(list(texts_b)), strict=True):
      ka, kb = truncate_pair(a, b, max_len - PAIR_SPECIALS)
      truncated += len(ka) + len(kb) < len(a) + len(b)
      first = cls + ka + sep
      rows.append((first + kb + sep, [0] * len(first) + [1] * (len(kb) + 1)))
  return _pack(rows, max_len, tokenizer.pad_id), truncated


def _word_pieces(tokenizer: Tokenizer,
                 sentences: Sequence[Sequence[str]]) -> list[list[list[int]]]:
  """Sub-token ids of every word, encoded in one batch; never empty."""
  flat = tokenizer.encode_batch([w for words in sentences for w in words])
  flat = [ids or [tokenizer.unk_id] for ids in flat]
  out, start = [], 0
  for words in sentences:
    out.append(flat[start:start + len(words)])
    start += len(words)
  return out


def encode_words(tokenizer: Tokenizer, sentences: Sequence[Sequence[str]],
                 tags: Sequence[Sequence[int]], max_len: int) -> Encoded:
  """Token classification rows; words that do not fit are dropped (counted)."""
  rows, truncated = [], 0
  labels = np.zeros((len(sentences), max_len), np.int32)
  weights = np.zeros((len(sentences), max_len), np.float32)
  for i, (pieces, word_tags) in enumerate(
      zip(_word_pieces(tokenizer, sentences), tags, strict=True)):
    ids = [tokenizer.cls_id]
    for word_ids, tag in zip(pieces, word_tags, strict=True):
      if len(ids) + len(word_ids) > max_len - 1:
        truncated += 1
        break
      labels[i, len(ids)] = tag
      weights[i, len(ids)] = 1.0
      ids += word_ids
    ids.append(tokenizer.sep_id)
    rows.append((ids, [0] * len(ids)))
  return Encoded(_pack(rows, max_len, tokenizer.pad_id),
                 {'labels': labels, 'label_weights': weights},
                 np.arange(len(sentences)), truncated)


def _answer_words(context: str, start: int,
                  text: str) -> tuple[list[str], int, int]:
  """Whitespace words of `context`; first and last word of the answer."""
  spans = [m.span() for m in _WORD.finditer(context)]
  end = start + len(text)
  inside = [i for i, (s, e) in enumerate(spans) if s < end and e > start]
  first, last = (inside[0], inside[-1]) if inside else (-1, -1)
  return [context[s:e] for s, e in spans], first, last


def encode_qa(tokenizer: Tokenizer, examples: Sequence[base.Example],
              max_len: int) -> Encoded:
  """[CLS] question [SEP] context [SEP] rows with the answer's token span.

  Examples whose answer is not found or does not fit in the window are dropped
  and counted in `truncated`.
  """
  questions = tokenizer.encode_batch([e.text for e in examples])
  parsed = [_answer_words(e.text_b, e.answer_start, e.answer_text)
            for e in examples]
  pieces = _word_pieces(tokenizer, [words for words, _, _ in parsed])
  rows, starts, ends, kept = [], [], [], []
  for i, (question, (_, first, last), word_pieces) in enumerate(
      zip(questions, parsed, pieces)):
    ids = [tokenizer.cls_id, *question[:MAX_QUESTION_TOKENS], tokenizer.sep_id]
    num_first = len(ids)
    start = end = -1
    for w, word_ids in enumerate(word_pieces):
      if len(ids) + len(word_ids) > max_len - 1:
        break
      if w == first:
        start = len(ids)
      ids += word_ids
      if w == last:
        end = len(ids) - 1
    if start < 0 or end < 0:
      continue
    ids.append(tokenizer.sep_id)
    rows.append((ids, [0] * num_first + [1] * (len(ids) - num_first)))
    starts.append(start)
    ends.append(end)
    kept.append(i)
  return Encoded(_pack(rows, max_len, tokenizer.pad_id),
                 {'start_positions': np.array(starts, np.int32),
                  'end_positions': np.array(ends, np.int32)},
                 np.array(kept, np.int64), len(examples) - len(kept))


def row_lengths(features: dict[str, np.ndarray]) -> np.ndarray:
  """Tokens per row up to its last real token (segment id > 0)."""
  real = features['segment_ids'] > 0
  return np.where(real.any(1), real.shape[1] - np.argmax(real[:, ::-1], 1), 0)


def length_bucket() -> int:
  """LENGTH_BUCKET on CPU; 0 (never cut) on accelerators."""
  return LENGTH_BUCKET if jax.default_backend() == 'cpu' else 0


def bucket_width(longest: int, width: int, bucket: int) -> int:
  """`longest` rounded up to `bucket` (>= bucket), at most `width`; bucket
  <= 0: `width`."""
  if bucket <= 0:
    return width
  return min(width, max(bucket, -(-longest // bucket) * bucket))


def length_batches(features: dict[str, np.ndarray], batch_size: int,
                   bucket: int | None = None) -> list[tuple[np.ndarray, int]]:
  """Rows in batches of similar length, for inference.

  Rows are sorted by length; each batch is (row indices, width) where width
  is its longest row rounded up to `bucket` (at most the array width; None:
  `length_bucket()`). Every batch but the last has `batch_size` rows. Padding
  never changes a row's outputs (attention ignores [PAD] keys), so a batch
  can be cut to `width`.
  """
  bucket = length_bucket() if bucket is None else bucket
  lengths = row_lengths(features)
  width = features['segment_ids'].shape[1]
  order = np.argsort(lengths, kind='stable')
  out = []
  for start in range(0, len(order), batch_size):
    index = order[start:start + batch_size]
    longest = int(lengths[index].max()) if index.size else 0
    out.append((index, bucket_width(longest, width, bucket)))
  return out


def encode(tokenizer: Tokenizer, kind: str, examples: Sequence[base.Example],
           max_len: int) -> Encoded:
  """Encodes the examples of one split of a task of `kind`."""
  if max_len < PAIR_SPECIALS + 1:
    raise ValueError(
        f'max_len {max_len} is too short; use >= {PAIR_SPECIALS + 1}')
  if kind == 'token_classification':
    return encode_words(tokenizer, [e.words for e in examples],
                        [e.tags for e in examples], max_len)
  if kind == 'qa':
    return encode_qa(tokenizer, examples, max_len)
  if kind not in base.KINDS:
    raise ValueError(
        f'unknown task kind {kind!r}; known: {", ".join(base.KINDS)}')
  pair = any(e.text_b is not None for e in examples)
  features, truncated = encode_texts(
      tokenizer, [e.text for e in examples],
      [e.text_b or '' for e in examples] if pair else None, max_len)
  dtype = np.float32 if kind == 'regression' else np.int32
  labels = np.array([e.label for e in examples], dtype)
  return Encoded(features, {'labels': labels}, np.arange(len(examples)),
                 truncated)
