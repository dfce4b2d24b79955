"""Attention against a straightforward numpy softmax(QKᵀ/√d)V reference."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_data.models import attention

_BATCH, _HEADS, _HEAD_DIM = 2, 2, 8
_F32_TOL = 1e-5
# Jitted: eager op-by-op dispatch of the scans is much slower than compiling.
_dense = jax.jit(attention.dot_product_attention,
                 static_argnames=('dtype', 'dropout_rate'))
_blocked = jax.jit(attention.blocked_attention,
                   static_argnames=('dtype', 'block_size', 'dropout_rate'))
_BF16_TOL = 3e-2
# Row 0: two packed documents then padding; row 1: one document, no padding.
_SEGMENTS = np.array([[1, 1, 1, 2, 2, 2, 2, 0, 0, 0],
                      [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]], np.int32)


def _qkv(len_q, len_k, seed=0):
  rng = np.random.default_rng(seed)
  q = rng.normal(size=(_BATCH, len_q, _HEADS, _HEAD_DIM)).astype(np.float32)
  k = rng.normal(size=(_BATCH, len_k, _HEADS, _HEAD_DIM)).astype(np.float32)
  v = rng.normal(size=(_BATCH, len_k, _HEADS, _HEAD_DIM)).astype(np.float32)
  return q, k, v


def _numpy_attention(q, k, v, seg_q, seg_k):
  """Loops over batch, head and query; zeros for queries without a key."""
  out = np.zeros(q.shape[:-1] + v.shape[-1:], np.float64)
  for b in range(q.shape[0]):
    for n in range(q.shape[2]):
      for i in range(q.shape[1]):
        allowed = (seg_k[b] == seg_q[b, i]) & (seg_q[b, i] != 0)
        if not allowed.any():
          continue
        s = k[b, :, n].astype(np.float64) @ q[b, i, n] / np.sqrt(q.shape[-1])
        s = np.where(allowed, s, -np.inf)
        p = np.exp(s - s.max())
        out[b, i, n] = (p / p.sum()) @ v[b, :, n]
  return out


def test_mask_from_segments_hand_computed():
  seg = np.array([[1, 1, 2, 0]], np.int32)
  expected = np.array([[1, 1, 0, 0],
                       [1, 1, 0, 0],
                       [0, 0, 1, 0],
                       [0, 0, 0, 0]], bool)
  mask = attention.mask_from_segments(seg, seg)
  chex.assert_shape(mask, (1, 1, 4, 4))
  np.testing.assert_array_equal(np.asarray(mask)[0, 0], expected)


def test_dense_matches_numpy_f32():
  q, k, v = _qkv(10, 10)
  out = _dense(q, k, v, _SEGMENTS, _SEGMENTS)
  chex.assert_shape(out, q.shape)
  chex.assert_type(out, jnp.float32)
  np.testing.assert_allclose(out, _numpy_attention(q, k, v, _SEGMENTS,
                                                   _SEGMENTS),
                             atol=_F32_TOL, rtol=_F32_TOL)


def test_dense_with_precomputed_mask_matches_numpy():
  q, k, v = _qkv(10, 10, seed=1)
  mask = attention.mask_from_segments(_SEGMENTS, _SEGMENTS)
  out = attention.dot_product_attention(q, k, v, mask=mask)
  np.testing.assert_allclose(out, _numpy_attention(q, k, v, _SEGMENTS,
                                                   _SEGMENTS),
                             atol=_F32_TOL, rtol=_F32_TOL)


def test_dense_in_batch_slices_matches_numpy_and_unsplit_gradients():
  q, k, v = _qkv(10, 10, seed=3)
  expected = _numpy_attention(q, k, v, _SEGMENTS, _SEGMENTS)
  split = lambda q, k, v: attention.dot_product_attention(
      q, k, v, _SEGMENTS, _SEGMENTS, batch_splits=2)
  whole = lambda q, k, v: attention.dot_product_attention(
      q, k, v, _SEGMENTS, _SEGMENTS)
  np.testing.assert_allclose(jax.jit(split)(q, k, v), expected,
                             atol=_F32_TOL, rtol=_F32_TOL)
  grad = lambda f: jax.jit(jax.grad(lambda *a: jnp.sum(jnp.sin(f(*a))),
                                    argnums=(0, 1, 2)))(q, k, v)
  chex.assert_trees_all_close(grad(split), grad(whole), atol=1e-6, rtol=1e-5)
  # A split that does not divide the batch falls back to one slice.
  np.testing.assert_allclose(attention.dot_product_attention(
      q, k, v, _SEGMENTS, _SEGMENTS, batch_splits=3), expected,
                             atol=_F32_TOL, rtol=_F32_TOL)


def test_dense_cross_lengths_match_numpy():
  q, k, v = _qkv(4, 10, seed=2)
  seg_q = np.array([[1, 2, 2, 0], [1, 1, 1, 1]], np.int32)
  out = attention.dot_product_attention(q, k, v, seg_q, _SEGMENTS)
  np.testing.assert_allclose(out, _numpy_attention(q, k, v, seg_q, _SEGMENTS),
                             atol=_F32_TOL, rtol=_F32_TOL)


def test_dense_bf16_close_to_numpy():
  q, k, v = _qkv(10, 10, seed=3)
  out = attention.dot_product_attention(q, k, v, _SEGMENTS, _SEGMENTS,
                                        dtype=jnp.bfloat16)
  chex.assert_type(out, jnp.bfloat16)
  np.testing.assert_allclose(np.asarray(out, np.float32),
                             _numpy_attention(q, k, v, _SEGMENTS, _SEGMENTS),
                             atol=_BF16_TOL, rtol=_BF16_TOL)


def test_dense_without_segments_or_mask_raises():
  q, k, v = _qkv(4, 4)
  with pytest.raises(ValueError, match='segment_ids'):
    attention.dot_product_attention(q, k, v)


@pytest.mark.parametrize('fn', ['dense', 'blocked'])
def test_fully_masked_rows_are_zero_and_finite(fn):
  q, k, v = _qkv(6, 6)
  seg = np.array([[0] * 6, [1, 1, 0, 0, 0, 0]], np.int32)

  def f(q, k, v):
    if fn == 'dense':
      return attention.dot_product_attention(q, k, v, seg, seg)
    return attention.blocked_attention(q, k, v, seg, seg, block_size=4)

  out = jax.jit(f)(q, k, v)
  np.testing.assert_array_equal(np.asarray(out)[0], 0.0)
  np.testing.assert_array_equal(np.asarray(out)[1, 2:], 0.0)
  grads = jax.jit(jax.grad(lambda *a: jnp.sum(f(*a) ** 2),
                           argnums=(0, 1, 2)))(q, k, v)
  for g in grads:
    assert np.isfinite(np.asarray(g)).all()


@pytest.mark.parametrize('block_size', [1, 3, 4, 10, 64])
def test_blocked_matches_numpy(block_size):
  # Length 10 is not a multiple of 3 or 4: padded internally.
  q, k, v = _qkv(10, 10, seed=4)
  out = _blocked(q, k, v, _SEGMENTS, _SEGMENTS, block_size=block_size)
  chex.assert_shape(out, q.shape)
  np.testing.assert_allclose(out, _numpy_attention(q, k, v, _SEGMENTS,
                                                   _SEGMENTS),
                             atol=_F32_TOL, rtol=_F32_TOL)


def test_blocked_cross_lengths_match_numpy():
  q, k, v = _qkv(4, 10, seed=5)
  seg_q = np.array([[2, 2, 1, 0], [1, 1, 1, 1]], np.int32)
  out = _blocked(q, k, v, seg_q, _SEGMENTS, block_size=3)
  np.testing.assert_allclose(out, _numpy_attention(q, k, v, seg_q, _SEGMENTS),
                             atol=_F32_TOL, rtol=_F32_TOL)


def test_blocked_bf16_close_to_numpy():
  q, k, v = _qkv(10, 10, seed=6)
  out = _blocked(q, k, v, _SEGMENTS, _SEGMENTS, dtype=jnp.bfloat16,
                 block_size=4)
  chex.assert_type(out, jnp.bfloat16)
  np.testing.assert_allclose(np.asarray(out, np.float32),
                             _numpy_attention(q, k, v, _SEGMENTS, _SEGMENTS),
                             atol=_BF16_TOL, rtol=_BF16_TOL)


@pytest.mark.parametrize('block_size', [3, 4])
def test_blocked_gradients_match_dense(block_size):
  q, k, v = _qkv(10, 10, seed=7)
  weights = np.random.default_rng(8).normal(size=q.shape).astype(np.float32)

  def loss(fn):
    return lambda *qkv: jnp.sum(fn(*qkv) * weights)

  dense = lambda q, k, v: attention.dot_product_attention(
      q, k, v, _SEGMENTS, _SEGMENTS)
  blocked = lambda q, k, v: attention.blocked_attention(
      q, k, v, _SEGMENTS, _SEGMENTS, block_size=block_size)
  want = jax.jit(jax.grad(loss(dense), argnums=(0, 1, 2)))(q, k, v)
  got = jax.jit(jax.grad(loss(blocked), argnums=(0, 1, 2)))(q, k, v)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4)


def test_blocked_rejects_bad_block_size():
  q, k, v = _qkv(4, 4)
  with pytest.raises(ValueError, match='block_size'):
    attention.blocked_attention(q, k, v, _SEGMENTS[:, :4], _SEGMENTS[:, :4],
                                block_size=0)


def _dropout_outputs(fn, rate, rng):
  q, k, v = _qkv(10, 10, seed=9)
  return np.asarray(fn(q, k, v, _SEGMENTS, _SEGMENTS, dropout_rate=rate,
                       dropout_rng=rng))


@pytest.mark.parametrize('fn', [_dense, _blocked])
def test_dropout_changes_output_only_with_rng(fn):
  q, k, v = _qkv(10, 10, seed=9)
  plain = np.asarray(fn(q, k, v, _SEGMENTS, _SEGMENTS))
  no_rng = _dropout_outputs(fn, 0.5, None)
  a = _dropout_outputs(fn, 0.5, jax.random.key(0))
  b = _dropout_outputs(fn, 0.5, jax.random.key(1))
  np.testing.assert_array_equal(no_rng, plain)
  assert np.abs(a - plain).max() > 1e-3
  assert np.abs(a - b).max() > 1e-3
  np.testing.assert_array_equal(a, _dropout_outputs(fn, 0.5,
                                                    jax.random.key(0)))


@pytest.mark.parametrize('fn', [_dense, _blocked])
def test_dropout_zeroes_and_rescales_probabilities(fn):
  # With one-hot values (v[j] = e_j) the output row is the probability row.
  rate, length = 0.3, 10
  q, k, _ = _qkv(length, length, seed=10)
  v = np.broadcast_to(np.eye(length, dtype=np.float32)[None, :, None],
                      (_BATCH, length, _HEADS, length))
  seg = np.ones((_BATCH, length), np.int32)
  probs = _numpy_attention(q, k, v, seg, seg)
  out = np.asarray(fn(q, k, v, seg, seg, dropout_rate=rate,
                      dropout_rng=jax.random.key(0)))
  kept = out != 0
  np.testing.assert_allclose(out[kept], probs[kept] / (1 - rate), rtol=1e-5)
  assert abs(1 - kept.mean() - rate) < 0.1  # 400 draws: std of mean ~0.023.


def test_blocked_dropout_gradient_matches_finite_differences():
  q, k, v = _qkv(5, 5, seed=11)
  seg = np.array([[1, 1, 1, 2, 0], [1, 1, 1, 1, 1]], np.int32)
  weights = np.random.default_rng(12).normal(size=q.shape).astype(np.float32)

  @jax.jit
  def loss(q, k, v):
    out = attention.blocked_attention(q, k, v, seg, seg, block_size=2,
                                      dropout_rate=0.3,
                                      dropout_rng=jax.random.key(3))
    return jnp.sum(out * weights)

  jax.test_util.check_grads(loss, (q, k, v), order=1, modes=['rev'],
                            atol=2e-2, rtol=2e-2, eps=1e-3)
