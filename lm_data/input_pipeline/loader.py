"""Per-host MLM batches from packed arrays: shuffle, split, mask, prefetch.

The global stream is the concatenation of epochs, each a seeded permutation of
all rows (grain's `MapDataset.shuffle` re-seeds every epoch of `repeat`).
Global batch t holds stream rows [t*G, (t+1)*G) whatever the process count;
process p reads (memory-mapped) and masks only its share [p*G/P, (p+1)*G/P),
with masks that depend on (seed, t, row position in the global batch) only.
Batches are computed ahead in a grain prefetch thread (bounded buffer) so the
host overlaps with the device step. The iterator's state is the step, so a
restored iterator yields exactly the batches it would have yielded.

Grain rather than a hand-written iterator: its `MapDataset` is random-access,
so shuffling, repetition, batching and prefetch come with a checkpointable
position (`next_index`) for free.
"""

from collections.abc import Iterator, Mapping
import math
import os
from typing import Any

import grain
import jax
import numpy as np

from lm_data import utils
from lm_data.input_pipeline import masking
from lm_data.input_pipeline import packing

Batch = dict[str, np.ndarray]
# Purposes folded into the user's seed, so shuffling and masking draw from
# independent streams.
_SHUFFLE_PURPOSE = 0x5348
_MASK_PURPOSE = 0x4D41
_GRAIN_SEED_MODULUS = 2**32  # grain's shuffle takes a 32-bit seed.
_STATE_VERSION = 1
DEFAULT_PREFETCH = 2
DEFAULT_PREFETCH_THREADS = 1


def as_packed(source: Any) -> packing.PackedArrays:
  """Resolves `source` to packed rows.

  Accepts PackedArrays, (tokens, segment_ids), a folder written by
  `packing.save_packed` (memory-mapped), or an object with a `.train`
  attribute holding one of these (the `Prepared` of prepare.py).
  """
  if isinstance(source, packing.PackedArrays):
    return source
  if isinstance(source, (str, os.PathLike)):
    return packing.load_packed(source)
  if isinstance(source, tuple) and len(source) == 2:
    return packing.PackedArrays(*source)
  if hasattr(source, 'train'):
    return as_packed(source.train)
  raise TypeError(
      f'cannot read packed rows from {type(source).__name__}; pass '
      'PackedArrays, (tokens, segment_ids), a folder or a Prepared')


def _check_split(global_batch_size: int, process_index: int,
                 process_count: int) -> int:
  """Validates the per-process split; returns the local batch size."""
  if global_batch_size <= 0:
    raise ValueError(f'global_batch_size={global_batch_size} must be > 0')
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} must be in '
                     f'[0, process_count={process_count})')
  if global_batch_size % process_count:
    raise ValueError(
        f'global_batch_size={global_batch_size} is not divisible by '
        f'process_count={process_count}; use a multiple of {process_count}')
  return global_batch_size // process_count


def check_saved_settings(state: Mapping[str, Any],
                         expected: Mapping[str, Any]) -> None:
  """Raises ValueError naming the settings a saved iterator state differs in."""
  mismatched = {k: (state.get(k), v) for k, v in expected.items()
                if state.get(k) != v}
  if mismatched:
    detail = ', '.join(f'{k}: saved {s!r} vs now {n!r}'
                       for k, (s, n) in mismatched.items())
    raise ValueError('iterator state was saved for other data or settings '
                     f'({detail}); resume with the saved settings')


class TrainIterator(Iterator[Batch]):
  """Endless (or `num_epochs`-long) iterator of host-local masked batches."""

  def __init__(self, packed: packing.PackedArrays, *, global_batch_size: int,
               seed: int, mask_cfg: masking.MaskConfig, process_index: int = 0,
               process_count: int = 1, num_epochs: int | None = None,
               prefetch: int = DEFAULT_PREFETCH,
               prefetch_threads: int = DEFAULT_PREFETCH_THREADS):
    self._local_size = _check_split(global_batch_size, process_index,
                                    process_count)
    if packed.num_rows == 0:
      raise ValueError('no packed rows to train on; is the recipe empty?')
    self._packed = packed
    self._global_batch_size = global_batch_size
    self._seed = seed
    self._mask_seed = utils.derive_seed(seed, _MASK_PURPOSE)
    self._mask_cfg = mask_cfg
    self._row_offset = process_index * self._local_size
    self._step = 0
    dataset = (
        grain.MapDataset.range(packed.num_rows)
        .shuffle(seed=utils.derive_seed(seed, _SHUFFLE_PURPOSE)
                 % _GRAIN_SEED_MODULUS)
        .repeat(num_epochs)
        .batch(global_batch_size, drop_remainder=True)
        .map_with_index(self._local_batch))
    self._iterator = iter(dataset.to_iter_dataset(grain.ReadOptions(
        num_threads=prefetch_threads, prefetch_buffer_size=prefetch)))

  def _local_batch(self, step: int, global_rows: np.ndarray) -> Batch:
    rows = global_rows[self._row_offset:self._row_offset + self._local_size]
    return masking.mask_batch(
        self._packed.tokens[rows], self._packed.segment_ids[rows],
        seed=self._mask_seed, step=step, row_offset=self._row_offset,
        cfg=self._mask_cfg)

  def __next__(self) -> Batch:
    batch = next(self._iterator)
    self._step += 1
    return batch

  @property
  def step(self) -> int:
    """Number of batches yielded so far (the next batch's global step)."""
    return self._step

  @property
  def epochs_seen(self) -> float:
    """Fractional passes over the rows so far."""
    return self._step * self._global_batch_size / self._packed.num_rows

  @property
  def epoch(self) -> int:
    """Epoch of the next row to be read (0-based)."""
    return math.floor(self.epochs_seen)

  def get_state(self) -> dict[str, Any]:
    """JSON-able position; independent of the process count."""
    return {
        'version': _STATE_VERSION,
        'step': self._step,
        'epochs_seen': self.epochs_seen,
        'global_batch_size': self._global_batch_size,
        'num_rows': self._packed.num_rows,
        'seed': self._seed,
        'grain': self._iterator.get_state(),
    }

  def set_state(self, state: Mapping[str, Any]) -> None:
    """Continues from `state` (from `get_state` of the same data and config)."""
    check_saved_settings(state, {
        'version': _STATE_VERSION, 'global_batch_size': self._global_batch_size,
        'num_rows': self._packed.num_rows, 'seed': self._seed})
    self._iterator.set_state(state['grain'])
    self._step = int(state['step'])

  def close(self) -> None:
    """Stops the prefetch thread."""
    self._iterator.close()


