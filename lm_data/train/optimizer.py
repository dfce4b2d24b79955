"""AdamW with BERT's recipe: warm-up then decay, no decay on biases and LayerNorm."""

from collections.abc import Mapping

import jax
import ml_collections
import optax

# Parameter leaf names excluded from weight decay: biases and LayerNorm scales.
NO_DECAY_LEAVES = ('bias', 'scale')
SCHEDULES = ('linear', 'cosine', 'constant', 'wsd')
# 'wsd': the final decay's share of all steps, for a `train` config without the field.
DECAY_FRACTION = 0.2


def learning_rate_schedule(learning_rate: float, *, warmup_steps: int,
                           num_train_steps: int, schedule: str = 'linear',
                           decay_fraction: float = DECAY_FRACTION) -> optax.Schedule:
  """Linear warm-up to `learning_rate`, then constant or decay to 0.

  'linear' and 'cosine' decay over every step after warm-up; 'wsd'
  (warm-up, stable, decay; Hägele et al. 2024) holds the peak and decays
  linearly over the last `decay_fraction` of all steps, so a short run keeps
  its rate high for longer.
  """
  if schedule not in SCHEDULES:
    raise ValueError(
        f'unknown schedule {schedule!r}; known: {", ".join(SCHEDULES)}')
  if schedule == 'wsd' and not 0 < decay_fraction <= 1:
    raise ValueError(f'decay_fraction={decay_fraction} must be in (0, 1]')
  warmup = min(warmup_steps, num_train_steps)
  decay_steps = max(num_train_steps - warmup, 1)
  if schedule == 'constant':
    after = optax.constant_schedule(learning_rate)
  elif schedule == 'linear':
    after = optax.linear_schedule(learning_rate, 0.0, decay_steps)
  elif schedule == 'wsd':
    tail = _wsd_tail(warmup, num_train_steps, decay_fraction)
    after = optax.linear_schedule(learning_rate, 0.0, tail,
                                  transition_begin=decay_steps - tail)
  else:
    after = optax.cosine_decay_schedule(learning_rate, decay_steps)
  if warmup == 0:
    return after
  return optax.join_schedules(
      [optax.linear_schedule(0.0, learning_rate, warmup), after], [warmup])


def _wsd_tail(warmup: int, num_train_steps: int, decay_fraction: float) -> int:
  """Steps of the wsd schedule's final decay."""
  return min(max(round(decay_fraction * num_train_steps), 1),
             max(num_train_steps - warmup, 1))


def wsd_decay(cfg: ml_collections.ConfigDict) -> tuple[int, int]:
  """(first step of the final decay, its length) of a `train` config's wsd schedule."""
  warmup = min(cfg.warmup_steps, cfg.num_train_steps)
  tail = _wsd_tail(warmup, cfg.num_train_steps, cfg.get('decay_fraction', DECAY_FRACTION))
  return cfg.num_train_steps - tail, tail


def cooldown_schedule(cfg: ml_collections.ConfigDict, start: int) -> optax.Schedule:
  """The wsd decay moved to begin at step `start` (early stopping's branched cool-down).

  From the rate the run had at `start`, linear to 0 over the wsd decay's length;
  before `start`, the run's own schedule (a resumed step count reads the same rate).
  """
  base = train_schedule(cfg)
  _, tail = wsd_decay(cfg)
  decay = optax.linear_schedule(float(base(start)), 0.0, tail)
  return optax.join_schedules([base, decay], [start])


def train_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """The schedule of a pretraining `train` config."""
  return learning_rate_schedule(cfg.learning_rate, warmup_steps=cfg.warmup_steps,
                                num_train_steps=cfg.num_train_steps, schedule=cfg.schedule,
                                decay_fraction=cfg.get('decay_fraction', DECAY_FRACTION))


def decay_mask(params) -> Mapping:
  """True for leaves that get weight decay (kernels and embeddings)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], 'key', None) not in NO_DECAY_LEAVES,
      params)


def make_optimizer(cfg: ml_collections.ConfigDict,
                   schedule: optax.Schedule | None = None) -> optax.GradientTransformation:
  """Global-norm clipping followed by AdamW.

  Args:
    cfg: the `train` config: learning_rate, warmup_steps, num_train_steps,
      schedule, weight_decay, b1, b2, eps, clip_norm (<= 0 disables).
    schedule: the learning rate by step instead of `train_schedule(cfg)` (the
      optimizer state does not depend on it).
  """
  adamw = optax.adamw(
      schedule or train_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
      weight_decay=cfg.weight_decay, mask=decay_mask)
  if cfg.clip_norm and cfg.clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw)
  return adamw
