"""13-gram decontamination (decontaminate.decontaminate). The parts of a text
split by `sources` are decided together, so a group is one source text."""

import re

from lm_data.curation import decontaminate as decontaminate_lib
from lm_data.curation import registry

# Counts that add up over groups of documents (the rest describe the
# evaluation texts or are rates).
_ADDITIVE = re.compile(
    r'^(input|kept|removed|removed_by_domain/.*|by_domain/[^/]*/(input|'
    r'removed)|by_task/[^/]*/(documents|documents_by_domain/.*))$')


def _run(docs, ctx):
  return decontaminate_lib.decontaminate(
      docs, eval_texts=ctx.eval_texts,
      coverage_threshold=ctx.decontaminate_coverage)


def _counts(details):
  return {k: v for k, v in registry.additive_counts(details).items()
          if _ADDITIVE.match(k)}


registry.register(registry.Step(
    name='decontaminate', run=_run, scope='group',
    group_key=decontaminate_lib.source_key, counts=_counts))
