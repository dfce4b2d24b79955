"""Entry point: checkpoints on disk -> tasks x inits x seeds -> JSON results.

Files written under `WORKDIR/arms/<arm>/eval/`:
  <task>/seed_<k>.json               pretrained encoder, fine-tuning seed k
  <task>/probe.json                  linear probe on the frozen pretrained
                                     encoder (every layer; deterministic)
  <task>/random_seed_<k>.json        random-init encoder control, seed k
  <task>/random_probe_seed_<k>.json  linear probe on that random encoder
  <task>/lexical.json                bag-of-words / most-frequent-tag control
  <task>/baseline.json               majority-class / mean-prediction control
  <task>/items.json                  gold labels of every test item (and, for
                                     tagging, the sentence of each word)
  summary.json                       per task and init: mean, std, 95%
                                     t-interval over seeds of every metric of
                                     every eval split (probes: per layer too)
Each result follows docs/design.md (arm, task, seed, init, metrics per split,
main_metric, best_epoch, train_examples, seconds) plus checkpoint_step, recipe,
limits, dev_history, split sizes, truncation counts, `predictions` (per test
split, one per item of items.json, so arms and inits compare in pairs on the
same items) and `key`, a hash of everything the result depends on (task
settings, tokenizer, model config and, for the pretrained encoder, the
checkpoint step). A result on disk with the same key is not recomputed, so a
killed evaluation resumes; control results (every init but pretrained and
probe) do not depend on the arm and are copied from a sibling arm of the same
workdir when their key matches, so controls cost once per ablation; with
`controls_cache` they are also kept under CACHE/controls/ (`controls_cache_dir`)
and reused by every later run on this machine and software, so they cost once
per (task settings, tokenizer, model config).

Caps: training examples are capped (deterministic subsample), dev is capped
for selection only (epoch, probe layer and l2, lexical smoothing), and every
test split is evaluated whole unless `max_test_examples` says otherwise.
"""

from collections.abc import Sequence
import dataclasses
import hashlib
import json
import os
import re
import threading
import time

from absl import logging
import jax
import ml_collections
import numpy as np

from lm_data import errors
from lm_data import utils
from lm_data.corpus import fetch
from lm_data.finetune import controls
from lm_data.finetune import encoding
from lm_data.finetune import lexical
from lm_data.finetune import metrics
from lm_data.finetune import probe as probe_lib
from lm_data.finetune import tasks as tasks_lib
from lm_data.finetune import trainer
from lm_data.input_pipeline import tokenizer as tokenizer_lib
from lm_data.train import checkpoint

# Seed of the deterministic subsample that caps large splits.
CAP_SEED = 0
# Per-task limits a config or an override may set besides FinetuneSettings fields.
LIMIT_KEYS = {'max_train_examples': 'train', 'max_dev_examples': 'dev',
              'max_test_examples': 'test', 'min_train_steps': 'min_steps'}
# The fields this module reads; configs/finetune.py sets and documents each
# (and is the only home of their defaults).
CONFIG_FIELDS = ('checkpoint', 'arms', 'arm', 'step', 'tasks', 'seeds', 'random_seeds',
                 'probe_seeds', 'controls', 'probes', 'overrides', 'patience',
                 'learning_rates', 'controls_cache', 'cache_dir', *LIMIT_KEYS)
EVAL_SUBDIR = 'eval'
SUMMARY_NAME = 'summary.json'
ITEMS_NAME = 'items.json'
CHECKPOINTS_SUBDIR = 'checkpoints'
# Hex characters of the settings hash stored in each result as 'key'.
KEY_CHARS = 16
# A result file's ancestor that holds every arm: arms/<arm>/eval/<task>/file.
ARMS_DIR_DEPTH = 3
# Overrides the controls cache folder (tests point it at a temporary one).
CONTROLS_CACHE_ENV = 'LM_DATA_CONTROLS_CACHE'
# Part of the controls cache's folder name: bump it when a change to the
# fine-tuning loop, the probes or the lexical baselines changes their results
# (the key covers the settings, not the code).
CONTROLS_VERSION = 1
# Significant digits of stored regression predictions.
VALUE_DIGITS = 6
_NUMBER_LIST = re.compile(r'\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]')


