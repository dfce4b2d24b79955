"""Curation: a registry of steps `docs -> (docs, stats)` run in process or on Beam.

The rules themselves live here once (`quality`, `dedup`, `degrade`,
`decontaminate`); `registry` holds the steps (one module each under `steps/`,
each wrapping one rule); `run_steps` is
the in-process runner that `prepare` uses; `beam_pipeline` (optional extra
`apache-beam`) runs the same steps distributed and writes a TFDS dataset.
"""

from lm_data.curation.registry import Context
from lm_data.curation.registry import get
from lm_data.curation.registry import names
from lm_data.curation.registry import quality_steps
from lm_data.curation.registry import recipe_steps
from lm_data.curation.registry import register
from lm_data.curation.registry import run_steps
from lm_data.curation.registry import Step
