"""The error type for mistakes a user fixes, as opposed to bugs.

`main.py` and `finetune.py` print a `UserError` as one line naming the fix and
exit with status 1; any other exception keeps its traceback. Library code
raises `UserError` (or a subclass) from validation that needs no data, and for
inputs the user controls: a path, a pinned archive, a checkpoint on disk.
"""

import contextlib
from collections.abc import Iterator


class UserError(ValueError):
  """A wrong setting, path or file; the message says what to change, in one line."""


@contextlib.contextmanager
def as_user_errors(context: str = '') -> Iterator[None]:
  """Re-raises a ValueError or TypeError from library validation as a UserError.

  For checks that run on the config alone, before any work: there, such an
  error can only come from a setting (an unknown name, a value out of range,
  an unknown keyword in an overrides dict).
  """
  try:
    yield
  except UserError:
    raise
  except (ValueError, TypeError) as e:
    raise UserError(f'{context}: {e}' if context else str(e)) from e
