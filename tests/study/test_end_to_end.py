"""main.py on the smoke config, on real (cached) data: report files, and a kill -9
mid-pretraining followed by a re-run gives a byte-identical results.json; so
does one more re-run, which loads every finished arm from disk. The first run
evaluates arms sequentially, the others overlap evaluation with pretraining."""

import difflib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from lm_data.study import records

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = 'configs/size_ablation.py:smoke'
TIMEOUT_S = 1200
pytestmark = [pytest.mark.slow, pytest.mark.network]


def _main(workdir: pathlib.Path, *flags: str) -> subprocess.Popen:
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  return subprocess.Popen([sys.executable, 'main.py', f'--config={CONFIG}',
                           f'--workdir={workdir}', *flags], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> str:
  _, err = proc.communicate(timeout=TIMEOUT_S)
  assert proc.returncode == 0, err[-4000:]
  return err


def _numbers(workdir: pathlib.Path) -> dict:
  results = json.loads((workdir / 'report' / 'results.json').read_text())
  return {arm['arm']: {'heldout': arm['heldout'], 'tasks': arm['tasks'],
                       'unique_tokens': arm['unique_tokens']} for arm in results['arms']}


def _assert_same_bytes(a: pathlib.Path, b: pathlib.Path) -> None:
  if a.read_bytes() != b.read_bytes():
    diff = difflib.unified_diff(a.read_text().splitlines(), b.read_text().splitlines(),
                                str(a), str(b), n=2, lineterm='')
    raise AssertionError('\n'.join(list(diff)[:60]))


def test_smoke_study_writes_report_and_survives_kill(tmp_path):
  # The straight run evaluates each arm after its pretraining; the killed and
  # resumed runs evaluate arm k while arm k+1 pretrains: same bytes expected.
  straight = tmp_path / 'straight'
  err = _finish(_main(straight, '--config.overlap_downstream=False'))
  report = straight / 'report'
  assert (report / 'report.md').read_text().strip()
  assert f'report: {(report / "report.md").absolute()}' in err
  assert list(report.glob('*.png'))
  assert len(_numbers(straight)) == 2
  arm = json.loads((report / 'results.json').read_text())['arms'][0]
  # Held-out loss split by position kind, beside the count-model references.
  assert {'loss_mask', 'loss_other', 'predictions_mask'} <= set(arm['heldout']['all'])
  refs = arm['mlm_baselines']['all']
  assert set(refs) == {'mask', 'other', 'all'}
  assert refs['mask']['predictions'] == arm['heldout']['all']['predictions_mask']
  assert list((straight / 'tensorboard' / arm['arm']).glob('events.out.tfevents.*'))
  # The typed record reads back what the study wrote, field for field.
  written = json.loads((straight / 'arms' / arm['arm'] / 'arm_result.json').read_text())
  assert records.ArmRecord.from_dict(written).to_dict() == written

  killed = tmp_path / 'killed'
  proc = _main(killed)
  first_ckpt = killed / 'arms' / 'size_1-64' / 'checkpoints' / '30'
  deadline = time.time() + TIMEOUT_S
  while not first_ckpt.is_dir():
    assert proc.poll() is None, proc.stderr.read()[-4000:]
    assert time.time() < deadline
    time.sleep(0.5)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / 'arms' / 'size_1-64' / 'arm_result.json').exists()
  _finish(_main(killed))
  assert _numbers(killed) == _numbers(straight)
  results = pathlib.Path('report') / 'results.json'
  _assert_same_bytes(straight / results, killed / results)
  _finish(_main(killed))  # every arm finished: all records come from arm_result.json
  _assert_same_bytes(straight / results, killed / results)
  # Killed after pretraining, before its evaluation finished: the re-run reads
  # the pretraining record instead of scoring the held-out rows again.
  (killed / 'arms' / 'size_1-4' / 'arm_result.json').unlink()
  err = _finish(_main(killed))
  assert 'size_1-4 already pretrained (step' in err
  _assert_same_bytes(straight / results, killed / results)