@dataclasses.dataclass(frozen=True)
class Limits:
  """Examples per split (<= 0: all) and the minimum optimizer steps."""
  train: int
  dev: int
  test: int
  min_steps: int = 0

  def examples(self, split: str) -> int:
    return self.train if split == 'train' else self.dev if split == 'dev' else self.test


def result_name(init: str, seed: int | None) -> str:
  if init in controls.SINGLE_INITS:
    return f'{init}.json'
  prefix = '' if init == 'pretrained' else f'{init}_'
  return f'{prefix}seed_{seed}.json'


def result_names(config: ml_collections.ConfigDict) -> list[str]:
  """The result files a config asks for, per task."""
  return [result_name(init, seed) for init in active_inits(config)
          for seed in init_seeds(config, init)]


def init_seeds(config: ml_collections.ConfigDict, init: str) -> Sequence[int | None]:
  """[None] for an init fitted once (a probe, lexical, baseline), else its seeds."""
  return [None] if init in controls.SINGLE_INITS else range(num_seeds(config, init))


def num_seeds(config: ml_collections.ConfigDict, init: str) -> int:
  """Seeds of a seeded init: `seeds` (pretrained), `random_seeds` (random
  init; 0 = as `seeds`), `probe_seeds` (random-init probes)."""
  if init == 'random_probe':
    return config.probe_seeds
  if init == 'random':
    return config.random_seeds or config.seeds
  return config.seeds


def active_inits(config: ml_collections.ConfigDict,
                 kind: str | None = None) -> list[str]:
  """The inits a config runs (for a task of `kind`: QA has no probe or lexical
  baseline)."""
  out = [i for i in controls.INITS
         if (config.controls or i not in controls.CONTROL_INITS)
         and (config.probes or i not in controls.PROBE_INITS)
         and (config.probe_seeds >= 1 or i != 'random_probe')]
  if kind == 'qa':
    out = [i for i in out if i not in (*controls.PROBE_INITS, 'lexical')]
  return out


def find_checkpoints(path: utils.PathLike, arms: Sequence[str] = (),
                     arm: str = '') -> list[tuple[str, utils.AnyPath]]:
  """(arm name, checkpoint dir) pairs for a checkpoint dir or a study workdir.

  A workdir holds `arms/<arm>/checkpoints`; `arms` restricts which are used. A
  single checkpoint dir is named `arm`, else its run folder's name.
  """
  path = utils.path(path)
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
  order = utils.rng(CAP_SEED).permutation(len(examples))
  keep = np.sort(order[:limit])
  return [examples[i] for i in keep]


def task_recipe(task: tasks_lib.Task, config: ml_collections.ConfigDict,
                model_max_len: int) -> tuple[tasks_lib.FinetuneSettings, Limits]:
  """(recipe, limits) of a task after config overrides.

  `config.overrides['*']` applies to every task, then `overrides[task]`; keys
  are FinetuneSettings fields or LIMIT_KEYS. max_len is capped by the model's.
  """
  values = {**dataclasses.asdict(task.recipe),
            **{k: config[k] for k in LIMIT_KEYS}}
  for key in ('*', task.name):
    override = dict(config.overrides.get(key, {}))
    unknown = sorted(set(override) - set(values))
    if unknown:
      raise ValueError(f'unknown override(s) {", ".join(unknown)} for {key!r}; '
                       f'known: {", ".join(sorted(values))}')
    values.update(override)
  limits = Limits(**{field: int(values.pop(k)) for k, field in LIMIT_KEYS.items()})
  recipe = tasks_lib.FinetuneSettings(**values)
  if recipe.max_len > model_max_len:
    logging.warning('%s: max_len %d > the model max_len %d; using %d',
                    task.name, recipe.max_len, model_max_len, model_max_len)
    recipe = dataclasses.replace(recipe, max_len=model_max_len)
  return recipe, limits


