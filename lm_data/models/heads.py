"""Fine-tuning heads on the BERT encoder (submodule 'encoder' in every head).

All heads share the encoder's call signature
`(input_ids, type_ids, position_ids, segment_ids, *, deterministic)`, so
pretrained encoder params drop in as `params['encoder']`. Logits are float32.
Sentence pairs use `BertForSequenceClassification` with type_ids 0/1.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_data.models import bert
from lm_data.models import dropout as dropout_lib

_CLS_POSITION = 0  # [CLS] is the first token of every encoded example.
_QA_OUTPUTS = 2  # Start and end logits.


class Pooler(nn.Module):
  """BERT's pooler: dense + tanh on the [CLS] hidden state."""
  config: bert.BertConfig

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    cfg = self.config
    x = bert.Linear(cfg, (cfg.hidden_size, cfg.hidden_size),
                    name='dense')(h[:, _CLS_POSITION])
    return jnp.tanh(x)


def _classifier(config: bert.BertConfig, num_outputs: int) -> bert.Linear:
  return bert.Linear(config, (config.hidden_size, num_outputs),
                     name='classifier')


class BertForSequenceClassification(nn.Module):
  """Pooled [CLS] -> dropout -> dense: logits [B, num_labels].

  num_labels=1 is regression (the caller reads logits[:, 0] as the value).
  """
  config: bert.BertConfig
  num_labels: int

  @nn.compact
  def __call__(self, input_ids: jax.Array, type_ids: jax.Array,
               position_ids: jax.Array, segment_ids: jax.Array, *,
               deterministic: bool) -> jax.Array:
    cfg = self.config
    h = bert.BertEncoder(cfg, name='encoder')(
        input_ids, type_ids, position_ids, segment_ids,
        deterministic=deterministic)
    pooled = Pooler(cfg, name='pooler')(h)
    pooled = dropout_lib.Dropout(cfg.dropout_rate, cfg.dropout_mask)(
        pooled, deterministic=deterministic)
    return _classifier(cfg, self.num_labels)(pooled)


class BertForTokenClassification(nn.Module):
  """Per-token dropout -> dense: logits [B, S, num_labels]."""
  config: bert.BertConfig
  num_labels: int

  @nn.compact
  def __call__(self, input_ids: jax.Array, type_ids: jax.Array,
               position_ids: jax.Array, segment_ids: jax.Array, *,
               deterministic: bool) -> jax.Array:
    cfg = self.config
    h = bert.BertEncoder(cfg, name='encoder')(
        input_ids, type_ids, position_ids, segment_ids,
        deterministic=deterministic)
    h = dropout_lib.Dropout(cfg.dropout_rate, cfg.dropout_mask)(h, deterministic=deterministic)
    return _classifier(cfg, self.num_labels)(h)


class BertForQuestionAnswering(nn.Module):
  """Extractive QA: (start_logits, end_logits), each float32 [B, S].

  The caller masks positions outside the context before the softmax.
  """
  config: bert.BertConfig

  @nn.compact
  def __call__(self, input_ids: jax.Array, type_ids: jax.Array,
               position_ids: jax.Array, segment_ids: jax.Array, *,
               deterministic: bool) -> tuple[jax.Array, jax.Array]:
    cfg = self.config
    h = bert.BertEncoder(cfg, name='encoder')(
        input_ids, type_ids, position_ids, segment_ids,
        deterministic=deterministic)
    logits = _classifier(cfg, _QA_OUTPUTS)(h)
    return logits[..., 0], logits[..., 1]
