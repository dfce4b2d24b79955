"""benchmarks/gpu_peers.py runs end to end on tiny shapes (CPU); missing peers are notes."""

import importlib.util
import json
import subprocess
import sys

from tests.train import fixtures


def test_gpu_peers_smoke_runs_ours_and_skips_missing_peers():
  out = subprocess.run(
      [sys.executable, 'benchmarks/gpu_peers.py', '--model=tiny', '--batch=4', '--seq=32',
       '--vocab=256', '--dtype=f32', '--steps=1', '--warmup=0',
       '--peers=ours,torch_eager,hf_flax'],
      capture_output=True, text=True, cwd=fixtures.REPO_ROOT, timeout=600, check=True)
  lines = [json.loads(line) for line in out.stdout.splitlines()]
  ours = [r for r in lines if r.get('peer') == 'ours']
  assert len(ours) == 1
  assert ours[0]['tokens_per_s'] > 0 and ours[0]['model'] == 'tiny'
  assert ours[0]['tokens_per_s'] * ours[0]['s_per_step'] == 4 * 32
  notes = ' '.join(r['note'] for r in lines if 'note' in r)
  if importlib.util.find_spec('torch') is None:
    assert 'torch_eager skipped: torch not importable' in notes
  assert 'wall_s' in lines[-1]