def _write_json(path: utils.AnyPath, obj) -> None:
  """Indented JSON with lists of numbers on one line (per-item predictions)."""
  utils.atomic_write(path, _NUMBER_LIST.sub(
      lambda m: '[' + re.sub(r'\s+', '', m.group(1)) + ']', json.dumps(obj, indent=1)))


def _read(path: utils.AnyPath) -> dict | None:
  try:
    return json.loads(path.read_text())
  except (FileNotFoundError, json.JSONDecodeError):
    return None


def _key(*parts) -> str:
  blob = json.dumps(parts, sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:KEY_CHARS]


def controls_cache_dir(config: ml_collections.ConfigDict) -> utils.AnyPath | None:
  """Where control results are kept across runs; None when `controls_cache` is off.

  $LM_DATA_CONTROLS_CACHE, else CACHE/controls (CACHE: `cache_dir`, else the
  environment's, `fetch.cache_root`). One subfolder per backend, jax version
  and CONTROLS_VERSION, since those change the numbers but not the key.
  """
  if not config.get('controls_cache'):
    return None
  root = (utils.path(os.environ[CONTROLS_CACHE_ENV]) if os.environ.get(CONTROLS_CACHE_ENV)
          else fetch.cache_root(config.get('cache_dir')) / 'controls')
  return root / f'{jax.default_backend()}-jax{jax.__version__}-v{CONTROLS_VERSION}'


def _reuse(path: utils.AnyPath, key: str, arm: str,
           cached: utils.AnyPath | None = None) -> str | None:
  """Where the result for `key` came from ('here', 'arm', 'cache'), copied to
  `path`; None if there is none.

  Control results do not depend on the arm, so an identical one (same key)
  from a sibling arm of the same workdir (arms/*/eval/<task>/), else from the
  controls cache file `cached`, is copied. A result found in the workdir is
  also put in the cache, so finished workdirs fill it.
  """
  found, source = _read(path), 'here'
  if (found or {}).get('key') != key:
    found = source = None
    if len(path.parents) > ARMS_DIR_DEPTH:
      task, arms_dir = path.parent.name, path.parents[ARMS_DIR_DEPTH]
      for other in sorted(arms_dir.glob(f'*/{EVAL_SUBDIR}/{task}/{path.name}')):
        result = _read(other)
        if other != path and result and result.get('key') == key:
          found, source = result, 'arm'
          break
    if found is None and cached is not None:
      result = _read(cached)
      if result and result.get('key') == key:
        found, source = result, 'cache'
    if found is None:
      return None
    _write_json(path, {**found, 'arm': arm})
  if cached is not None and source != 'cache' and not cached.exists():
    _write_json(cached, found)
  return source


def encode_splits(task: tasks_lib.Task, data: tasks_lib.TaskData,
                  tokenizer: encoding.Tokenizer, recipe: tasks_lib.FinetuneSettings,
                  limits: Limits) -> tuple[dict, dict[str, encoding.Encoded]]:
  """({split: capped examples}, {split: encoded}); an empty extra test split
  is left out."""
  examples, encoded = {}, {}
  for name, split in data.splits.items():
    split = cap(split, limits.examples(name))
    rows = encoding.encode(tokenizer, task.kind, split, recipe.max_len)
    if len(rows) == 0 and name in tasks_lib.SPLITS:
      raise ValueError(f'task {task.name}: split {name!r} is empty')
    if len(rows) == 0:
      logging.warning('%s: extra test split %s is empty; skipped', task.name,
                      name)
    else:
      examples[name], encoded[name] = split, rows
  return examples, encoded


def flat_targets(kind: str, data: encoding.Encoded) -> np.ndarray | None:
  """Gold labels, one per scored item (tagging: per labelled word); QA: None."""
  if kind == 'qa':
    return None
  return probe_lib.probe_targets(kind, data)


def flat_predictions(kind: str, preds, data: encoding.Encoded):
  """Model predictions in the order of `flat_targets` (QA: None)."""
  if kind == 'qa':
    return None
  if kind == 'token_classification':
    return np.asarray(preds)[data.targets['label_weights'] > 0]
  return np.asarray(preds)


