"""Task heads: shapes, float32 logits, and numpy checks of each head's math."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_data.models import bert
from lm_data.models import heads

_CONFIG = bert.BertConfig(vocab_size=40, hidden_size=16, num_layers=1,
                          num_heads=2, intermediate_size=32, max_len=12)
_BATCH, _SEQ, _NUM_LABELS = 2, 8, 3
_TOL = 1e-5
# One jitted encoder shared by all heads' reference computations.
_ENCODER_APPLY = jax.jit(functools.partial(bert.BertEncoder(_CONFIG).apply,
                                           deterministic=True))


def _batch():
  rng = np.random.default_rng(0)
  input_ids = rng.integers(5, _CONFIG.vocab_size, (_BATCH, _SEQ), np.int32)
  input_ids[:, 0] = 2  # [CLS]
  type_ids = np.array([[0, 0, 0, 1, 1, 1, 0, 0], [0] * _SEQ], np.int32)
  segment_ids = np.array([[1] * 6 + [0, 0], [1] * _SEQ], np.int32)
  position_ids = np.tile(np.arange(_SEQ, dtype=np.int32), (_BATCH, 1))
  return input_ids, type_ids, position_ids, segment_ids


def _make(name):
  if name == 'sequence':
    return heads.BertForSequenceClassification(_CONFIG, _NUM_LABELS)
  if name == 'regression':
    return heads.BertForSequenceClassification(_CONFIG, 1)
  if name == 'token':
    return heads.BertForTokenClassification(_CONFIG, _NUM_LABELS)
  return heads.BertForQuestionAnswering(_CONFIG)


@functools.cache
def _init_and_apply(name):
  """(params, outputs, hidden states of a plain BertEncoder on those params)."""
  model, batch = _make(name), _batch()
  params = jax.jit(functools.partial(model.init, deterministic=True))(
      jax.random.key(0), *batch)
  noise = np.random.default_rng(1)  # Non-zero biases so every param counts.
  params = jax.tree.map(
      lambda x: x + 0.1 * noise.normal(size=x.shape).astype(x.dtype), params)
  out = jax.jit(functools.partial(model.apply, deterministic=True))(
      params, *batch)
  hidden = _ENCODER_APPLY({'params': params['params']['encoder']}, *batch)
  return params['params'], out, np.asarray(hidden, np.float64)


def _np_dense(x, p):
  return x @ np.asarray(p['kernel'], np.float64) + np.asarray(p['bias'])


@pytest.mark.parametrize('name,shape', [('sequence', (_BATCH, _NUM_LABELS)),
                                        ('regression', (_BATCH, 1)),
                                        ('token', (_BATCH, _SEQ, _NUM_LABELS))])
def test_classifier_shapes(name, shape):
  _, logits, _ = _init_and_apply(name)
  chex.assert_shape(logits, shape)
  chex.assert_type(logits, jnp.float32)


def test_qa_shapes():
  _, (start, end), _ = _init_and_apply('qa')
  chex.assert_shape([start, end], (_BATCH, _SEQ))
  chex.assert_type([start, end], jnp.float32)


@pytest.mark.parametrize('name', ['sequence', 'regression', 'token', 'qa'])
def test_encoder_params_drop_in(name):
  params, _, _ = _init_and_apply(name)
  encoder = jax.eval_shape(functools.partial(
      bert.BertEncoder(_CONFIG).init, deterministic=True),
                            jax.random.key(0), *_batch())['params']
  chex.assert_trees_all_equal_shapes(params['encoder'], encoder)


def test_sequence_classification_matches_numpy():
  params, logits, hidden = _init_and_apply('sequence')
  pooled = np.tanh(_np_dense(hidden[:, 0], params['pooler']['dense']))
  np.testing.assert_allclose(logits, _np_dense(pooled, params['classifier']),
                             atol=_TOL, rtol=_TOL)


def test_token_classification_matches_numpy():
  params, logits, hidden = _init_and_apply('token')
  np.testing.assert_allclose(logits, _np_dense(hidden, params['classifier']),
                             atol=_TOL, rtol=_TOL)


def test_question_answering_matches_numpy():
  params, (start, end), hidden = _init_and_apply('qa')
  want = _np_dense(hidden, params['classifier'])
  np.testing.assert_allclose(start, want[..., 0], atol=_TOL, rtol=_TOL)
  np.testing.assert_allclose(end, want[..., 1], atol=_TOL, rtol=_TOL)


def test_head_dropout_only_when_not_deterministic():
  params, plain, _ = _init_and_apply('sequence')
  model, batch = _make('sequence'), _batch()
  train = jax.jit(lambda p, rng: model.apply(
      {'params': p}, *batch, deterministic=False, rngs={'dropout': rng}))
  a, b = train(params, jax.random.key(0)), train(params, jax.random.key(1))
  assert np.abs(a - plain).max() > 1e-4
  assert np.abs(a - b).max() > 1e-4
