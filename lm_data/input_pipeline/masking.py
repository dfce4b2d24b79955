"""BERT dynamic MLM masking on the host, vectorised numpy.

Every random draw is a counter-based hash (splitmix64) of
(seed, step, global row, position), so the mask of a row depends neither on how
a global batch is split over processes nor on the order rows are processed, and
a row seen again at a later step gets a fresh mask.
"""

import dataclasses
import functools
import math

import numpy as np

from lm_data import utils
from lm_data.input_pipeline import packing
# Re-exported: callers and tests name the ids through this module.
from lm_data.utils import CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID  # pylint: disable=unused-import

DEFAULT_SPECIAL_IDS = utils.SPECIAL_IDS
BERT_MASK_RATE = 0.15

# Distinct streams derived from one per-token hash.
_STREAM_ACTION = np.uint64(1)
_STREAM_RANDOM_TOKEN = np.uint64(2)
_MANTISSA_BITS = 53
_SORT_KEY_MAX = np.uint64(np.iinfo(np.uint64).max)


@dataclasses.dataclass(frozen=True)
class MaskConfig:
  """How tokens are chosen and corrupted.

  Attributes:
    vocab_size: tokenizer vocabulary size (random replacements are drawn from
      the non-special ids below it).
    mask_rate: fraction of eligible (non-special, non-padding) tokens predicted
      per row: round(mask_rate * n_eligible), at least 1 when any is eligible.
    max_predictions: P, prediction slots per row. None = ceil(mask_rate * S),
      which never truncates (n_eligible <= S - 2) and is BERT's 20 for S=128.
    mask_prob: share of predicted tokens replaced by [MASK].
    random_prob: share replaced by a random non-special token; the rest
      (1 - mask_prob - random_prob) is left unchanged.
    special_ids: ids never predicted nor drawn as random replacements.
    mask_id: the [MASK] id.
  """
  vocab_size: int
  mask_rate: float = BERT_MASK_RATE
  max_predictions: int | None = None
  mask_prob: float = 0.8
  random_prob: float = 0.1
  special_ids: frozenset[int] = DEFAULT_SPECIAL_IDS
  mask_id: int = MASK_ID

  def __post_init__(self):
    object.__setattr__(self, 'special_ids', frozenset(self.special_ids))
    if not 0.0 < self.mask_rate <= 1.0:
      raise ValueError(f'mask_rate={self.mask_rate} must be in (0, 1]')
    if (self.mask_prob < 0 or self.random_prob < 0
        or self.mask_prob + self.random_prob > 1.0):
      raise ValueError(
          f'mask_prob={self.mask_prob} and random_prob={self.random_prob} '
          'must be >= 0 with a sum <= 1')
    if self.max_predictions is not None and self.max_predictions < 1:
      raise ValueError(
          f'max_predictions={self.max_predictions} must be >= 1 or None')
    if self.vocab_size <= len(self.special_ids | {self.mask_id}):
      raise ValueError(f'vocab_size={self.vocab_size} leaves no non-special '
                       f'token (special ids: {sorted(self.special_ids)})')

  @classmethod
  def from_config(cls, mask, *, vocab_size: int,
                  special_ids: frozenset[int] = DEFAULT_SPECIAL_IDS,
                  mask_id: int = MASK_ID) -> 'MaskConfig':
    """Training masking from a config's `mask` section (configs/common.py)."""
    return cls(vocab_size=vocab_size, mask_rate=mask.mask_rate,
               max_predictions=mask.max_predictions, special_ids=special_ids,
               mask_id=mask_id)

  def for_eval(self, mask) -> 'MaskConfig':
    """Held-out masking: always at `mask.eval_mask_rate` (BERT's 15% by default),
    never truncated, so recipes that train at another rate stay comparable."""
    return dataclasses.replace(
        self, mask_rate=mask.get('eval_mask_rate', BERT_MASK_RATE), max_predictions=None)

  @functools.cached_property
  def replacement_ids(self) -> np.ndarray:
    """Ids a random replacement is drawn from: all but the special ones."""
    return np.setdiff1d(np.arange(self.vocab_size, dtype=np.int32),
                        np.asarray(sorted(self.special_ids | {self.mask_id}),
                                   np.int32))

  def num_predictions(self, seq_len: int) -> int:
    """P for rows of length `seq_len`."""
    if self.max_predictions is not None:
      return self.max_predictions
    return math.ceil(self.mask_rate * seq_len)