def score_flat(kind: str, num_labels: int, gold: np.ndarray,
               preds: np.ndarray) -> dict[str, float]:
  """The task kind's metric dict from flat gold and predictions."""
  if kind == 'token_classification':
    return metrics.token_metrics(gold, preds, np.ones(len(gold)), num_labels)
  return trainer.score(kind, num_labels, preds, {'labels': gold})


def _jsonable(kind: str, preds: np.ndarray | None) -> list | None:
  if preds is None:
    return None
  if kind == 'regression':
    return [float(f'{v:.{VALUE_DIGITS}g}') for v in np.asarray(preds, np.float64)]
  return np.asarray(preds, np.int64).tolist()


def _clock() -> tuple[float, float]:
  return time.time(), time.process_time()


def _probe_encoder(model_config, seed: int):
  """The random encoder that random fine-tuning seed `seed` starts from."""
  model = trainer.make_model('classification', model_config, 2)
  dummy = np.zeros((1, 8), np.int32)
  params = model.init(
      trainer.stream_key(seed, trainer.INIT_STREAM),
      dummy, dummy, dummy, np.ones_like(dummy), deterministic=True)['params']
  return jax.device_get(params['encoder'])


class _Task:
  """Everything one task's evaluation shares across inits and seeds."""

  def __init__(self, task, data, *, pretrained, tokenizer, config, task_dir, arm,
               stop=None):
    self.task, self.config, self.task_dir, self.arm = task, config, task_dir, arm
    self.stop = stop
    self.pretrained = pretrained
    model_config = pretrained.model_config
    self.recipe, self.limits = task_recipe(task, config, model_config.max_len)
    self.examples, self.encoded = encode_splits(task, data, tokenizer,
                                                self.recipe, self.limits)
    self.eval_splits = [s for s in self.encoded if s != 'train']
    self.test_splits = [s for s in self.eval_splits if s.startswith('test')]
    self.gold = {s: flat_targets(task.kind, e) for s, e in self.encoded.items()}
    # Fine-tuning rates tried (the best on dev is kept); a grid joins the key
    # only when set, so single-rate results keep their keys.
    self.rates = tuple(float(r) for r in config.learning_rates)
    grid = (('learning_rates', self.rates),) if self.rates else ()
    self.rates = self.rates or (self.recipe.learning_rate,)
    self.control_key = _key(task.name, dataclasses.asdict(self.recipe),
                            dataclasses.asdict(self.limits), config.patience,
                            tokenizer.sha256,
                            checkpoint.model_config_to_dict(model_config), *grid)
    self.common = {
        'arm': arm, 'task': task.name, 'main_metric': task.main_metric,
        'train_examples': len(self.encoded['train']),
        'checkpoint_step': pretrained.step,
        'recipe': dataclasses.asdict(self.recipe),
        'limits': dataclasses.asdict(self.limits),
        'skipped_source_records': data.skipped,
        'truncated': {s: e.truncated for s, e in self.encoded.items()},
        'split_sizes': {s: len(e) for s, e in self.encoded.items()}}
    self._tuners = {}
    cache = controls_cache_dir(config)
    self.cache_dir = None if cache is None else cache / task.name
    self.from_cache = 0   # control results this evaluation took from the cache

  def cached(self, init: str, seed: int | None) -> utils.AnyPath | None:
    """The controls cache file of a control result (None: cache off or not a control)."""
    if self.cache_dir is None or init not in controls.CONTROL_INITS:
      return None
    return self.cache_dir / f'{self.key(init, seed)}-{result_name(init, seed)}'

  def key(self, init: str, seed: int | None) -> str:
    parts = [self.control_key, init, seed]
    if init not in controls.CONTROL_INITS:
      parts.append(self.pretrained.step)
    if init in controls.PROBE_INITS:
      parts.append(probe_lib.FEATURES_VERSION)
    return _key(*parts)

  def done(self, init: str, seed: int | None) -> bool:
    path = self.task_dir / result_name(init, seed)
    key = self.key(init, seed)
    if init in controls.CONTROL_INITS:
      source = _reuse(path, key, self.arm, self.cached(init, seed))
      self.from_cache += source == 'cache'
      return source is not None
    return (_read(path) or {}).get('key') == key

  def score(self, split: str, preds) -> dict[str, float]:
    return score_flat(self.task.kind, self.task.num_labels, self.gold[split], preds)

  def write(self, init: str, seed: int | None, start: tuple[float, float],
            split_metrics: dict, predictions: dict, **extra) -> None:
    """Writes one result; `start` is (time.time(), time.process_time())."""
    seconds = time.time() - start[0]
    extra['cpu_seconds'] = time.process_time() - start[1]   # CPU time of all threads
    name = self.task.main_metric
    logging.info('%s %s %s%s: test %s %.4f (%.1fs)', self.arm, self.task.name, init,
                 '' if seed is None else f' seed {seed}', name,
                 split_metrics['test'][name], seconds)
    result = {
        **self.common, 'seed': seed, 'init': init, 'key': self.key(init, seed),
        'metrics': split_metrics, 'seconds': seconds, **extra,
        'predictions': {s: _jsonable(self.task.kind, predictions.get(s))
                        for s in self.test_splits}}
    _write_json(self.task_dir / result_name(init, seed), result)
    cached = self.cached(init, seed)
    if cached is not None:
      _write_json(cached, result)

  def write_items(self) -> None:
    path = self.task_dir / ITEMS_NAME
    if (_read(path) or {}).get('key') == self.control_key:
      return
    splits = {}
    for s in self.test_splits:
      groups = probe_lib.item_groups(self.task.kind, self.encoded[s])
      splits[s] = {'gold': _jsonable(self.task.kind, self.gold[s]),
                   'groups': None if groups is None else groups.tolist()}
    _write_json(path, {'task': self.task.name, 'kind': self.task.kind,
                       'main_metric': self.task.main_metric,
                       'key': self.control_key, 'splits': splits})

  # ------------------------------------------------------------ the inits

  def baseline(self) -> None:
    start = _clock()
    kind, train = self.task.kind, self.encoded['train']
    raw = {s: controls.baseline_predictions(kind, train, self.encoded[s])
           for s in self.eval_splits}
    self.write('baseline', None, start,
               {s: trainer.score(kind, self.task.num_labels, raw[s],
                                 self.encoded[s].targets) for s in self.eval_splits},
               {s: flat_predictions(kind, raw[s], self.encoded[s])
                for s in self.test_splits}, best_epoch=0)

  def lexical(self) -> None:
    start = _clock()
    kept = None
    if self.task.kind == 'token_classification':
      kept = {s: (e.targets['label_weights'] > 0).sum(1)
              for s, e in self.encoded.items()}
    preds, info = lexical.fit_select(self.task.kind, self.task.num_labels,
                                     self.examples, self.score,
                                     self.task.main_metric, words_kept=kept)
    self.write('lexical', None, start,
               {s: self.score(s, preds[s]) for s in self.eval_splits}, preds,
               **info)

  def probe(self, init: str, seed: int | None) -> None:
    start = _clock()
    model_config = self.pretrained.model_config
    params = (self.pretrained.encoder_params if init == 'probe'
              else _probe_encoder(model_config, seed))
    features = probe_lib.extract(model_config, params, self.encoded, self.task.kind)
    extracted = time.time()
    fit = probe_lib.fit_select(
        self.task.kind, self.task.num_labels, features, self.gold,
        probe_lib.layer_names(model_config.num_layers), self.score,
        self.task.main_metric)
    self.write(init, seed, start,
               {s: self.score(s, fit.predictions[s]) for s in self.eval_splits},
               fit.predictions, layer=fit.layer, l2=fit.l2, layers=fit.layers,
               lbfgs_iterations=fit.iterations,
               extract_seconds=extracted - start[0])

  def tuner(self, rate: float) -> trainer.FineTuner:
    if rate not in self._tuners:
      self._tuners[rate] = trainer.FineTuner(
          self.task.kind, self.pretrained.model_config, self.task.num_labels,
          dataclasses.replace(self.recipe, learning_rate=rate),
          len(self.encoded['train']), min_steps=self.limits.min_steps)
    return self._tuners[rate]

  def finetune(self, init: str, seed: int) -> None:
    """Fine-tunes at every rate of the grid from the same start; keeps the fit
    with the best dev main metric (the first rate on a tie)."""
    start = _clock()
    encoder = self.pretrained.encoder_params if init == 'pretrained' else None
    label = f'{self.arm} {self.task.name} {init} seed {seed}'
    fits = {}
    for rate in self.rates:
      tuner = self.tuner(rate)
      fits[rate] = tuner.fit(
          tuner.init_params(seed, encoder), self.encoded['train'],
          self.encoded['dev'], seed=seed, main_metric=self.task.main_metric,
          patience=self.config.patience,
          label=label if len(self.rates) == 1 else f'{label} lr {rate:g}',
          should_stop=self.stop.is_set if self.stop is not None else None)
    rate = max(self.rates, key=lambda r: max(fits[r].dev_history))
    tuner, fit = self.tuner(rate), fits[rate]
    raw = {s: tuner.predict(fit.params, self.encoded[s]) for s in self.eval_splits}
    split_metrics = {s: trainer.score(self.task.kind, self.task.num_labels, raw[s],
                                      self.encoded[s].targets)
                     for s in self.eval_splits}
    preds = {s: flat_predictions(self.task.kind, raw[s], self.encoded[s])
             for s in self.test_splits}
    self.write(init, seed, start, split_metrics, preds, best_epoch=fit.best_epoch,
               dev_history=fit.dev_history, train_steps=tuner.num_train_steps,
               steps_run=fit.steps_run, learning_rate=rate,
               dev_by_learning_rate={f'{r:g}': max(f.dev_history)
                                     for r, f in fits.items()})


