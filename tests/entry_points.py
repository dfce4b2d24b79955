"""Runs main.py / finetune.py in a subprocess and checks a user error's output."""

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


def run(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=TIMEOUT_S, check=False,
                        env={**os.environ, **(env or {})})


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
  """Exit status 1 and a single 'error: ...' line holding every fragment; no traceback."""
  output = result.stdout + result.stderr
  lines = [line for line in output.splitlines() if line.strip()]
  assert result.returncode == 1 and len(lines) == 1, output[-3000:]
  assert lines[0].startswith('error: ') and 'Traceback' not in output, output[-3000:]
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  return lines[0]
