"""Cramming compression filter (quality.compression_filter) at its absolute
threshold, so each document is decided alone."""

from lm_data.curation import quality
from lm_data.curation import registry


def _run(docs, ctx):
  def count_tokens(texts):
    return [len(ids) for ids in ctx.tokenizer.encode_batch(texts)]
  return quality.compression_filter(docs, count_tokens=count_tokens)


def _counts(details):
  # The mean ratio and the threshold do not add up over parts.
  return {k: v for k, v in registry.additive_counts(details).items()
          if k != 'max_tokens_per_char'}


registry.register(registry.Step(name='compression', run=_run, counts=_counts))
