"""The study loop: for each arm prepare data -> pretrain -> fine-tune; then report.

Every step is resumable: prepared data is cached by recipe hash, pretraining
resumes from the arm's latest checkpoint, fine-tuning results on disk are not
recomputed, and an arm whose `arm_result.json` exists is skipped.

With one process, arm k's downstream evaluation (probes, fine-tuning, controls)
runs in a background thread while arm k+1 pretrains (`overlap_downstream`): on
a 2-core CPU the tiny model's train step keeps ~1.3 cores busy, so the
evaluation mostly fills idle cores. Evaluations run one at a time, in arm
order, so the controls are still computed once (by the first arm) and copied.
Results do not depend on the overlap: every computation is deterministic and
writes its own files. A SIGTERM during pretraining saves the arm and stops the
running evaluation at its next fine-tuning epoch; the same command resumes.
"""

import concurrent.futures
import json
import math
import re
import threading
import time
import types

import jax
import ml_collections
from absl import logging
from jax.experimental import multihost_utils

from lm_data import checks
from lm_data import errors
from lm_data import utils
from lm_data.finetune import run as finetune_run
from lm_data.finetune import tasks as tasks_lib
from lm_data.input_pipeline import loader
from lm_data.input_pipeline import masking
from lm_data.input_pipeline import prepare as prepare_lib
from lm_data.input_pipeline import sampling
from lm_data.input_pipeline import stream
from lm_data.input_pipeline import tokenizer as tokenizer_lib
from lm_data.study import baselines
from lm_data.study import records as records_lib
from lm_data.study import report as report_lib
from lm_data.train import trainer

ARM_RESULT = 'arm_result.json'
# An arm's record once pretrained (no downstream scores yet): a resumed study
# reads it instead of evaluating held-out rows and counting references again.
PRETRAIN_RECORD = 'pretrain_record.json'
ARM_NAME = re.compile(r'^[A-Za-z0-9_.+-]+$')
# Purposes folded into config.seed so data order and masking are independent streams.
LOADER_SEED_PURPOSE = 0x10AD
EVAL_MASK_SEED_PURPOSE = 0xE7A1


def plain(config: ml_collections.ConfigDict) -> dict:
  """JSON-able copy of a config."""
  return utils.json_safe(config)


