"""finetune's entry point on a real (tiny) pretraining checkpoint and tokenizer."""

import json
import shutil

import pytest

from configs import finetune as finetune_config

from lm_data import errors
from lm_data.finetune import run
from lm_data.finetune import tasks as tasks_lib
from lm_data.finetune.tasks import base
from lm_data.input_pipeline import tokenizer as tokenizer_lib
from lm_data.study import run as study_run
from lm_data.train import checkpoint
from lm_data.train import trainer as pretrain_lib
from tests.finetune import test_trainer
from tests.train import fixtures

VOCAB = 64        # the model's (fixtures' batches use ids < 64)
TOKENIZER_VOCAB = 32


@pytest.mark.slow
def test_evaluate_reads_checkpoints_of_a_workdir(tmp_path, monkeypatch):
  examples = test_trainer._synthetic(300, 0)
  tok_path = tokenizer_lib.train_tokenizer(
      [e.text for e in examples] * 4, tmp_path / 'tokenizer' / 'spm.model',
      vocab_size=TOKENIZER_VOCAB, process_index=0)
  for arm in ('small', 'large'):
    pretrain_lib.pretrain(fixtures.tiny_config(), tmp_path / 'arms' / arm,
                          train_iter=fixtures.CountingIterator(), eval_sets={},
                          vocab_size=VOCAB, meta={'tokenizer_path': str(tok_path)})
  splits = {'train': examples[:200], 'dev': examples[200:250],
            'test': examples[250:]}
  task = base.Task('synthetic', 'classification', 'accuracy', ('bad', 'good'),
                   base.FinetuneSettings(learning_rate=1e-2, epochs=2, max_len=16),
                   load=lambda: base.TaskData(splits), description='')
  monkeypatch.setitem(tasks_lib.TASKS, task.name, task)

  config = finetune_config.get_config()
  config.update(dict(checkpoint=str(tmp_path), tasks=[task.name], seeds=2, probe_seeds=1,
                     random_seeds=0, min_train_steps=0))
  summaries = run.evaluate(config, tmp_path)
  assert set(summaries) == {'small', 'large'}
  for arm in ('small', 'large'):
    eval_dir = tmp_path / 'arms' / arm / 'eval'
    names = sorted(p.name for p in (eval_dir / task.name).iterdir())
    assert names == ['baseline.json', 'items.json', 'lexical.json', 'probe.json',
                     'random_probe_seed_0.json', 'random_seed_0.json',
                     'random_seed_1.json', 'seed_0.json', 'seed_1.json']
    summary = json.loads((eval_dir / 'summary.json').read_text())
    inits = summary['tasks'][task.name]['inits']
    assert inits['pretrained']['test']['accuracy']['n'] == 2
    assert inits['probe']['test']['accuracy']['n'] == 1
    assert set(inits) == {'pretrained', 'probe', 'random', 'random_probe', 'lexical',
                          'baseline'}
    assert summary['checkpoint_step'] == 6


@pytest.fixture
def moved_workdir(tmp_path):
  """A one-arm workdir written at `old/`, then moved to `new/`."""
  examples = test_trainer._synthetic(300, 0)
  tok_path = tokenizer_lib.train_tokenizer(
      [e.text for e in examples] * 4, tmp_path / 'old' / 'tokenizer' / 'spm.model',
      vocab_size=TOKENIZER_VOCAB, process_index=0)
  tokenizer = tokenizer_lib.Tokenizer.load(tok_path)
  arm_dir = tmp_path / 'old' / 'arms' / 'a'
  pretrain_lib.pretrain(fixtures.tiny_config(), arm_dir,
                        train_iter=fixtures.CountingIterator(), eval_sets={},
                        vocab_size=VOCAB,
                        meta=study_run.tokenizer_meta(tokenizer, arm_dir / 'checkpoints'))
  new = tmp_path / 'new'
  shutil.move(tmp_path / 'old', new)
  return new, tokenizer


def test_a_moved_workdir_restores_encoder_and_tokenizer(moved_workdir):
  workdir, tokenizer = moved_workdir
  pretrained = checkpoint.load_pretrained(workdir / 'arms' / 'a' / 'checkpoints')
  assert pretrained.tokenizer_path == workdir / 'tokenizer' / 'spm.model'
  loaded = run.load_tokenizer(pretrained)
  assert loaded.sha256 == tokenizer.sha256
  assert loaded.encode('good movie') == tokenizer.encode('good movie')
  assert pretrained.model_config.num_layers == fixtures.tiny_config().model.overrides.num_layers


def test_a_changed_tokenizer_is_refused(moved_workdir):
  workdir, _ = moved_workdir
  path = workdir / 'tokenizer' / 'spm.model'
  path.write_bytes(path.read_bytes() + b'\n')
  pretrained = checkpoint.load_pretrained(workdir / 'arms' / 'a' / 'checkpoints')
  with pytest.raises(errors.UserError, match=r'tokenizer .*spm.model \(sha256 \w+\) is not '
                     r'the one checkpoint .*checkpoints was trained with \(sha256 \w+\)'):
    run.load_tokenizer(pretrained)
