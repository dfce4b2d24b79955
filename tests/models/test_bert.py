"""BERT encoder and MLM head against numpy implementations of the equations."""

import dataclasses
import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_data.models import bert
from lm_data.models import presets

_CONFIG = bert.BertConfig(vocab_size=50, hidden_size=32, num_layers=2,
                          num_heads=2, intermediate_size=64, max_len=16)
_BATCH, _SEQ, _PREDICTIONS = 2, 10, 3
_F32_TOL = 1e-4
_BF16_TOL = 0.1
_PARAM_NOISE = 0.1  # Perturbs init (zero biases, unit LN): every param counts.


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  input_ids = rng.integers(5, _CONFIG.vocab_size, (_BATCH, _SEQ), np.int32)
  # Row 0: documents of 4 and 3 tokens packed, then padding; row 1: one doc.
  segment_ids = np.array([[1, 1, 1, 1, 2, 2, 2, 0, 0, 0], [1] * _SEQ],
                         np.int32)
  position_ids = np.array([[0, 1, 2, 3, 0, 1, 2, 0, 0, 0], range(_SEQ)],
                          np.int32)
  type_ids = np.array([[0] * _SEQ, [0] * 5 + [1] * 5], np.int32)
  mlm_positions = np.array([[0, 5, 6], [9, 2, 2]], np.int32)
  return input_ids, type_ids, position_ids, segment_ids, mlm_positions


# Jitted functions are cached per (module class, config) so that tests share
# compilations: on a shared 2-core CPU compiling dominates the test time.
@functools.cache
def _init_fn(cls, cfg):
  return jax.jit(functools.partial(cls(cfg).init, deterministic=True))


def _init(model, batch, seed=0):
  params = _init_fn(type(model), model.config)(jax.random.key(seed), *batch)
  noise = np.random.default_rng(seed)
  return jax.tree.map(
      lambda x: x + _PARAM_NOISE * noise.normal(size=x.shape).astype(x.dtype),
      params)


@functools.cache
def _apply_fn(cls, cfg, *, deterministic=True):
  """Jitted (params, batch, dropout_rng) -> output."""
  return jax.jit(lambda p, b, rng: cls(cfg).apply(
      p, *b, deterministic=deterministic, rngs={'dropout': rng}))


def _apply(model, params, batch):
  return _apply_fn(type(model), model.config)(params, batch,
                                              jax.random.key(0))


# --- numpy reference -------------------------------------------------------


