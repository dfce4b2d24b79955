"""Synthetic degradation (degrade.degrade): each document's noise is drawn
from its own generator, so each is rewritten alone."""

from lm_data.curation import degrade as degrade_lib
from lm_data.curation import registry


registry.register(registry.Step(
    name='degrade',
    run=lambda docs, ctx: degrade_lib.degrade(docs, ctx.degrade, ctx.seed)))
