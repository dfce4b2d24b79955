"""The entry point: checkpoint discovery, recipes, result files and resume."""

import json
import threading

import jax
import numpy as np
import pytest

from configs import finetune as finetune_config
from lm_data.finetune import run
from lm_data.finetune import trainer
from lm_data.finetune.tasks import base
from lm_data.train import checkpoint
from tests.finetune import fakes
from tests.finetune import test_trainer


def _config(**overrides):
  """configs/finetune.py's config for short test runs: no minimum of steps, as
  many random-init seeds as `seeds`."""
  config = finetune_config.get_config()
  config.update({'random_seeds': 0, 'min_train_steps': 0, **overrides})
  return config


def test_find_checkpoints(tmp_path):
  for arm in ('b', 'a'):
    (tmp_path / 'arms' / arm / 'checkpoints').mkdir(parents=True)
  (tmp_path / 'arms' / 'no_ckpt').mkdir()
  found = run.find_checkpoints(tmp_path)
  assert [name for name, _ in found] == ['a', 'b']
  assert run.find_checkpoints(tmp_path, arms=['b']) == [
      ('b', tmp_path / 'arms' / 'b' / 'checkpoints')]
  with pytest.raises(ValueError, match="unknown arm.*'?c'?.*known: a, b"):
    run.find_checkpoints(tmp_path, arms=['c'])
  single = tmp_path / 'arms' / 'a' / 'checkpoints'
  assert run.find_checkpoints(single) == [('a', single)]
  assert run.find_checkpoints(single, arm='x') == [('x', single)]
  with pytest.raises(FileNotFoundError, match='config.checkpoint'):
    run.find_checkpoints(tmp_path / 'missing')


def test_task_recipe_overrides_and_max_len_cap():
  task = base.Task('t', 'classification', 'accuracy', ('a', 'b'),
                   base.FinetuneSettings(learning_rate=1e-3, epochs=3, max_len=64),
                   load=lambda: None, description='')
  config = _config(overrides={'*': {'epochs': 1, 'max_train_examples': 10},
                              't': {'learning_rate': 0.5}})
  recipe, limits = run.task_recipe(task, config, 32)
  assert recipe == base.FinetuneSettings(learning_rate=0.5, epochs=1, max_len=32)
  assert limits == run.Limits(10, config.max_dev_examples,
                              config.max_test_examples,
                              config.min_train_steps)
  _, limits = run.task_recipe(task, _config(overrides={'t': {'min_train_steps': 7,
                                                             'max_test_examples': 5}}), 32)
  assert (limits.min_steps, limits.test, limits.examples('test_x')) == (7, 5, 5)
  with pytest.raises(ValueError, match="unknown override.*epoch.*known: .*epochs"):
    run.task_recipe(task, _config(overrides={'t': {'epoch': 1}}), 32)


def test_cap_is_deterministic_subsample():
  items = list(range(100))
  capped = run.cap(items, 10)
  assert capped == run.cap(items, 10) and len(set(capped)) == 10
  assert capped == sorted(capped) and capped != items[:10]
  assert run.cap(items, 0) == items and run.cap(items, 200) == items


