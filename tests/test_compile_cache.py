"""The persistent compilation cache: a second process loads what the first compiled."""

import subprocess
import sys

from lm_data import compile_cache
from tests.train import fixtures

_SCRIPT = '''
import sys
import jax, jax.numpy as jnp
from jax import monitoring
from lm_data import compile_cache
hits = []
monitoring.register_event_listener(
    lambda event, **kw: hits.append(event) if event.endswith('cache_hits') else None)
path = compile_cache.enable()
print(path)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)  # this tiny program too
jax.jit(lambda x: jnp.tanh(x) @ x.T)(jnp.ones((64, 64))).block_until_ready()
print(len(hits))
'''


def _run(env):
  out = subprocess.run([sys.executable, '-c', _SCRIPT], capture_output=True, text=True,
                       env=env, cwd=fixtures.REPO_ROOT, timeout=300, check=True)
  return out.stdout.split()


def test_second_process_hits_the_cache_under_the_cache_root(tmp_path, monkeypatch):
  env = {**__import__('os').environ, 'LM_DATA_CACHE': str(tmp_path)}
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  env.pop(compile_cache.DISABLE_ENV, None)
  path, hits = _run(env)
  assert path == str(tmp_path / compile_cache.CACHE_SUBDIR) and hits == '0'
  assert any((tmp_path / compile_cache.CACHE_SUBDIR).iterdir())
  assert _run(env)[1] != '0'
  env[compile_cache.DISABLE_ENV] = '0'
  assert _run(env) == ['None', '0']
