"""Entry point: checkpoints on disk -> tasks x seeds x inits -> JSON results.

Files written under `WORKDIR/arms/<arm>/eval/`:
  <task>/seed_<k>.json         pretrained encoder, fine-tuning seed k
  <task>/random_seed_<k>.json  random-init encoder control, seed k
  <task>/baseline.json         majority-class / mean-prediction control
                               (seed null)
  summary.json                 per task and init: mean, std, 95% bootstrap CI
                               over seeds of every metric of every eval split
Each result follows docs/design.md (arm, task, seed, init, metrics per split,
main_metric, best_epoch, train_examples, seconds) plus checkpoint_step, recipe,
dev_history, split sizes, truncation counts and `key`, a hash of everything
the result depends on (task settings, tokenizer, model config and, for the
pretrained init, the checkpoint step). A result on disk with the same key is
not recomputed, so a killed evaluation resumes; control results (random,
baseline) do not depend on the arm and are copied from a sibling arm of the
same workdir when their key matches, so controls cost once per ablation.
"""

from collections.abc import Sequence
import dataclasses
import hashlib
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
    checkpoint='', arms=(), arm='', step=None, tasks=(), seeds=3, controls=True,
    overrides={}, max_train_examples=1000, max_eval_examples=500, patience=2)
EVAL_SUBDIR = 'eval'
SUMMARY_NAME = 'summary.json'
CHECKPOINTS_SUBDIR = 'checkpoints'
# Hex characters of the settings hash stored in each result as 'key'.
KEY_CHARS = 16
# A result file's ancestor that holds every arm: arms/<arm>/eval/<task>/file.
ARMS_DIR_DEPTH = 3


def result_name(init: str, seed: int | None) -> str:
  if init == 'baseline':
    return 'baseline.json'
  prefix = '' if init == 'pretrained' else f'{init}_'
  return f'{prefix}seed_{seed}.json'


def result_names(config: ml_collections.ConfigDict) -> list[str]:
  """The result files a (settings-filled) config asks for, per task."""
  inits = controls.INITS if config.controls else ('pretrained',)
  names = [result_name(init, seed) for init in controls.TRAINED_INITS
           if init in inits for seed in range(config.seeds)]
  return names + (['baseline.json'] if 'baseline' in inits else [])


def find_checkpoints(path: str | pathlib.Path, arms: Sequence[str] = (),
                     arm: str = '') -> list[tuple[str, pathlib.Path]]:
  """(arm name, checkpoint dir) pairs for a checkpoint dir or a study workdir.

  A workdir holds `arms/<arm>/checkpoints`; `arms` restricts which are used. A
  single checkpoint dir is named `arm`, else its run folder's name.
  """
  path = pathlib.Path(path)
  if (path / 'arms').is_dir():
    found = {d.name: d / CHECKPOINTS_SUBDIR
             for d in sorted((path / 'arms').iterdir())
             if (d / CHECKPOINTS_SUBDIR).is_dir()}
    if not found:
      raise FileNotFoundError(
          f'{path}/arms holds no <arm>/{CHECKPOINTS_SUBDIR}')
    unknown = [a for a in arms if a not in found]
    if unknown:
      raise ValueError(f'unknown arm(s) {", ".join(unknown)} in {path}; '
                       f'known: {", ".join(found)}')
    return [(a, found[a]) for a in (arms or found)]
  if not path.is_dir():
    raise FileNotFoundError(
        f'no checkpoint directory {path}; set config.checkpoint to a '
        'pretraining checkpoint dir (WORKDIR/arms/ARM/checkpoints) or a study '
        'workdir')
  if not arm:
    arm = path.parent.name if path.name == CHECKPOINTS_SUBDIR else path.name
  return [(arm, path)]