def _np_layer_norm(x, p, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p['scale'] + p['bias']


def _np_act(name, x):
  if name == 'relu':
    return np.maximum(x, 0)
  if name == 'gelu_exact':
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
  # google-research/bert modeling.gelu (tanh approximation).
  return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _np_attention(q, k, v, seg):
  s = np.einsum('bqnd,bknd->bnqk', q, k) / math.sqrt(q.shape[-1])
  allowed = (seg[:, None, :, None] == seg[:, None, None, :]) & (
      seg[:, None, :, None] != 0)
  s = np.where(allowed, s, -np.inf)
  row_max = np.where(allowed.any(-1, keepdims=True),
                     s.max(-1, keepdims=True), 0)
  p = np.where(allowed, np.exp(s - row_max), 0)
  p = p / np.maximum(p.sum(-1, keepdims=True), 1e-30)
  return np.einsum('bnqk,bknd->bqnd', p, v)


def _np_dense(x, p):
  return x @ p['kernel'] + p['bias']


def _np_encoder_layer(h, seg, p, cfg):
  """H̃ = LN(H + Attn(H) W_O);  H = LN(H̃ + f(H̃ W₁) W₂)."""
  batch, seq, hidden = h.shape
  q, k, v = (np.einsum('bsh,hnd->bsnd', h, p['attention'][name]['kernel'])
             + p['attention'][name]['bias']  # Kernel [H, N, D], bias [N, D].
             for name in ('query', 'key', 'value'))
  ctx = _np_attention(q, k, v, seg).reshape(batch, seq, hidden)
  w_o = p['attention']['out']['kernel'].reshape(hidden, hidden)
  attn = ctx @ w_o + p['attention']['out']['bias']
  h = _np_layer_norm(h + attn, p['attention_ln'], cfg.layer_norm_eps)
  ffn = _np_dense(_np_act(cfg.activation, _np_dense(h, p['mlp_in'])),
                  p['mlp_out'])
  return _np_layer_norm(h + ffn, p['output_ln'], cfg.layer_norm_eps)


def _np_encoder(params, batch, cfg):
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  input_ids, type_ids, position_ids, segment_ids = batch[:4]
  x = (p['token_embed']['embedding'][input_ids]
       + p['position_embed']['embedding'][position_ids]
       + p['type_embed']['embedding'][type_ids])
  h = _np_layer_norm(x, p['embed_ln'], cfg.layer_norm_eps)
  for i in range(cfg.num_layers):
    h = _np_encoder_layer(h, segment_ids, p[f'layer_{i}'], cfg)
  return h


# --- presets and config ----------------------------------------------------


@pytest.mark.parametrize('name,layers,hidden', [
    ('tiny', 2, 128), ('mini', 4, 256), ('small', 4, 512),
    ('medium', 8, 512), ('base', 12, 768), ('large', 24, 1024)])
def test_presets(name, layers, hidden):
  cfg = presets.make_config(name, vocab_size=8192)
  assert (cfg.num_layers, cfg.hidden_size) == (layers, hidden)
  assert cfg.num_heads == hidden // 64
  assert cfg.intermediate_size == 4 * hidden
  assert cfg.vocab_size == 8192


def test_make_config_overrides_and_errors():
  cfg = presets.make_config('tiny', 100, dtype='bfloat16', activation='relu')
  assert cfg.dtype == jnp.bfloat16 and cfg.activation == 'relu'
  with pytest.raises(ValueError, match="unknown model preset 'mnii'; known: "
                     'tiny, mini'):
    presets.make_config('mnii', 100)
  with pytest.raises(ValueError, match='unknown BertConfig field.*hiden_size'):
    presets.make_config('tiny', 100, hiden_size=3)


@pytest.mark.parametrize('field,value,match', [
    ('activation', 'swish', 'unknown activation'),
    ('attention', 'flash', 'unknown attention'),
    ('num_heads', 3, 'not divisible'),
    ('dtype', 'float16', 'unsupported compute dtype'),
    ('position_init', 'rope', 'unknown position_init'),
    ('norm_position', 'sandwich', 'unknown norm_position')])
def test_config_rejects_bad_values(field, value, match):
  with pytest.raises(ValueError, match=match):
    dataclasses.replace(_CONFIG, **{field: value})


# --- modules ---------------------------------------------------------------


def test_shapes_and_dtypes():
  batch = _batch()
  params = _init(bert.BertForMLM(_CONFIG), batch)
  for dtype in (jnp.float32, jnp.bfloat16):
    cfg = dataclasses.replace(_CONFIG, dtype=dtype)
    logits = _apply(bert.BertForMLM(cfg), params, batch)
    chex.assert_shape(logits, (_BATCH, _PREDICTIONS, cfg.vocab_size))
    chex.assert_type(logits, jnp.float32)
  h = _apply(bert.BertEncoder(cfg), {'params': params['params']['encoder']},
             batch[:4])
  chex.assert_shape(h, (_BATCH, _SEQ, _CONFIG.hidden_size))
  chex.assert_type(h, jnp.bfloat16)


def test_init_follows_bert():
  params = _init_fn(bert.BertForMLM, _CONFIG)(jax.random.key(0), *_batch())
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = jax.tree_util.keystr(path)
    chex.assert_type(x, jnp.float32)
    x = np.asarray(x)
    if "['scale']" in name:
      np.testing.assert_array_equal(x, 1.0, err_msg=name)
    elif "['bias']" in name:
      np.testing.assert_array_equal(x, 0.0, err_msg=name)
    else:  # Kernels and embeddings: truncated normal, std 0.02, |x| <= 2σ.
      assert np.abs(x).max() <= 2 * _CONFIG.initializer_range + 1e-6, name
      if x.size > 1000:
        assert 0.015 < x.std() < 0.025, name


def test_sinusoidal_position_init_matches_numpy_and_depends_on_offset():
  cfg = dataclasses.replace(_CONFIG, position_init='sinusoidal')
  params = _init_fn(bert.BertForMLM, cfg)(jax.random.key(0), *_batch())
  table = np.asarray(params['params']['encoder']['position_embed']['embedding'], np.float64)
  length, dim = table.shape
  pos = np.arange(length)[:, None]
  freq = 10_000.0 ** (-np.arange(0, dim, 2) / dim)
  ref = np.empty((length, dim))
  ref[:, 0::2], ref[:, 1::2] = np.sin(pos * freq), np.cos(pos * freq)
  np.testing.assert_allclose(table, ref * cfg.initializer_range * math.sqrt(2), atol=1e-6)
  # sin^2 + cos^2 = 1 per pair: the root-mean-square is exactly the init scale.
  assert np.sqrt((table**2).mean()) == pytest.approx(cfg.initializer_range, rel=1e-5)
  gram = table @ table.T  # sin a sin b + cos a cos b = cos(a - b): offset only
  np.testing.assert_allclose(np.diag(gram, 1)[:20], gram[0, 1], rtol=1e-4)
  np.testing.assert_allclose(np.diag(gram, 3)[:20], gram[0, 3], rtol=1e-4)


@pytest.mark.parametrize('activation', ['gelu', 'gelu_exact', 'relu'])
def test_encoder_layer_matches_numpy(activation):
  cfg = dataclasses.replace(_CONFIG, activation=activation)
  layer = bert.EncoderLayer(cfg)
  rng = np.random.default_rng(1)
  h = rng.normal(size=(_BATCH, _SEQ, cfg.hidden_size)).astype(np.float32)
  seg = _batch()[3]
  params = _init(bert.EncoderLayer(_CONFIG), (h, seg, None))
  got = _apply(layer, params, (h, seg, None))
  want = _np_encoder_layer(h.astype(np.float64), seg,
                           jax.tree.map(np.asarray, params['params']), cfg)
  np.testing.assert_allclose(got, want, atol=_F32_TOL, rtol=_F32_TOL)


def test_pre_ln_layer_matches_numpy():
  cfg = dataclasses.replace(_CONFIG, norm_position='pre')
  rng = np.random.default_rng(2)
  h = rng.normal(size=(_BATCH, _SEQ, cfg.hidden_size)).astype(np.float32)
  seg = _batch()[3]
  params = _init(bert.EncoderLayer(cfg), (h, seg, None))
  got = _apply(bert.EncoderLayer(cfg), params, (h, seg, None))
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params['params'])
  x = h.astype(np.float64)
  batch, seq, hidden = x.shape
  a = _np_layer_norm(x, p['attention_ln'], cfg.layer_norm_eps)
  q, k, v = (np.einsum('bsh,hnd->bsnd', a, p['attention'][n]['kernel'])
             + p['attention'][n]['bias'] for n in ('query', 'key', 'value'))
  ctx = _np_attention(q, k, v, seg).reshape(batch, seq, hidden)
  x = x + ctx @ p['attention']['out']['kernel'].reshape(hidden, hidden) + p['attention']['out']['bias']
  m = _np_layer_norm(x, p['output_ln'], cfg.layer_norm_eps)
  want = x + _np_dense(_np_act(cfg.activation, _np_dense(m, p['mlp_in'])), p['mlp_out'])
  np.testing.assert_allclose(got, want, atol=_F32_TOL, rtol=_F32_TOL)
  # The encoder normalises once more after its last pre-LN layer.
  enc = _init(bert.BertEncoder(cfg), _batch()[:4])
  assert 'final_ln' in enc['params']


