"""The MLM pretraining loop: resumable, data-parallel, with metrics and evaluation."""

import dataclasses
import functools
import json
import signal
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from lm_data import utils
from lm_data.corpus import fetch
from lm_data.input_pipeline import loader
from lm_data.input_pipeline import masking
from lm_data.models.bert import BertForMLM
from lm_data.models.presets import make_config
from lm_data.train import checkpoint, flops, metrics as metrics_lib, optimizer as optim
from lm_data.train import early_stopping
from lm_data.train import parallel
from lm_data.train import steps

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class TrainIterator(Protocol):
  def __next__(self) -> dict[str, np.ndarray]: ...
  def get_state(self) -> dict: ...
  def set_state(self, state: dict) -> None: ...


class NonFiniteError(FloatingPointError):
  pass


def model_config_for(cfg: ml_collections.ConfigDict, vocab_size: int):
  """BertConfig from `cfg.model` (preset name plus overrides)."""
  if cfg.model.dtype not in DTYPES:
    raise ValueError(f'unknown model.dtype {cfg.model.dtype!r}; known: {", ".join(DTYPES)}')
  overrides = dict(cfg.model.get('overrides', {}))
  return make_config(cfg.model.preset, vocab_size, dtype=DTYPES[cfg.model.dtype],
                     attention=cfg.model.attention, **overrides)


class _StopFlag:
  """Set by SIGTERM (TPU preemption notice): save at the next step boundary and exit."""

  def __init__(self):
    self.event = threading.Event()
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, lambda *_: self.event.set())
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def should_stop(self) -> bool:
    """Agreed by all processes, so they checkpoint at the same step."""
    flag = self.event.is_set()
    if jax.process_count() > 1:
      flag = bool(multihost_utils.process_allgather(np.array(flag)).any())
    return flag


@dataclasses.dataclass
class PretrainResult:
  step: int
  start_step: int           # > 0 when the run resumed from a checkpoint
  finished: bool            # False when stopped early by SIGTERM
  heldout: dict[str, dict]  # name -> {'loss', 'accuracy', 'predictions'}
  train_flops: float        # of the returned params' `step` steps
  params: Any               # final (early stopping: chosen) params, replicated jax arrays
  early_stopping: dict | None = None  # EarlyStopping.to_dict() when it was on


def evaluate(eval_step, params, eval_sets: Mapping[str, Iterable[dict]],
             to_device) -> dict[str, dict]:
  """Held-out MLM loss and accuracy per set, and pooled over all sets as 'all'.

  Sums are reduced only at the end, so 'all' weights every masked token equally.
  """
  def add(a, b):
    return b if a is None else {k: a[k] + b[k] for k in b}

  results, pooled = {}, None
  for name, batches in eval_sets.items():
    totals = None
    for batch in batches:
      totals = add(totals, jax.device_get(eval_step(params, to_device(batch))))
    if totals is not None:
      results[name] = metrics_lib.reduce_sums(totals)
      pooled = add(pooled, totals)
  if pooled is not None:
    results['all'] = metrics_lib.reduce_sums(pooled)
  return results


def _log_first_step(writer, name: str, step: int, began: float, init_s: float) -> None:
  """Time from `pretrain`'s start to the first finished step (compile included)."""
  total = time.perf_counter() - began
  logging.info('%s: first step after %.1f s (state init/restore %.1f s, first step '
               'with compilation %.1f s)', name, total, init_s, total - init_s)
  writer.write(step, {'event': 'first_step', 'time_to_first_step_s': total,
                      'init_s': init_s})


