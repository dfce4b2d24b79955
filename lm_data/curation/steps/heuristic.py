"""Gopher/C4 quality heuristics (quality.heuristic_filter), per document."""

from lm_data.curation import registry
from lm_data.input_pipeline import quality

registry.register(registry.Step(
    name='heuristic',
    run=lambda docs, ctx: quality.heuristic_filter(docs)))
