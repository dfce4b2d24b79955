"""Metric reduction, the JSON-lines writer and its TensorBoard events."""

import json
import struct

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from lm_data.train import metrics


def test_reduce_sums_splits_mask_and_other():
  out = metrics.reduce_sums({
      'loss_sum': 10.0, 'correct_sum': 4.0, 'weight_sum': 8.0,
      'loss_sum_mask': 9.0, 'correct_sum_mask': 1.0, 'weight_sum_mask': 6.0,
      'grad_norm': 0.5, 'finite': True})
  assert out['loss'] == pytest.approx(10 / 8)
  assert out['loss_mask'] == pytest.approx(9 / 6)
  assert out['accuracy_mask'] == pytest.approx(1 / 6)
  assert out['loss_other'] == pytest.approx(1 / 2)
  assert out['accuracy_other'] == pytest.approx(3 / 2)
  assert out['predictions_other'] == 2
  assert out['grad_norm'] == 0.5 and 'finite' not in out
  assert not any(k.startswith('loss_sd') for k in out)   # no squares: no SD


def test_reduce_sums_gives_per_position_loss_sd_like_numpy():
  losses = np.array([1.0, 2.5, 4.0, 0.5, 3.0, 6.0, 2.0])
  is_mask = np.array([1, 1, 0, 1, 0, 1, 1], bool)
  sums = {'loss_sum': losses.sum(), 'correct_sum': 0.0, 'weight_sum': losses.size,
          'loss_sq_sum': (losses**2).sum(),
          'loss_sum_mask': losses[is_mask].sum(), 'correct_sum_mask': 0.0,
          'weight_sum_mask': is_mask.sum(), 'loss_sq_sum_mask': (losses[is_mask]**2).sum()}
  out = metrics.reduce_sums(sums)
  assert out['loss_sd'] == pytest.approx(losses.std(ddof=1))
  assert out['loss_sd_mask'] == pytest.approx(losses[is_mask].std(ddof=1))
  assert out['loss_sd_other'] == pytest.approx(losses[~is_mask].std(ddof=1))
  assert 'loss_sq_sum' not in out


def _read_events(folder):
  """Scalars from TFRecord event files: [len u64][crc u32][data][crc u32]."""
  scalars = {}
  for path in folder.glob('events.out.tfevents.*'):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars


def test_metric_writer_writes_jsonl_and_tensorboard(tmp_path):
  writer = metrics.MetricWriter(tmp_path / 'm.jsonl', tensorboard_dir=tmp_path / 'tb')
  writer.write(10, {'loss': 2.5, 'note': 'text', 'finite': True})
  writer.write(20, {'loss': 2.0})
  writer.write(20, {'heldout/all/loss': 1.5}, jsonl=False)
  writer.close()
  lines = [json.loads(l) for l in (tmp_path / 'm.jsonl').read_text().splitlines()]
  assert lines == [{'step': 10, 'loss': 2.5, 'note': 'text', 'finite': True},
                   {'step': 20, 'loss': 2.0}]
  scalars = _read_events(tmp_path / 'tb')
  assert scalars['train/loss'] == [(10, 2.5), (20, 2.0)]
  assert scalars['heldout/all/loss'] == [(20, 1.5)]
  assert 'train/note' not in scalars and 'train/finite' not in scalars


def test_branch_scalars_go_to_their_own_tensorboard_run(tmp_path):
  writer = metrics.MetricWriter(tmp_path / 'm.jsonl', tensorboard_dir=tmp_path / 'tb')
  writer.write(10, {'loss': 2.5})
  writer.write(20, {'loss': 2.0})
  writer.write(15, {'loss': 1.8, 'branch': 'cooldown'})
  writer.write(20, {'loss': 1.7, 'branch': 'cooldown'})
  writer.close()
  assert _read_events(tmp_path / 'tb')['train/loss'] == [(10, 2.5), (20, 2.0)]
  branch = _read_events(tmp_path / 'tb' / 'cooldown')['train/loss']
  assert [s for s, _ in branch] == [15, 20]
  assert [v for _, v in branch] == pytest.approx([1.8, 1.7])   # float32 in the event
  lines = [json.loads(l) for l in (tmp_path / 'm.jsonl').read_text().splitlines()]
  assert [l.get('branch') for l in lines] == [None, None, 'cooldown', 'cooldown']


def test_disabled_writer_writes_nothing(tmp_path):
  writer = metrics.MetricWriter(tmp_path / 'm.jsonl', enabled=False,
                                tensorboard_dir=tmp_path / 'tb')
  writer.write(1, {'loss': 1.0})
  writer.close()
  assert not (tmp_path / 'm.jsonl').exists() and not (tmp_path / 'tb').exists()
