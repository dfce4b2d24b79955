"""BERT models: config, presets, pure-JAX attention, MLM and task heads."""

from lm_data.models.attention import blocked_attention
from lm_data.models.attention import dot_product_attention
from lm_data.models.attention import mask_from_segments
from lm_data.models.bert import BertConfig
from lm_data.models.bert import BertEncoder
from lm_data.models.bert import BertForMLM
from lm_data.models.bert import convert_qkv_params
from lm_data.models.heads import BertForQuestionAnswering
from lm_data.models.heads import BertForSequenceClassification
from lm_data.models.heads import BertForTokenClassification
from lm_data.models.presets import make_config
from lm_data.models.presets import PRESETS
