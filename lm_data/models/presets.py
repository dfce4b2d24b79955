"""Model size presets: name -> (num_layers, hidden_size), BERT's shape rules."""

import dataclasses

from lm_data.models import bert

# name -> (num_layers, hidden_size), as in Turc et al. (2019) "Well-Read
# Students Learn Better" plus BERT base/large.
PRESETS: dict[str, tuple[int, int]] = {
    'tiny': (2, 128),
    'mini': (4, 256),
    'small': (4, 512),
    'medium': (8, 512),
    'base': (12, 768),
    'large': (24, 1024),
}
HEAD_DIM = 64  # heads = hidden_size / HEAD_DIM.
FFN_MULTIPLIER = 4  # intermediate_size = FFN_MULTIPLIER * hidden_size.


def make_config(name: str, vocab_size: int, **overrides) -> bert.BertConfig:
  """The BertConfig of preset `name`; `overrides` replace any field."""
  if name not in PRESETS:
    raise ValueError(f'unknown model preset {name!r}; known: '
                     f'{", ".join(PRESETS)}.')
  fields = {f.name for f in dataclasses.fields(bert.BertConfig)}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f'unknown BertConfig field(s) {", ".join(unknown)}; '
                     f'known: {", ".join(sorted(fields))}.')
  num_layers, hidden_size = PRESETS[name]
  kwargs = dict(
      vocab_size=vocab_size,
      hidden_size=hidden_size,
      num_layers=num_layers,
      num_heads=hidden_size // HEAD_DIM,
      intermediate_size=FFN_MULTIPLIER * hidden_size,
  )
  kwargs.update(overrides)
  return bert.BertConfig(**kwargs)
