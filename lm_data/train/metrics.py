"""JSON-lines metrics and a human progress line (rate, ETA), with no TensorFlow."""

import json
import math
import time

import tensorboardX
from absl import logging

from lm_data import utils


class MetricWriter:
  """Appends one JSON object per call to `path` (only process 0 writes).

  An object store (`gs://`) has no append: there the writer keeps the file's
  lines and uploads the whole file on each write (a few hundred lines a run).

  With `tensorboard_dir`, numeric scalars also go to TensorBoard event files
  (tensorboardX: no TensorFlow), one folder per arm so that
  `tensorboard --logdir DIR/tensorboard` shows arms side by side. Records
  tagged `branch` (the cool-down branch, whose steps repeat the main run's) go
  to a sub-run `<arm>/<branch>`, so their curves do not overlay the main run's.
  """

  def __init__(self, path: utils.PathLike, *, enabled: bool = True,
               tensorboard_dir: utils.PathLike | None = None):
    self.path = utils.path(path)
    self.enabled = enabled
    self._tb_dir = None if tensorboard_dir is None else utils.path(tensorboard_dir)
    self._tb = {}   # branch ('' = main run) -> SummaryWriter, opened on first use
    self._remote_text = None
    if enabled:
      self.path.parent.mkdir(parents=True, exist_ok=True)
      if utils.is_remote(self.path):
        self._remote_text = self.path.read_text() if self.path.exists() else ''
      if self._tb_dir is not None:
        self._tensorboard('')

  def write(self, step: int, metrics: dict, *, jsonl: bool = True) -> None:
    if not self.enabled:
      return
    record = {'step': int(step), **utils.json_safe(metrics, finite=False)}
    if jsonl:
      line = json.dumps(record) + '\n'
      if self._remote_text is None:
        with self.path.open('a') as f:
          f.write(line)
      else:
        self._remote_text += line
        self.path.write_text(self._remote_text)
    if self._tb_dir is not None:
      tb = self._tensorboard(str(record.get('branch', '')))
      for key, value in record.items():
        if key != 'step' and isinstance(value, (int, float)) and not isinstance(value, bool):
          tb.add_scalar(key if '/' in key else f'train/{key}', value, int(step))

  def _tensorboard(self, branch: str) -> tensorboardX.SummaryWriter:
    if branch not in self._tb:
      folder = self._tb_dir / branch if branch else self._tb_dir
      self._tb[branch] = tensorboardX.SummaryWriter(str(folder), flush_secs=30)
    return self._tb[branch]

  def close(self) -> None:
    for tb in self._tb.values():
      tb.close()
    self._tb = {}


SPLITS = ('_mask',)  # position kinds the eval step sums separately


def reduce_sums(metrics: dict) -> dict:
  """(sum, count) pairs -> means: loss, accuracy; other scalars pass through.

  Sums with a split suffix ('_mask') give loss_mask, accuracy_mask and
  predictions_mask, and their complement in the totals gives '_other'. Sums of
  squared losses (`loss_sq_sum`, held-out evaluation only) give the
  per-position SD of the loss, `loss_sd` (n - 1 denominator).
  """
  out = {k: v for k, v in metrics.items()
         if '_sum' not in k and k != 'finite'}
  sums = {'': (metrics['loss_sum'], metrics['correct_sum'], metrics['weight_sum'])}
  squares = {'': metrics.get('loss_sq_sum')}
  for suffix in SPLITS:
    if f'weight_sum{suffix}' in metrics:
      part = tuple(metrics[f'{k}_sum{suffix}'] for k in ('loss', 'correct', 'weight'))
      sums[suffix] = part
      sums['_other'] = tuple(float(t) - float(p) for t, p in zip(sums[''], part))
      square = metrics.get(f'loss_sq_sum{suffix}')
      squares[suffix] = square
      if square is not None and squares[''] is not None:
        squares['_other'] = float(squares['']) - float(square)
  for suffix, (loss, correct, weight) in sums.items():
    weight = float(weight)
    if weight > 0:
      out[f'loss{suffix}'] = float(loss) / weight
      out[f'accuracy{suffix}'] = float(correct) / weight
    out[f'predictions{suffix}'] = weight
    square = squares.get(suffix)
    if square is not None and weight > 1:
      # Clipped at 0: float32 sums can leave a tiny negative for equal losses.
      variance = max(float(square) - float(loss) ** 2 / weight, 0.0) / (weight - 1)
      out[f'loss_sd{suffix}'] = math.sqrt(variance)
  return out


class Progress:
  """Seconds per step, elapsed time and ETA, and the progress log line.

  A small cut of big_vision's Chrono: no core-hours or pause accounting.
  """

  def __init__(self, total_steps: int, first_step: int, *, name: str = ''):
    self.total_steps = total_steps
    self.name = name
    self._start_step = first_step
    self._start_time = time.perf_counter()
    self._last_step = first_step
    self._last_time = self._start_time

  def tick(self, step: int) -> dict:
    """Timing since the previous tick: seconds per step and ETA."""
    now = time.perf_counter()
    steps = max(step - self._last_step, 1)
    step_time = (now - self._last_time) / steps
    done = step - self._start_step
    avg = (now - self._start_time) / max(done, 1)
    self._last_step, self._last_time = step, now
    return {'step_time': step_time,
            'eta_s': avg * (self.total_steps - step),
            'elapsed_s': now - self._start_time}

  def log(self, step: int, timing: dict, metrics: dict) -> None:
    eta = timing['eta_s']
    logging.info(
        '%s step %d/%d (%.1f%%)  loss %.4f  acc %.3f  %.0f tok/s  MFU %.1f%%  ETA %dm%02ds',
        self.name, step, self.total_steps, 100 * step / self.total_steps,
        metrics.get('loss', float('nan')), metrics.get('accuracy', float('nan')),
        metrics.get('tokens_per_sec', 0.0), 100 * metrics.get('mfu', 0.0),
        eta // 60, eta % 60)