def test_relu_differs_from_gelu():
  batch = _batch()
  encoder = bert.BertEncoder(_CONFIG)
  params = _init(encoder, batch[:4])
  relu = bert.BertEncoder(dataclasses.replace(_CONFIG, activation='relu'))
  assert np.abs(_apply(encoder, params, batch[:4])
                - _apply(relu, params, batch[:4])).max() > 1e-3


@pytest.mark.parametrize('attention', ['dense', 'blocked'])
def test_encoder_matches_numpy(attention):
  cfg = dataclasses.replace(_CONFIG, attention=attention,
                            attention_block_size=4)
  batch = _batch()
  params = _init(bert.BertEncoder(_CONFIG), batch[:4])
  got = _apply(bert.BertEncoder(cfg), params, batch[:4])
  want = _np_encoder(params['params'], batch, cfg)
  np.testing.assert_allclose(got, want, atol=_F32_TOL, rtol=_F32_TOL)


def test_packed_documents_do_not_interact():
  batch = _batch()
  encoder = bert.BertEncoder(_CONFIG)
  params = _init(encoder, batch[:4])
  packed = np.asarray(_apply(encoder, params, batch[:4]))[0]
  input_ids = batch[0][0]
  for start, stop in ((0, 4), (4, 7)):
    length = stop - start
    alone = tuple(x[None] for x in (
        input_ids[start:stop], np.zeros(length, np.int32),
        np.arange(length, dtype=np.int32), np.ones(length, np.int32)))
    np.testing.assert_allclose(packed[start:stop],
                               np.asarray(_apply(encoder, params, alone))[0],
                               atol=_F32_TOL, rtol=_F32_TOL)


