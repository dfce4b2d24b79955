"""Entry point: checkpoints on disk -> tasks x seeds x inits -> JSON results.

Files written under `WORKDIR/arms/<arm>/eval/`:
  <task>/seed_<k>.json         pretrained encoder, fine-tuning seed k
  <task>/random_seed_<k>.json  random-init encoder control, seed k
  <task>/baseline.json         majority-class / mean-prediction control (seed null)
  summary.json                 per task and init: mean, std, 95% bootstrap CI
                               over seeds of every metric of every eval split
Each result follows docs/design.md (arm, task, seed, init, metrics per split,
main_metric, best_epoch, train_examples, seconds) plus checkpoint_step, recipe,
dev_history and truncation counts. A result whose file exists for the same
checkpoint step is not recomputed, so a killed evaluation resumes.
"""

from collections.abc import Sequence
import dataclasses
import json
import pathlib
import time

from absl import logging
import ml_collections
import numpy as np

from lm_data.finetune import controls
from lm_data.finetune import encoding
from lm_data.finetune import metrics
from lm_data.finetune import tasks as tasks_lib
from lm_data.finetune import trainer
from lm_data.input_pipeline import tokenizer as tokenizer_lib
from lm_data.train import checkpoint

# Seed of the deterministic subsample that caps large splits.
CAP_SEED = 0
# Settings a config may leave out (configs/finetune.py documents each).
DEFAULTS = dict(
    checkpoint='', arms=[], arm='', step=None, tasks=[], seeds=3, controls=True,
    overrides={}, max_train_examples=1000, max_eval_examples=500, patience=2)
EVAL_SUBDIR = 'eval'
SUMMARY_NAME = 'summary.json'
CHECKPOINTS_SUBDIR = 'checkpoints'


def result_name(init: str, seed: int | None) -> str:
  if init == 'baseline':
    return 'baseline.json'
  prefix = '' if init == 'pretrained' else f'{init}_'
  return f'{prefix}seed_{seed}.json'


def find_checkpoints(path: str | pathlib.Path, arms: Sequence[str] = (),
                     arm: str = '') -> list[tuple[str, pathlib.Path]]:
  """(arm name, checkpoint dir) pairs for a checkpoint dir or a study workdir.

  A workdir holds `arms/<arm>/checkpoints`; `arms` restricts which are used. A
  single checkpoint dir is named `arm`, else its run folder's name.
  """
  path = pathlib.Path(path)
  if (path / 'arms').is_dir():
    found = {d.name: d / CHECKPOINTS_SUBDIR for d in sorted((path / 'arms').iterdir())
             if (d / CHECKPOINTS_SUBDIR).is_dir()}
    if not found:
      raise FileNotFoundError(f'{path}/arms holds no <arm>/{CHECKPOINTS_SUBDIR}')
    unknown = [a for a in arms if a not in found]
    if unknown:
      raise ValueError(f'unknown arm(s) {", ".join(unknown)} in {path}; '
                       f'known: {", ".join(found)}')
    return [(a, found[a]) for a in (arms or found)]
  if not path.is_dir():
    raise FileNotFoundError(
        f'no checkpoint directory {path}; set config.checkpoint to a pretraining '
        'checkpoint dir (WORKDIR/arms/ARM/checkpoints) or a study workdir')
  name = arm or (path.parent.name if path.name == CHECKPOINTS_SUBDIR else path.name)
  return [(name, path)]


def cap(examples: list, limit: int) -> list:
  """A deterministic subsample of at most `limit` examples (<= 0: all)."""
  if limit <= 0 or len(examples) <= limit:
    return examples
  keep = np.sort(np.random.default_rng(CAP_SEED).permutation(len(examples))[:limit])
  return [examples[i] for i in keep]


def settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with DEFAULTS filled in for absent fields."""
  out = ml_collections.ConfigDict(DEFAULTS)
  out.update(config)
  return out


def task_recipe(task: tasks_lib.Task, config: ml_collections.ConfigDict,
                model_max_len: int) -> tuple[tasks_lib.Recipe, int, int]:
  """(recipe, max train, max eval examples) of a task after config overrides.

  `config.overrides['*']` applies to every task, then `overrides[task]`; keys
  are Recipe fields or max_train_examples / max_eval_examples. max_len is
  capped by the model's.
  """
  values = {**dataclasses.asdict(task.recipe),
            'max_train_examples': config.max_train_examples,
            'max_eval_examples': config.max_eval_examples}
  for key in ('*', task.name):
    override = dict(config.overrides.get(key, {}))
    unknown = sorted(set(override) - set(values))
    if unknown:
      raise ValueError(f'unknown override(s) {", ".join(unknown)} for {key!r}; '
                       f'known: {", ".join(sorted(values))}')
    values.update(override)
  max_train, max_eval = values.pop('max_train_examples'), values.pop('max_eval_examples')
  recipe = tasks_lib.Recipe(**values)
  if recipe.max_len > model_max_len:
    logging.warning('%s: max_len %d > the model max_len %d; using %d', task.name,
                    recipe.max_len, model_max_len, model_max_len)
    recipe = dataclasses.replace(recipe, max_len=model_max_len)
  return recipe, max_train, max_eval


def _write_json(path: pathlib.Path, obj) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix('.tmp')
  tmp.write_text(json.dumps(obj, indent=1))
  tmp.replace(path)


def _done(path: pathlib.Path, step: int) -> bool:
  if not path.exists():
    return False
  try:
    return json.loads(path.read_text()).get('checkpoint_step') == step
  except json.JSONDecodeError:
    return False


def run_task(task: tasks_lib.Task, data: tasks_lib.TaskData, *,
             pretrained: checkpoint.Pretrained, tokenizer: encoding.Tokenizer,
             config: ml_collections.ConfigDict, task_dir: pathlib.Path,
             arm: str) -> None:
  """Fine-tunes and evaluates one task for every init and seed; writes results."""
  config = settings(config)
  recipe, max_train, max_eval = task_recipe(task, config,
                                            pretrained.model_config.max_len)
  inits = controls.INITS if config.controls else ('pretrained',)
  splits = {name: cap(examples, max_train if name == 'train' else max_eval)
            for name, examples in data.splits.items()}
  encoded = {}
  for name, examples in splits.items():
    encoded[name] = encoding.encode(tokenizer, task.kind, examples, recipe.max_len)
    if len(encoded[name]) == 0 and name in tasks_lib.SPLITS:
      raise ValueError(f'task {task.name}: split {name!r} is empty after encoding')
    if len(encoded[name]) == 0:
      logging.warning('%s: extra test split %s is empty; skipped', task.name, name)
      del encoded[name]
  eval_splits = [s for s in encoded if s != 'train']
  common = {
      'arm': arm, 'task': task.name, 'main_metric': task.main_metric,
      'train_examples': len(encoded['train']),
      'checkpoint_step': pretrained.step, 'recipe': dataclasses.asdict(recipe),
      'skipped_source_records': data.skipped,
      'truncated': {s: e.truncated for s, e in encoded.items()},
      'split_sizes': {s: len(e) for s, e in encoded.items()}}

  if 'baseline' in inits:
    path = task_dir / result_name('baseline', None)
    if not _done(path, pretrained.step):
      start = time.time()
      split_metrics = {s: trainer.score(
          task.kind, task.num_labels,
          controls.baseline_predictions(task.kind, encoded['train'], encoded[s]),
          encoded[s].targets) for s in eval_splits}
      _write_json(path, {**common, 'seed': None, 'init': 'baseline',
                         'metrics': split_metrics, 'best_epoch': 0,
                         'seconds': time.time() - start})

  tuner = None
  for init in (i for i in controls.TRAINED_INITS if i in inits):
    for seed in range(config.seeds):
      path = task_dir / result_name(init, seed)
      if _done(path, pretrained.step):
        continue
      tuner = tuner or trainer.FineTuner(task.kind, pretrained.model_config,
                                         task.num_labels, recipe,
                                         len(encoded['train']))
      start = time.time()
      params = tuner.init_params(
          seed, pretrained.encoder_params if init == 'pretrained' else None)
      fit = tuner.fit(params, encoded['train'], encoded['dev'], seed=seed,
                      main_metric=task.main_metric, patience=config.patience)
      split_metrics = {s: tuner.evaluate(fit.params, encoded[s]) for s in eval_splits}
      seconds = time.time() - start
      logging.info('%s %s %s seed %d: test %s %.4f (%.1fs)', arm, task.name, init,
                   seed, task.main_metric, split_metrics['test'][task.main_metric],
                   seconds)
      _write_json(path, {**common, 'seed': seed, 'init': init,
                         'metrics': split_metrics, 'best_epoch': fit.best_epoch,
                         'dev_history': fit.dev_history, 'seconds': seconds})


def summarise(task_dir: pathlib.Path) -> dict:
  """Per init: {split: {metric: mean/std/ci95/n}} over the seeds found on disk."""
  by_init: dict[str, list[dict]] = {}
  for path in sorted(task_dir.glob('*.json')):
    result = json.loads(path.read_text())
    by_init.setdefault(result['init'], []).append(result)
  summary = {}
  for init, results in by_init.items():
    summary[init] = {
        split: {metric: metrics.mean_std_ci([r['metrics'][split][metric]
                                             for r in results])
                for metric in values}
        for split, values in results[0]['metrics'].items()}
  return summary


def evaluate_arm(config: ml_collections.ConfigDict,
                 pretrained: checkpoint.Pretrained, eval_dir: str | pathlib.Path,
                 *, arm: str) -> dict:
  """All configured tasks for one pretrained encoder; returns the summary."""
  config = settings(config)
  eval_dir = pathlib.Path(eval_dir)
  tokenizer = tokenizer_lib.Tokenizer.load(pretrained.tokenizer_path)
  summary = {'arm': arm, 'checkpoint_step': pretrained.step, 'tasks': {}}
  for name in config.tasks or tasks_lib.LOCAL_TASKS:
    task = tasks_lib.get_task(name)
    start = time.time()
    run_task(task, task.load(), pretrained=pretrained, tokenizer=tokenizer,
             config=config, task_dir=eval_dir / name, arm=arm)
    logging.info('%s: %s done in %.1fs', arm, name, time.time() - start)
    summary['tasks'][name] = {'kind': task.kind, 'main_metric': task.main_metric,
                              'inits': summarise(eval_dir / name)}
  _write_json(eval_dir / SUMMARY_NAME, summary)
  return summary


def evaluate_checkpoint(config: ml_collections.ConfigDict,
                        ckpt_dir: str | pathlib.Path, eval_dir: str | pathlib.Path,
                        *, arm: str) -> dict:
  """Reads the encoder of `ckpt_dir` (read-only) and evaluates it."""
  pretrained = checkpoint.load_pretrained(ckpt_dir, settings(config).step)
  return evaluate_arm(config, pretrained, eval_dir, arm=arm)


def evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path
             ) -> dict[str, dict]:
  """The binary's entry: every arm found at config.checkpoint -> summaries.

  Results land in `workdir/arms/<arm>/eval/`.
  """
  config = settings(config)
  for name in config.tasks:
    tasks_lib.get_task(name)   # fail on a typo before any work
  workdir = pathlib.Path(workdir)
  summaries = {}
  for arm, ckpt_dir in find_checkpoints(config.checkpoint, config.arms, config.arm):
    eval_dir = workdir / 'arms' / arm / EVAL_SUBDIR
    summaries[arm] = evaluate_checkpoint(config, ckpt_dir, eval_dir, arm=arm)
  return summaries