def select_arms(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
  """The arms to run, after checks that fail before any work (errors.UserError)."""
  names = [arm.name for arm in config.arms]
  if not names:
    raise errors.UserError('config.arms is empty; an ablation needs at least one arm')
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise errors.UserError(f'duplicate arm names {dupes}; arm names must be unique')
  for name in names:
    if not ARM_NAME.match(name):
      raise errors.UserError(
          f'arm name {name!r} must match {ARM_NAME.pattern} (it is a folder name)')
  if config.arm and config.arm not in names:
    raise errors.UserError(f'unknown arm {config.arm!r}; known: {", ".join(names)}')
  for arm in config.arms:
    fraction = arm.data.budget_fraction
    if not 0 < fraction <= 1:
      raise errors.UserError(
          f'arm {arm.name}: data.budget_fraction={fraction} must be in (0, 1]')
    if fraction < 1 and arm.data.token_budget:
      raise errors.UserError(
          f'arm {arm.name}: set data.token_budget or data.budget_fraction, not both')
    if (arm.get('epochs') or 0) < 0:
      raise errors.UserError(f'arm {arm.name}: epochs={arm.epochs} must be >= 0 (0 = off)')
    with errors.as_user_errors(f'arm {arm.name}'):  # domains, quality steps, degradations
      prepare_lib.Recipe.for_arm(arm.data, token_budget=None)
  checks.check_study_config(config)  # batch sizes, parallelism, model, dtype, tasks, cache
  return [a for a in config.arms if not config.arm or a.name == config.arm]


def tokenizer_meta(tokenizer: tokenizer_lib.Tokenizer, ckpt_dir: utils.AnyPath) -> dict:
  """Checkpoint meta naming the tokenizer: path relative to `ckpt_dir`, and sha256.

  The relative path lets a moved or bundled workdir find its tokenizer; the
  sha256 is checked when fine-tuning loads it (`finetune.run.load_tokenizer`).
  """
  return {'tokenizer_path': utils.relative_path(tokenizer.path, ckpt_dir),
          'tokenizer_sha256': tokenizer.sha256}


class Study:
  """Shared state of one ablation run: tokenizer, eval texts, held-out domains."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: utils.AnyPath):
    self.config = config
    self.workdir = workdir
    self.is_main = jax.process_index() == 0
    # The same layout under config.cache_dir as under the default cache root.
    self.cache = prepare_lib.default_cache(config.cache_dir)
    self._held_out_fallback_logged: set[str] = set()
    self.domains = sorted({d for arm in config.arms for d in arm.data.domains})
    needs_texts = any(arm.data.decontaminate for arm in config.arms)
    # Every local task, not config.finetune.tasks: the corpus must not depend on the run's tasks.
    self.eval_texts = ({t: tasks_lib.eval_texts([t]) for t in tasks_lib.LOCAL_TASKS}
                       if needs_texts else {})
    tc = config.tokenizer
    self.tokenizer_path = prepare_lib.train_shared_tokenizer(
        self.domains, workdir / 'tokenizer' / 'spm.model', vocab_size=tc.vocab_size,
        model_type=tc.model_type, max_chars=tc.max_chars, seed=config.seed)
    self.tokenizer = tokenizer_lib.Tokenizer.load(self.tokenizer_path)
    self.mask_cfg = masking.MaskConfig.from_config(
        config.mask, vocab_size=self.tokenizer.vocab_size,
        special_ids=self.tokenizer.special_ids, mask_id=self.tokenizer.mask_id)
    self.eval_mask_cfg = self.mask_cfg.for_eval(config.mask)

  def prepare(self, data: ml_collections.ConfigDict, budget: int | None):
    return prepare_lib.prepare(
        prepare_lib.Recipe.for_arm(data, budget), self.tokenizer, seq_len=self.config.seq_len,
        eval_texts=self.eval_texts, cache=self.cache, held_out_domains=self.domains)

  def budgets(self, arms) -> dict[str, int | None]:
    """Token budget per arm: explicit, a fraction of its corpus, or the smallest arm's."""
    corpus = {}
    for arm in arms:
      if arm.data.token_budget:
        corpus[arm.name] = arm.data.token_budget
      else:
        total = self.prepare(arm.data, None).stats['train']['tokens']
        corpus[arm.name] = (total if arm.data.budget_fraction >= 1
                            else math.floor(total * arm.data.budget_fraction))
    if self.config.get('equal_budget'):
      smallest = min(corpus.values())
      logging.info('equal budget: %d tokens per arm (smallest arm)', smallest)
      return {name: smallest for name in corpus}
    return corpus

  def pretrain_arm(self, arm: ml_collections.ConfigDict, budget: int | None, k: int,
                   n: int) -> records_lib.ArmRecord | None:
    """Prepare -> pretrain one arm; its record without downstream scores.

    The record holds the held-out MLM loss (also split at [MASK] and at other
    positions) and, on the same held-out predictions, the count-model references
    of `baselines` estimated from the arm's training tokens. None if stopped.
    """
    c = self.config
    arm_dir = self.workdir / 'arms' / arm.name
    logging.info('arm %d/%d: %s (budget %s tokens)', k, n, arm.name, budget)
    prepared = self.prepare(arm.data, budget)
    unique_tokens = prepared.stats['train']['tokens']
    rows = prepared.train.num_rows
    arm_cfg = ml_collections.ConfigDict(c.to_dict())
    if arm.epochs:
      arm_cfg.train.num_train_steps = max(
          1, math.ceil(arm.epochs * rows / c.train.global_batch_size))
    steps = arm_cfg.train.num_train_steps
    arm_config = {'arm': arm.to_dict(), 'budget': budget, 'num_train_steps': steps}
    record = self._pretrained_record(arm_dir, arm_config)
    if record is not None:
      logging.info('arm %d/%d: %s already pretrained (step %d)', k, n, arm.name, record.steps)
      return record
    data_stats = {**prepared.stats, 'prepared_path': str(prepared.path)}
    held_out = self.held_out(arm, prepared)
    train_iter = self.train_iterator(arm, prepared, budget)
    try:
      if hasattr(train_iter, 'mixture'):  # streamed: what it measured and where held-out rows came from
        data_stats['stream'] = {'splits': train_iter.mixture, 'held_out_from': {
            d: 'curated' if held_out is not prepared and held_out.curated.get(d) else 'prepared'
            for d in self.domains}}
      if self.is_main:
        utils.write_json(arm_dir / 'config.json', arm_config, sort_keys=True)

      eval_sets = {
          d: loader.eval_batches(
              held_out, d, batch_size=c.train.eval_batch_size, mask_cfg=self.eval_mask_cfg,
              seed=utils.derive_seed(c.seed, EVAL_MASK_SEED_PURPOSE),
              process_index=jax.process_index(), process_count=jax.process_count())
          for d in self.domains}
      meta = {'arm': arm.name, **tokenizer_meta(self.tokenizer, arm_dir / 'checkpoints'),
              'config': plain(arm_cfg),
              'vocab_size': self.tokenizer.vocab_size}
      # An arm trained on some of the held-out domains stops on their loss (as
      # the report's learning gate reads them), not on text it never models.
      result = trainer.pretrain(arm_cfg, arm_dir, train_iter=train_iter,
                                eval_sets=eval_sets, vocab_size=self.tokenizer.vocab_size,
                                meta=meta, label=f'[arm {k}/{n}] {arm.name}',
                                tensorboard_dir=self.workdir / 'tensorboard' / arm.name,
                                selection_domains=records_lib.own_domains(
                                    arm.data.domains or (), self.domains))
    finally:
      train_iter.close()
    if not result.finished:
      return None
    # The kept step: the configured steps, or early stopping's choice.
    tokens_seen = result.step * c.train.global_batch_size * c.seq_len
    data_stats['epochs'] = sampling.epochs_for(tokens_seen, unique_tokens)
    if result.early_stopping:
      data_stats['early_stopping'] = result.early_stopping
    record = records_lib.ArmRecord(
        arm=arm.name, recipe=arm.data.to_dict(), budget=budget, unique_tokens=unique_tokens,
        tokens_seen=tokens_seen, epochs=data_stats['epochs'], steps=result.step,
        train_flops=result.train_flops, data_stats=data_stats,
        heldout=records_lib.heldout_from_dict(result.heldout),
        mlm_baselines=records_lib.references_from_dict(
            self.mlm_baselines(prepared, held_out, eval_sets) if self.is_main else {}))
    if self.is_main:
      utils.write_json(arm_dir / 'data_stats.json', data_stats, sort_keys=True)
      utils.write_json(arm_dir / PRETRAIN_RECORD,
                       {'config': arm_config, 'record': record.to_dict()}, sort_keys=True)
    return record

  def _pretrained_record(self, arm_dir, arm_config: dict) -> records_lib.ArmRecord | None:
    """The record a finished pretraining of this arm wrote, if its settings
    are `arm_config` (as JSON reads back) and its checkpoint is still there.

    Other settings beside checkpoints are an error: the trainer would resume
    them as this run (`checks.check_resume` catches changed config fields at
    start; this catches a changed budget, i.e. changed data).
    """
    path = arm_dir / PRETRAIN_RECORD
    if not path.exists():
      return None
    saved = json.loads(path.read_text())
    if saved.get('config') != json.loads(json.dumps(arm_config, sort_keys=True)):
      if checks.has_checkpoint(arm_dir):
        raise errors.UserError(
            f'{arm_dir} was pretrained as {saved.get("config")}, not as {arm_config}; '
            'use a new --workdir, or remove that folder to pretrain the arm again')
      return None
    record = records_lib.ArmRecord.from_dict(saved['record'])
    if not (arm_dir / 'checkpoints' / str(record.steps)).exists():
      return None
    return record

  def held_out(self, arm: ml_collections.ConfigDict, prepared):
    """The held-out rows to evaluate on: for an arm streamed from `data.curated_dir`,
    the curated dataset's held-out (validation) splits, the prepared rows for domains
    it lacks (said once per dataset); else `prepared`'s."""
    path = arm.data.get('curated_dir')
    if not path:
      return prepared
    with errors.as_user_errors(f'arm {arm.name}: data.curated_dir'):
      curated = stream.held_out_rows(path, self.tokenizer, seq_len=self.config.seq_len)
    missing = [d for d in self.domains if d not in curated]
    if missing and path not in self._held_out_fallback_logged:
      self._held_out_fallback_logged.add(path)
      logging.info('%s has no held-out split for %s: their held-out rows are the '
                   "study's prepared ones", path, ', '.join(missing))
    return types.SimpleNamespace(
        held_out={d: curated.get(d, prepared.held_out[d]) for d in self.domains},
        curated={d: d in curated for d in self.domains})

  def train_iterator(self, arm: ml_collections.ConfigDict, prepared, budget: int | None = None):
    """Batches from the prepared rows, or streamed from `data.curated_dir` (with
    the arm's token budget and mixture; data stats still come from `prepared`)."""
    c = self.config
    kwargs = dict(global_batch_size=c.train.global_batch_size,
                  seed=utils.derive_seed(c.seed, LOADER_SEED_PURPOSE),
                  mask_cfg=self.mask_cfg, process_index=jax.process_index(),
                  process_count=jax.process_count())
    if arm.data.get('curated_dir'):
      with errors.as_user_errors(f'arm {arm.name}: data.curated_dir'):
        return stream.make_stream_iterator(
            arm.data.curated_dir, self.tokenizer, seq_len=c.seq_len,
            weights=arm.data.weights and dict(arm.data.weights), token_budget=budget,
            **kwargs)
    return loader.make_train_iterator(prepared, **kwargs)

  def mlm_baselines(self, prepared, held_out, eval_sets) -> dict:
    """Count-model references on all held-out rows (of `held_out`), counted on
    `prepared`'s training rows.

    `eval_sets` are this process's rows; with several processes the rows are
    masked again as one process would see them all.
    """
    train = loader.as_packed(prepared.train)
    counts = baselines.CountModel(train.tokens, train.segment_ids, self.eval_mask_cfg)
    if jax.process_count() > 1:
      eval_sets = {d: loader.eval_batches(
          held_out, d, batch_size=self.config.train.eval_batch_size,
          mask_cfg=self.eval_mask_cfg,
          seed=utils.derive_seed(self.config.seed, EVAL_MASK_SEED_PURPOSE))
                   for d in self.domains}
    return baselines.heldout_baselines(counts, eval_sets)

  def finetune_config(self) -> ml_collections.ConfigDict:
    """`config.finetune`, keeping its control results under the study's cache_dir."""
    config = ml_collections.ConfigDict(self.config.finetune.to_dict())
    config.cache_dir = self.config.cache_dir or config.cache_dir
    return config

  def run_arm(self, arm: ml_collections.ConfigDict, budget: int | None, k: int,
              n: int) -> records_lib.ArmRecord | None:
    """Prepare -> pretrain -> fine-tune one arm; returns its record or None if stopped."""
    record = self.pretrain_arm(arm, budget, k, n)
    return None if record is None else self.evaluate_arm(arm, record)

  def evaluate_arm(self, arm: ml_collections.ConfigDict,
                   record: records_lib.ArmRecord,
                   stop: threading.Event | None = None) -> records_lib.ArmRecord:
    """Downstream scores of a pretrained arm added to its record, which is written.

    `stop` set: ends early with `finetune.trainer.Stopped`; the results already
    in `eval/` stay, and no arm_result.json is written.
    """
    arm_dir = self.workdir / 'arms' / arm.name
    if self.is_main:
      # Controls (random-init encoder, majority baseline) do not depend on the
      # arm: the fine-tuning run copies them from a sibling arm, so they cost once.
      summary = finetune_run.evaluate_checkpoint(self.finetune_config(),
                                                 arm_dir / 'checkpoints', arm_dir / 'eval',
                                                 arm=arm.name, stop=stop)
      record.tasks = task_scores(summary, records_lib.INIT_OF['tasks'])
      record.probes = task_scores(summary, records_lib.INIT_OF['probes'])
      record.controls = {name: task_scores(summary, records_lib.INIT_OF[name])
                         for name in records_lib.CONTROL_NAMES}
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'{arm.name} evaluated')  # process 0 fine-tunes
    if self.is_main:
      utils.write_json(arm_dir / ARM_RESULT, record.to_dict(), sort_keys=True)
    return record