def test_mlm_logits_match_numpy():
  batch = _batch()
  model = bert.BertForMLM(_CONFIG)
  params = _init(model, batch)
  got = _apply(model, params, batch)
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params['params'])
  hidden = _np_encoder(params['params']['encoder'], batch, _CONFIG)
  x = np.take_along_axis(hidden, batch[4][..., None], axis=1)
  head = p['mlm_head']
  x = _np_layer_norm(_np_act('gelu', _np_dense(x, head['transform'])),
                     head['transform_ln'], _CONFIG.layer_norm_eps)
  want = (x @ p['encoder']['token_embed']['embedding'].T
          + head['output_bias'])
  np.testing.assert_allclose(got, want, atol=_F32_TOL, rtol=_F32_TOL)


def test_decoder_is_tied_to_token_embedding():
  batch = _batch()
  model = bert.BertForMLM(_CONFIG)
  params = _init_fn(bert.BertForMLM, _CONFIG)(jax.random.key(0), *batch)
  vocab_sized = [jax.tree_util.keystr(path) for path, x in
                 jax.tree_util.tree_flatten_with_path(params)[0]
                 if _CONFIG.vocab_size in x.shape]
  assert vocab_sized == ["['params']['encoder']['token_embed']['embedding']",
                         "['params']['mlm_head']['output_bias']"]
  # The decoder reaches every embedding row, also ids absent from the input.
  grads = jax.jit(jax.grad(lambda p: jax.nn.logsumexp(model.apply(
      p, *batch, deterministic=True), axis=-1).sum()))(params)
  embed_grad = np.asarray(
      grads['params']['encoder']['token_embed']['embedding'])
  unused = np.setdiff1d(np.arange(_CONFIG.vocab_size), batch[0])
  assert (np.abs(embed_grad[unused]).sum(-1) > 0).all()


def test_bf16_close_to_f32():
  batch = _batch()
  model = bert.BertForMLM(_CONFIG)
  params = _init(model, batch)
  f32 = _apply(model, params, batch)
  bf16 = _apply(bert.BertForMLM(dataclasses.replace(_CONFIG,
                                                    dtype=jnp.bfloat16)),
                params, batch)
  chex.assert_trees_all_equal_dtypes(f32, bf16)
  np.testing.assert_allclose(bf16, f32, atol=_BF16_TOL * np.abs(f32).max())


def _stored_dtypes(cfg, params, batch):
  """(dtype of a Linear's output, dtype of the encoder's output) under cfg."""
  x = jnp.ones((3, cfg.hidden_size), jnp.float32)
  linear = bert.Linear(cfg, (cfg.hidden_size, 8))
  hidden = bert.BertEncoder(cfg).apply(
      {'params': params['params']['encoder']}, *batch[:4], deterministic=True)
  return linear.apply(linear.init(jax.random.key(0), x), x).dtype, hidden.dtype


