"""benchmarks/gpu_peers.py runs end to end on tiny shapes (CPU); missing peers are notes."""

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.train import fixtures


def test_gpu_peers_smoke_runs_ours_and_skips_missing_peers(tmp_path):
  out = subprocess.run(
      [sys.executable, 'benchmarks/gpu_peers.py', '--model=tiny', '--batch=4', '--seq=32',
       '--vocab=256', '--dtype=f32', '--steps=1', '--warmup=0',
       '--peers=ours,torch_eager,hf_flax', f'--hf_flax_path={tmp_path}'],
      capture_output=True, text=True, cwd=fixtures.REPO_ROOT, timeout=600, check=True)
  lines = [json.loads(line) for line in out.stdout.splitlines()]
  ours = [r for r in lines if r.get('peer') == 'ours']
  assert len(ours) == 1
  assert ours[0]['tokens_per_s'] > 0 and ours[0]['model'] == 'tiny'
  assert ours[0]['tokens_per_s'] * ours[0]['s_per_step'] == pytest.approx(4 * 32)
  notes = ' '.join(r['note'] for r in lines if 'note' in r)
  if importlib.util.find_spec('torch') is None:
    assert 'torch_eager skipped: torch not importable' in notes
  assert f'hf_flax skipped: transformers<5 (HF Flax models) not installed in {tmp_path}' in notes
  assert 'wall_s' in lines[-1]


@pytest.mark.slow
def test_gpu_session_dry_run_records_levers_and_their_ratio(tmp_path):
  """benchmarks/gpu_session.py's lever stage on a CPU: one JSON line per lever,
  then the summary of each lever's tokens/s over the default's."""
  subprocess.run(
      [sys.executable, 'benchmarks/gpu_session.py', '--dry_run', f'--out={tmp_path}',
       '--part=levers', '--levers=fused_qkv,default_again', '--budget_s=1500'],
      capture_output=True, text=True, cwd=fixtures.REPO_ROOT, timeout=1800, check=True)
  lines = [json.loads(line) for line in (tmp_path / 'session.jsonl').read_text().splitlines()]
  assert [r['stage'] for r in lines] == ['environment', 'lever:fused_qkv',
                                         'lever:default_again', 'summary', 'end']
  assert lines[1]['fused_qkv'] and not lines[2]['fused_qkv']
  assert lines[1]['model'] == 'tiny' and lines[1]['tokens_per_s'] > 0
  ratio = lines[3]['lever_over_default']
  assert ratio['default_again'] == 1.0
  assert ratio['fused_qkv'] == lines[1]['tokens_per_s'] / lines[2]['tokens_per_s']
  assert (tmp_path / 'stderr.txt').exists()
