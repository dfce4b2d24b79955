"""Synthetic degradation (degrade.degrade): each document's noise is drawn
from its own generator, so each is rewritten alone."""

from lm_data.curation import registry
from lm_data.input_pipeline import degrade as degrade_lib


registry.register(registry.Step(
    name='degrade',
    run=lambda docs, ctx: degrade_lib.degrade(docs, ctx.degrade, ctx.seed)))
