"""Export and import of everything a study reads, for a machine without network.

On a machine with network (`bundle.py` at the repository root is the CLI):

  python main.py --config=configs/size_ablation.py --workdir=runs/size --prepare_only
  python bundle.py export --config=configs/size_ablation.py --workdir=runs/size \
      --bundle=size.tar.gz

On the machine without network (same code, `pip install -e .` done):

  python bundle.py import --bundle=size.tar.gz --workdir=runs/size
  python main.py --config=configs/size_ablation.py:gpu --workdir=runs/size

A bundle is a gzipped tar:

  MANIFEST.json
  cache/prepared/<key>/...                  packed rows of every arm (prepare.py)
  cache/tfds/lm_data_corpus/<domain>/<v>/   the parsed corpora (TFDS array_record)
  cache/tasks/<task>-<fingerprint>.json.gz  the parsed tasks (finetune/tasks)
  workdir/tokenizer/...                     the study's tokenizer; prepared rows
                                            are keyed by its sha256

The pinned archives (~130 MB of wheels and sdists) are left out: nothing reads
them once the above exist, so a run on the importing machine fetches nothing.
The corpora let that machine prepare rows for other settings of the same
domains (another seq_len or budget) without network; a new tokenizer
(another vocab_size) works too, but then the tasks' decontamination and all
arms are prepared again there. Identical files (a full-budget arm and the full
corpus it was measured on) are stored once, as tar hard links. `import` writes
under `$LM_DATA_CACHE` (default ~/.cache/lm_data), so the run must leave
`config.cache_dir` empty.
"""

import io
import json
import os
import pathlib
import shutil
import tarfile
import tempfile
import time

import ml_collections
from absl import logging

from lm_data import errors
from lm_data import utils
from lm_data.corpus import fetch
from lm_data.corpus import sources
from lm_data.corpus import tfds_builder
from lm_data.finetune import tasks as tasks_lib
from lm_data.input_pipeline import prepare as prepare_lib
from lm_data.study import run

FORMAT = 1
MANIFEST = 'MANIFEST.json'
CACHE = 'cache'
WORKDIR = 'workdir'
TOKENIZER_DIR = 'tokenizer'
_COMPRESS_LEVEL = 6


def _files_under(folder: pathlib.Path, arc_prefix: str) -> list[tuple[str, pathlib.Path]]:
  return [(f'{arc_prefix}/{p.relative_to(folder).as_posix()}', p)
          for p in sorted(folder.rglob('*')) if p.is_file() and not p.name.startswith('.')]




def bundle_files(manifest: dict) -> list[tuple[str, pathlib.Path]]:
  """(name in the bundle, local file) for what `run.prepare_study` returned."""
  files = []
  for folder in map(pathlib.Path, manifest['prepared']):
    files += _files_under(folder, f'{CACHE}/{prepare_lib.PREPARED_DIR}/{folder.name}')
  tfds_root = tfds_builder.default_data_dir()
  for domain in manifest['domains']:
    if domain in sources.ALL_DOMAINS:
      data_dir = pathlib.Path(tfds_builder.builder(domain).data_dir)  # built by prepare_study
      files += _files_under(data_dir, f'{CACHE}/tfds/{data_dir.relative_to(tfds_root).as_posix()}')
  for path in filter(None, manifest['tasks'].values()):
    path = pathlib.Path(path)
    files.append((f'{CACHE}/{tasks_lib.TASK_CACHE_DIR}/{path.name}', path))
  tokenizer_dir = pathlib.Path(manifest['tokenizer']).parent
  files += _files_under(tokenizer_dir, f'{WORKDIR}/{TOKENIZER_DIR}')
  return files