def cap(examples: list, limit: int) -> list:
  """A deterministic subsample of at most `limit` examples (<= 0: all)."""
  if limit <= 0 or len(examples) <= limit:
    return examples
  order = np.random.default_rng(CAP_SEED).permutation(len(examples))
  keep = np.sort(order[:limit])
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
  max_train = values.pop('max_train_examples')
  max_eval = values.pop('max_eval_examples')
  recipe = tasks_lib.Recipe(**values)
  if recipe.max_len > model_max_len:
    logging.warning('%s: max_len %d > the model max_len %d; using %d',
                    task.name, recipe.max_len, model_max_len, model_max_len)
    recipe = dataclasses.replace(recipe, max_len=model_max_len)
  return recipe, max_train, max_eval


def _write_json(path: pathlib.Path, obj) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix('.tmp')
  tmp.write_text(json.dumps(obj, indent=1))
  tmp.replace(path)


def _read(path: pathlib.Path) -> dict | None:
  try:
    return json.loads(path.read_text())
  except (FileNotFoundError, json.JSONDecodeError):
    return None


def _key(*parts) -> str:
  blob = json.dumps(parts, sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:KEY_CHARS]


def _reuse(path: pathlib.Path, key: str, arm: str) -> bool:
  """True if `path` holds the result for `key`, or one was copied there.

  Control results do not depend on the arm, so an identical one (same key)
  from a sibling arm of the same workdir (arms/*/eval/<task>/) is copied.
  """
  if (_read(path) or {}).get('key') == key:
    return True
  if len(path.parents) <= ARMS_DIR_DEPTH:
    return False
  task, arms_dir = path.parent.name, path.parents[ARMS_DIR_DEPTH]
  for other in sorted(arms_dir.glob(f'*/{EVAL_SUBDIR}/{task}/{path.name}')):
    result = _read(other)
    if other != path and result and result.get('key') == key:
      _write_json(path, {**result, 'arm': arm})
      return True
  return False


def encode_splits(task: tasks_lib.Task, data: tasks_lib.TaskData,
                  tokenizer: encoding.Tokenizer, recipe: tasks_lib.Recipe,
                  max_train: int, max_eval: int) -> dict[str, encoding.Encoded]:
  """Capped and encoded splits; an empty extra test split is left out."""
  encoded = {}
  for name, examples in data.splits.items():
    examples = cap(examples, max_train if name == 'train' else max_eval)
    split = encoding.encode(tokenizer, task.kind, examples, recipe.max_len)
    if len(split) == 0 and name in tasks_lib.SPLITS:
      raise ValueError(f'task {task.name}: split {name!r} is empty')
    if len(split) == 0:
      logging.warning('%s: extra test split %s is empty; skipped', task.name,
                      name)
    else:
      encoded[name] = split
  return encoded


