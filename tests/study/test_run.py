"""Bad ablation configs fail before any work, with a message saying what to change."""

import json
import threading
import time
import types

import jax
import ml_collections
import pytest

from configs import domain_ablation, quality_ablation, size_ablation
from configs import finetune as finetune_config
from lm_data import checks
from lm_data import errors
from lm_data.finetune import trainer
from lm_data.study import run


@pytest.mark.parametrize('module', [size_ablation, domain_ablation, quality_ablation])
def test_shipped_configs_and_variants_validate(module):
  for arg in (None, 'smoke'):
    arms = run.select_arms(module.get_config(arg))
    assert arms and len({a.name for a in arms}) == len(arms)
  one = module.get_config('arm=' + module.get_config().arms[0].name)
  assert [a.name for a in run.select_arms(one)] == [one.arms[0].name]


def test_size_grids_nest_and_gpu_reads_the_default_arms():
  def fractions(arg):
    return [a.data.budget_fraction for a in size_ablation.get_config(arg).arms]
  # CPU default: 1/64 ... 1 in three arms (the 45-min budget); :grid4 the x4 grid.
  assert fractions(None) == [1 / 64, 1 / 8, 1.0]
  assert fractions('grid4') == [1 / 64, 1 / 16, 1 / 4, 1.0]
  assert fractions('tpu') == fractions('grid4')
  # One prepared bundle of the default serves :gpu: the same arms and recipes.
  default, gpu = size_ablation.get_config(), size_ablation.get_config('gpu')
  assert [a.to_dict() for a in gpu.arms] == [a.to_dict() for a in default.arms]
  assert fractions('smoke') == [1 / 64, 1 / 4]


def test_quality_markup_open_variant_adds_its_diagnostic_arm():
  arms = run.select_arms(quality_ablation.get_config('markup_open,arm=markup_open_0.5'))
  assert [a.name for a in arms] == ['markup_open_0.5']
  assert arms[0].data.degrade.to_dict() == {'markup_open': 0.5}
  assert 'markup_open_0.5' not in [a.name for a in quality_ablation.get_config().arms]


def test_domain_and_quality_defaults_fit_the_cpu_and_variants_keep_every_arm():
  def names(module, arg=None):
    return [a.name for a in module.get_config(arg).arms]
  # Domain: the task-aligned single domains, the mix and their leave-outs by
  # default; :all_domains every single domain (the full transfer heat map).
  assert names(domain_ablation) == ['only_legal', 'only_conversational', 'mix_balanced',
                                    'mix_without_legal', 'mix_without_conversational']
  every = names(domain_ablation, 'all_domains')
  assert len(every) == 9 and {f'only_{d}' for d in domain_ablation.DOMAINS} <= set(every)
  assert len(names(domain_ablation, 'all_domains,loo')) == 6 + 1 + 6
  # Quality: four arms by default, nine with :all_arms and at scale (:tpu).
  assert names(quality_ablation) == ['unfiltered', 'all_filters', 'char_noise_0.2',
                                     'markup_0.5']
  assert len(names(quality_ablation, 'all_arms')) == 9
  assert names(quality_ablation, 'tpu') == names(quality_ablation, 'all_arms')
  # One CPU recipe: quality differs from size only in its peak rate; domain
  # also in length and early stopping (filtered text and single domains stay
  # on the plateau at 2e-3). All fine-tune alike.
  size, quality, domain = (m.get_config() for m in (size_ablation, quality_ablation,
                                                     domain_ablation))
  def differ(c):
    return {k for k in size.train if c.train[k] != size.train[k]}
  assert quality.finetune == size.finetune and domain.finetune == size.finetune
  assert differ(quality) == {'learning_rate'}
  assert differ(domain) == {'learning_rate', 'num_train_steps', 'early_stopping_patience',
                            'cooldown_on_stop'}
  assert quality.train.learning_rate == domain.train.learning_rate == 1e-3
  assert domain.train.schedule == 'wsd'


