"""Tiny deterministic MLM batches and a resumable iterator for train tests."""

import ml_collections
import numpy as np

from configs import common


def mlm_batch(seed: int, batch: int = 8, seq: int = 16, preds: int = 4,
              vocab: int = 64) -> dict[str, np.ndarray]:
  """Random packed rows (two documents per row, padding at the end)."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, vocab, (batch, seq), dtype=np.int32)
  segment_ids = np.zeros((batch, seq), np.int32)
  half, used = seq // 2, seq - 3
  segment_ids[:, :half] = 1
  segment_ids[:, half:used] = 2
  ids[segment_ids == 0] = 0
  position_ids = np.where(np.arange(seq) < half, np.arange(seq), np.arange(seq) - half)
  position_ids = np.broadcast_to(position_ids * (segment_ids > 0), (batch, seq)).astype(np.int32)
  positions = np.stack([rng.choice(used, preds, replace=False) for _ in range(batch)])
  labels = np.take_along_axis(ids, positions, 1)
  inputs = ids.copy()
  np.put_along_axis(inputs, positions, 4, 1)  # [MASK]
  weights = np.ones((batch, preds), np.float32)
  weights[0, -1] = 0.0  # one padding prediction slot
  return dict(input_ids=inputs, type_ids=np.zeros_like(ids), position_ids=position_ids,
              segment_ids=segment_ids, mlm_positions=positions.astype(np.int32),
              mlm_ids=labels.astype(np.int32), mlm_weights=weights)


class CountingIterator:
  """Batch k is mlm_batch(seed + k); state is the next k."""

  def __init__(self, seed: int = 0, **shape):
    self.seed, self.shape, self.k = seed, shape, 0

  def __next__(self):
    out = mlm_batch(self.seed + self.k, **self.shape)
    self.k += 1
    return out

  def get_state(self) -> dict:
    return {'k': self.k}

  def set_state(self, state: dict) -> None:
    self.k = state['k']


def tiny_config(**train) -> ml_collections.ConfigDict:
  """A 2-layer H32 model on 16-token rows: compiles and steps in well under a second."""
  c = common.base_config()
  c.seq_len = 16
  c.mask.max_predictions = 4
  c.model.preset = 'tiny'
  c.model.overrides = {'num_layers': 2, 'hidden_size': 32, 'num_heads': 2,
                       'intermediate_size': 64, 'max_len': 16,
                       'dropout_rate': 0.0, 'attention_dropout_rate': 0.0}
  c.train.global_batch_size = 8
  c.train.num_train_steps = 6
  c.train.warmup_steps = 2
  c.train.log_every = 1
  c.train.checkpoint_every = 3
  c.train.async_checkpointing = False
  c.train.peak_tflops = 1.0
  c.train.update(train)
  return c


REPO_ROOT = __import__('pathlib').Path(__file__).resolve().parents[2]
