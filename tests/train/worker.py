"""A pretraining process for the multi-process and SIGTERM tests.

  python -m tests.train.worker --workdir=W [--num_processes=2 --process_id=K --port=P]
      [--steps=6] [--crash_at=N] [--batch_delay=S]

Trains the tiny fixture model on synthetic packed rows through the real loader
(per-process shares of each global batch) and prints one JSON line with the
final step and a digest of the params.
"""

import argparse
import json
import os
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402
import numpy as np  # noqa: E402


class Crash(RuntimeError):
  pass


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--workdir', required=True)
  p.add_argument('--num_processes', type=int, default=1)
  p.add_argument('--process_id', type=int, default=0)
  p.add_argument('--port', type=int, default=0)
  p.add_argument('--steps', type=int, default=6)
  p.add_argument('--checkpoint_every', type=int, default=3)
  p.add_argument('--crash_at', type=int, default=-1)
  p.add_argument('--batch_delay', type=float, default=0.0)
  args = p.parse_args()
  if args.num_processes > 1:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(f'localhost:{args.port}', args.num_processes,
                               args.process_id)

  from lm_data.input_pipeline import loader, masking
  from lm_data.train import trainer
  from tests.train import fixtures

  rng = np.random.default_rng(0)
  rows, seq = 40, 16
  tokens = rng.integers(5, 64, (rows, seq), dtype=np.int32)
  segment_ids = np.ones((rows, seq), np.int32)
  segment_ids[:, seq // 2:] = 2
  tokens[:, 0] = tokens[:, seq // 2] = 2   # [CLS]
  mask_cfg = masking.MaskConfig(vocab_size=64, max_predictions=4)
  it = loader.make_train_iterator(
      (tokens, segment_ids), global_batch_size=8, seed=0, mask_cfg=mask_cfg,
      process_index=jax.process_index(), process_count=jax.process_count())

  class Wrapped:
    """The real iterator, slowed down or crashing on request."""
    def __next__(self):
      if it.step == args.crash_at:
        raise Crash(f'crash before batch {it.step}')
      time.sleep(args.batch_delay)
      return next(it)
    get_state = it.get_state
    set_state = it.set_state

  cfg = fixtures.tiny_config(num_train_steps=args.steps,
                             checkpoint_every=args.checkpoint_every, log_every=1)
  try:
    result = trainer.pretrain(cfg, __import__('pathlib').Path(args.workdir),
                              train_iter=Wrapped(), eval_sets={}, vocab_size=64,
                              meta={'tokenizer_path': 'none'})
    out = {'step': result.step, 'start_step': result.start_step,
           'finished': result.finished, 'digest': {
               '/'.join(k.key for k in path): float(np.asarray(v, np.float64).sum())
               for path, v in jax.tree_util.tree_leaves_with_path(
                   jax.device_get(result.params))}}
  except Crash:
    out = {'step': -1}
  finally:
    it.close()
  print(json.dumps({'process': jax.process_index(), **out}), flush=True)
  if args.num_processes > 1:
    jax.distributed.shutdown()


if __name__ == '__main__':
  main()
