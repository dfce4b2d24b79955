"""Checks that need no data, run by main.py and finetune.py before any work.

A mistake in a config or a path should cost seconds, not the minutes of
tokenizer training and data preparation after which it used to surface. Each
check raises `errors.UserError` with a message that names the setting and
what to change; validation raised by the library itself (unknown preset,
task, domain, dtype, ...) is re-raised as one.
"""

from collections.abc import Collection
import json
import math
import os
import sys
from typing import Any

import jax
import ml_collections

from lm_data import errors
from lm_data import utils
from lm_data.corpus import fetch
from lm_data.finetune import run as finetune_run
from lm_data.finetune import tasks as tasks_lib
from lm_data.input_pipeline import masking
from lm_data.input_pipeline import tokenizer as tokenizer_lib
from lm_data.train import optimizer
from lm_data.train import parallel
from lm_data.train import trainer

# train.* fields that count something and must be >= 1.
POSITIVE_TRAIN_FIELDS = ('global_batch_size', 'eval_batch_size', 'num_train_steps',
                         'grad_accum_steps', 'checkpoint_every', 'log_every')

# What fixes an arm's pretraining: a resumed workdir restores its checkpoints
# and records, so a change here would continue (or report) another run. The
# rest (fine-tuning, paths, which arm runs) may change between runs of one
# workdir, and so may these train.* fields, which change how a step is run or
# logged, not what it computes.
PRETRAINING_SECTIONS = ('seed', 'seq_len', 'equal_budget', 'tokenizer', 'model', 'mask',
                        'train')
RESUMABLE_TRAIN_FIELDS = frozenset({'log_every', 'async_checkpointing', 'peak_tflops',
                                    'parallelism', 'grad_accum_steps', 'keep_period',
                                    'eval_batch_size'})


def check_dir(path: str | os.PathLike[str], name: str) -> utils.AnyPath:
  """Creates folder `path` if needed; UserError if it is a file or not writable.

  A `gs://` folder is returned as an epath (`utils.path`); an object store has
  no folders or permission bits to check before the first write.
  """
  path = utils.path(path)
  if utils.is_remote(path):
    return path
  if path.exists() and not path.is_dir():
    raise errors.UserError(f'{name} {path} is a file, not a directory; pass a directory '
                           '(it is created if missing)')
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise errors.UserError(f'cannot create {name} {path} ({e.strerror}); pass a '
                           'directory that can be written') from e
  if not os.access(path, os.W_OK | os.X_OK):
    raise errors.UserError(f'{name} {path} is not writable; pass a directory that is')
  return path


def _check_finetune_fields(config: ml_collections.ConfigDict, prefix: str) -> None:
  """A hand-written config missing a field: one line, not an AttributeError later."""
  missing = [prefix + f for f in finetune_run.CONFIG_FIELDS if f not in config]
  if missing:
    raise errors.UserError(f'the fine-tuning config lacks {", ".join(missing)}; start '
                           'from configs/finetune.py, which sets every field')


def _check_finetune_settings(config: ml_collections.ConfigDict, model_max_len: int,
                             prefix: str) -> None:
  """Fields, task names, seeds and per-task overrides of a fine-tuning config."""
  _check_finetune_fields(config, prefix)
  if config.seeds < 1:
    raise errors.UserError(f'{prefix}seeds={config.seeds} must be >= 1')
  # 0 means "as many as `seeds`" / "no minimum"; a negative count is a typo.
  for field in ('random_seeds', 'probe_seeds', 'min_train_steps'):
    if config[field] < 0:
      raise errors.UserError(f'{prefix}{field}={config[field]} must be >= 0')
  rates = tuple(config.learning_rates)
  if (not all(isinstance(r, (int, float)) and math.isfinite(r) and r > 0 for r in rates)
      or len(set(rates)) != len(rates)):
    raise errors.UserError(
        f'{prefix}learning_rates={rates} must be distinct positive numbers, e.g. '
        f'--config.{prefix}learning_rates="(1e-3, 3e-3)", or () for each '
        "task's recipe rate")
  with errors.as_user_errors():
    for name in config.tasks or tasks_lib.LOCAL_TASKS:
      # Unknown override keys or FinetuneSettings values fail here, not after other tasks ran.
      finetune_run.task_recipe(tasks_lib.get_task(name), config, model_max_len)


def pretraining_settings(config: dict[str, Any],
                         arms: Collection[str] | None = None) -> dict[str, Any]:
  """{dotted name: value} of a study config (as its config.json holds it) for
  the settings that fix what its arms pretrain; arms are keyed by name, and
  only those in `arms` are included when it is given."""
  flat = {}

  def walk(name: str, value: Any) -> None:
    if isinstance(value, dict):
      for key, item in value.items():
        walk(f'{name}.{key}', item)
    elif not (name.startswith('train.') and name[len('train.'):] in RESUMABLE_TRAIN_FIELDS):
      flat[name] = value

  for section in PRETRAINING_SECTIONS:
    if section in config:
      walk(section, config[section])
  for arm in config.get('arms') or ():
    if arms is None or arm['name'] in arms:
      walk(f'arms[{arm["name"]}]', {k: v for k, v in arm.items() if k != 'name'})
  return flat


def has_checkpoint(arm_dir: utils.AnyPath) -> bool:
  """Whether an arm folder holds a saved step (which a run would resume)."""
  checkpoints = arm_dir / 'checkpoints'
  return checkpoints.exists() and any(checkpoints.iterdir())


def _started_arms(workdir: utils.AnyPath) -> set[str]:
  arms = workdir / 'arms'
  return {d.name for d in arms.iterdir() if has_checkpoint(d)} if arms.exists() else set()


