"""Exact resume after a crash, and read-only loading from another process."""

import json
import subprocess
import sys
import textwrap

import chex
import jax
import numpy as np
import pytest

from lm_data.train import checkpoint
from lm_data.train import trainer
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


def test_missing_checkpoint_dir_says_what_to_pass(tmp_path):
  with pytest.raises(FileNotFoundError, match='checkpoints'):
    checkpoint.load_pretrained(tmp_path / 'nope')