def run_task(task: tasks_lib.Task, data: tasks_lib.TaskData, *,
             pretrained: checkpoint.Pretrained, tokenizer: encoding.Tokenizer,
             config: ml_collections.ConfigDict, task_dir: utils.AnyPath,
             arm: str, stop: threading.Event | None = None) -> None:
  """Evaluates one task for every init and seed; writes results.

  Results already on disk with the same key (settings, tokenizer, model
  config and, for the pretrained encoder, checkpoint step) are kept.
  Cheapest first: baseline, lexical, probes, then fine-tuning. Once `stop` is
  set, no result or fine-tuning epoch starts: `trainer.Stopped` is raised.
  """
  state = _Task(task, data, pretrained=pretrained, tokenizer=tokenizer,
                config=config, task_dir=task_dir, arm=arm, stop=stop)
  inits = active_inits(config, task.kind)
  if task.kind != 'qa':
    state.write_items()
  todo = [(init, seed)
          for init in ('baseline', 'lexical', *controls.PROBE_INITS, *controls.TRAINED_INITS)
          if init in inits for seed in init_seeds(config, init)]
  for init, seed in todo:
    if state.done(init, seed):
      continue
    if stop is not None and stop.is_set():
      raise trainer.Stopped(f'{arm} {task.name}: stopped before {init} seed {seed}')
    if init in ('baseline', 'lexical'):
      getattr(state, init)()
    elif init in controls.PROBE_INITS:
      state.probe(init, seed)
    else:
      state.finetune(init, seed)
  if state.from_cache:
    logging.info('%s %s: %d control results reused from the controls cache %s', arm,
                 task.name, state.from_cache, state.cache_dir)


def summarise(task_dir: utils.AnyPath, names: Sequence[str]) -> dict:
  """Per init: {split: {metric: mean/std/ci95/n}} over the named results.

  Also per init: `files` (the result files summarised); for probes,
  `layers` {layer: test main-metric stats} and `chosen_layers` (per result);
  for fine-tuning over a rate grid, `chosen_learning_rates` (per result).
  """
  by_init: dict[str, list[tuple[str, dict]]] = {}
  for name in names:
    path = task_dir / name
    if not path.exists():
      continue
    result = json.loads(path.read_text())
    by_init.setdefault(result['init'], []).append((name, result))
  summary = {}
  for init, named in by_init.items():
    results = [r for _, r in named]
    entry = {
        split: {metric: metrics.mean_std_ci([r['metrics'][split][metric]
                                             for r in results])
                for metric in values}
        for split, values in results[0]['metrics'].items()}
    entry['files'] = [n for n, _ in named]
    if all('layers' in r for r in results):
      main = results[0]['main_metric']
      entry['layers'] = {
          layer: metrics.mean_std_ci([r['layers'][layer]['metrics']['test'][main]
                                      for r in results])
          for layer in results[0]['layers']}
      entry['chosen_layers'] = [r['layer'] for r in results]
    if all(len(r.get('dev_by_learning_rate', ())) > 1 for r in results):
      entry['chosen_learning_rates'] = [r['learning_rate'] for r in results]
    summary[init] = entry
  return summary


