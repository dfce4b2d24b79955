"""Orbax checkpoints of a pretraining run, and read-only loading for downstream users.

One checkpoint step holds three items:
  state     TrainState (params, optimizer state, step, dropout RNG)
  data_iter the train iterator's JSON state, so a resumed run sees the same batches
  meta      JSON: resolved config, model config, tokenizer path (relative to the
            checkpoints folder; absolute in older runs) and sha256, and
            the sha256 of every array of `state` and of `data_iter`

Orbax keeps no checksum of array data (a truncated file fails in TensorStore;
flipped bytes load silently), so every restore checks the arrays it read
against `meta`. Resuming falls back past a damaged latest step to the one
before; downstream loading refuses a damaged step.
"""

import dataclasses
import hashlib
import json
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from lm_data import errors
from lm_data import utils
from lm_data.models.bert import BertConfig

ITEMS = ('state', 'data_iter', 'meta')
# The latest step and the one before, to fall back to if the latest is damaged.
MAX_TO_KEEP = 2
CHECKSUMS = 'checksums'  # meta key: {'state': {leaf path: sha256}, 'data_iter': sha256}
CORRUPT_SUFFIX = '.corrupt'  # a damaged step folder is renamed <step>.corrupt
# Characters of a library's error message quoted in a one-line error.
REASON_CHARS = 200


class CorruptCheckpointError(errors.UserError):
  """A checkpoint step that cannot be read or does not match its checksums."""


class NoCheckpointError(errors.UserError, FileNotFoundError):
  """No checkpoint where one was asked for."""


def _leaf_name(path) -> str:
  """'params/encoder/...' for dict keys, attributes and sequence indices alike.

  A partial restore target ({'params': {'encoder': ...}}) and the TrainState
  it was saved from then name the same leaf the same way.
  """
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
                  for k in path)


def _host_array(x) -> np.ndarray:
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    if not x.is_fully_replicated:
      raise ValueError(f'cannot checksum an array sharded over processes ({x.sharding}); '
                       'checkpoint checksums expect the replicated train state')
    x = x.addressable_data(0)  # replicated: any local copy is the whole array
  return np.ascontiguousarray(np.asarray(x))


def _array_sha256(x) -> str:
  a = _host_array(x)
  digest = hashlib.sha256(f'{a.dtype.name}{a.shape}'.encode())
  digest.update(a.reshape(-1).view(np.uint8))
  return digest.hexdigest()


def tree_checksums(tree) -> dict[str, str]:
  """{leaf path: sha256 of dtype, shape and bytes} of every array in `tree`."""
  return {_leaf_name(path): _array_sha256(x)
          for path, x in jax.tree_util.tree_leaves_with_path(tree)}


def _json_sha256(obj) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _drop_closed_loop_noise() -> None:
  """Silences one harmless traceback per array after a failed TensorStore read.

  The step's other reads still complete, and their callbacks find Orbax's
  event loop already closed ('Event loop is closed', via sys.unraisablehook).
  Installed before a read (the callbacks can beat the error to our handler);
  every other report passes through.
  """
  previous = sys.unraisablehook
  if getattr(previous, 'lm_data_closed_loop_filter', False):
    return

  def hook(unraisable):
    value = unraisable.exc_value
    if not (isinstance(value, RuntimeError) and str(value) == 'Event loop is closed'):
      previous(unraisable)

  hook.lm_data_closed_loop_filter = True
  sys.unraisablehook = hook


def _reason(e: BaseException) -> str:
  """The first line of a library's error (TensorStore's run to pages), cut short."""
  lines = str(e).strip().splitlines() or [type(e).__name__]
  return lines[0][:REASON_CHARS]


def step_dir(manager: ocp.CheckpointManager, step: int) -> utils.AnyPath:
  """The folder of `step` (make_manager uses Orbax's plain `<step>` names)."""
  return utils.path(str(manager.directory)) / str(step)


def _verify(where: utils.AnyPath, tree, expected: dict[str, str] | None, hint: str = '') -> None:
  """Raises CorruptCheckpointError unless every array of `tree` has its saved checksum."""
  if expected is None:
    logging.warning('%s has no checksums (saved before they were added); not verified',
                    where)
    return
  for name, digest in tree_checksums(tree).items():
    if expected.get(name) != digest:
      raise CorruptCheckpointError(
          f'checkpoint {where / "state"} is corrupt: array {name} does not match '
          f'its checksum{hint}')


