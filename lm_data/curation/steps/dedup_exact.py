"""Exact dedup (dedup.exact_dedup): documents with equal normalised text form
a group, which keeps its first document in input order."""

from lm_data.curation import dedup
from lm_data.curation import registry

registry.register(registry.Step(
    name='dedup_exact',
    run=lambda docs, ctx: dedup.exact_dedup(docs),
    scope='group',
    group_key=lambda doc: dedup.normalized_text_hash(doc.text)))
