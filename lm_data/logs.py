"""Keeps the console readable: INFO from lm_data, warnings and errors from libraries."""

import logging as std_logging

from absl import logging

_PROJECT_MARKER = '/lm_data/'


# Library warnings that are expected here and say nothing to act on: Orbax warns
# each time a checkpoint is opened read-only, which fine-tuning does per arm.
_EXPECTED_WARNINGS = ('Given directory is read only',)


class _ProjectInfoFilter(std_logging.Filter):
  """Orbax, TFDS and JAX log every checkpoint and dataset at INFO."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if _PROJECT_MARKER in record.pathname:
      return True
    return (record.levelno >= std_logging.WARNING
            and not str(record.msg).startswith(_EXPECTED_WARNINGS))


def quiet_libraries() -> None:
  logging.get_absl_handler().addFilter(_ProjectInfoFilter())