def make_manager(directory: utils.PathLike, *, max_to_keep: int = MAX_TO_KEEP,
                 keep_period: int | None = None, read_only: bool = False,
                 async_save: bool = True,
                 keep_lowest: str | None = None) -> ocp.CheckpointManager:
  """Keeps the latest `max_to_keep` steps, plus every `keep_period`-th for analysis.

  keep_lowest: also keep the step saved with the lowest value of this metric
    (`save(..., metrics=...)`; early stopping's held-out loss).
  Read-only managers register the item handlers up front, so item metadata and
  partial (PyTree) restores work without a prior save in this process.
  """
  keep = {}
  if keep_lowest and not read_only:  # Orbax takes a policy or the delete options, not both
    policies = [ocp.checkpoint_managers.LatestN(n=max_to_keep),
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=lambda m: m[keep_lowest], reverse=True, n=1,
                    keep_checkpoints_without_metrics=False)]
    if keep_period:
      policies.append(ocp.checkpoint_managers.EveryNSteps(keep_period))
    # best_fn too: without it Orbax keeps the metrics in memory only, so a
    # resumed run saw none and its next save deleted the lowest step.
    keep = {'preservation_policy': ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            'best_fn': lambda m: m[keep_lowest], 'best_mode': 'min'}
  elif not read_only:
    keep = {'max_to_keep': max_to_keep, 'keep_period': keep_period}
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=0 if read_only else 1,  # read-only: 0, or Orbax warns it set it
      read_only=read_only, create=not read_only,
      enable_async_checkpointing=async_save and not read_only, **keep)
  handlers = None
  if read_only:
    handlers = {'state': ocp.PyTreeCheckpointHandler(),
                'data_iter': ocp.JsonCheckpointHandler(),
                'meta': ocp.JsonCheckpointHandler()}
  directory = utils.path(directory)
  if not utils.is_remote(directory):
    directory = directory.absolute()
  return ocp.CheckpointManager(epath.Path(directory),
                               item_names=None if handlers else ITEMS,
                               item_handlers=handlers, options=options)


def save(manager: ocp.CheckpointManager, step: int, state, data_state: dict,
         meta: dict, *, force: bool = False, metrics: dict | None = None) -> bool:
  """Saves `step`, with the checksums of `state` and `data_state` added to `meta`
  (and `metrics` for a `keep_lowest` manager)."""
  if not force and not manager.should_save(step):
    return False  # as manager.save would decide, without hashing the state first
  meta = {**meta, CHECKSUMS: {'state': tree_checksums(state),
                              'data_iter': _json_sha256(data_state)}}
  return manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data_iter=ocp.args.JsonSave(data_state),
      meta=ocp.args.JsonSave(meta)), force=force, metrics=metrics)


def restore(manager: ocp.CheckpointManager, abstract_state, step: int | None = None):
  """-> (state, data_state, meta) at `step` (default latest), shaped like `abstract_state`.

  Raises:
    CorruptCheckpointError: the step cannot be read or does not match its checksums.
  """
  step = manager.latest_step() if step is None else step
  where = step_dir(manager, step)
  _drop_closed_loop_noise()
  try:
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data_iter=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
  except Exception as e:  # pylint: disable=broad-except  # TensorStore raises plain Exception
    raise CorruptCheckpointError(f'checkpoint {where} cannot be read: {_reason(e)}') from e
  checksums = (restored.meta or {}).get(CHECKSUMS) or {}
  _verify(where, restored.state, checksums.get('state'))
  if checksums and checksums.get('data_iter') != _json_sha256(restored.data_iter):
    raise CorruptCheckpointError(
        f'checkpoint {where / "data_iter"} is corrupt: it does not match its checksum')
  return restored.state, restored.data_iter, restored.meta


@dataclasses.dataclass
class Restored:
  state: Any
  data_state: dict
  meta: dict
  step: int
  skipped: list[tuple[int, str]]  # (step, why) of newer, damaged steps; newest first