def test_run_task_writes_results_controls_and_resumes(tmp_path):
  """End to end on a synthetic task: files, schema, controls, items, resume."""
  model_config = fakes.tiny_config()
  recipe = base.FinetuneSettings(learning_rate=1e-2, epochs=2, batch_size=32, max_len=16)
  examples = test_trainer._synthetic(600, 0)
  splits = {'train': examples[:400], 'dev': examples[400:500],
            'test': examples[500:], 'test_extra': examples[500:520]}
  task = base.Task('synthetic', 'classification', 'accuracy', ('bad', 'good'),
                   recipe, load=lambda: base.TaskData(splits), description='')
  tuner = trainer.FineTuner('classification', model_config, 2, recipe, 400)
  encoder = jax.device_get(tuner.init_params(123)['encoder'])
  pretrained = checkpoint.Pretrained(model_config, encoder, tmp_path / 'tok',
                                     step=7, meta={})
  config = _config(seeds=1, probe_seeds=2, max_dev_examples=50,
                   max_test_examples=0, min_train_steps=30)
  task_dir = tmp_path / 'arms' / 'arm0' / 'eval' / task.name
  run.run_task(task, task.load(), pretrained=pretrained,
               tokenizer=fakes.FakeTokenizer(), config=config, task_dir=task_dir,
               arm='arm0')
  assert sorted(p.name for p in task_dir.iterdir()) == [
      'baseline.json', 'items.json', 'lexical.json', 'probe.json',
      'random_probe_seed_0.json', 'random_probe_seed_1.json', 'random_seed_0.json',
      'seed_0.json']
  result = json.loads((task_dir / 'seed_0.json').read_text())
  for key in ('arm', 'task', 'seed', 'init', 'metrics', 'main_metric',
              'best_epoch', 'train_examples', 'seconds', 'predictions'):
    assert key in result
  assert (result['arm'], result['init'], result['seed']) == ('arm0', 'pretrained', 0)
  assert set(result['metrics']) == {'dev', 'test', 'test_extra'}
  # dev capped, test whole; at least min_train_steps optimizer steps (12/epoch).
  assert result['split_sizes'] == {'train': 400, 'dev': 50, 'test': 100,
                                   'test_extra': 20}
  assert result['train_steps'] == 36 and len(result['dev_history']) <= 3
  # Per-item predictions line up with items.json and give the stored metric.
  items = json.loads((task_dir / 'items.json').read_text())
  gold = np.array(items['splits']['test']['gold'])
  assert gold.tolist() == [e.label for e in examples[500:]]
  for name in ('seed_0.json', 'probe.json', 'lexical.json', 'baseline.json',
               'random_probe_seed_1.json'):
    r = json.loads((task_dir / name).read_text())
    preds = np.array(r['predictions']['test'])
    assert preds.shape == gold.shape, name
    assert r['metrics']['test']['accuracy'] == pytest.approx(np.mean(preds == gold))
  baseline = json.loads((task_dir / 'baseline.json').read_text())
  assert baseline['init'] == 'baseline' and baseline['seed'] is None
  assert result['metrics']['test']['accuracy'] > baseline['metrics']['test']['accuracy']
  # The keyword task is linearly solvable from bag of words and from embeddings.
  lexical = json.loads((task_dir / 'lexical.json').read_text())
  assert lexical['metrics']['test']['accuracy'] > 0.95
  probe = json.loads((task_dir / 'probe.json').read_text())
  assert probe['seed'] is None and probe['layer'] in probe['layers']
  assert set(probe['layers']) == {'embeddings', 'layer_0'}
  assert probe['metrics']['test']['accuracy'] > 0.9

  assert run.result_names(config) == [
      'seed_0.json', 'probe.json', 'random_seed_0.json', 'random_probe_seed_0.json',
      'random_probe_seed_1.json', 'lexical.json', 'baseline.json']
  summary = run.summarise(task_dir, run.result_names(config))
  assert set(summary) == {'pretrained', 'probe', 'random', 'random_probe',
                          'lexical', 'baseline'}
  assert summary['pretrained']['test']['accuracy']['mean'] == pytest.approx(
      result['metrics']['test']['accuracy'])
  assert summary['random_probe']['files'] == ['random_probe_seed_0.json',
                                              'random_probe_seed_1.json']
  assert summary['random_probe']['test']['accuracy']['n'] == 2
  assert set(summary['probe']['layers']) == {'embeddings', 'layer_0'}

  before = {p.name: p.stat().st_mtime_ns for p in task_dir.iterdir()}
  run.run_task(task, task.load(), pretrained=pretrained,
               tokenizer=fakes.FakeTokenizer(), config=config, task_dir=task_dir,
               arm='arm0')
  assert before == {p.name: p.stat().st_mtime_ns for p in task_dir.iterdir()}

  # Another arm of the same workdir: controls are copied, not recomputed.
  other_dir = tmp_path / 'arms' / 'arm1' / 'eval' / task.name
  other = checkpoint.Pretrained(model_config, jax.tree.map(lambda x: -x, encoder),
                                tmp_path / 'tok', step=9, meta={})
  run.run_task(task, task.load(), pretrained=other,
               tokenizer=fakes.FakeTokenizer(), config=config, task_dir=other_dir,
               arm='arm1')
  for name in ('random_seed_0.json', 'random_probe_seed_0.json', 'lexical.json',
               'baseline.json'):
    copied = json.loads((other_dir / name).read_text())
    original = json.loads((task_dir / name).read_text())
    assert copied['arm'] == 'arm1'
    assert copied['metrics'] == original['metrics']
    assert copied['seconds'] == original['seconds']
  for name in ('seed_0.json', 'probe.json'):
    fresh = json.loads((other_dir / name).read_text())
    assert fresh['checkpoint_step'] == 9
    assert fresh['key'] != json.loads((task_dir / name).read_text())['key']


