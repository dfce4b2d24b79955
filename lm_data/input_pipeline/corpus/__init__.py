"""The embedded corpus as a TFDS dataset (array_record), and TFDS text readers."""

from lm_data.input_pipeline.corpus.builder import builder
from lm_data.input_pipeline.corpus.builder import default_data_dir
from lm_data.input_pipeline.corpus.builder import doc_key
from lm_data.input_pipeline.corpus.builder import iter_tfds_documents
from lm_data.input_pipeline.corpus.builder import LmDataCorpus
from lm_data.input_pipeline.corpus.builder import load_split
from lm_data.input_pipeline.corpus.builder import MIN_VALIDATION_DOCS
from lm_data.input_pipeline.corpus.builder import parse_stats
from lm_data.input_pipeline.corpus.builder import SPLITS
from lm_data.input_pipeline.corpus.builder import TRAIN
from lm_data.input_pipeline.corpus.builder import VALIDATION
from lm_data.input_pipeline.corpus.builder import VALIDATION_FRACTION
from lm_data.input_pipeline.corpus.builder import validation_mask
