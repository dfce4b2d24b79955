"""Two JAX processes on this machine (localhost coordinator, gloo CPU collectives),
and SIGTERM preemption of a real training process."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np

from tests.train import fixtures

TIMEOUT_S = 300


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env():
  env = dict(os.environ)
  env.pop('XLA_FLAGS', None)  # one CPU device per process
  env['PYTHONPATH'] = str(fixtures.REPO_ROOT)
  return env


def _cmd(workdir, *extra):
  return [sys.executable, '-m', 'tests.train.worker', f'--workdir={workdir}', *extra]


def _result(stdout: str) -> dict:
  return json.loads(stdout.strip().splitlines()[-1])


def _run_processes(workdir, n, *extra) -> list[dict]:
  port = _free_port()
  procs = [subprocess.Popen(_cmd(workdir, f'--num_processes={n}', f'--process_id={k}',
                                 f'--port={port}', *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=fixtures.REPO_ROOT) for k in range(n)]
  outs = []
  for p in procs:
    out, err = p.communicate(timeout=TIMEOUT_S)
    assert p.returncode == 0, err[-3000:]
    outs.append(_result(out))
  return outs


def _assert_same_params(a: dict, b: dict):
  assert a.keys() == b.keys()
  np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)],
                             rtol=1e-5, atol=1e-5)


def test_two_processes_match_one_and_resume(tmp_path):
  single = _run_processes(tmp_path / 'single', 1)[0]
  assert single['step'] == 6 and single['start_step'] == 0

  crashed = _run_processes(tmp_path / 'two', 2, '--crash_at=4')
  assert [r['step'] for r in crashed] == [-1, -1]  # both died after the step-3 checkpoint
  resumed = _run_processes(tmp_path / 'two', 2)
  for r in resumed:
    assert r['start_step'] == 3 and r['step'] == 6
    _assert_same_params(r['digest'], single['digest'])


def test_sigterm_saves_and_exits_then_resumes(tmp_path):
  workdir = tmp_path / 'run'
  args = ['--steps=200', '--checkpoint_every=1000', '--batch_delay=0.02']
  proc = subprocess.Popen(_cmd(workdir, *args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=_env(),
                          cwd=fixtures.REPO_ROOT)
  metrics = workdir / 'metrics.jsonl'
  deadline = time.time() + TIMEOUT_S
  while not (metrics.exists() and metrics.read_text().count('\n') >= 3):
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    assert time.time() < deadline, 'training never started'
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=TIMEOUT_S)
  assert proc.returncode == 0, err[-3000:]
  stopped = _result(out)
  assert not stopped['finished'] and 0 < stopped['step'] < 200
  assert (workdir / 'checkpoints' / str(stopped['step'])).is_dir()

  resumed = subprocess.run(_cmd(workdir, *args), capture_output=True, text=True,
                           env=_env(), cwd=fixtures.REPO_ROOT, timeout=TIMEOUT_S, check=True)
  resumed = _result(resumed.stdout)
  assert resumed['start_step'] == stopped['step'] and resumed['finished']
  straight = subprocess.run(_cmd(tmp_path / 'straight', *args), capture_output=True,
                            text=True, env=_env(), cwd=fixtures.REPO_ROOT,
                            timeout=TIMEOUT_S, check=True)
  _assert_same_params(resumed['digest'], _result(straight.stdout)['digest'])