def test_run_task_stops_between_results_and_resumes_the_rest(tmp_path, monkeypatch):
  """A stop set during one result lets it finish and starts no other; the
  same call without a stop then writes only the missing results."""
  model_config = fakes.tiny_config()
  recipe = base.FinetuneSettings(learning_rate=1e-2, epochs=1, batch_size=32, max_len=16)
  examples = test_trainer._synthetic(300, 0)
  splits = {'train': examples[:200], 'dev': examples[200:250], 'test': examples[250:]}
  task = base.Task('synthetic', 'classification', 'accuracy', ('bad', 'good'),
                   recipe, load=lambda: base.TaskData(splits), description='')
  tuner = trainer.FineTuner('classification', model_config, 2, recipe, 200)
  pretrained = checkpoint.Pretrained(
      model_config, jax.device_get(tuner.init_params(1)['encoder']), tmp_path / 'tok',
      step=1, meta={})
  config = _config(seeds=1, probe_seeds=1)
  stop = threading.Event()
  probe = run._Task.probe

  def probe_then_stop(self, init, seed):
    probe(self, init, seed)
    stop.set()   # as SIGTERM would, from another thread

  monkeypatch.setattr(run._Task, 'probe', probe_then_stop)
  kwargs = dict(pretrained=pretrained, tokenizer=fakes.FakeTokenizer(), config=config,
                task_dir=tmp_path / 'eval', arm='a')
  with pytest.raises(trainer.Stopped, match='a synthetic: stopped before random_probe seed 0'):
    run.run_task(task, task.load(), stop=stop, **kwargs)
  assert sorted(p.name for p in (tmp_path / 'eval').iterdir()) == [
      'baseline.json', 'items.json', 'lexical.json', 'probe.json']
  kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / 'eval').iterdir()}
  monkeypatch.setattr(run._Task, 'probe', probe)
  run.run_task(task, task.load(), **kwargs)
  after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / 'eval').iterdir()}
  assert sorted(after) == sorted([*kept, 'random_probe_seed_0.json', 'random_seed_0.json',
                                  'seed_0.json'])
  assert {k: after[k] for k in kept} == kept


def test_seeds_per_init_and_inits_per_kind():
  config = _config(seeds=1, random_seeds=3, probe_seeds=2)
  assert [run.num_seeds(config, i) for i in ('pretrained', 'random', 'random_probe')] == [1, 3, 2]
  assert run.num_seeds(_config(seeds=2, random_seeds=0), 'random') == 2
  assert run.result_names(config) == [
      'seed_0.json', 'probe.json', 'random_seed_0.json', 'random_seed_1.json',
      'random_seed_2.json', 'random_probe_seed_0.json', 'random_probe_seed_1.json',
      'lexical.json', 'baseline.json']
  assert run.active_inits(_config(controls=False)) == ['pretrained', 'probe']
  assert run.active_inits(_config(probes=False, probe_seeds=0)) == [
      'pretrained', 'random', 'lexical', 'baseline']
  assert run.active_inits(config, 'qa') == ['pretrained', 'random', 'baseline']


def _synthetic_task(tmp_path, *, num, train, dev, epochs, data_seed, init_seed, step):
  """A keyword classification task (train / dev / test splits of `num`
  synthetic examples) and a random 'pretrained' encoder for it."""
  model_config = fakes.tiny_config()
  recipe = base.FinetuneSettings(learning_rate=1e-2, epochs=epochs, batch_size=32, max_len=16)
  examples = test_trainer._synthetic(num, data_seed)
  splits = {'train': examples[:train], 'dev': examples[train:train + dev],
            'test': examples[train + dev:]}
  task = base.Task('synthetic', 'classification', 'accuracy', ('bad', 'good'),
                   recipe, load=lambda: base.TaskData(splits), description='')
  encoder = jax.device_get(trainer.FineTuner('classification', model_config, 2, recipe,
                                             train).init_params(init_seed)['encoder'])
  return task, checkpoint.Pretrained(model_config, encoder, tmp_path / 'tok', step=step,
                                     meta={})


