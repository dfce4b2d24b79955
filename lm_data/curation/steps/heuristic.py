"""Gopher/C4 quality heuristics (quality.heuristic_filter), per document."""

from lm_data.curation import quality
from lm_data.curation import registry

registry.register(registry.Step(
    name='heuristic',
    run=lambda docs, ctx: quality.heuristic_filter(docs)))
