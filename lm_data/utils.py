"""Helpers shared across the packages, each defined once here.

* Files: `path` (epath for gs:// and other URIs, pathlib for local paths),
  `atomic_write` / `write_json` (a reader never sees a half-written file) and
  `json_safe` (plain JSON types from numpy values and configs).
* Hashing and seeds: `mix64` (the splitmix64 finaliser), `hash_counters`,
  `derive_seed` (one 64-bit seed per purpose), `name_hash` and `rng` (a numpy
  generator for a seed and named or numbered streams).
* The special token ids every tokenizer of this project is trained with.
"""

from collections.abc import Iterator, Mapping
import contextlib
import hashlib
import io
import json
import math
import os
import pathlib
import posixpath
import tempfile
from typing import Any, BinaryIO

from etils import epath
import numpy as np

# ------------------------------------------------------------------ files

PathLike = str | os.PathLike[str]
AnyPath = pathlib.Path | epath.Path


def is_remote(path: PathLike) -> bool:
  """True for a URI (gs://, s3://, ...), which only epath can open."""
  return '://' in os.fspath(path)


def path(path_like: PathLike) -> AnyPath:
  """The path object for `path_like`: epath for a URI, pathlib otherwise.

  Workdirs, checkpoints, prepared data and reports go through here, so a
  `gs://` workdir is read and written through epath (fsspec/gcsfs, or
  tf.io.gfile when TensorFlow is installed) without gcsfuse, while a local
  path keeps pathlib's exact behaviour (os.access, mmap, atomic renames).
  """
  if is_remote(path_like):
    return epath.Path(path_like)
  return pathlib.Path(path_like)


def _split_uri(path_like: PathLike) -> tuple[str, str]:
  scheme, rest = os.fspath(path_like).split('://', 1)
  return f'{scheme}://', '/' + rest


def relative_path(path_like: PathLike, start: PathLike) -> str:
  """`path_like` relative to folder `start` (both local, or both under one URI scheme)."""
  if not is_remote(start):
    return os.path.relpath(pathlib.Path(path_like).absolute(), pathlib.Path(start).absolute())
  (scheme, target), (start_scheme, base) = _split_uri(path_like), _split_uri(start)
  if scheme != start_scheme:
    raise ValueError(f'{path_like} and {start} are on different file systems')
  return posixpath.relpath(target, base)


def resolve_path(start: PathLike, relative: PathLike) -> AnyPath:
  """`start / relative` with '..' collapsed (os.path.normpath would make gs:// gs:/)."""
  if is_remote(relative):
    return path(relative)
  if not is_remote(start) or os.path.isabs(relative):
    return pathlib.Path(os.path.normpath(pathlib.Path(start) / relative))
  scheme, base = _split_uri(start)
  return epath.Path(scheme + posixpath.normpath(posixpath.join(base, os.fspath(relative)))[1:])


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
  """A binary file to write that appears at `path` whole, when the block ends.

  It is a temp file beside `path`, renamed into place on success and removed
  on error. Readers (another process waiting for the tokenizer, a cache
  look-up, a report reader) see the old file or the whole new one, never a
  partial write. On an object store (`gs://`) the object is written in one
  upload when the block ends, which is atomic there.
  """
  if is_remote(path):
    buffer = io.BytesIO()
    yield buffer
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
  try:
    with os.fdopen(fd, 'wb') as f:
      yield f
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> None:
  """Writes `data` (str as UTF-8) to `path` with `atomic_file`."""
  if isinstance(data, str):
    data = data.encode('utf-8')
  with atomic_file(path) as f:
    f.write(data)


def write_json(path: str | os.PathLike[str], obj: Any, *, sort_keys: bool = False,
               allow_nan: bool = True) -> None:
  """`obj` as JSON indented by one space, written atomically."""
  atomic_write(path, json.dumps(obj, indent=1, sort_keys=sort_keys, allow_nan=allow_nan))


def json_safe(value: Any, *, finite: bool = True) -> Any:
  """Plain JSON types (dict, list, int, float, bool, str, None) from `value`.

  Numpy scalars and arrays, tuples and ConfigDicts (in their field order, also
  those inside lists, which `ConfigDict.to_dict` would leave alone) are
  converted. With `finite`, NaN and infinities become None (strict JSON);
  without, they stay floats.
  """
  if hasattr(value, 'to_json_best_effort'):     # ml_collections.ConfigDict
    value = json.loads(value.to_json_best_effort())
  if isinstance(value, np.ndarray):
    value = value.tolist()                      # a 0-d array becomes a scalar
  if isinstance(value, Mapping):
    return {str(k): json_safe(v, finite=finite) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v, finite=finite) for v in value]
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value) if not finite or math.isfinite(value) else None
  return value


# ------------------------------------------------------- hashing and seeds

# splitmix64 constants (Steele, Lea & Flood 2014).
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# Bytes of a sha256 digest used to turn a name into a seed component.
_NAME_HASH_BYTES = 8


def mix64(x: np.ndarray | int) -> np.ndarray:
  """splitmix64 finaliser: a bijection of uint64 that scrambles all bits."""
  x = np.asarray(x).astype(np.uint64, copy=False)  # no copy on the hot (masking) path
  with np.errstate(over='ignore'):
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def hash_counters(*counters: np.ndarray | int) -> np.ndarray:
  """Hash chain of broadcastable integer counters into uint64."""
  h = np.zeros((), np.uint64)
  with np.errstate(over='ignore'):
    for c in counters:
      h = mix64((h + _GOLDEN) ^ np.asarray(c).astype(np.uint64))
  return h


def derive_seed(seed: int, purpose: int) -> int:
  """A 64-bit seed for one purpose (shuffling, masking, ...) of `seed`."""
  return int(hash_counters(seed, purpose))


def name_hash(name: str) -> int:
  """A stable (process- and platform-independent) integer for a string."""
  digest = hashlib.sha256(name.encode('utf-8')).digest()
  return int.from_bytes(digest[:_NAME_HASH_BYTES], 'little')


def rng(seed: int, *streams: int | str) -> np.random.Generator:
  """A numpy generator determined by `seed` and streams (names or numbers).

  Names enter through `name_hash`, so a stream such as (domain, 'subset') is
  the same in every process and on every platform.
  """
  return np.random.default_rng(
      [seed, *(name_hash(s) if isinstance(s, str) else s for s in streams)])


# ---------------------------------------------------------- special tokens

# The tokenizer is trained with these pieces at these ids (tokenizer.py checks
# it), so masking and packing can use the ids without loading a tokenizer.
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = 0, 1, 2, 3, 4
SPECIAL_IDS = frozenset({PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID})