def test_controls_come_from_the_cache_in_another_workdir(tmp_path, monkeypatch):
  """Controls computed in one workdir are reused by a run in another (same
  settings, tokenizer and model config) without computing them; changed
  settings or controls_cache=False compute them again; a finished workdir
  fills an empty cache."""
  monkeypatch.setenv(run.CONTROLS_CACHE_ENV, str(tmp_path / 'cache'))
  task, pretrained = _synthetic_task(tmp_path, num=300, train=200, dev=50, epochs=1,
                                     data_seed=1, init_seed=5, step=3)
  config = _config(seeds=1, probe_seeds=1)
  controls = ('random_seed_0.json', 'random_probe_seed_0.json', 'lexical.json',
              'baseline.json')

  def evaluate(workdir, config):
    task_dir = tmp_path / workdir / 'arms' / 'a' / 'eval' / task.name
    run.run_task(task, task.load(), pretrained=pretrained,
                 tokenizer=fakes.FakeTokenizer(), config=config, task_dir=task_dir,
                 arm='a')
    return {p.name: json.loads(p.read_text()) for p in task_dir.iterdir()}

  first = evaluate('w1', config)
  cache = run.controls_cache_dir(config) / task.name
  assert sorted(p.name.split('-', 1)[1] for p in cache.iterdir()) == sorted(controls)

  computed = []
  for method in ('probe', 'finetune', 'lexical', 'baseline'):
    original = getattr(run._Task, method)
    monkeypatch.setattr(run._Task, method, lambda self, *a, _o=original, _m=method:
                        (computed.append((_m, *a)), _o(self, *a))[1])
  second = evaluate('w2', config)
  # Only the pretrained encoder's probe and fine-tuning ran; controls were copied.
  assert sorted(computed) == [('finetune', 'pretrained', 0), ('probe', 'probe', None)]
  for name in controls:
    assert second[name]['metrics'] == first[name]['metrics']
    assert second[name]['seconds'] == first[name]['seconds']

  computed.clear()
  evaluate('w3', _config(seeds=1, probe_seeds=1, patience=3))  # another key
  assert ('finetune', 'random', 0) in computed and ('lexical',) in computed
  computed.clear()
  evaluate('w4', _config(seeds=1, probe_seeds=1, controls_cache=False))
  assert ('finetune', 'random', 0) in computed and ('baseline',) in computed

  for p in cache.iterdir():  # emptied: re-reading finished w1 fills it again
    p.unlink()
  computed.clear()
  evaluate('w1', config)
  assert computed == [] and len(list(cache.iterdir())) == len(controls)


def test_learning_rate_grid_keeps_the_best_rate_on_dev(tmp_path):
  """With `learning_rates` each rate is fine-tuned from the same start and the
  best on dev is kept: its result equals a single-rate run at that rate, and
  the other rate's dev score is recorded."""
  task, pretrained = _synthetic_task(tmp_path, num=400, train=250, dev=70, epochs=2,
                                     data_seed=2, init_seed=9, step=1)

  def evaluate(name, **overrides):
    task_dir = tmp_path / name / 'arms' / 'a' / 'eval' / task.name
    run.run_task(task, task.load(), pretrained=pretrained,
                 tokenizer=fakes.FakeTokenizer(),
                 config=_config(seeds=1, controls=False, probes=False, **overrides),
                 task_dir=task_dir, arm='a')
    return json.loads((task_dir / 'seed_0.json').read_text())

  # 1e-7 barely moves the weights: the 1e-2 fit wins on dev, though listed last.
  slow = evaluate('slow', overrides={'*': {'learning_rate': 1e-7}})
  fast = evaluate('fast')
  grid = evaluate('grid', learning_rates=(1e-7, 1e-2))
  assert max(fast['dev_history']) > max(slow['dev_history'])
  assert grid['learning_rate'] == 1e-2 and fast['learning_rate'] == 1e-2
  assert grid['predictions'] == fast['predictions']
  assert grid['metrics'] == fast['metrics']
  assert grid['dev_history'] == fast['dev_history']
  assert grid['dev_by_learning_rate'] == {'1e-07': max(slow['dev_history']),
                                          '0.01': max(fast['dev_history'])}
  # The summary (hence the arm record and the report) lists the chosen rate
  # only for a grid.
  summary = {name: run.summarise(tmp_path / name / 'arms' / 'a' / 'eval' / task.name,
                                 ['seed_0.json'])['pretrained'] for name in ('fast', 'grid')}
  assert summary['grid']['chosen_learning_rates'] == [1e-2]
  assert 'chosen_learning_rates' not in summary['fast']
  # The grid is part of the key; a single rate keeps the key it had without one.
  assert len({slow['key'], fast['key'], grid['key']}) == 3
  assert evaluate('fast', learning_rates=())['key'] == fast['key']
