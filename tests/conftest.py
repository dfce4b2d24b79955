"""Test set-up: two fake CPU devices (for the jit/pmap data-parallel tests), repo on
sys.path, and tests marked `network` skipped when PyPI is unreachable."""

import functools
import os
import socket
import sys

import pytest

# Must happen before jax is imported anywhere.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
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