def test_vs_random_trains_the_full_arm_longer_with_seeds_for_the_comparison():
  default, check = size_ablation.get_config(), size_ablation.get_config('vs_random')
  assert [a.name for a in check.arms] == ['size_1-1']
  assert check.arms[0] == default.arms[-1]   # the same data as the default's full arm
  assert check.train.num_train_steps == 4 * default.train.num_train_steps == 12000
  assert (check.finetune.seeds, check.finetune.random_seeds) == (3, 10)
  changed = {k for k in default.train if check.train[k] != default.train[k]}
  assert changed == {'num_train_steps'}
  with pytest.raises(ValueError, match='drop gpu, fixed_epochs'):
    size_ablation.get_config('vs_random,gpu,fixed_epochs')
  with pytest.raises(ValueError, match='drop grid4, tpu'):   # they choose other arms
    size_ablation.get_config('vs_random,grid4,tpu')


def _bad(mutate, match):
  c = size_ablation.get_config('smoke')
  with c.unlocked():
    mutate(c)
  with pytest.raises(errors.UserError, match=match):  # one line from main.py
    run.select_arms(c)


def test_unknown_arm():
  _bad(lambda c: setattr(c, 'arm', 'size_1-3'), "unknown arm 'size_1-3'; known: size_1-64")


def test_unknown_domain():
  _bad(lambda c: c.arms[0].data.update(domains=['lgeal']), "unknown domain.*lgeal.*legal")


def test_budget_fraction_out_of_range():
  _bad(lambda c: c.arms[0].data.update(budget_fraction=2.0), r'budget_fraction=2.0 must be in \(0, 1\]')


def test_unknown_task_and_preset():
  _bad(lambda c: setattr(c.finetune, 'tasks', ('sentiment',)), "unknown task 'sentiment'")
  _bad(lambda c: setattr(c.model, 'preset', 'huge'), "unknown model preset 'huge'")


def test_duplicate_and_unsafe_arm_names():
  _bad(lambda c: c.arms[1].update(name=c.arms[0].name), 'duplicate arm names')
  _bad(lambda c: c.arms[0].update(name='a/b'), 'folder name')


def test_unknown_config_argument():
  with pytest.raises(ValueError, match="unknown config argument 'smok'"):
    size_ablation.get_config('smok')


@pytest.mark.parametrize('field, value, match', [
    ('global_batch_size', 0, r'train.global_batch_size=0 must be a whole number >= 1'),
    ('eval_batch_size', 0, r'train.eval_batch_size=0 must be'),  # not global_batch_size
    ('eval_batch_size', -4, r'train.eval_batch_size=-4 must be'),
    ('num_train_steps', 0, r'train.num_train_steps=0'),
    ('checkpoint_every', 0, r'train.checkpoint_every=0'),
    ('early_stopping_patience', -1, r'train.early_stopping_patience=-1 must be a whole number >= 0'),
    ('schedule', 'cosin', "unknown schedule 'cosin'"),
])
def test_bad_train_settings(field, value, match):
  _bad(lambda c: setattr(c.train, field, value), match)


def test_global_batch_must_split_over_devices_and_micro_batches():
  n = jax.device_count()
  _bad(lambda c: setattr(c.train, 'grad_accum_steps', 3),
       rf'global_batch_size=16 must be divisible by devices \({n}\) x '
       rf'train.grad_accum_steps \(3\); use a multiple of {3 * n}')


def test_bad_model_mask_and_finetune_settings():
  _bad(lambda c: setattr(c.model, 'dtype', 'float16'), "unknown model.dtype 'float16'")
  _bad(lambda c: setattr(c.model, 'overrides', {'hidden_sise': 8}), 'unknown BertConfig field')
  _bad(lambda c: setattr(c, 'seq_len', 1024), r'seq_len=1024 must be in \[1, model max_len 512\]')
  _bad(lambda c: setattr(c.mask, 'max_predictions', 100), 'max_predictions=100 exceeds seq_len=64')
  _bad(lambda c: setattr(c.tokenizer, 'model_type', 'wordpiece'), "model_type 'wordpiece'")
  _bad(lambda c: setattr(c.finetune, 'overrides', {'trec': {'epochz': 2}}),
       "unknown override.*epochz for 'trec'")
  _bad(lambda c: setattr(c.finetune, 'seeds', 0), 'finetune.seeds=0 must be >= 1')
  _bad(lambda c: setattr(c.finetune, 'probe_seeds', -1), 'finetune.probe_seeds=-1 must be >= 0')
  _bad(lambda c: setattr(c.finetune, 'min_train_steps', -5),
       'finetune.min_train_steps=-5 must be >= 0')
  for rates in ((1e-3, 0.0), (1e-3, 1e-3), (float('nan'),)):
    _bad(lambda c, r=rates: setattr(c.finetune, 'learning_rates', r),
         r'finetune.learning_rates=.* must be distinct positive numbers')


