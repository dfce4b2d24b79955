"""Exact resume after a crash, and read-only loading from another process."""

import dataclasses
import json
import pathlib
import shutil
import subprocess
import sys
import textwrap
import warnings

import chex
import jax
import numpy as np
import pytest

from lm_data import models
from lm_data.finetune import probe
from lm_data.finetune import trainer as finetune_trainer
from lm_data.finetune.tasks import base
from lm_data.models.bert import BertForMLM
from lm_data.train import checkpoint
from lm_data.train import optimizer
from lm_data.train import steps
from lm_data.train import trainer
from tests import entry_points
from tests.train import fixtures

VOCAB = 64
DROPOUT = {'dropout_rate': 0.1, 'attention_dropout_rate': 0.1}


class Crash(RuntimeError):
  pass


class CrashingIterator(fixtures.CountingIterator):
  """Dies when asked for batch `crash_at` (after the checkpoint before it)."""

  def __init__(self, crash_at: int):
    super().__init__()
    self.crash_at = crash_at

  def __next__(self):
    if self.k == self.crash_at:
      raise Crash(f'killed before batch {self.k}')
    return super().__next__()


def _config():
  cfg = fixtures.tiny_config(num_train_steps=6, checkpoint_every=3)
  cfg.model.overrides = {**cfg.model.overrides, **DROPOUT}  # resume must restore the RNG
  return cfg


def _params(arm_dir):
  manager = checkpoint.make_manager(arm_dir / 'checkpoints', read_only=True)
  step = manager.latest_step()
  restored = manager.restore(step, args=checkpoint.ocp.args.Composite(
      state=checkpoint.ocp.args.PyTreeRestore()))
  return step, restored.state['params']


def test_killed_run_resumes_bit_identically(tmp_path):
  meta = {'tokenizer_path': '/nowhere/spm.model'}
  straight = tmp_path / 'straight'
  trainer.pretrain(_config(), straight, train_iter=fixtures.CountingIterator(),
                   eval_sets={}, vocab_size=VOCAB, meta=meta)

  resumed = tmp_path / 'resumed'
  with pytest.raises(Crash):
    trainer.pretrain(_config(), resumed, train_iter=CrashingIterator(crash_at=4),
                     eval_sets={}, vocab_size=VOCAB, meta=meta)
  assert _params(resumed)[0] == 3
  it = fixtures.CountingIterator()
  result = trainer.pretrain(_config(), resumed, train_iter=it, eval_sets={},
                            vocab_size=VOCAB, meta=meta)
  assert result.step == 6 and it.k == 6  # resumed at batch 3, not 0

  step_a, params_a = _params(straight)
  step_b, params_b = _params(resumed)
  assert step_a == step_b == 6
  chex.assert_trees_all_equal(params_a, params_b)


def test_pretrained_encoder_loads_in_a_separate_process(tmp_path):
  arm = tmp_path / 'arm'
  trainer.pretrain(_config(), arm, train_iter=fixtures.CountingIterator(),
                   eval_sets={}, vocab_size=VOCAB,
                   meta={'tokenizer_path': str(tmp_path / 'spm.model')})
  _, params = _params(arm)
  expected = {'/'.join(k.key for k in p): float(np.asarray(v, np.float64).sum())
              for p, v in jax.tree_util.tree_leaves_with_path(params['encoder'])}
  script = textwrap.dedent(f'''
      import json, jax, numpy as np
      from lm_data.train import checkpoint
      p = checkpoint.load_pretrained({str(arm / 'checkpoints')!r})
      sums = {{'/'.join(k.key for k in path): float(np.asarray(v, np.float64).sum())
              for path, v in jax.tree_util.tree_leaves_with_path(p.encoder_params)}}
      print(json.dumps({{'sums': sums, 'step': p.step, 'tok': str(p.tokenizer_path),
                        'layers': p.model_config.num_layers}}))
  ''')
  out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                       check=True, cwd=str(fixtures.REPO_ROOT))
  got = json.loads(out.stdout.strip().splitlines()[-1])
  assert got['step'] == 6 and got['layers'] == 2
  assert got['tok'] == str(tmp_path / 'spm.model')
  assert got['sums'] == expected