def _minutes(seconds: float) -> str:
  return f'{int(seconds // 60)}m{int(seconds % 60):02d}s'


def task_scores(summary: dict, init: str) -> dict[str, records_lib.TaskScore]:
  """Fine-tuning summary -> {task: main metric on test of the `init` encoder}."""
  out = {}
  for name, task in summary['tasks'].items():
    stats = task['inits'].get(init)
    if not stats:
      continue
    metric = task['main_metric']
    test = stats['test'][metric]
    out[name] = records_lib.TaskScore(
        main_metric=metric, domain=task.get('domain'), kind=task.get('kind'),
        scores=test.get('values'), mean=test['mean'], std=test['std'], ci95=test['ci95'],
        files=stats.get('files'), layers=stats.get('layers'),
        chosen_layers=stats.get('chosen_layers'),
        chosen_learning_rates=stats.get('chosen_learning_rates'))
  return out


def _run_arms(study: Study, arms, budgets, *, overlap: bool) -> list[dict] | None:
  """Every arm's record, in arm order; None if pretraining was stopped.

  overlap: evaluate arm k in a background thread while arm k+1 pretrains.
  """
  n = len(arms)
  done: dict[str, dict] = {}
  pending: list[tuple[str, concurrent.futures.Future]] = []
  executor = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='downstream')
              if overlap else None)
  # Set when the study stops early (SIGTERM, an error): the background
  # evaluation then ends at its next epoch instead of finishing the arm.
  stop = threading.Event()
  began = time.perf_counter()
  pretrain_seconds = []

  def evaluate(k, arm, record):
    start = time.perf_counter()
    record = study.evaluate_arm(arm, record, stop)
    logging.info('study: arm %d/%d %s evaluated in %s (%s since the study began)', k, n,
                 arm.name, _minutes(time.perf_counter() - start),
                 _minutes(time.perf_counter() - began))
    # As arm_result.json reads back (sorted keys, lists), so a re-run that loads
    # finished arms writes a byte-identical results.json.
    return json.loads(json.dumps(record.to_dict(), sort_keys=True))

  def raise_failed():
    for _, future in pending:
      if future.done() and future.exception() is not None:
        future.result()

  try:
    for k, arm in enumerate(arms, 1):
      path = study.workdir / 'arms' / arm.name / ARM_RESULT
      if path.exists():
        logging.info('arm %d/%d: %s already finished', k, n, arm.name)
        done[arm.name] = json.loads(path.read_text())
        continue
      start = time.perf_counter()
      record = study.pretrain_arm(arm, budgets[arm.name], k, n)
      if record is None:
        logging.warning('stopped during arm %s; re-run the same command to resume', arm.name)
        return None
      pretrain_seconds.append(time.perf_counter() - start)
      # Pretraining time dominates; the last arm's evaluation comes on top.
      eta = sum(pretrain_seconds) / len(pretrain_seconds) * (n - k)
      logging.info('study: arm %d/%d %s pretrained in %s; study ETA %s + downstream '
                   'evaluation', k, n, arm.name, _minutes(pretrain_seconds[-1]),
                   _minutes(eta))
      if executor is None:
        done[arm.name] = evaluate(k, arm, record)
      else:
        raise_failed()   # a failed evaluation stops the study now, not after every arm
        pending.append((arm.name, executor.submit(evaluate, k, arm, record)))
    for name, future in pending:
      done[name] = future.result()
  finally:
    if executor is not None:
      if any(not f.done() for _, f in pending):
        stop.set()
        logging.warning('stopping the running downstream evaluation at its next '
                        'epoch; its finished results are kept and a re-run resumes')
      executor.shutdown(wait=True, cancel_futures=True)
  return [done[arm.name] for arm in arms]


