"""How the pretraining loop runs data-parallel: one strategy object per `train.parallelism`.

The loop (trainer.pretrain) asks the strategy for everything that differs
between the modes and branches nowhere itself. As in the flax gemma and
MaxText examples, the main path is one `jax.jit` program over a device mesh:
the state is replicated by its NamedSharding and each process's rows are
assembled into global batch arrays with `jax.make_array_from_process_local_data`.
`pmap` is kept as a cross-check (tests/train: both modes give the same params).
"""

from typing import Any

import jax
import optax
from flax import linen as nn

from lm_data.input_pipeline import loader
from lm_data.train import steps


class JitStrategy:
  """`jax.jit` over the mesh; the state is a global, replicated jax.Array tree."""

  def __init__(self, model: nn.Module, tx: optax.GradientTransformation,
               schedule: optax.Schedule, mesh: jax.sharding.Mesh, *, accum_steps: int):
    self.train_step = steps.make_jit_train_step(model, tx, schedule, mesh,
                                                accum_steps=accum_steps)
    self._batch_sharding = steps.batch_sharding(mesh)

  def place_state(self, state: steps.TrainState) -> steps.TrainState:
    return state  # init and restore already place it replicated on the mesh

  def place_batch(self, batch: steps.Batch) -> steps.Batch:
    return loader.global_batch_to_device(batch, self._batch_sharding)

  def host_state(self, state: steps.TrainState) -> steps.TrainState:
    return state  # global arrays: orbax saves them and the eval step reads them as they are

  def one_copy(self, fetched: Any) -> Any:
    """Fetched step metrics -> one value per metric (here they already are)."""
    return fetched


class PmapStrategy:
  """`jax.pmap` over the local devices; the state is stacked, one copy per device."""

  def __init__(self, model: nn.Module, tx: optax.GradientTransformation,
               schedule: optax.Schedule, mesh: jax.sharding.Mesh, *, accum_steps: int):
    del mesh  # pmap places by the leading axis, over the local devices
    self._step = steps.make_pmap_train_step(model, tx, schedule, accum_steps=accum_steps)

  def train_step(self, state: steps.TrainState, batch: steps.Batch):
    # pmap runs as a shard_map over its own device axis and refuses to run
    # under the trainer's mesh context (jax 0.10: "The context mesh ... should
    # match the mesh passed to shard_map").
    with jax.set_mesh(None):
      return self._step(state, batch)

  def place_state(self, state: steps.TrainState) -> steps.TrainState:
    return steps.replicate(jax.device_get(state))

  def place_batch(self, batch: steps.Batch) -> steps.Batch:
    return steps.shard_for_pmap(batch)

  def host_state(self, state: steps.TrainState) -> steps.TrainState:
    return jax.device_get(steps.unreplicate(state))

  def one_copy(self, fetched: Any) -> Any:
    """Fetched step metrics -> one value per metric (the psum left equal copies)."""
    return steps.unreplicate(fetched)


STRATEGIES = {'jit': JitStrategy, 'pmap': PmapStrategy}
MODES = tuple(STRATEGIES)


def make_strategy(mode: str, model: nn.Module, tx: optax.GradientTransformation,
                  schedule: optax.Schedule, mesh: jax.sharding.Mesh, *,
                  accum_steps: int = 1) -> JitStrategy | PmapStrategy:
  """The strategy of `train.parallelism`, one of MODES (checks.check_study_config
  validates it, once)."""
  return STRATEGIES[mode](model, tx, schedule, mesh, accum_steps=accum_steps)
