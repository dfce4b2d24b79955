"""The `--config=FILE:ARG` argument parser every config file shares.

A module of its own so that configs/finetune.py (which configs/common.py
imports) can use it too without an import cycle.
"""

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """'smoke,arm=size_1-4' -> {'smoke': True, 'arm': 'size_1-4'} over `defaults`.

  As big_vision's `parse_arg`: a bare word sets a boolean, `k=v` keeps the type
  of the default (str when it has none). An unknown key is a one-line error.
  """
  out = ml_collections.ConfigDict(defaults)
  for part in filter(None, (arg or '').split(',')):
    key, sep, value = part.partition('=')
    if key not in out:
      raise ValueError(f'unknown config argument {key!r}; known: {", ".join(out)}')
    if not sep:
      out[key] = True
    elif isinstance(out[key], bool):
      out[key] = value.lower() in ('1', 'true', 'yes')
    else:
      out[key] = type(out[key])(value)
  return out
