"""Packs tokenized documents into fixed-length rows with segment ids.

Layout. Every document is cut into pieces and every piece becomes one segment
`[CLS] piece [SEP]`. Rows are filled greedily, in document order: a segment
takes all the room left in the current row, and a document that does not fit
is split at the row boundary, its remainder opening the next row as a new
segment (with its own [CLS]/[SEP]). So a document longer than `seq_len - 2`
becomes consecutive chunks, no token is lost, and a row is padded only when
fewer than `MIN_SEGMENT_LEN` slots remain after a document ends (at most 2
slots per row) and after the very last segment. This is the "no padding waste"
variant of lm1b-style packing; each extra split costs 2 special tokens.

Segment ids number the segments of a row 1..k; 0 marks padding.
"""

from collections.abc import Sequence
import dataclasses
import itertools

import numpy as np

from lm_data import utils

# [CLS] + at least one content token + [SEP].
MIN_SEGMENT_LEN = 3
# Special tokens around every segment.
SEGMENT_OVERHEAD = 2
TOKENS_FILE = 'tokens.npy'
SEGMENT_IDS_FILE = 'segment_ids.npy'


@dataclasses.dataclass(frozen=True)
class PackedArrays:
  """Packed rows: `tokens` and `segment_ids`, both int32 [N, S]."""
  tokens: np.ndarray
  segment_ids: np.ndarray

  def __post_init__(self):
    if self.tokens.ndim != 2 or self.tokens.shape != self.segment_ids.shape:
      raise ValueError(
          'tokens and segment_ids must both be [N, S]; got '
          f'{self.tokens.shape} and {self.segment_ids.shape}')

  @property
  def num_rows(self) -> int:
    return self.tokens.shape[0]

  @property
  def seq_len(self) -> int:
    return self.tokens.shape[1]


def _flatten(token_lists: Sequence[Sequence[int]]) -> tuple[np.ndarray,
                                                           np.ndarray]:
  """Returns (all tokens int32 concatenated, per-document lengths int64)."""
  lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64,
                        count=len(token_lists))
  total = int(lengths.sum())
  if all(isinstance(t, np.ndarray) for t in token_lists):
    flat = (np.concatenate(token_lists).astype(np.int32, copy=False)
            if total else np.zeros(0, np.int32))
  else:
    flat = np.fromiter(itertools.chain.from_iterable(token_lists),
                       dtype=np.int32, count=total)
  return flat, lengths


def _plan_segments(lengths: np.ndarray, seq_len: int) -> tuple[np.ndarray, ...]:
  """Greedy layout: (row, first slot, content length) of every segment.

  A loop over segments (documents + row splits), not over tokens; the tokens
  themselves are moved with vectorised numpy in `pack`.
  """
  rows, slots, takes = [], [], []
  row, room = 0, seq_len
  for length in lengths.tolist():
    while length:
      if room < MIN_SEGMENT_LEN:
        row, room = row + 1, seq_len
      take = min(length, room - SEGMENT_OVERHEAD)
      rows.append(row)
      slots.append(seq_len - room)
      takes.append(take)
      length -= take
      room -= take + SEGMENT_OVERHEAD
  return (np.asarray(rows, np.int64), np.asarray(slots, np.int64),
          np.asarray(takes, np.int64))


def pack(token_lists: Sequence[Sequence[int]], seq_len: int, *, cls_id: int,
         sep_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Packs documents into rows of `seq_len` (see the module docstring).

  Args:
    token_lists: token ids of each document, without [CLS]/[SEP] (lists or 1-D
      arrays). Empty documents contribute nothing.
    seq_len: row length S (>= MIN_SEGMENT_LEN).
    cls_id: id opening every segment.
    sep_id: id closing every segment.

  Returns:
    (tokens int32 [N, S], segment_ids int32 [N, S]); padding is token 0 with
    segment id 0. N is 0 when there is no token at all.
  """
  if seq_len < MIN_SEGMENT_LEN:
    raise ValueError(f'seq_len={seq_len} is too short: a segment needs '
                     f'[CLS], one token and [SEP]; use seq_len >= '
                     f'{MIN_SEGMENT_LEN}')
  flat, lengths = _flatten(token_lists)
  rows, slots, takes = _plan_segments(lengths, seq_len)
  num_rows = int(rows[-1]) + 1 if rows.size else 0
  tokens = np.zeros((num_rows, seq_len), np.int32)
  segment_ids = np.zeros((num_rows, seq_len), np.int32)
  if not num_rows:
    return tokens, segment_ids

  # Segments are laid out in row-major order, so boolean masks place them.
  base = rows * seq_len + slots  # flat index of each segment's [CLS]
  ends = base + takes + SEGMENT_OVERHEAD
  size = num_rows * seq_len
  coverage = np.zeros(size + 1, np.int8)
  coverage[base] = 1
  coverage[ends] -= 1  # Ends are distinct; one may equal the next base.
  in_segment = np.cumsum(coverage[:-1], dtype=np.int8).astype(bool)
  is_cls = np.zeros(size, bool)
  is_cls[base] = True
  is_special = is_cls.copy()
  is_special[ends - 1] = True
  tokens_flat = tokens.reshape(-1)
  tokens_flat[is_cls] = cls_id
  tokens_flat[ends - 1] = sep_id
  tokens_flat[in_segment & ~is_special] = flat  # content keeps stream order
  segment_number = np.cumsum(is_cls.reshape(num_rows, seq_len), axis=1,
                             dtype=np.int32)
  segment_ids[...] = np.where(in_segment.reshape(num_rows, seq_len),
                              segment_number, 0)
  return tokens, segment_ids


def positions_from_segments(segment_ids: np.ndarray) -> np.ndarray:
  """Position ids restarting at 0 at every segment (0 on padding); int32."""
  segment_ids = np.asarray(segment_ids)
  seq_len = segment_ids.shape[-1]
  index = np.broadcast_to(np.arange(seq_len), segment_ids.shape)
  starts = np.ones(segment_ids.shape, bool)
  starts[..., 1:] = segment_ids[..., 1:] != segment_ids[..., :-1]
  start_index = np.maximum.accumulate(np.where(starts, index, 0), axis=-1)
  return np.where(segment_ids > 0, index - start_index, 0).astype(np.int32)


def save_packed(folder: utils.PathLike, packed: PackedArrays) -> None:
  """Writes `tokens.npy` and `segment_ids.npy` (int32) into `folder`."""
  folder = utils.path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  for name, array in ((TOKENS_FILE, packed.tokens),
                      (SEGMENT_IDS_FILE, packed.segment_ids)):
    with utils.atomic_file(folder / name) as f:
      np.save(f, np.asarray(array, np.int32))


def _load_array(path: utils.AnyPath, mmap: bool) -> np.ndarray:
  if utils.is_remote(path):  # mmap needs a local file: read the whole array
    with path.open('rb') as f:
      return np.load(f)
  return np.load(path, mmap_mode='r' if mmap else None)


def load_packed(folder: utils.PathLike, *, mmap: bool = True
                ) -> PackedArrays:
  """Reads what `save_packed` wrote; memory-mapped (read-only) by default
  (read whole from a `gs://` folder)."""
  folder = utils.path(folder)
  missing = [n for n in (TOKENS_FILE, SEGMENT_IDS_FILE)
             if not (folder / n).exists()]
  if missing:
    raise FileNotFoundError(
        f'{folder} holds no packed arrays (missing {", ".join(missing)}); '
        'run input_pipeline.prepare first')
  return PackedArrays(_load_array(folder / TOKENS_FILE, mmap),
                      _load_array(folder / SEGMENT_IDS_FILE, mmap))