def _uniform(h: np.ndarray) -> np.ndarray:
  """uint64 hash -> float64 uniform in [0, 1)."""
  return (h >> np.uint64(64 - _MANTISSA_BITS)) * (2.0 ** -_MANTISSA_BITS)


def token_hashes(seed: int, step: int, rows: np.ndarray,
                 seq_len: int) -> np.ndarray:
  """uint64 [len(rows), seq_len] hash of (seed, step, global row, position)."""
  return utils.hash_counters(seed, step, np.asarray(rows, np.int64)[:, None],
                             np.arange(seq_len, dtype=np.uint64)[None, :])


def mask_batch(tokens: np.ndarray, segment_ids: np.ndarray, *, seed: int,
               step: int, row_offset: int, cfg: MaskConfig
               ) -> dict[str, np.ndarray]:
  """Masks packed rows; returns the batch dict of docs/design.md (Batches).

  Args:
    tokens: int [B, S] packed token ids.
    segment_ids: int [B, S], 0 on padding.
    seed: masking seed.
    step: global step (a fresh mask each time a row is seen).
    row_offset: global index of row 0 of `tokens` within the global batch.
    cfg: masking configuration.
  """
  tokens = np.asarray(tokens, np.int32)
  segment_ids = np.asarray(segment_ids, np.int32)
  batch, seq_len = tokens.shape
  if tokens.size and (tokens.min() < 0 or tokens.max() >= cfg.vocab_size):
    # Out-of-range ids would index past the embedding table without an error.
    raise ValueError(
        f'token ids must be in [0, {cfg.vocab_size}), found {tokens.min()}..'
        f'{tokens.max()}: the rows were tokenized with another vocabulary; '
        'prepare the data again with this tokenizer, or set MaskConfig.vocab_size '
        "to the tokenizer's")
  num_slots = cfg.num_predictions(seq_len)
  if num_slots > seq_len:
    raise ValueError(f'max_predictions={num_slots} exceeds seq_len={seq_len};'
                     ' lower MaskConfig.max_predictions')
  special = np.asarray(sorted(cfg.special_ids), np.int32)
  eligible = (segment_ids > 0) & ~np.isin(tokens, special)
  num_eligible = eligible.sum(axis=1)
  # round half up; at least one prediction per row with an eligible token.
  num_selected = np.floor(cfg.mask_rate * num_eligible + 0.5).astype(np.int64)
  num_selected = np.minimum(np.maximum(num_selected, num_eligible > 0),
                            num_slots)

  # The num_selected smallest random keys among eligible positions form a
  # uniformly random subset; ineligible positions get the largest key.
  rows = row_offset + np.arange(batch)
  hashes = token_hashes(seed, step, rows, seq_len)
  keys = np.where(eligible, hashes >> np.uint64(1), _SORT_KEY_MAX)
  candidates = np.argpartition(keys, num_slots - 1, axis=1)[:, :num_slots]
  order = np.argsort(np.take_along_axis(keys, candidates, axis=1), axis=1)
  chosen = np.take_along_axis(candidates, order, axis=1)
  valid = np.arange(num_slots)[None, :] < num_selected[:, None]
  # Report positions in increasing order; padding slots (position 0) last.
  positions = np.sort(np.where(valid, chosen, seq_len), axis=1)
  positions = np.where(valid, positions, 0).astype(np.int32)
  original = np.take_along_axis(tokens, positions, axis=1)

  chosen_hash = np.take_along_axis(hashes, positions, axis=1)
  with np.errstate(over='ignore'):
    action = _uniform(utils.mix64(chosen_hash ^ _STREAM_ACTION))
    random_hash = utils.mix64(chosen_hash ^ _STREAM_RANDOM_TOKEN)
  allowed = cfg.replacement_ids
  random_tokens = allowed[random_hash % np.uint64(allowed.size)]
  corrupted = np.where(
      action < cfg.mask_prob, cfg.mask_id,
      np.where(action < cfg.mask_prob + cfg.random_prob, random_tokens,
               original)).astype(np.int32)
  input_ids = tokens.copy()
  row_index = np.broadcast_to(np.arange(batch)[:, None], positions.shape)
  input_ids[row_index[valid], positions[valid]] = corrupted[valid]

  return {
      'input_ids': input_ids,
      'type_ids': np.zeros_like(tokens),
      'position_ids': packing.positions_from_segments(segment_ids),
      'segment_ids': segment_ids,
      'mlm_positions': positions,
      'mlm_ids': np.where(valid, original, 0).astype(np.int32),
      'mlm_weights': valid.astype(np.float32),
  }