def run_task(task: tasks_lib.Task, data: tasks_lib.TaskData, *,
             pretrained: checkpoint.Pretrained, tokenizer: encoding.Tokenizer,
             config: ml_collections.ConfigDict, task_dir: pathlib.Path,
             arm: str) -> None:
  """Fine-tunes and evaluates one task for every init and seed; writes results.

  Results already on disk with the same key (settings, tokenizer, model
  config and, for the pretrained init, checkpoint step) are kept.
  """
  config = settings(config)
  model_config = pretrained.model_config
  recipe, max_train, max_eval = task_recipe(task, config, model_config.max_len)
  inits = controls.INITS if config.controls else ('pretrained',)
  encoded = encode_splits(task, data, tokenizer, recipe, max_train, max_eval)
  eval_splits = [s for s in encoded if s != 'train']
  control_key = _key(task.name, dataclasses.asdict(recipe), max_train, max_eval,
                     config.patience, tokenizer.sha256,
                     checkpoint.model_config_to_dict(model_config))
  common = {
      'arm': arm, 'task': task.name, 'main_metric': task.main_metric,
      'train_examples': len(encoded['train']),
      'checkpoint_step': pretrained.step, 'recipe': dataclasses.asdict(recipe),
      'skipped_source_records': data.skipped,
      'truncated': {s: e.truncated for s, e in encoded.items()},
      'split_sizes': {s: len(e) for s, e in encoded.items()}}

  path = task_dir / result_name('baseline', None)
  if 'baseline' in inits and not _reuse(path, control_key, arm):
    start = time.time()
    split_metrics = {s: trainer.score(
        task.kind, task.num_labels,
        controls.baseline_predictions(task.kind, encoded['train'], encoded[s]),
        encoded[s].targets) for s in eval_splits}
    _write_json(path, {**common, 'seed': None, 'init': 'baseline',
                       'key': control_key, 'metrics': split_metrics,
                       'best_epoch': 0, 'seconds': time.time() - start})

  tuner = None
  for init in (i for i in controls.TRAINED_INITS if i in inits):
    key = (_key(control_key, pretrained.step) if init == 'pretrained'
           else control_key)
    for seed in range(config.seeds):
      path = task_dir / result_name(init, seed)
      done = ((_read(path) or {}).get('key') == key if init == 'pretrained'
              else _reuse(path, key, arm))
      if done:
        continue
      tuner = tuner or trainer.FineTuner(task.kind, model_config,
                                         task.num_labels, recipe,
                                         len(encoded['train']))
      start = time.time()
      params = tuner.init_params(
          seed, pretrained.encoder_params if init == 'pretrained' else None)
      fit = tuner.fit(params, encoded['train'], encoded['dev'], seed=seed,
                      main_metric=task.main_metric, patience=config.patience)
      split_metrics = {s: tuner.evaluate(fit.params, encoded[s])
                       for s in eval_splits}
      seconds = time.time() - start
      logging.info('%s %s %s seed %d: test %s %.4f (%.1fs)', arm, task.name,
                   init, seed, task.main_metric,
                   split_metrics['test'][task.main_metric], seconds)
      _write_json(path, {**common, 'seed': seed, 'init': init, 'key': key,
                         'metrics': split_metrics, 'best_epoch': fit.best_epoch,
                         'dev_history': fit.dev_history, 'seconds': seconds})


def summarise(task_dir: pathlib.Path, names: Sequence[str]) -> dict:
  """Per init: {split: {metric: mean/std/ci95/n}} over the named results."""
  by_init: dict[str, list[dict]] = {}
  for name in names:
    result = json.loads((task_dir / name).read_text())
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
                 pretrained: checkpoint.Pretrained,
                 eval_dir: str | pathlib.Path, *, arm: str) -> dict:
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
    summary['tasks'][name] = {'kind': task.kind, 'domain': task.domain,
                              'main_metric': task.main_metric,
                              'inits': summarise(eval_dir / name,
                                                 result_names(config))}
  _write_json(eval_dir / SUMMARY_NAME, summary)
  return summary


def evaluate_checkpoint(config: ml_collections.ConfigDict,
                        ckpt_dir: str | pathlib.Path,
                        eval_dir: str | pathlib.Path, *, arm: str) -> dict:
  """Reads the encoder of `ckpt_dir` (read-only) and evaluates it."""
  pretrained = checkpoint.load_pretrained(ckpt_dir, settings(config).step)
  return evaluate_arm(config, pretrained, eval_dir, arm=arm)


def evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path
             ) -> dict[str, dict]:
  """The binary's entry: every arm found at config.checkpoint -> summaries.

  Results land in `workdir/arms/<arm>/eval/`.
  """
  config = settings(config)
  if not config.checkpoint:
    raise ValueError('set config.checkpoint to a pretraining checkpoint dir or '
                     'a study workdir (--config.checkpoint=...)')
  for name in config.tasks:
    tasks_lib.get_task(name)   # fail on a typo before any work
  workdir = pathlib.Path(workdir)
  summaries = {}
  found = find_checkpoints(config.checkpoint, config.arms, config.arm)
  for arm, ckpt_dir in found:
    eval_dir = workdir / 'arms' / arm / EVAL_SUBDIR
    summaries[arm] = evaluate_checkpoint(config, ckpt_dir, eval_dir, arm=arm)
  return summaries