def test_bad_cache_dir_fails_before_any_work(tmp_path):
  (tmp_path / 'file').write_text('')
  _bad(lambda c: setattr(c, 'cache_dir', str(tmp_path / 'file')), 'cache_dir .* is a file')


def test_workdir_that_is_a_file_fails_before_the_tokenizer(tmp_path, monkeypatch):
  def no_work(*args):
    raise AssertionError('the study started work')
  monkeypatch.setattr(run, 'Study', no_work)
  (tmp_path / 'file').write_text('')
  with pytest.raises(errors.UserError, match='--workdir .*file is a file, not a directory'):
    run.run_study(size_ablation.get_config('smoke'), tmp_path / 'file')
  with pytest.raises(errors.UserError, match='cannot create --workdir'):
    run.run_study(size_ablation.get_config('smoke'), tmp_path / 'file' / 'below')


def test_finetune_checks_need_no_data(tmp_path):
  c = finetune_config.get_config('smoke')
  with pytest.raises(errors.UserError, match='set config.checkpoint'):
    checks.check_finetune_config(c, tmp_path / 'out')
  c.checkpoint = str(tmp_path / 'nowhere')
  with pytest.raises(errors.UserError, match='no checkpoint directory'):
    checks.check_finetune_config(c, tmp_path / 'out')
  ckpt = tmp_path / 'arm' / 'checkpoints'
  ckpt.mkdir(parents=True)
  c.checkpoint = str(ckpt)
  with pytest.raises(errors.UserError, match='holds no finished checkpoint step'):
    checks.check_finetune_config(c, tmp_path / 'out')
  (ckpt / '30').mkdir()
  checks.check_finetune_config(c, tmp_path / 'out')
  c.step = 20
  with pytest.raises(errors.UserError, match=r'has no step 20; it has \[30\]'):
    checks.check_finetune_config(c, tmp_path / 'out')
  c.step = None
  c.tasks = ('trek',)
  with pytest.raises(errors.UserError, match="unknown task 'trek'"):
    checks.check_finetune_config(c, tmp_path / 'out')


def test_curated_arm_evaluates_on_the_curated_held_out_split(tmp_path, caplog):
  """Held-out rows of a streamed arm: the curated validation split where it has
  one, the prepared rows for the other domains (said once per dataset)."""
  import logging  # pylint: disable=import-outside-toplevel
  import types  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from lm_data.corpus.sources import Document  # pylint: disable=import-outside-toplevel
  from lm_data.curation import dataset  # pylint: disable=import-outside-toplevel
  from lm_data.input_pipeline import packing  # pylint: disable=import-outside-toplevel

  class Tokenizer:
    cls_id, sep_id = 2, 3

    def encode_batch(self, texts):
      return [[int(w) for w in t.split()] for t in texts]

  docs = [Document(f'{100 + k} {100 + k}', 'news', 'toy', str(k)) for k in range(6)]
  folder = dataset.write_documents(tmp_path, docs, domains=['news'],
                                   held_out=docs[:3], held_out_domains=['news'])
  prepared = types.SimpleNamespace(held_out={
      d: packing.PackedArrays(np.full((1, 8), 7), np.ones((1, 8), np.int32))
      for d in ('news', 'legal')})
  study = types.SimpleNamespace(domains=['legal', 'news'], tokenizer=Tokenizer(),
                                config=ml_collections.ConfigDict({'seq_len': 8}),
                                _held_out_fallback_logged=set())
  arm = ml_collections.ConfigDict({'name': 'a', 'data': {'curated_dir': folder}})
  with caplog.at_level(logging.INFO):
    for _ in range(2):
      held_out = run.Study.held_out(study, arm, prepared)
  want = packing.pack([[100, 100], [101, 101], [102, 102]], 8, cls_id=2, sep_id=3)
  np.testing.assert_array_equal(held_out.held_out['news'].tokens, want[0])
  assert held_out.held_out['legal'] is prepared.held_out['legal']
  assert held_out.curated == {'legal': False, 'news': True}
  assert sum('no held-out split for legal' in r.getMessage() for r in caplog.records) == 1
  no_stream = ml_collections.ConfigDict({'name': 'b', 'data': {'curated_dir': ''}})
  assert run.Study.held_out(study, no_stream, prepared) is prepared


