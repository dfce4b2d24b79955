"""finetune's entry point on a real (tiny) pretraining checkpoint and tokenizer."""

import json

import ml_collections
import pytest

from lm_data.finetune import run
from lm_data.finetune import tasks as tasks_lib
from lm_data.finetune.tasks import base
from lm_data.input_pipeline import tokenizer as tokenizer_lib
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
                   base.Recipe(learning_rate=1e-2, epochs=2, max_len=16),
                   load=lambda: base.TaskData(splits), description='')
  monkeypatch.setitem(tasks_lib.TASKS, task.name, task)

  config = ml_collections.ConfigDict(dict(
      checkpoint=str(tmp_path), tasks=[task.name], seeds=2, probe_seeds=1))
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