def check_resume(workdir: utils.AnyPath, config: ml_collections.ConfigDict) -> None:
  """UserError if `workdir` holds checkpoints pretrained with other settings.

  Shared settings count once any arm has a checkpoint, an arm's recipe once
  that arm has one; settings present on only one side (an arm added, a field
  that a later version introduced) are not compared.
  """
  path = workdir / 'config.json'
  started = _started_arms(workdir) if path.exists() else set()
  if not started:
    return  # nothing to resume: a failed start may be retried with other settings
  try:
    before = pretraining_settings(json.loads(path.read_text()), started)
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise errors.UserError(f'{path} is not a study config ({e}); pass another --workdir '
                           'or remove that file') from e
  # config.json was written as json_safe(config), so both sides are alike.
  now = pretraining_settings(utils.json_safe(config), started)
  changed = sorted(k for k in before.keys() & now.keys() if before[k] != now[k])
  if changed:
    shown = '; '.join(f'{k} {before[k]!r} -> {now[k]!r}' for k in changed[:4])
    more = f' and {len(changed) - 4} more' if len(changed) > 4 else ''
    raise errors.UserError(
        f'--workdir {workdir} holds a study pretrained with other settings ({shown}{more}); '
        'its checkpoints would be resumed as this run. Use a new --workdir, or set those '
        'back')


def check_study_config(config: ml_collections.ConfigDict) -> None:
  """Batch sizes, parallelism, model, mask, tokenizer, tasks and cache dir.

  (Arms and recipes are checked by `study.run.select_arms`, which calls this.)
  """
  tc = config.train
  for field in POSITIVE_TRAIN_FIELDS:
    value = tc[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise errors.UserError(f'train.{field}={value!r} must be a whole number >= 1')
  if tc.parallelism not in parallel.MODES:
    raise errors.UserError(f'unknown train.parallelism {tc.parallelism!r}; '
                           f'known: {", ".join(parallel.MODES)}')
  if (tc.keep_period or 0) < 0:
    raise errors.UserError(f'train.keep_period={tc.keep_period} must be >= 0 (0 = off)')
  patience = tc.get('early_stopping_patience', 0)
  if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
    raise errors.UserError(f'train.early_stopping_patience={patience!r} must be a whole '
                           'number >= 0 (0 = off)')
  # The trainer's mesh spans every device of every process.
  per_step = jax.device_count() * tc.grad_accum_steps
  if tc.global_batch_size % per_step:
    raise errors.UserError(
        f'train.global_batch_size={tc.global_batch_size} must be divisible by devices '
        f'({jax.device_count()}) x train.grad_accum_steps ({tc.grad_accum_steps}); '
        f'use a multiple of {per_step}')
  if tc.eval_batch_size % jax.process_count():
    raise errors.UserError(
        f'train.eval_batch_size={tc.eval_batch_size} must be divisible by the '
        f'{jax.process_count()} processes')
  if config.tokenizer.model_type not in tokenizer_lib.MODEL_TYPES:
    raise errors.UserError(f'unknown tokenizer.model_type {config.tokenizer.model_type!r}; '
                           f'known: {", ".join(tokenizer_lib.MODEL_TYPES)}')
  with errors.as_user_errors():
    model_config = trainer.model_config_for(config, config.tokenizer.vocab_size)
    optimizer.train_schedule(tc)
    masking.MaskConfig.from_config(
        config.mask, vocab_size=config.tokenizer.vocab_size).for_eval(config.mask)
  if tc.get('cooldown_on_stop', False) and (tc.schedule != 'wsd' or not patience):
    raise errors.UserError(
        'train.cooldown_on_stop branches the wsd decay from the step early stopping '
        f'kept; it needs train.schedule=wsd (is {tc.schedule!r}) and '
        f'train.early_stopping_patience > 0 (is {patience}); set those or turn it off')
  if not 0 < config.seq_len <= model_config.max_len:
    raise errors.UserError(f'seq_len={config.seq_len} must be in [1, model max_len '
                           f'{model_config.max_len}]; lower it or raise '
                           'model.overrides.max_len')
  if (config.mask.max_predictions or 0) > config.seq_len:
    raise errors.UserError(f'mask.max_predictions={config.mask.max_predictions} '
                           f'exceeds seq_len={config.seq_len}')
  _check_finetune_settings(config.finetune, model_config.max_len, 'finetune.')
  check_dir(fetch.cache_root(config.cache_dir),
            'cache_dir' if config.cache_dir else f'the cache (${fetch.CACHE_ENV})')


def check_finetune_config(config: ml_collections.ConfigDict,
                          workdir: str | os.PathLike[str]) -> None:
  """finetune.py's checks: fields, checkpoint, arms, step, tasks, overrides, workdir."""
  _check_finetune_fields(config, '')
  if not config.checkpoint:
    raise errors.UserError('set config.checkpoint to a pretraining checkpoint dir or '
                           'a study workdir (--config.checkpoint=...)')
  # The model's max_len is known only from the checkpoint; it caps, never fails.
  _check_finetune_settings(config, sys.maxsize, '')
  try:
    found = finetune_run.find_checkpoints(config.checkpoint, config.arms, config.arm)
  except (FileNotFoundError, ValueError) as e:
    raise errors.UserError(str(e)) from e
  for arm, ckpt_dir in found:
    steps = sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
    if not steps:
      raise errors.UserError(f'{ckpt_dir} (arm {arm}) holds no finished checkpoint '
                             'step; let pretraining reach its first checkpoint')
    if config.step is not None and config.step not in steps:
      raise errors.UserError(f'{ckpt_dir} (arm {arm}) has no step {config.step}; '
                             f'it has {steps}')
  check_dir(workdir, '--workdir')
