"""Keeps the console readable: INFO from lm_data, warnings and errors from libraries."""

import logging as std_logging

from absl import logging

_PROJECT_MARKER = '/lm_data/'


class _ProjectInfoFilter(std_logging.Filter):
  """Orbax, TFDS and JAX log every checkpoint and dataset at INFO."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or _PROJECT_MARKER in record.pathname


def quiet_libraries() -> None:
  logging.get_absl_handler().addFilter(_ProjectInfoFilter())