def pretrain(cfg: ml_collections.ConfigDict, arm_dir: utils.AnyPath, *,
             train_iter: TrainIterator, eval_sets: Mapping[str, Iterable[dict]],
             vocab_size: int, meta: dict[str, Any], label: str = '',
             tensorboard_dir: utils.AnyPath | None = None,
             selection_domains: Sequence[str] | None = None) -> PretrainResult:
  """Trains `cfg.train.num_train_steps` steps, resuming from `arm_dir/checkpoints`.

  With `cfg.train.early_stopping_patience` > 0 it may stop sooner and return
  the checkpoint step with the lowest held-out loss (`early_stopping`).

  Args:
    cfg: arm config with `model`, `train` and `mask` (see configs/common.py).
    arm_dir: where checkpoints/ and metrics.jsonl go.
    train_iter: host-local masked batches, with JSON get_state/set_state.
    eval_sets: name -> host-local batches for held-out evaluation.
    vocab_size: tokenizer vocabulary size.
    meta: JSON saved in every checkpoint (config, tokenizer path, ...).
    label: names the arm on the progress line (default: the folder name).
    tensorboard_dir: also write the logged scalars there as TensorBoard events.
    selection_domains: the `eval_sets` early stopping scores (default: all).
  """
  began = time.perf_counter()
  tc = cfg.train  # validated by checks.check_study_config
  # Prediction slots per row, as the loader's batches have them (None: from the rate).
  predictions = masking.MaskConfig.from_config(
      cfg.mask, vocab_size=vocab_size).num_predictions(cfg.seq_len)
  model_config = model_config_for(cfg, vocab_size)
  model = BertForMLM(model_config)
  schedule = optim.train_schedule(tc)
  tx = optim.make_optimizer(tc)
  mesh = steps.make_mesh()
  n_dev = mesh.size
  if tc.global_batch_size % (n_dev * tc.grad_accum_steps):
    raise ValueError(
        f'train.global_batch_size={tc.global_batch_size} must be divisible by '
        f'devices ({n_dev}) x train.grad_accum_steps ({tc.grad_accum_steps})')
  meta = {**meta, 'model_config': checkpoint.model_config_to_dict(model_config)}

  with jax.set_mesh(mesh):
    init = jax.jit(lambda: steps.create_train_state(
        model, tx, seq_len=cfg.seq_len, max_predictions=predictions,
        seed=cfg.seed), out_shardings=jax.sharding.NamedSharding(mesh, jax.P()))
    abstract = jax.eval_shape(init)
    patience = tc.get('early_stopping_patience', 0)
    manager = checkpoint.make_manager(
        arm_dir / 'checkpoints', keep_period=tc.keep_period or None,
        async_save=tc.async_checkpointing,
        keep_lowest=early_stopping.METRIC if patience else None)
    # Restore targets are replicated over the mesh, as `init` makes them.
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                       sharding=jax.sharding.NamedSharding(mesh, jax.P())),
        abstract)
    restored = None
    if manager.latest_step() is not None:
      restored = checkpoint.restore_latest(manager, abstract)  # past a damaged latest step
    if restored is not None:
      state = restored.state
      train_iter.set_state(restored.data_state)
      logging.info('resumed %s at step %d', arm_dir.name, int(state.step))
      for bad_step, why in restored.skipped:  # on record beside the metrics it affects
        metrics_lib.MetricWriter(arm_dir / 'metrics.jsonl', enabled=jax.process_index() == 0
                                 ).write(restored.step, {'event': 'checkpoint_fallback',
                                                         'corrupt_step': bad_step,
                                                         'reason': why})
    else:
      state = init()
    start = int(state.step)
    init_s = time.perf_counter() - began
    selection_domains = sorted(selection_domains) if selection_domains else None
    es = (early_stopping.EarlyStopping.resume(arm_dir / early_stopping.FILE, patience, start,
                                              selection_domains)
          if patience else None)

    strategy = parallel.make_strategy(tc.parallelism, model, tx, schedule, mesh,
                                      accum_steps=tc.grad_accum_steps)
    state = strategy.place_state(state)
    # Held-out evaluation is jitted over the mesh in either mode.
    eval_step = steps.make_eval_step(model, mesh)
    to_device = functools.partial(loader.global_batch_to_device,
                                  sharding=steps.batch_sharding(mesh))
    selection = early_stopping.selection_sets(eval_sets, selection_domains) if es else None

    flops_per_step = flops.train_flops_per_step(
        model_config, batch_size=tc.global_batch_size, seq_len=cfg.seq_len,
        predictions=predictions)
    # Measured once per machine and cached, so MFUs compare across arms and runs.
    peak, peak_source = flops.peak_flops_per_device(
        DTYPES[cfg.model.dtype], override_tflops=tc.peak_tflops,
        cache_dir=fetch.cache_root(cfg.get('cache_dir')))
    logging.info('%.3g FLOPs/step; peak %.3g FLOP/s/device (%s)', flops_per_step,
                 peak, peak_source)
    is_main = jax.process_index() == 0
    writer = metrics_lib.MetricWriter(arm_dir / 'metrics.jsonl', enabled=is_main,
                                      tensorboard_dir=tensorboard_dir)
    progress = metrics_lib.Progress(tc.num_train_steps, start, name=label or arm_dir.name)
    window = {}  # metric sums since the last logged step: a smoothed train loss
    branch = {}  # on the cool-down branch: tags its metrics.jsonl lines (steps repeat)
    tokens_per_step = tc.global_batch_size * cfg.seq_len

    def report(pending, until: int):
      """Fetches the metrics of `pending` [(step, metrics)] at once, checks, logs.

      One host round trip per log period (not per step): a non-finite loss stops
      the run at most log_every steps later, naming the step where it appeared,
      and before any checkpoint holding it is written (callers flush first).
      """
      fetched = jax.device_get([m for _, m in pending])
      for (step, _), m in zip(pending, map(strategy.one_copy, fetched)):
        if not bool(m['finite']):
          raise NonFiniteError(
              f'{arm_dir.name}: non-finite loss or gradient at step {step} '
              f'(loss_sum={float(m["loss_sum"])}, grad_norm={float(m["grad_norm"])}); '
              'lower train.learning_rate or raise train.warmup_steps')
        for k in ('loss_sum', 'correct_sum', 'weight_sum'):
          window[k] = window.get(k, 0.0) + float(m[k])
        if step % tc.log_every and step != until:
          continue
        timing = progress.tick(step)
        out = metrics_lib.reduce_sums({**m, **window})  # means over the window
        window.clear()
        out['tokens_per_sec'] = tokens_per_step / timing['step_time']
        out['mfu'] = flops_per_step / timing['step_time'] / (peak * n_dev)
        out.update(timing)
        writer.write(step, {**out, **branch})
        progress.log(step, timing, out)
      pending.clear()

    def select(step) -> tuple[dict, bool]:
      """Early stopping's evaluation at a checkpoint step: (the checkpoint metric,
      whether training stops here)."""
      loss = evaluate(eval_step, strategy.host_state(state).params, selection,
                      to_device)['all'][early_stopping.SCORE]
      done = es.update(step, loss)
      writer.write(step, {'heldout/selection/loss': loss, 'best_step': es.best_step,
                          **branch})
      if is_main:
        es.save(arm_dir / early_stopping.FILE)
      return {early_stopping.METRIC: loss}, done

    def run(until: int, stop: _StopFlag) -> bool:
      """Trains from `step` to `until`, checkpointing (and scoring) on the way.

      Returns False when SIGTERM ended it; early stopping ends it quietly.
      """
      nonlocal state, step
      pending = []  # (step, device metrics) not yet fetched
      first = step
      while step < until:
        batch = next(train_iter)
        state, m = strategy.train_step(state, strategy.place_batch(batch))
        if step == first:
          jax.block_until_ready(m)
          if first == start:
            _log_first_step(writer, label or arm_dir.name, step + 1, began, init_s)
        # The previous step was a log step: fetch now, with this one queued.
        if pending and pending[-1][0] % tc.log_every == 0:
          report(pending, until)
        step += 1
        pending.append((step, m))
        last = step == until
        stopping = stop.should_stop()
        es_stop = False
        if last or stopping or step % tc.checkpoint_every == 0:
          report(pending, until)
          if es is not None and (last or step % tc.checkpoint_every == 0):
            ckpt_metrics, es_stop = select(step)
          else:
            ckpt_metrics = None
          checkpoint.save(manager, step, strategy.host_state(state),
                          train_iter.get_state(), meta, metrics=ckpt_metrics,
                          force=last or stopping or es_stop)
        if es_stop and es.cooldown_from is None:
          logging.info('%s: early stopping at step %d, %d evaluations after the lowest '
                       'held-out loss (step %d)', label or arm_dir.name, step, patience,
                       es.best_step)
          break
        if stopping:
          logging.warning('SIGTERM: saved step %d of %s; exiting', step, arm_dir.name)
          return False
      if pending:
        report(pending, until)
      return True

    def delete_after(kept: int) -> None:
      """Deletes the checkpoints after `kept`, oldest first."""
      for later in [s for s in manager.all_steps() if s > kept]:
        manager.delete(later)

    def branch_cooldown():
      """Back to the kept step, to train the decay from there (`cooldown_on_stop`)."""
      nonlocal state, step, strategy, progress
      branch['branch'] = 'cooldown'
      host_state = strategy.host_state(state)
      if es.cooldown_from is None:
        manager.wait_until_finished()
        es.begin_cooldown(decay_steps)
        delete_after(es.cooldown_from)   # before the record names the branch: see resume
        if is_main:
          es.save(arm_dir / early_stopping.FILE)
        if step != es.cooldown_from:
          host_state, data_state, _ = checkpoint.restore(manager, abstract, es.cooldown_from)
          train_iter.set_state(data_state)
          step = es.cooldown_from
        logging.info('%s: cool-down from the kept step %d to step %d (the wsd decay, '
                     'branched)', label or arm_dir.name, es.cooldown_from, es.cooldown_end)
      schedule = optim.cooldown_schedule(tc, es.cooldown_from)
      strategy = parallel.make_strategy(tc.parallelism, model,
                                        optim.make_optimizer(tc, schedule), schedule, mesh,
                                        accum_steps=tc.grad_accum_steps)
      state = strategy.place_state(host_state)
      progress = metrics_lib.Progress(es.cooldown_end, step,
                                      name=f'{label or arm_dir.name} cool-down')

    # train.cooldown_on_stop: a kept step from before the wsd decay gets the decay
    # on a branch (early_stopping.py); checks.check_study_config allows it only there.
    cooldown = bool(tc.get('cooldown_on_stop', False)) and es is not None
    decay_start, decay_steps = optim.wsd_decay(tc) if cooldown else (0, 0)
    step = start
    with _StopFlag() as stop:
      finished = es is not None and es.stopped_at is not None
      if not finished:
        finished = run(tc.num_train_steps, stop)
        if finished and es and es.stopped_at is None:  # ran to the end
          es.stopped_at = step
          if is_main:
            es.save(arm_dir / early_stopping.FILE)
      # Only after a stop by patience: a run that reached its end had its decay.
      if finished and es and cooldown and (es.cooldown_from is not None or (
          es.stopped_at < tc.num_train_steps and es.best_step < decay_start)):
        if not es.cooled_down:
          branch_cooldown()
          finished = run(es.cooldown_end, stop)
    manager.wait_until_finished()
    params = strategy.host_state(state).params
    if es and finished:  # keep the best step; its later checkpoints go
      step = es.best_step
      delete_after(step)
      if int(state.step) != step:
        params = checkpoint.restore(manager, abstract, step)[0].params
    manager.close()

    heldout = evaluate(eval_step, params, eval_sets, to_device) if finished else {}
    if heldout:
      writer.write(step, {f'heldout/{name}/{k}': v for name, r in heldout.items()
                          for k, v in r.items() if k.startswith(('loss', 'accuracy'))},
                   jsonl=False)
    writer.close()
  if finished and is_main:
    (arm_dir / 'pretrain_summary.json').write_text(json.dumps({
        'step': step, 'heldout': heldout,
        'train_flops': flops_per_step * step,
        'tokens_seen': tokens_per_step * step,
        **({'early_stopping': es.to_dict()} if es else {})}, indent=1))
  return PretrainResult(step=step, start_step=start, finished=finished,
                        heldout=heldout, train_flops=flops_per_step * step,
                        params=params, early_stopping=es.to_dict() if es else None)
