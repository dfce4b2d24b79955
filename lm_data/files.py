"""File helpers shared by the packages: a write that is never seen half done."""

import os
import pathlib
import tempfile


def atomic_write(path: pathlib.Path, data: bytes) -> None:
  """Writes `data` to a temp file beside `path`, then renames it into place.

  Readers (another process waiting for the tokenizer, a cache look-up) see the
  old file or the whole new one, never a partial write.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise
