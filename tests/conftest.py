"""Test set-up: two fake CPU devices (for the jit/pmap data-parallel tests), repo on
sys.path, and tests marked `network` skipped when PyPI is unreachable."""

import atexit
import functools
import os
import shutil
import socket
import sys
import tempfile

import pytest

# Must happen before jax is imported anywhere.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')


def _session_dir(env: str, prefix: str) -> None:
  """$env -> a temp folder made by the first process (subprocesses and xdist
  workers inherit it) and removed when that process exits."""
  if env not in os.environ:
    os.environ[env] = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, os.environ[env], ignore_errors=True)


# Control results computed by tests stay out of the user's cache (and a stale
# one there cannot stand in for a computation a test checks).
_session_dir('LM_DATA_CONTROLS_CACHE', 'lm_data_controls_')
# Tests compile the same tiny programs many times over (each `pretrain` call
# builds fresh jitted closures): one persistent compilation cache per test
# session, as `lm_data.compile_cache` gives a study, turns repeats into disk reads.
_session_dir('JAX_COMPILATION_CACHE_DIR', 'lm_data_jax_cache_')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')  # compile_cache.MIN_COMPILE_SECS (jax not imported yet)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PYPI_HOST = 'pypi.org'
PROBE_TIMEOUT_S = 5


@functools.cache
def pypi_reachable() -> bool:
  try:
    socket.create_connection((PYPI_HOST, 443), timeout=PROBE_TIMEOUT_S).close()
    return True
  except OSError:
    return False


def pytest_runtest_setup(item):
  if item.get_closest_marker('network') and not pypi_reachable():
    pytest.skip(f'{PYPI_HOST}:443 unreachable within {PROBE_TIMEOUT_S} s: '
                'this test downloads pinned archives from PyPI')


@pytest.fixture
def fake_gcs(monkeypatch):
  """`gs://` paths served from memory, through epath's real gs:// code path.

  etils has no in-memory file system of its own (`epath.testing.mock_epath`
  only wraps the local backend's functions), but without TensorFlow epath
  opens gs:// through fsspec's 'gcs' protocol, so fsspec's MemoryFileSystem
  registered under that name stands in for gcsfs. Returns the store
  ({'bucket/path': MemoryFile}) to look at what was written.
  """
  import importlib  # pylint: disable=import-outside-toplevel
  from etils.epath import backend  # pylint: disable=import-outside-toplevel
  from fsspec.implementations import memory  # pylint: disable=import-outside-toplevel

  class FakeGcs(memory.MemoryFileSystem):
    protocol = ('gs', 'gcs')
    store = {}
    pseudo_dirs = ['']

    @classmethod
    def _strip_protocol(cls, path):  # gcsfs' form: 'bucket/key', no slash
      path = os.fspath(path)
      for prefix in ('gs://', 'gcs://'):
        if path.startswith(prefix):
          path = path[len(prefix):]
      return path.strip('/')

  for name in ('gs', 'gcs'):
    monkeypatch.setitem(importlib.import_module('fsspec.registry')._registry,  # pylint: disable=protected-access
                        name, FakeGcs)
  backend.fsspec_backend._get_filesystem.cache_clear()  # pylint: disable=protected-access
  yield FakeGcs.store
  backend.fsspec_backend._get_filesystem.cache_clear()  # pylint: disable=protected-access
  FakeGcs.clear_instance_cache()
