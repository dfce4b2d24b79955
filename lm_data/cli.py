"""What main.py and finetune.py share: a user's mistake costs one line, not a traceback.

A mistake in the flags (a typo'd `--config.*` override, a config file that
does not load, an unknown flag) or an `errors.UserError` raised by the library
prints `error: <what to change>` on stderr and exits with status 1. Anything
else is a bug and keeps its traceback; `--verbosity=1` shows the traceback of
a user error too.
"""

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from typing import NoReturn

from absl import flags
from absl import logging

from lm_data import errors

USER_ERROR_STATUS = 1
CONFIG_FLAG = 'config'
_TRACEBACK = 'Traceback (most recent call last)'
_EXCEPTION_PREFIX = re.compile(r'^[\w.]*(Error|Exception): ')


def fail(message: str) -> NoReturn:
  """Prints `error: message` and ends the process at once, with status 1.

  No interpreter shutdown: after a failed checkpoint read, TensorStore
  callbacks still in flight would print 'Event loop is closed' tracebacks.
  """
  logging.flush()
  sys.stdout.flush()
  print(f'error: {message}', file=sys.stderr, flush=True)
  os._exit(USER_ERROR_STATUS)  # pylint: disable=protected-access


def _lines(text: str) -> list[str]:
  return [line.strip() for line in str(text).splitlines() if line.strip()]


def _flag_error(text: str) -> str:
  """absl's message, with a config file's embedded traceback cut to its last line."""
  lines = _lines(text) or ['invalid flags']
  if not any(line.startswith(_TRACEBACK) for line in lines):
    return lines[0]
  head = lines[0].replace('Error whilst parsing config file:', '').strip()
  return f'{head} {_EXCEPTION_PREFIX.sub("", lines[-1])}'


def _override_error(error: Exception, argv: list[str]) -> str | None:
  """'--config.a.b=1: ...' for the `--config.*` override that `error` is about, else None.

  ml_collections applies overrides while flags are parsed; a field that does
  not exist raises AttributeError(KeyError("'b'\\nDid you mean ...")), a path
  it cannot parse a ValueError naming the path.
  """
  message = error
  while isinstance(message, BaseException) and message.args:
    message = message.args[0]
  lines = _lines(message)
  if not lines:
    return None
  missing = isinstance(error, (AttributeError, KeyError))
  key = lines[0].strip('\'"')
  for arg in argv[1:]:
    path = arg.split('=', 1)[0].lstrip('-')
    if not path.startswith(f'{CONFIG_FLAG}.'):
      continue
    path = path[len(CONFIG_FLAG) + 1:]
    if missing and path.split('.')[-1] == key:
      return ' '.join([f'{arg}: the config has no field {key!r}.'] + lines[1:])
    if not missing and path in lines[0]:
      return f'{arg}: {" ".join(lines)}'
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """`app.run(main, flags_parser=cli.parse_flags)`: a mistake in the flags is one line."""
  try:
    remaining = flags.FLAGS(argv)
  except flags.Error as e:
    fail(_flag_error(str(e)))
  except (AttributeError, KeyError, IndexError, TypeError, ValueError) as e:
    # Raised while applying a --config.* override, or a bug (re-raised).
    message = _override_error(e, argv)
    if message is None:
      raise  # not an override: a bug, e.g. in a config file
    fail(message)
  if CONFIG_FLAG in flags.FLAGS and flags.FLAGS[CONFIG_FLAG].value is not None:
    try:  # a config file that failed to load raises its OSError on first use
      flags.FLAGS[CONFIG_FLAG].value.get(CONFIG_FLAG)
    except OSError as e:
      fail(f'--{CONFIG_FLAG}: {_lines(str(e))[-1]}')
  return remaining


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
  """A UserError (or a flags error) raised inside ends the program in one line."""
  try:
    yield
  except (errors.UserError, flags.Error) as e:
    if logging.get_verbosity() >= logging.DEBUG:
      raise  # --verbosity=1: the traceback too
    message = (_lines(str(e)) or [type(e).__name__])[0]
    cause = e.__cause__
    if isinstance(cause, errors.UserError) and _lines(str(cause)):
      # A user error re-raised with context (e.g. a task around a fetch): keep the reason.
      reason = _lines(str(cause))[0]
      message += '' if reason in message else f' ({reason})'
    fail(message)


def verify_cache() -> int:
  """`--verify_cache`: one line per cached archive; the exit status (1 on a mismatch)."""
  # pylint: disable=g-import-not-at-top,unused-import
  from lm_data.corpus import fetch
  from lm_data.corpus import sources  # the pins of the source archives ...
  from lm_data.finetune import tasks  # ... and of the task archives
  entries = fetch.verify_cache()
  for entry in entries:
    print(f'{entry.status:9} {entry.path.name}' + (f'  {entry.detail}' if entry.detail else ''))
  bad = sum(entry.status == 'mismatch' for entry in entries)
  print(f'{len(entries)} cached archives in {fetch.cache_root() / fetch.ARCHIVES_DIR}: '
        f'{bad} with a wrong sha256')
  return USER_ERROR_STATUS if bad else 0