def run_study(config: ml_collections.ConfigDict, workdir: utils.PathLike) -> dict | None:
  """Runs (or resumes) every selected arm, the controls and the report."""
  arms = select_arms(config)
  workdir = checks.check_dir(workdir, '--workdir')  # a file there fails now, not after the tokenizer
  checks.check_resume(workdir, config)
  study = Study(config, workdir)
  if study.is_main:
    utils.write_json(workdir / 'config.json', plain(config), sort_keys=True)
  budgets = study.budgets(config.arms)  # of every arm: one arm of a job array gets the study's
  records = _run_arms(study, arms, budgets,
                      overlap=config.get('overlap_downstream', True)
                      and jax.process_count() == 1)
  if records is None:
    return None
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('arms done')
  if not study.is_main or config.arm:
    return None  # a single arm of a job array: the report is made by a full run
  controls = records[0].get('controls', {})
  results = report_lib.write_report(workdir, plain(config), records, controls)
  report_md = workdir / 'report' / 'report.md'
  logging.info('report: %s', report_md if utils.is_remote(report_md) else report_md.absolute())
  return results


def prepare_study(config: ml_collections.ConfigDict, workdir: utils.PathLike) -> dict:
  """Prepares everything a run of `config` reads, and trains nothing (`--prepare_only`).

  Fetches the archives, builds the corpora, trains the shared tokenizer into
  `workdir`, prepares every selected arm's rows (and the full corpus its budget
  is a fraction of) and loads every local and configured task (its parse is
  cached, `tasks.cache_path`). Idempotent: a second call only reads caches.
  Returns what a run on another machine needs (`study.bundle` packs it):
  {'tokenizer': path, 'domains': [...], 'arms': {arm: prepared folder},
   'prepared': [every prepared folder], 'tasks': {task: cache file or None}}.
  """
  start = time.perf_counter()
  arms = select_arms(config)
  workdir = checks.check_dir(workdir, '--workdir')  # a file there fails now, not after the tokenizer
  study = Study(config, workdir)
  budgets = study.budgets(config.arms)
  folders = {arm.name: study.prepare(arm.data, budgets[arm.name]).path for arm in arms}
  # The full corpora that `budgets` measured (of every arm, as a run reads them).
  corpora = [study.prepare(arm.data, None).path for arm in config.arms
             if not arm.data.token_budget]
  task_files = {}
  for name in dict.fromkeys([*tasks_lib.LOCAL_TASKS, *config.finetune.tasks]):
    data = tasks_lib.get_task(name).load()
    path = tasks_lib.cache_path(name)
    task_files[name] = str(path) if path else None
    logging.info('prepare: task %s ready (%s)', name,
                 ', '.join(f'{k} {len(v)}' for k, v in data.splits.items()))
  logging.info('prepared %d arms and %d tasks in %s (nothing trained); tokenizer %s',
               len(folders), len(task_files), _minutes(time.perf_counter() - start),
               study.tokenizer_path)
  return {'tokenizer': str(study.tokenizer_path), 'domains': list(study.domains),
          'arms': {k: str(v) for k, v in folders.items()},
          'prepared': sorted({str(p) for p in [*folders.values(), *corpora]}),
          'tasks': task_files}