def test_fused_qkv_checkpoint_serves_finetuning_and_probes(tmp_path):
  """A fused-QKV run's checkpoint keeps its layout; fine-tuning and probes read
  it, and the probe features equal those of the same weights split in three."""
  cfg = _config()
  cfg.train.num_train_steps = 3
  cfg.model.overrides = {**cfg.model.overrides, 'fused_qkv': True}
  arm = tmp_path / 'arm'
  trainer.pretrain(cfg, arm, train_iter=fixtures.CountingIterator(), eval_sets={},
                   vocab_size=VOCAB, meta={'tokenizer_path': '/nowhere/spm.model'})
  pretrained = checkpoint.load_pretrained(arm / 'checkpoints')
  assert pretrained.model_config.fused_qkv
  assert sorted(pretrained.encoder_params['layer_0']['attention']) == ['out', 'qkv']
  tuner = finetune_trainer.FineTuner('classification', pretrained.model_config, 2,
                                     base.FinetuneSettings(max_len=16), 8)
  params = tuner.init_params(0, pretrained.encoder_params)
  chex.assert_trees_all_equal(params['encoder'], pretrained.encoder_params)
  rng = np.random.default_rng(0)
  features = {'input_ids': rng.integers(5, VOCAB, (4, 16)).astype(np.int32),
              'type_ids': np.zeros((4, 16), np.int32),
              'position_ids': np.broadcast_to(np.arange(16, dtype=np.int32), (4, 16)),
              'segment_ids': np.ones((4, 16), np.int32)}
  fused = probe.extract_rows(pretrained.model_config, pretrained.encoder_params, features,
                             'classification')
  separate = probe.extract_rows(
      dataclasses.replace(pretrained.model_config, fused_qkv=False),
      models.convert_qkv_params(pretrained.encoder_params, fused=False), features,
      'classification')
  np.testing.assert_allclose(fused, separate, atol=1e-5, rtol=1e-5)
  # A checkpoint written before the option existed has no such field: separate.
  old = checkpoint.model_config_to_dict(pretrained.model_config)
  del old['fused_qkv']
  assert not checkpoint.BertConfig(**old).fused_qkv


def test_missing_checkpoint_dir_says_what_to_pass(tmp_path):
  with pytest.raises(FileNotFoundError, match='checkpoints'):
    checkpoint.load_pretrained(tmp_path / 'nope')


# ------------------------------------------------------ damaged checkpoints ---


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  """A 6-step run with checkpoints at steps 3 and 6 (the last two are kept)."""
  arm = tmp_path_factory.mktemp('finished') / 'arm'
  trainer.pretrain(_config(), arm, train_iter=fixtures.CountingIterator(), eval_sets={},
                   vocab_size=VOCAB, meta={'tokenizer_path': '/nowhere/spm.model'})
  assert sorted(p.name for p in (arm / 'checkpoints').iterdir()) == ['3', '6']
  return arm


def _data_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
  """Orbax's (OCDBT) array data files of a step, largest first."""
  return sorted((step_dir / 'state').rglob('d/*'), key=lambda p: -p.stat().st_size)


