"""AdamW with BERT's recipe: warm-up then decay, no decay on biases and LayerNorm."""

from collections.abc import Mapping

import jax
import ml_collections
import optax

# Parameter leaf names excluded from weight decay: biases and LayerNorm scales.
NO_DECAY_LEAVES = ('bias', 'scale')
SCHEDULES = ('linear', 'cosine', 'constant')


def learning_rate_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up to `cfg.learning_rate`, then linear/cosine decay to 0."""
  if cfg.schedule not in SCHEDULES:
    raise ValueError(
        f'unknown schedule {cfg.schedule!r}; known: {", ".join(SCHEDULES)}')
  warmup = min(cfg.warmup_steps, cfg.num_train_steps)
  decay_steps = max(cfg.num_train_steps - warmup, 1)
  if cfg.schedule == 'constant':
    after = optax.constant_schedule(cfg.learning_rate)
  elif cfg.schedule == 'linear':
    after = optax.linear_schedule(cfg.learning_rate, 0.0, decay_steps)
  else:
    after = optax.cosine_decay_schedule(cfg.learning_rate, decay_steps)
  if warmup == 0:
    return after
  return optax.join_schedules(
      [optax.linear_schedule(0.0, cfg.learning_rate, warmup), after], [warmup])


def decay_mask(params) -> Mapping:
  """True for leaves that get weight decay (kernels and embeddings)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], 'key', None) not in NO_DECAY_LEAVES,
      params)


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Global-norm clipping followed by AdamW.

  Args:
    cfg: the `train` config: learning_rate, warmup_steps, num_train_steps,
      schedule, weight_decay, b1, b2, eps, clip_norm (<= 0 disables).
  """
  adamw = optax.adamw(
      learning_rate_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
      weight_decay=cfg.weight_decay, mask=decay_mask)
  if cfg.clip_norm and cfg.clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw)
  return adamw
