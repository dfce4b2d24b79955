"""Curation: a registry of steps `docs -> (docs, stats)` run in process or on Beam.

`registry` holds the steps (one module each under `steps/`, each wrapping the
one implementation of its rule in `lm_data.input_pipeline`); `run_steps` is
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
