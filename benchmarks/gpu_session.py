r"""One prepared GPU session for issue 11: peers, lever A/Bs and the model tests.

  python3 benchmarks/gpu_session.py --out=$OUT --hf_flax_path=/tmp/hfflax   # one H200
  python benchmarks/gpu_session.py --dry_run --out=/tmp/gs                  # tiny shapes, CPU

Stages, in priority order, each started only while --budget_s lasts (what is
left over is a `skipped` note, so the whole run ends inside the budget; the
default 450 s leaves room under the device tool's 8-minute plan):
  1. peers at base b128 x s128 (`gpu_peers.py`: lm_data, torch.compile,
     HF Flax, torch eager), the acceptance shape;
  2. `tests/models` on the accelerator (JAX_PLATFORMS=cuda);
  3. each lm_data lever alone at base b128 x s128, against stage 1's lm_data
     run and a second default run at the end (the noise): fused QKV, f32
     activations, dropout masks from jax.random.bits under threefry / rbg /
     unsafe_rbg, no dropout, two XLA GPU flags, batch 256;
  4. peers at base b32 x s512, then large b128 x s128.
Everything lands in OUT (three files, the device tool's limit is 8):
`session.jsonl` (every JSON line, tagged with its stage, then a `summary`
line with each lever's tokens/s over the default's), `tests.txt`, `stderr.txt`.
--part picks stages (peers: 1 and 4; levers: 3; tests: 2).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from absl import app
from absl import flags

REPO = Path(__file__).resolve().parents[1]
FULL = {'vocab': 30522, 'dtype': 'bf16', 'steps': 10, 'warmup': 3,
        'main': ('base', 128, 128), 'more': [('base', 32, 512), ('large', 128, 128)],
        'big_batch': 256, 'tests': []}
# Dry run: the same stages at shapes a CPU does in seconds; one test file.
DRY = {'vocab': 256, 'dtype': 'f32', 'steps': 2, 'warmup': 1,
       'main': ('tiny', 4, 32), 'more': [('tiny', 2, 64)], 'big_batch': 8,
       'tests': ['tests/models/test_dropout.py']}
PEER_ORDER = 'ours,torch_compile,hf_flax,torch_eager'
# name -> (train_step.py flags, extra XLA_FLAGS); each changes one thing.
LEVERS = {
    'fused_qkv': (['--fused_qkv'], ''),
    'f32_activations': (['--f32_activations'], ''),
    'dropout_bits_threefry': (['--dropout_mask=bits', '--prng_impl=threefry2x32'], ''),
    'dropout_bits_rbg': (['--dropout_mask=bits', '--prng_impl=rbg'], ''),
    'dropout_bits_unsafe_rbg': (['--dropout_mask=bits', '--prng_impl=unsafe_rbg'], ''),
    'xla_no_triton_gemm': ([], '--xla_gpu_enable_triton_gemm=false'),
    'xla_no_command_buffer': ([], '--xla_gpu_enable_command_buffer='),
    'dropout_0': (['--dropout=0'], ''),
    'batch_big': ([], ''),  # the batch is set below
    'default_again': ([], ''),
}

_OUT = flags.DEFINE_string('out', os.environ.get('OUT', '/tmp/gpu_session'), 'Output folder.')
_BUDGET = flags.DEFINE_float('budget_s', 450.0, 'Start nothing after this many seconds.')
_DRY = flags.DEFINE_bool('dry_run', False, 'Tiny shapes in f32: proves the script on a CPU.')
_PART = flags.DEFINE_list('part', ['peers', 'tests', 'levers'], 'Stages: peers, tests, levers.')
_LEVERS = flags.DEFINE_list('levers', list(LEVERS), 'Levers to A/B (stage 3).')
_HF_FLAX = flags.DEFINE_string('hf_flax_path', None,
                               'Folder with transformers<5 for the HF Flax peer only.')


class Session:
  """Runs children against one deadline and appends their lines to OUT."""

  def __init__(self, out: Path, budget_s: float, shapes: dict):
    self.out, self.shapes = out, shapes
    self.deadline = time.perf_counter() + budget_s
    self.lines = out / 'session.jsonl'
    self.stderr = out / 'stderr.txt'

  def left(self) -> float:
    return self.deadline - time.perf_counter()

  def emit(self, record: dict) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    with self.lines.open('a') as f:
      f.write(line + '\n')

  def run(self, stage: str, cmd: list[str], env: dict | None = None,
          stdout_file: Path | None = None) -> list[dict]:
    """Runs cmd with the time left; returns (and records) its JSON lines."""
    left = self.left()
    if left < 5:
      self.emit({'stage': stage, 'note': 'skipped: budget spent'})
      return []
    began = time.perf_counter()
    try:
      out = subprocess.run(cmd, capture_output=True, text=True, timeout=left, cwd=REPO,
                           env={**os.environ, **(env or {})})
      stdout, stderr, rc = out.stdout, out.stderr, out.returncode
    except subprocess.TimeoutExpired as e:
      stdout, stderr, rc = _text(e.stdout), _text(e.stderr), 'timeout'
    with self.stderr.open('a') as f:
      f.write(f'=== {stage}: {" ".join(cmd)} (rc {rc})\n{stderr[-20000:]}\n')
    if stdout_file:
      stdout_file.write_text(stdout)
    records = []
    for line in stdout.splitlines():
      try:
        record = json.loads(line)
      except ValueError:
        continue
      if isinstance(record, dict):
        records.append({'stage': stage, **record})
        self.emit(records[-1])
    if rc != 0:
      tail = stderr.strip().splitlines()[-1:] or stdout.strip().splitlines()[-1:]
      self.emit({'stage': stage, 'note': f'exit {rc} after {time.perf_counter() - began:.0f} s',
                 'last_line': tail})
    return records

  def common(self) -> list[str]:
    s = self.shapes
    return [f'--vocab={s["vocab"]}', f'--dtype={s["dtype"]}', f'--steps={s["steps"]}',
            f'--warmup={s["warmup"]}']

  def peers(self, stage: str, shape) -> list[dict]:
    model, batch, seq = shape
    cmd = [sys.executable, 'benchmarks/gpu_peers.py', f'--model={model}', f'--batch={batch}',
           f'--seq={seq}', f'--peers={PEER_ORDER}', f'--budget_s={max(self.left() - 5, 1):.0f}',
           *self.common()]
    if _HF_FLAX.value:
      cmd.append(f'--hf_flax_path={_HF_FLAX.value}')
    return self.run(stage, cmd)

  def lever(self, name: str) -> list[dict]:
    args, xla = LEVERS[name]
    model, batch, seq = self.shapes['main']
    if name == 'batch_big':
      batch = self.shapes['big_batch']
    cmd = [sys.executable, 'benchmarks/train_step.py', '--impl=ours', f'--model={model}',
           f'--batch={batch}', f'--seq={seq}', *self.common(), *args]
    env = {'XLA_FLAGS': ' '.join(f for f in (os.environ.get('XLA_FLAGS', ''), xla) if f)}
    return self.run(f'lever:{name}', cmd, env=env)


def _text(x) -> str:
  return x.decode(errors='replace') if isinstance(x, bytes) else (x or '')


def _environment() -> dict:
  import platform
  info = {'stage': 'environment', 'python': platform.python_version()}
  for cmd, key in ((['nvidia-smi', '--query-gpu=name,driver_version,clocks.max.sm',
                     '--format=csv,noheader'], 'gpu'),
                   ([sys.executable, '-c', 'import jax; print(jax.__version__, jax.devices())'],
                    'jax')):
    try:
      info[key] = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                                 cwd=REPO).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
      info[key] = f'unavailable: {e}'
  return info


def main(argv):
  del argv
  unknown = (set(_PART.value) - {'peers', 'tests', 'levers'}) | (set(_LEVERS.value) - set(LEVERS))
  if unknown:
    raise app.UsageError(f'unknown --part or --levers entries: {sorted(unknown)}')
  out = Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  shapes = DRY if _DRY.value else FULL
  session = Session(out, _BUDGET.value, shapes)
  session.emit({**_environment(), 'dry_run': _DRY.value, 'budget_s': _BUDGET.value})
  default = []
  if 'peers' in _PART.value:
    default = [r for r in session.peers('peers', shapes['main']) if r.get('peer') == 'ours']
  if 'tests' in _PART.value:
    env = {} if _DRY.value else {'JAX_PLATFORMS': 'cuda'}
    session.run('tests', [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                          *(shapes['tests'] or ['tests/models'])],
                env=env, stdout_file=out / 'tests.txt')
    if (out / 'tests.txt').exists():
      session.emit({'stage': 'tests',
                    'result': (out / 'tests.txt').read_text().strip().splitlines()[-1:]})
  levers = {}
  if 'levers' in _PART.value:
    for name in _LEVERS.value:
      records = [r for r in session.lever(name) if 'tokens_per_s' in r]
      if records:
        levers[name] = records[-1]['tokens_per_s']
  if 'peers' in _PART.value:
    for shape in shapes['more']:
      session.peers('peers', shape)
  base = [r['tokens_per_s'] for r in default] + (
      [levers['default_again']] if 'default_again' in levers else [])
  if base and levers:
    reference = sum(base) / len(base)
    session.emit({'stage': 'summary', 'default_tokens_per_s': base,
                  'lever_over_default': {k: v / reference for k, v in levers.items()}})
  session.emit({'stage': 'end', 'seconds_left': round(session.left(), 1)})


if __name__ == '__main__':
  app.run(main)