def test_finetune_config_variants_and_missing_fields(tmp_path):
  smoke, tfds = finetune_config.get_config('smoke'), finetune_config.get_config('tfds')
  assert smoke.tasks == finetune_config.SMOKE_TASKS and smoke.min_train_steps == 0
  assert tfds.tasks == finetune_config.TFDS_TASKS and tfds.max_train_examples == 0
  both = finetune_config.get_config('smoke,tfds')
  assert both.tasks == finetune_config.TFDS_TASKS and both.seeds == 1
  assert finetune_config.get_config('smoke=false').to_dict() == finetune_config.get_config().to_dict()
  with pytest.raises(ValueError, match=r"^unknown config argument 'gpu'; known: smoke, tfds$"):
    finetune_config.get_config('smoke,gpu')
  # A hand-written config without the defaults' fields: one line naming them.
  partial = ml_collections.ConfigDict({'checkpoint': str(tmp_path), 'seeds': 1})
  with pytest.raises(errors.UserError, match=r'lacks arms, arm, step, tasks, random_seeds.*configs/finetune.py'):
    checks.check_finetune_config(partial, tmp_path / 'out')
  study = size_ablation.get_config('smoke')
  del study.finetune['patience']
  with pytest.raises(errors.UserError, match=r'lacks finetune.patience;'):
    checks.check_study_config(study)


def test_pretrained_record_is_reused_only_for_the_same_settings(tmp_path):
  """A resumed arm reads its pretraining record (held-out scores, count
  references) only while its settings and its kept checkpoint are unchanged."""
  from lm_data import utils  # pylint: disable=import-outside-toplevel
  from lm_data.study import records  # pylint: disable=import-outside-toplevel
  arm_dir = tmp_path / 'arm'
  settings = {'arm': {'name': 'a', 'epochs': 0}, 'budget': 100, 'num_train_steps': 40}
  record = records.ArmRecord(
      arm='a', recipe={}, unique_tokens=100, steps=30, tokens_seen=30 * 64,
      heldout=records.heldout_from_dict({'all': {'loss': 5.0, 'accuracy': 0.2, 'predictions': 1000}}))
  utils.write_json(arm_dir / run.PRETRAIN_RECORD,
                   {'config': settings, 'record': record.to_dict()}, sort_keys=True)
  study = types.SimpleNamespace()
  assert run.Study._pretrained_record(study, arm_dir, settings) is None  # no checkpoint 30
  (arm_dir / 'checkpoints' / '30').mkdir(parents=True)
  got = run.Study._pretrained_record(study, arm_dir, settings)
  assert got.to_dict() == record.to_dict()
  assert run.Study._pretrained_record(study, tmp_path / 'other', settings) is None
  # Other settings beside its checkpoints: the trainer would resume them as this
  # run, so it is refused; without checkpoints the arm simply pretrains again.
  with pytest.raises(errors.UserError, match=r"'budget': 100.*not as.*'budget': 50.*new --workdir"):
    run.Study._pretrained_record(study, arm_dir, {**settings, 'budget': 50})
  (arm_dir / 'checkpoints' / '30').rmdir()
  assert run.Study._pretrained_record(study, arm_dir, {**settings, 'budget': 50}) is None