def load_tokenizer(pretrained: checkpoint.Pretrained) -> tokenizer_lib.Tokenizer:
  """The checkpoint's tokenizer, refused (UserError) unless it is the one trained with.

  Checkpoints before the sha256 was stored load unchecked.
  """
  path = pretrained.tokenizer_path
  want = pretrained.meta.get('tokenizer_sha256')
  if want:  # before parsing: a damaged file gets this message, not the parser's
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != want:
      raise errors.UserError(
          f'tokenizer {path} (sha256 {got[:16]}) is not the one checkpoint '
          f'{pretrained.ckpt_dir} was trained with (sha256 {want[:16]}); put that '
          'tokenizer back')
  return tokenizer_lib.Tokenizer.load(path)


def evaluate_arm(config: ml_collections.ConfigDict,
                 pretrained: checkpoint.Pretrained,
                 eval_dir: utils.PathLike, *, arm: str,
                 stop: threading.Event | None = None) -> dict:
  """All configured tasks for one pretrained encoder; returns the summary.

  `stop` (set from another thread) ends it early with `trainer.Stopped`.
  """
  eval_dir = utils.path(eval_dir)
  tokenizer = load_tokenizer(pretrained)
  summary = {'arm': arm, 'checkpoint_step': pretrained.step, 'tasks': {}}
  for name in config.tasks or tasks_lib.LOCAL_TASKS:
    task = tasks_lib.get_task(name)
    start = time.time()
    run_task(task, task.load(), pretrained=pretrained, tokenizer=tokenizer,
             config=config, task_dir=eval_dir / name, arm=arm, stop=stop)
    logging.info('%s: %s done in %.1fs', arm, name, time.time() - start)
    summary['tasks'][name] = {'kind': task.kind, 'domain': task.domain,
                              'main_metric': task.main_metric,
                              'inits': summarise(eval_dir / name,
                                                 result_names(config))}
  _write_json(eval_dir / SUMMARY_NAME, summary)
  return summary


def evaluate_checkpoint(config: ml_collections.ConfigDict,
                        ckpt_dir: utils.PathLike,
                        eval_dir: utils.PathLike, *, arm: str,
                        stop: threading.Event | None = None) -> dict:
  """Reads the encoder of `ckpt_dir` (read-only) and evaluates it."""
  pretrained = checkpoint.load_pretrained(ckpt_dir, config.step)
  return evaluate_arm(config, pretrained, eval_dir, arm=arm, stop=stop)


def evaluate(config: ml_collections.ConfigDict, workdir: utils.PathLike
             ) -> dict[str, dict]:
  """The binary's entry: every arm found at config.checkpoint -> summaries.

  Results land in `workdir/arms/<arm>/eval/`.
  """
  if not config.checkpoint:
    raise ValueError('set config.checkpoint to a pretraining checkpoint dir or '
                     'a study workdir (--config.checkpoint=...)')
  for name in config.tasks:
    tasks_lib.get_task(name)   # fail on a typo before any work
  workdir = utils.path(workdir)
  summaries = {}
  found = find_checkpoints(config.checkpoint, config.arms, config.arm)
  for arm, ckpt_dir in found:
    eval_dir = workdir / 'arms' / arm / EVAL_SUBDIR
    summaries[arm] = evaluate_checkpoint(config, ckpt_dir, eval_dir, arm=arm)
  return summaries