def test_bf16_keeps_activations_bf16_and_gradients_close_to_f32():
  """Under bf16 every matmul output and hidden state is stored as bf16 (as
  under autocast); the loss gradient still matches float32's."""
  batch = _batch()
  params = _init(bert.BertForMLM(_CONFIG), batch)
  bf16_cfg = dataclasses.replace(_CONFIG, dtype=jnp.bfloat16)
  assert _stored_dtypes(bf16_cfg, params, batch) == (jnp.bfloat16, jnp.bfloat16)

  def grads(cfg):
    loss = lambda p: jax.nn.logsumexp(bert.BertForMLM(cfg).apply(
        p, *batch, deterministic=True), axis=-1).sum()
    return jax.jit(jax.grad(loss))(params)

  f32, bf16 = grads(_CONFIG), grads(bf16_cfg)
  chex.assert_trees_all_equal_dtypes(f32, bf16)  # param grads stay f32
  # One scale for all: some gradients are exactly 0 in exact arithmetic (the
  # key bias cannot change a softmax) and only rounding noise in either dtype.
  scale = max(np.abs(g).max() for g in jax.tree.leaves(f32))
  for (path, g32), (_, g16) in zip(jax.tree_util.tree_flatten_with_path(f32)[0],
                                   jax.tree_util.tree_flatten_with_path(bf16)[0]):
    np.testing.assert_allclose(g16, g32, atol=_BF16_TOL * scale,
                               err_msg=jax.tree_util.keystr(path))


def test_dropout_only_when_not_deterministic():
  batch = _batch()
  model = bert.BertForMLM(_CONFIG)
  params = _init(model, batch)
  evaluate = _apply_fn(bert.BertForMLM, _CONFIG)
  train = _apply_fn(bert.BertForMLM, _CONFIG, deterministic=False)
  plain = evaluate(params, batch, jax.random.key(0))
  np.testing.assert_array_equal(evaluate(params, batch, jax.random.key(1)),
                                plain)
  a = train(params, batch, jax.random.key(1))
  b = train(params, batch, jax.random.key(2))
  assert np.abs(a - plain).max() > 1e-3
  assert np.abs(a - b).max() > 1e-3
  np.testing.assert_array_equal(train(params, batch, jax.random.key(1)), a)
  no_dropout = dataclasses.replace(_CONFIG, dropout_rate=0.0,
                                   attention_dropout_rate=0.0)
  np.testing.assert_allclose(
      _apply_fn(bert.BertForMLM, no_dropout, deterministic=False)(
          params, batch, jax.random.key(1)),
      plain, atol=_F32_TOL, rtol=_F32_TOL)


def test_sequence_longer_than_max_len_raises():
  encoder = bert.BertEncoder(_CONFIG)
  ids = np.ones((1, _CONFIG.max_len + 1), np.int32)
  with pytest.raises(ValueError, match='exceeds max_len'):
    encoder.init(jax.random.key(0), ids, ids, ids, ids, deterministic=True)


def test_blocked_model_gradients_match_dense():
  batch = _batch()
  params = _init(bert.BertForMLM(_CONFIG), batch)
  blocked = dataclasses.replace(_CONFIG, attention='blocked',
                                attention_block_size=4)

  def grads(cfg, deterministic):
    model = bert.BertForMLM(cfg)
    loss = lambda p: jax.nn.logsumexp(model.apply(
        p, *batch, deterministic=deterministic,
        rngs={'dropout': jax.random.key(0)}), axis=-1).sum()
    return jax.jit(jax.grad(loss))(params)

  chex.assert_trees_all_close(grads(blocked, True), grads(_CONFIG, True),
                              atol=1e-4, rtol=1e-4)
  with_dropout = grads(blocked, False)
  chex.assert_tree_all_finite(with_dropout)


# --- fused QKV projection --------------------------------------------------

_FUSED = dataclasses.replace(_CONFIG, fused_qkv=True)


def test_fused_qkv_layout_and_conversion_round_trip():
  batch = _batch()
  params = jax.device_get(_init(bert.BertForMLM(_CONFIG), batch))
  fused = bert.convert_qkv_params(params, fused=True)
  attn = fused['params']['encoder']['layer_1']['attention']
  assert sorted(attn) == ['out', 'qkv']
  separate = params['params']['encoder']['layer_1']['attention']
  heads, head_dim = _CONFIG.num_heads, _CONFIG.head_dim
  chex.assert_shape(attn['qkv']['kernel'], (_CONFIG.hidden_size, heads, 3, head_dim))
  chex.assert_shape(attn['qkv']['bias'], (heads, 3, head_dim))
  for i, name in enumerate(('query', 'key', 'value')):  # head-major: [H, N, 3, D]
    np.testing.assert_array_equal(attn['qkv']['kernel'][:, :, i], separate[name]['kernel'])
    np.testing.assert_array_equal(attn['qkv']['bias'][:, i], separate[name]['bias'])
  assert isinstance(attn['qkv']['kernel'], np.ndarray)
  # The fused model's own init has exactly the converted tree's structure.
  init = _init_fn(bert.BertForMLM, _FUSED)(jax.random.key(0), *batch)
  chex.assert_trees_all_equal_shapes(init, fused)
  back = bert.convert_qkv_params(fused, fused=False)
  chex.assert_trees_all_equal(back, params)
  # Already in the requested layout: unchanged.
  chex.assert_trees_all_equal(bert.convert_qkv_params(params, fused=False), params)
  chex.assert_trees_all_equal(bert.convert_qkv_params(fused, fused=True), fused)