def _set_aside(manager: ocp.CheckpointManager, steps: list[int]) -> None:
  """Renames damaged steps to <step>.corrupt, so the run can save those steps again.

  (Orbax saves no step at or below its latest one, and keeps the folder for a
  post-mortem rather than deleting it.)
  """
  if jax.process_index() == 0:
    for step in steps:
      src = step_dir(manager, step)
      dst = src.with_name(src.name + CORRUPT_SUFFIX)
      if dst.exists():
        epath.Path(dst).rmtree()
      src.rename(dst)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('lm_data: damaged checkpoints set aside')
  manager.reload()


def restore_latest(manager: ocp.CheckpointManager, abstract_state) -> Restored | None:
  """The newest step that reads and matches its checksums; None when there is none yet.

  Each damaged newer step is reported in one warning line, renamed
  `<step>.corrupt` and listed in `Restored.skipped`.

  Raises:
    CorruptCheckpointError: every step is damaged.
  """
  skipped = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      state, data_state, meta = restore(manager, abstract_state, step)
    except CorruptCheckpointError as e:
      skipped.append((step, str(e)))
      continue
    for bad_step, why in skipped:
      logging.warning('%s; resuming from step %d instead', why, step)
    if skipped:
      _set_aside(manager, [bad_step for bad_step, _ in skipped])
    return Restored(state, data_state, meta, step, skipped)
  if skipped:
    raise CorruptCheckpointError(
        f'no checkpoint in {manager.directory} can be restored '
        f'({"; ".join(why for _, why in skipped)}); move that folder away to start '
        'the run again')
  return None


def model_config_to_dict(config: BertConfig) -> dict:
  """JSON-able; BertConfig(**d) reads the dtype names back."""
  d = dataclasses.asdict(config)
  for key in ('dtype', 'param_dtype'):
    d[key] = jnp.dtype(d[key]).name
  return d


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """What a downstream user needs from a pretraining checkpoint."""
  model_config: BertConfig
  encoder_params: Any          # pytree of numpy arrays
  tokenizer_path: utils.AnyPath
  step: int
  meta: dict
  ckpt_dir: utils.AnyPath | None = None


def load_pretrained(ckpt_dir: utils.PathLike, step: int | None = None) -> Pretrained:
  """Restores config, encoder params and tokenizer path; never writes.

  Reads only the `params/encoder` subtree (not the optimizer state), so it is
  cheap and safe to run beside the training job that owns `ckpt_dir`. A
  relative `tokenizer_path` in the meta is relative to `ckpt_dir` (so a moved
  workdir still finds its tokenizer); older checkpoints hold absolute paths.
  """
  ckpt_dir = utils.path(ckpt_dir)
  if not ckpt_dir.is_dir():
    raise NoCheckpointError(
        f'no checkpoint directory {ckpt_dir}; pass the `checkpoints` folder of a '
        'pretraining run (e.g. WORKDIR/arms/ARM/checkpoints)')
  manager = make_manager(ckpt_dir, read_only=True)
  steps = sorted(manager.all_steps())
  step = (steps[-1] if steps else None) if step is None else step
  if step is None:
    raise NoCheckpointError(f'{ckpt_dir} holds no finished checkpoint step; '
                            'let pretraining reach its first checkpoint')
  if step not in steps:
    raise NoCheckpointError(f'{ckpt_dir} has no step {step}; it has {steps}')
  where = step_dir(manager, step)
  older = [s for s in steps if s < step]
  hint = ('; pretrain again' + (f', or load step {older[-1]} (finetune: '
                                f'--config.step={older[-1]})' if older else ''))
  _drop_closed_loop_noise()
  try:
    meta = manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore())).meta
    tree = manager.item_metadata(step)['state'].tree
    target = {'params': {'encoder': tree['params']['encoder']}}
    restore_args = jax.tree.map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    state = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(item=target, restore_args=restore_args,
                                     partial_restore=True))).state
  except Exception as e:  # pylint: disable=broad-except  # TensorStore raises plain Exception
    raise CorruptCheckpointError(
        f'checkpoint {where / "state"} cannot be read ({_reason(e)}){hint}') from e
  finally:
    manager.close()
  _verify(where, state, (meta.get(CHECKSUMS) or {}).get('state'), hint)
  return Pretrained(
      model_config=BertConfig(**meta['model_config']),
      encoder_params=state['params']['encoder'],
      tokenizer_path=utils.resolve_path(ckpt_dir, meta['tokenizer_path']),
      step=int(step), meta=meta, ckpt_dir=ckpt_dir)