def _truncate(path: pathlib.Path) -> None:
  path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def _flip_64_bytes(path: pathlib.Path) -> None:
  """Same size, 64 bytes inverted mid-file: Orbax itself loads this silently."""
  data = bytearray(path.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
  path.write_bytes(bytes(data))


def _change_values(step_dir: pathlib.Path) -> None:
  """Rewrites the step's state as valid Orbax data with one value changed.

  What flipped bytes do when they still decompress: only the checksums see it.
  """
  checkpointer = checkpoint.ocp.PyTreeCheckpointer()
  with warnings.catch_warnings():  # "Sharding info not provided": numpy is what we want
    warnings.simplefilter('ignore', UserWarning)
    tree = checkpointer.restore(step_dir / 'state')
  embedding = np.array(tree['params']['encoder']['token_embed']['embedding'])
  embedding[0, 0] += 1.0
  tree['params']['encoder']['token_embed']['embedding'] = embedding
  shutil.rmtree(step_dir / 'state')
  checkpointer.save(step_dir / 'state', tree)


def test_changed_values_are_caught_by_the_checksums(finished_run, tmp_path):
  ckpt = tmp_path / 'checkpoints'
  shutil.copytree(finished_run / 'checkpoints', ckpt)
  _change_values(ckpt / '6')
  cfg = _config()
  abstract = jax.eval_shape(lambda: steps.create_train_state(
      BertForMLM(trainer.model_config_for(cfg, VOCAB)), optimizer.make_optimizer(cfg.train),
      seq_len=cfg.seq_len, max_predictions=cfg.mask.max_predictions, seed=cfg.seed))
  manager = checkpoint.make_manager(ckpt)
  restored = checkpoint.restore_latest(manager, abstract)
  manager.close()
  assert restored.step == 3 and int(restored.state.step) == 3
  assert restored.skipped == [(6, f'checkpoint {ckpt}/6/state is corrupt: array '
                                  'params/encoder/token_embed/embedding does not match '
                                  'its checksum')]
  assert sorted(p.name for p in ckpt.iterdir()) == ['3', '6.corrupt']


@pytest.mark.parametrize('damage', [
    lambda step_dir: _truncate(_data_files(step_dir)[0]),
    lambda step_dir: _flip_64_bytes(_data_files(step_dir)[0]),
], ids=['truncated', 'flipped'])
def test_damaged_latest_checkpoint_falls_back_to_the_one_before(
    finished_run, tmp_path, damage):
  arm = tmp_path / 'arm'
  shutil.copytree(finished_run, arm)
  damage(arm / 'checkpoints' / '6')
  it = fixtures.CountingIterator()
  result = trainer.pretrain(_config(), arm, train_iter=it, eval_sets={},
                            vocab_size=VOCAB, meta={'tokenizer_path': '/nowhere/spm.model'})
  assert result.start_step == 3 and result.step == 6 and it.k == 6
  _, params = _params(arm)  # step 6 again, saved by the resumed run
  chex.assert_trees_all_equal(params, _params(finished_run)[1])
  fallback = [r for r in map(json.loads, (arm / 'metrics.jsonl').read_text().splitlines())
              if r.get('event') == 'checkpoint_fallback']
  assert len(fallback) == 1 and fallback[0]['step'] == 3 and fallback[0]['corrupt_step'] == 6
  assert 'checkpoints/6' in fallback[0]['reason']
  assert (arm / 'checkpoints' / '6.corrupt').is_dir()  # kept for a post-mortem


def test_every_damaged_step_is_an_error_not_a_fresh_start(finished_run, tmp_path):
  arm = tmp_path / 'arm'
  shutil.copytree(finished_run, arm)
  for step in ('3', '6'):
    _truncate(_data_files(arm / 'checkpoints' / step)[0])
  with pytest.raises(checkpoint.CorruptCheckpointError, match='no checkpoint in .* can be restored'):
    trainer.pretrain(_config(), arm, train_iter=fixtures.CountingIterator(), eval_sets={},
                     vocab_size=VOCAB, meta={'tokenizer_path': '/nowhere/spm.model'})


def test_downstream_loading_refuses_changed_values(finished_run, tmp_path):
  ckpt = tmp_path / 'checkpoints'
  shutil.copytree(finished_run / 'checkpoints', ckpt)
  _change_values(ckpt / '6')
  with pytest.raises(checkpoint.CorruptCheckpointError) as error:
    checkpoint.load_pretrained(ckpt)
  assert str(error.value) == (
      f'checkpoint {ckpt}/6/state is corrupt: array params/encoder/token_embed/embedding '
      'does not match its checksum; pretrain again, or load step 3 (finetune: '
      '--config.step=3)')
  checkpoint.load_pretrained(ckpt, step=3)  # the step before is intact


@pytest.mark.parametrize('damage', [_truncate, _flip_64_bytes])
def test_downstream_loading_never_returns_a_damaged_encoder(finished_run, tmp_path, damage):
  """Each data file damaged in turn: the encoder loads intact or not at all."""
  intact = checkpoint.load_pretrained(finished_run / 'checkpoints').encoder_params
  refused = 0
  for k, path in enumerate(_data_files(finished_run / 'checkpoints' / '6')):
    ckpt = tmp_path / str(k)
    shutil.copytree(finished_run / 'checkpoints', ckpt)
    damage(ckpt / path.relative_to(finished_run / 'checkpoints'))
    try:
      encoder = checkpoint.load_pretrained(ckpt).encoder_params
    except checkpoint.CorruptCheckpointError as e:
      refused += 1
      assert '\n' not in str(e) and f'checkpoint {ckpt}/6/state ' in str(e)
    else:
      chex.assert_trees_all_equal(encoder, intact)  # the damage missed the encoder
  assert refused


def test_finetune_refuses_a_damaged_checkpoint_in_one_line(finished_run, tmp_path):
  ckpt = tmp_path / 'arm' / 'checkpoints'
  shutil.copytree(finished_run / 'checkpoints', ckpt)
  for path in _data_files(ckpt / '6'):  # wherever the encoder's bytes are
    _flip_64_bytes(path)
  result = entry_points.run('finetune.py', '--config=configs/finetune.py:smoke',
                            f'--config.checkpoint={ckpt}', f'--workdir={tmp_path / "out"}')
  entry_points.assert_one_line_error(result, f'checkpoint {ckpt}/6/state ',
                                     '--config.step=3')
  assert not (tmp_path / 'out' / 'arms').exists()


def test_the_lowest_step_survives_a_restart_of_its_manager(tmp_path):
  """Early stopping's kept step is older than the last two: a resumed run's
  manager must know its metric, or its next save deletes it."""
  state = {'w': np.arange(3.0)}

  def save(manager, step, loss):
    checkpoint.save(manager, step, state, {'k': step}, {}, force=True,
                    metrics={'selection_loss': loss})

  manager = checkpoint.make_manager(tmp_path, keep_lowest='selection_loss', async_save=False)
  for step, loss in [(2, 5.0), (4, 3.0), (6, 4.0), (8, 4.5)]:
    save(manager, step, loss)
  manager.close()
  manager = checkpoint.make_manager(tmp_path, keep_lowest='selection_loss', async_save=False)
  save(manager, 10, 4.6)
  assert manager.all_steps() == [4, 8, 10]
  manager.close()