def make_train_iterator(source: Any, *, global_batch_size: int, seed: int,
                        mask_cfg: masking.MaskConfig, process_index: int = 0,
                        process_count: int = 1,
                        start_state: Mapping[str, Any] | None = None,
                        num_epochs: int | None = None,
                        prefetch: int = DEFAULT_PREFETCH) -> TrainIterator:
  """Host-local masked training batches (see the module docstring).

  Args:
    source: packed rows; anything `as_packed` accepts.
    global_batch_size: G, rows per step over all processes.
    seed: data seed (shuffling and masking streams are derived from it).
    mask_cfg: masking configuration.
    process_index: this process, e.g. `jax.process_index()`.
    process_count: number of processes, e.g. `jax.process_count()`.
    start_state: a `get_state()` dict to resume from.
    num_epochs: stop after the last full batch of this many epochs; None
      repeats forever.
    prefetch: batches computed ahead in the background.
  """
  iterator = TrainIterator(
      as_packed(source), global_batch_size=global_batch_size, seed=seed,
      mask_cfg=mask_cfg, process_index=process_index,
      process_count=process_count, num_epochs=num_epochs, prefetch=prefetch)
  if start_state is not None:
    iterator.set_state(start_state)
  return iterator


def _held_out(source: Any, domain: str) -> packing.PackedArrays:
  held_out = getattr(source, 'held_out', None)
  if held_out is None:
    raise TypeError(f'{type(source).__name__} has no held_out arrays; pass '
                    'a Prepared, or the arrays themselves without a domain')
  if domain not in held_out:
    raise KeyError(f'no held-out data for domain {domain!r}; known: '
                   f'{", ".join(sorted(held_out))}')
  return as_packed(held_out[domain])


def eval_batches(source: Any, domain: str | None = None, *, batch_size: int,
                 mask_cfg: masking.MaskConfig, seed: int = 0,
                 process_index: int = 0, process_count: int = 1
                 ) -> list[Batch]:
  """All rows once, in order, with fixed masks (a function of seed and row).

  Args:
    source: a Prepared with `held_out[domain]`, or (domain None) packed rows.
    domain: held-out domain to read from a Prepared.
    batch_size: global rows per batch; the last batch is padded with all-zero
      rows, whose mlm_weights are 0.
    mask_cfg: masking configuration.
    seed: masking seed.
    process_index: this process; it gets rows [p*B/P, (p+1)*B/P) of each batch.
    process_count: number of processes.
  """
  packed = as_packed(source) if domain is None else _held_out(source, domain)
  local_size = _check_split(batch_size, process_index, process_count)
  mask_seed = utils.derive_seed(seed, _MASK_PURPOSE)
  num_rows, seq_len = packed.tokens.shape
  batches = []
  for start in range(0, num_rows, batch_size):
    first = start + process_index * local_size
    tokens = np.zeros((local_size, seq_len), np.int32)
    segment_ids = np.zeros((local_size, seq_len), np.int32)
    real = max(0, min(local_size, num_rows - first))
    tokens[:real] = packed.tokens[first:first + real]
    segment_ids[:real] = packed.segment_ids[first:first + real]
    batches.append(masking.mask_batch(tokens, segment_ids, seed=mask_seed,
                                      step=0, row_offset=first, cfg=mask_cfg))
  return batches


def global_batch_to_device(local_batch: Batch,
                           sharding: jax.sharding.Sharding) -> dict[str,
                                                                    jax.Array]:
  """Assembles each process's rows into global arrays sharded by `sharding`.

  `sharding` must split the leading (batch) axis only, e.g.
  `NamedSharding(mesh, PartitionSpec('data'))`; it applies to every key.
  """
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x),
      local_batch)