def test_fused_qkv_encoder_matches_numpy():
  batch = _batch()
  params = _init(bert.BertEncoder(_FUSED), batch[:4])
  assert 'qkv' in params['params']['layer_0']['attention']
  got = _apply(bert.BertEncoder(_FUSED), params, batch[:4])
  want = _np_encoder(bert.convert_qkv_params(params['params'], fused=False), batch, _FUSED)
  np.testing.assert_allclose(got, want, atol=_F32_TOL, rtol=_F32_TOL)


@pytest.mark.parametrize('deterministic', [True, False])
def test_fused_qkv_equals_separate_projections(deterministic):
  """Same logits (dropout on or off) and the same gradients, converted."""
  batch = _batch()
  params = _init(bert.BertForMLM(_CONFIG), batch)
  fused_params = bert.convert_qkv_params(params, fused=True)

  def run(cfg, p):
    model = bert.BertForMLM(cfg)
    loss = lambda p: jax.nn.logsumexp(model.apply(
        p, *batch, deterministic=deterministic,
        rngs={'dropout': jax.random.key(3)}), axis=-1).sum()
    logits = model.apply(p, *batch, deterministic=deterministic,
                         rngs={'dropout': jax.random.key(3)})
    return logits, jax.grad(loss)(p)

  logits, grads = jax.jit(functools.partial(run, _CONFIG))(params)
  fused_logits, fused_grads = jax.jit(functools.partial(run, _FUSED))(fused_params)
  chex.assert_trees_all_close(fused_logits, logits, atol=1e-5, rtol=1e-5)
  chex.assert_trees_all_close(fused_grads, bert.convert_qkv_params(grads, fused=True),
                              atol=1e-5, rtol=1e-5)


def test_f32_activations_lever_keeps_bf16_matmuls_and_f32_storage():
  """f32_activations stores every Linear / LayerNorm output in float32 under
  bf16 compute (the A/B lever); the logits stay close to the f32 model's."""
  batch = _batch()
  params = _init(bert.BertForMLM(_CONFIG), batch)
  cfg = dataclasses.replace(_CONFIG, dtype=jnp.bfloat16, f32_activations=True)
  assert _stored_dtypes(cfg, params, batch) == (jnp.float32, jnp.float32)
  f32 = _apply(bert.BertForMLM(_CONFIG), params, batch)
  got = _apply(bert.BertForMLM(cfg), params, batch)
  np.testing.assert_allclose(got, f32, atol=_BF16_TOL * np.abs(f32).max())
  assert np.abs(np.asarray(got) - np.asarray(f32)).max() > 0  # the matmuls ran in bf16


def test_bits_dropout_mask_is_another_draw_of_the_same_model():
  batch = _batch()
  params = _init(bert.BertForMLM(_CONFIG), batch)
  bits = dataclasses.replace(_CONFIG, dropout_mask='bits')
  train = lambda cfg, seed: _apply_fn(bert.BertForMLM, cfg, deterministic=False)(
      params, batch, jax.random.key(seed))
  np.testing.assert_array_equal(train(bits, 1), train(bits, 1))
  assert np.abs(train(bits, 1) - train(_CONFIG, 1)).max() > 1e-3
  np.testing.assert_allclose(_apply(bert.BertForMLM(bits), params, batch),
                             _apply(bert.BertForMLM(_CONFIG), params, batch), atol=1e-6)
  with pytest.raises(ValueError, match='blocked attention'):
    dataclasses.replace(_CONFIG, dropout_mask='bits', attention='blocked')
