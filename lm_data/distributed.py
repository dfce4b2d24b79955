"""Multi-process start-up: every host runs the same command (TPU VM pods, or
several CPU processes over localhost for tests)."""

import os

import jax
from absl import flags
from absl import logging

_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'host:port of process 0; set with --num_processes/--process_id to run '
    'several processes without a TPU VM (e.g. localhost:12345).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the job.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, 0-based.')

# Set on multi-host Cloud TPU VMs, where jax.distributed finds its peers itself.
_TPU_ENV_VARS = ('TPU_WORKER_HOSTNAMES', 'MEGASCALE_COORDINATOR_ADDRESS')


def initialize() -> None:
  """Calls jax.distributed.initialize when the job spans several processes."""
  if _COORDINATOR.value:
    if _NUM_PROCESSES.value is None or _PROCESS_ID.value is None:
      raise flags.ValidationError(
          '--coordinator_address needs --num_processes and --process_id')
    if jax.config.jax_platforms in (None, '', 'cpu') or os.environ.get('JAX_PLATFORMS') == 'cpu':
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value)
  elif any(len(os.environ.get(v, '').split(',')) > 1 for v in _TPU_ENV_VARS):
    jax.distributed.initialize()
  else:
    return
  logging.info('process %d of %d, %d local / %d global devices',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