def test_a_workdir_resumes_only_with_its_pretraining_settings(tmp_path):
  """A workdir's checkpoints are resumed as the run at hand, so changing what
  an arm pretrains (rate, model, an arm's recipe) fails at start; fine-tuning,
  logging, which arm runs, and arms added may change."""
  from lm_data import utils  # pylint: disable=import-outside-toplevel
  first = size_ablation.get_config('smoke')
  saved = run.plain(first)
  del saved['train']['decay_fraction']  # a field a later version added is not compared
  utils.write_json(tmp_path / 'config.json', saved, sort_keys=True)
  rate = size_ablation.get_config('smoke')
  rate.train.learning_rate = 1e-3
  checks.check_resume(tmp_path, rate)  # no checkpoint yet: a failed start may change anything
  (tmp_path / 'arms' / 'size_1-64' / 'checkpoints' / '30').mkdir(parents=True)
  same = size_ablation.get_config('smoke')
  same.finetune.seeds, same.train.log_every, same.arm = 5, 7, 'size_1-64'
  same.arms.append(ml_collections.ConfigDict(dict(same.arms[0].to_dict(), name='new')))
  same.arms[-1].data.budget_fraction = 0.5
  same.arms[1].data.budget_fraction = 0.5  # an arm without checkpoints may change
  checks.check_resume(tmp_path, same)
  with pytest.raises(errors.UserError,
                     match=r'other settings \(train.learning_rate 0.002 -> 0.001\); .*new --workdir'):
    run.run_study(rate, tmp_path)  # before any work: no tokenizer, config.json unchanged
  assert sorted(p.name for p in tmp_path.iterdir()) == ['arms', 'config.json']
  assert json.loads((tmp_path / 'config.json').read_text()) == saved
  recipe = size_ablation.get_config('smoke')
  recipe.arms[0].data.budget_fraction = 0.5
  recipe.model.preset = 'mini'
  with pytest.raises(errors.UserError, match=r"arms\[size_1-64\].data.budget_fraction "
                     r"0.015625 -> 0.5; model.preset 'tiny' -> 'mini'\)"):
    checks.check_resume(tmp_path, recipe)
  (tmp_path / 'config.json').write_text('[1, 2]')
  with pytest.raises(errors.UserError, match='is not a study config'):
    checks.check_resume(tmp_path, same)


def test_one_arm_of_a_job_array_gets_the_study_budget(tmp_path, monkeypatch):
  """With an equal budget, `:arm=NAME` trains on the smallest arm's token count
  of the whole study (as the full run does), not on its own whole corpus."""
  sizes = {'legal': 900, 'conversational': 500}  # tokens of each domain's corpus
  seen = {}
  budgets = run.Study.budgets

  class FakeStudy:
    is_main = True

    def __init__(self, config, workdir):
      pass

    def budgets(self, arms):
      return budgets(types.SimpleNamespace(
          prepare=lambda data, _: types.SimpleNamespace(stats={'train': {
              'tokens': sizes.get(data.domains[0] if len(data.domains) == 1 else '', 1000)}}),
          config=config), arms)

  def fake_run_arms(study, arms, budgets, overlap):
    seen.update(arms=[a.name for a in arms], budgets=budgets)

  config = domain_ablation.get_config('arm=only_legal')
  monkeypatch.setattr(run, 'Study', FakeStudy)
  monkeypatch.setattr(run, '_run_arms', fake_run_arms)
  run.run_study(config, tmp_path)
  assert seen['arms'] == ['only_legal']
  assert seen['budgets']['only_legal'] == 500


def test_a_stopped_pretraining_stops_the_running_evaluation_promptly(tmp_path):
  """SIGTERM while arm 2 pretrains: the study returns None once arm 1's
  background evaluation has stopped, instead of waiting for it to finish."""
  evaluating, seen = threading.Event(), {}

  class FakeStudy:
    workdir = tmp_path

    def pretrain_arm(self, arm, budget, k, n):
      if arm.name == 'a':
        return 'record a'
      assert evaluating.wait(30)   # arm 1's evaluation is running
      return None                  # as after SIGTERM: saved, not finished

    def evaluate_arm(self, arm, record, stop):
      evaluating.set()
      seen['stopped'] = stop.wait(60)
      raise trainer.Stopped('a: stopped')

  arms = [types.SimpleNamespace(name='a'), types.SimpleNamespace(name='b')]
  start = time.perf_counter()
  assert run._run_arms(FakeStudy(), arms, {'a': None, 'b': None}, overlap=True) is None
  assert seen == {'stopped': True} and time.perf_counter() - start < 30