def export_bundle(config: ml_collections.ConfigDict, workdir: str | os.PathLike[str],
                  bundle: str | os.PathLike[str]) -> dict:
  """Prepares the study of `config` (if not yet done) and writes `bundle`.

  Returns the manifest written into it, with the bundle's size in bytes.
  """
  start = time.perf_counter()
  if config.get('cache_dir'):
    raise errors.UserError(f'config.cache_dir={config.cache_dir!r}: export reads the default '
                           f'cache; leave cache_dir empty and set ${fetch.CACHE_ENV} instead')
  prepared = run.prepare_study(config, workdir)
  files = bundle_files(prepared)
  bundle = pathlib.Path(bundle)
  bundle.parent.mkdir(parents=True, exist_ok=True)
  manifest = {
      'format': FORMAT, 'config': run.plain(config),
      'tokenizer_sha256': fetch.sha256_of(pathlib.Path(prepared['tokenizer'])),
      'prepared': [pathlib.Path(p).name for p in prepared['prepared']],
      'arms': {arm: pathlib.Path(p).name for arm, p in prepared['arms'].items()},
      'domains': prepared['domains'],
      'tasks': {k: v and pathlib.Path(v).name for k, v in prepared['tasks'].items()},
      'files': len(files), 'bytes': sum(p.stat().st_size for _, p in files)}
  first_of: dict[str, str] = {}  # content sha256 -> name of its first copy
  with utils.atomic_file(bundle) as f, tarfile.open(
      fileobj=f, mode='w:gz', compresslevel=_COMPRESS_LEVEL) as tar:
    blob = json.dumps(manifest, indent=1, sort_keys=True).encode()
    info = tarfile.TarInfo(MANIFEST)
    info.size, info.mtime = len(blob), int(time.time())
    tar.addfile(info, io.BytesIO(blob))
    for name, path in files:
      digest = fetch.sha256_of(path)
      if digest in first_of:
        info = tar.gettarinfo(path, arcname=name)
        info.type, info.linkname, info.size = tarfile.LNKTYPE, first_of[digest], 0
        tar.addfile(info)
      else:
        first_of[digest] = name
        tar.add(path, arcname=name, recursive=False)
  manifest['bundle_bytes'] = bundle.stat().st_size
  logging.info('bundle %s: %d files, %.1f MB of data in %.1f MB (%d stored once), %.0fs',
               bundle, len(files), manifest['bytes'] / 1e6, manifest['bundle_bytes'] / 1e6,
               len(files) - len(first_of), time.perf_counter() - start)
  return manifest


def _children(folder: pathlib.Path) -> list[pathlib.Path]:
  return sorted(folder.iterdir()) if folder.is_dir() else []


def _move_in(src: pathlib.Path, dest: pathlib.Path) -> bool:
  """Moves `src` to `dest` unless `dest` exists (content-addressed: same content)."""
  if dest.exists():
    return False
  dest.parent.mkdir(parents=True, exist_ok=True)
  try:
    os.rename(src, dest)
  except OSError:
    if not dest.exists():
      raise
    return False  # Another process imported the same item first.
  return True


def import_bundle(bundle: str | os.PathLike[str], workdir: str | os.PathLike[str]) -> dict:
  """Unpacks `bundle` into the cache (`fetch.cache_root()`) and `workdir`.

  Prepared folders, corpora and task files already present are kept (their
  names are content keys). A different tokenizer already in `workdir` is an
  error: that workdir's checkpoints and prepared rows belong to it.
  Returns the bundle's manifest.
  """
  start = time.perf_counter()
  bundle, workdir = pathlib.Path(bundle), pathlib.Path(workdir)
  if not bundle.is_file():
    raise errors.UserError(f'no bundle at {bundle}; make one with: python bundle.py export ...')
  root = fetch.cache_root()
  root.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(dir=root, prefix='.import-'))
  try:
    with tarfile.open(bundle, 'r:*') as tar:
      tar.extractall(tmp, filter='data')
    manifest = json.loads((tmp / MANIFEST).read_text())
    if manifest.get('format') != FORMAT:
      raise errors.UserError(f'{bundle} has bundle format {manifest.get("format")}; this code '
                             f'reads format {FORMAT}: export it again with this code')
    new_tokenizer = tmp / WORKDIR / TOKENIZER_DIR
    old_tokenizer = workdir / TOKENIZER_DIR
    for path in _children(new_tokenizer):
      dest = old_tokenizer / path.name
      if dest.exists() and fetch.sha256_of(dest) != fetch.sha256_of(path):
        raise errors.UserError(f'{dest} differs from the tokenizer in {bundle}: import into a '
                               'new --workdir (this one belongs to another tokenizer)')
    moved = {'prepared': 0, 'tfds': 0, 'tasks': 0}
    cache = tmp / CACHE
    for folder in _children(cache / prepare_lib.PREPARED_DIR):
      moved['prepared'] += _move_in(folder, prepare_lib.default_cache() / folder.name)
    tfds = cache / 'tfds'
    for version_dir in sorted(p for p in tfds.glob('*/*/*') if p.is_dir()):
      moved['tfds'] += _move_in(version_dir, root / 'tfds' / version_dir.relative_to(tfds))
    for path in _children(cache / tasks_lib.TASK_CACHE_DIR):
      (root / tasks_lib.TASK_CACHE_DIR).mkdir(parents=True, exist_ok=True)
      os.replace(path, root / tasks_lib.TASK_CACHE_DIR / path.name)
      moved['tasks'] += 1
    old_tokenizer.mkdir(parents=True, exist_ok=True)
    for path in _children(new_tokenizer):
      _move_in(path, old_tokenizer / path.name)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  logging.info('imported %s into %s and %s: %d prepared folders, %d corpora, %d tasks new '
               '(%.0fs)', bundle, root, workdir, moved['prepared'], moved['tfds'],
               moved['tasks'], time.perf_counter() - start)
  return manifest
