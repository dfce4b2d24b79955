"""Orbax checkpoints of a pretraining run, and read-only loading for downstream users.

One checkpoint step holds three items:
  state     TrainState (params, optimizer state, step, dropout RNG)
  data_iter the train iterator's JSON state, so a resumed run sees the same batches
  meta      JSON: resolved config, model config, tokenizer path and sha256
"""

import dataclasses
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from lm_data.models.bert import BertConfig

ITEMS = ('state', 'data_iter', 'meta')


def make_manager(directory: str | pathlib.Path, *, max_to_keep: int = 1,
                 keep_period: int | None = None, read_only: bool = False,
                 async_save: bool = True) -> ocp.CheckpointManager:
  """Keeps the latest `max_to_keep` steps, plus every `keep_period`-th for analysis.

  Read-only managers register the item handlers up front, so item metadata and
  partial (PyTree) restores work without a prior save in this process.
  """
  options = ocp.CheckpointManagerOptions(
      max_to_keep=None if read_only else max_to_keep,
      keep_period=None if read_only else keep_period,
      read_only=read_only, create=not read_only,
      enable_async_checkpointing=async_save and not read_only)
  handlers = None
  if read_only:
    handlers = {'state': ocp.PyTreeCheckpointHandler(),
                'data_iter': ocp.JsonCheckpointHandler(),
                'meta': ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(pathlib.Path(directory).absolute(),
                               item_names=None if handlers else ITEMS,
                               item_handlers=handlers, options=options)


def save(manager: ocp.CheckpointManager, step: int, state, data_state: dict,
         meta: dict, *, force: bool = False) -> bool:
  return manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data_iter=ocp.args.JsonSave(data_state),
      meta=ocp.args.JsonSave(meta)), force=force)


def restore(manager: ocp.CheckpointManager, abstract_state, step: int | None = None):
  """-> (state, data_state, meta) at `step` (default latest), shaped like `abstract_state`."""
  step = manager.latest_step() if step is None else step
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state),
      data_iter=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
  return restored.state, restored.data_iter, restored.meta


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
  tokenizer_path: pathlib.Path
  step: int
  meta: dict


def load_pretrained(ckpt_dir: str | pathlib.Path, step: int | None = None) -> Pretrained:
  """Restores config, encoder params and tokenizer path; never writes.

  Reads only the `params/encoder` subtree (not the optimizer state), so it is
  cheap and safe to run beside the training job that owns `ckpt_dir`.
  """
  ckpt_dir = pathlib.Path(ckpt_dir)
  if not ckpt_dir.is_dir():
    raise FileNotFoundError(
        f'no checkpoint directory {ckpt_dir}; pass the `checkpoints` folder of a '
        'pretraining run (e.g. WORKDIR/arms/ARM/checkpoints)')
  manager = make_manager(ckpt_dir, read_only=True)
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'{ckpt_dir} holds no finished checkpoint step')
  meta = manager.restore(step, args=ocp.args.Composite(
      meta=ocp.args.JsonRestore())).meta
  tree = manager.item_metadata(step)['state'].tree
  target = {'params': {'encoder': tree['params']['encoder']}}
  restore_args = jax.tree.map(
      lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
  state = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore(item=target, restore_args=restore_args,
                                   partial_restore=True))).state
  manager.close()
  return Pretrained(
      model_config=BertConfig(**meta['model_config']),
      encoder_params=state['params']['encoder'],
      tokenizer_path=pathlib.Path(meta['tokenizer_path']), step=int(step), meta=meta)
