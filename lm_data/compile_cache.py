"""JAX's persistent compilation cache under the project cache folder.

Every arm of a study compiles the same init, train and eval programs (arms
differ in data, not shapes), and fine-tuning compiles one program per task
shape; with the cache, arms 2..N and every re-run load them from disk instead
of compiling again. Keys include the program, compile options, backend and
jaxlib version, so a stale entry is never used. Entries are a few MB per
program; deleting the folder is always safe (JAX's size cap needs `filelock`).
"""

import os

import jax
from absl import logging

from lm_data import utils
from lm_data.corpus import fetch

CACHE_SUBDIR = 'jax_compilation_cache'
DISABLE_ENV = 'LM_DATA_COMPILATION_CACHE'  # '0' / 'off': leave the cache off
# JAX's default (1 s) skips most CPU compiles of the small presets and the
# fine-tuning heads; below ~0.2 s a disk read saves nothing.
MIN_COMPILE_SECS = 0.2


def enable(cache_dir: str | os.PathLike | None = None) -> utils.AnyPath | None:
  """Turns the cache on at `<cache_dir or cache_root()>/jax_compilation_cache`.

  Call before the first compilation. A cache folder already set through
  $JAX_COMPILATION_CACHE_DIR wins; $LM_DATA_COMPILATION_CACHE=0 turns it off.
  Returns the folder in use, or None when off.
  """
  if os.environ.get(DISABLE_ENV, '').lower() in ('0', 'off', 'false', 'no'):
    return None
  current = jax.config.jax_compilation_cache_dir
  path = utils.path(current) if current else fetch.cache_root(cache_dir) / CACHE_SUBDIR
  if not current:
    jax.config.update('jax_compilation_cache_dir', str(path))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_SECS)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  logging.debug('JAX compilation cache: %s', path)  # stderr stays one line on a user error
  return path
