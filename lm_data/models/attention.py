"""Scaled dot-product attention in pure JAX: dense and blocked (online softmax).

Layout: q, k, v are [batch, length, heads, head_dim]; outputs have q's shape.
A query may attend a key iff both carry the same non-zero segment id, which
covers key padding (segment 0) and packed documents (1..k) with one rule.
Queries without any allowed key (padding) get a zero output, never NaN.
Scores, softmax statistics and accumulators are float32 whatever `dtype` is.
"""

import functools
import math

import jax
import jax.numpy as jnp

from lm_data.models import dropout as dropout_lib

# Finite stand-in for -inf: exp(_MASK_VALUE - m) underflows to 0 and
# _MASK_VALUE - _MASK_VALUE stays finite, so fully masked rows cannot make NaN.
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)
# A row max above this had at least one allowed key.
_VALID_ROW_THRESHOLD = 0.5 * _MASK_VALUE


def default_batch_splits() -> int:
  """Independent batch slices for CPU: 2 on CPU, 1 elsewhere.

  XLA:CPU runs each small batched [S,D]x[D,S] attention dot on one core;
  independent slices of the batch let the runtime overlap them on both
  (BUILD_NOTES.md, 'Train step'). Used by dense attention and the train step.
  """
  return 2 if jax.default_backend() == 'cpu' else 1


def mask_from_segments(segment_ids_q: jax.Array,
                       segment_ids_k: jax.Array) -> jax.Array:
  """Boolean attention mask [B, 1, Sq, Sk] (broadcasts over heads).

  Args:
    segment_ids_q: int [B, Sq]; 0 = padding, 1..k = packed document number.
    segment_ids_k: int [B, Sk], same convention.
  """
  same = segment_ids_q[:, :, None] == segment_ids_k[:, None, :]
  return (same & (segment_ids_q != 0)[:, :, None])[:, None]


def dot_product_attention(q: jax.Array,
                          k: jax.Array,
                          v: jax.Array,
                          segment_ids_q: jax.Array | None = None,
                          segment_ids_k: jax.Array | None = None,
                          *,
                          dtype: jnp.dtype = jnp.float32,
                          mask: jax.Array | None = None,
                          dropout_rate: float = 0.0,
                          dropout_rng: jax.Array | None = None,
                          batch_splits: int = 1,
                          dropout_mask: str = 'hash') -> jax.Array:
  """Dense softmax(q kᵀ / √d) v with a segment mask; materialises [B,N,Sq,Sk].

  Args:
    q: [B, Sq, N, D] queries.
    k: [B, Sk, N, D] keys.
    v: [B, Sk, N, D] values.
    segment_ids_q: int [B, Sq]; ignored when `mask` is given.
    segment_ids_k: int [B, Sk]; ignored when `mask` is given.
    dtype: compute dtype of the matmul inputs (accumulation is float32).
    mask: optional precomputed `mask_from_segments(...)`, so a multi-layer
      encoder builds it once per forward rather than once per layer.
    dropout_rate: dropout on the attention probabilities (BERT's placement).
    dropout_rng: PRNG key; dropout is applied iff given and the rate is > 0.
    batch_splits: computes the batch in this many independent slices (when it
      divides B); see `default_batch_splits` (with 2, the mini / tiny train
      steps on 2 cores were 2.5% / 7.6% faster). Slice i's dropout key is
      `dropout_rng` folded with i.
    dropout_mask: how the dropout mask is drawn (`dropout.MASKS`).

  Returns:
    [B, Sq, N, D] in `dtype`.
  """
  if mask is None:
    if segment_ids_q is None or segment_ids_k is None:
      raise ValueError('dot_product_attention needs segment_ids_q and '
                       'segment_ids_k, or a precomputed mask.')
    mask = mask_from_segments(segment_ids_q, segment_ids_k)
  batch = q.shape[0]
  if batch_splits > 1 and batch % batch_splits == 0:
    size = batch // batch_splits
    outs = []
    for i in range(batch_splits):
      part = slice(i * size, (i + 1) * size)
      rng = None if dropout_rng is None else jax.random.fold_in(dropout_rng, i)
      outs.append(dot_product_attention(
          q[part], k[part], v[part], dtype=dtype,
          mask=jnp.broadcast_to(mask, (batch,) + mask.shape[1:])[part],
          dropout_rate=dropout_rate, dropout_rng=rng, dropout_mask=dropout_mask))
    return jnp.concatenate(outs, axis=0)
  scale = 1.0 / math.sqrt(q.shape[-1])
  # [B,N,S,D]: batch axes lead in every dot (measured 2x faster fwd+bwd on CPU
  # than contracting the [B,S,N,D] layout directly).
  q, k, v = (jnp.swapaxes(x, 1, 2).astype(dtype)
             for x in (q.astype(jnp.float32) * scale, k, v))
  scores = jnp.einsum('bnqd,bnkd->bnqk', q, k,
                      preferred_element_type=jnp.float32)
  # An additive bias (select once on the [B,1,S,S] mask, not on the scores)
  # keeps the backward pass free of selects over [B,N,S,S].
  scores = scores + jnp.where(mask, 0.0, _MASK_VALUE).astype(jnp.float32)
  # Softmax is shift-invariant: no gradient needs to flow through the max.
  row_max = jax.lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True))
  probs = jnp.exp(scores - row_max)  # Masked keys give exactly 0.
  # Rows without any allowed key get weight 0 rather than a uniform average.
  inv_sum = jnp.where(row_max > _VALID_ROW_THRESHOLD,
                      1.0 / jnp.sum(probs, axis=-1, keepdims=True), 0.0)
  probs = probs * inv_sum
  if dropout_rng is not None and dropout_rate > 0.0:
    probs = dropout_lib.dropout(probs, dropout_rate, dropout_rng, dropout_mask)
  out = jnp.einsum('bnqk,bnkd->bnqd', probs.astype(dtype), v,
                   preferred_element_type=jnp.float32)
  return jnp.swapaxes(out, 1, 2).astype(dtype)


def _pad_to_blocks(x: jax.Array, block: int) -> jax.Array:
  """Pads axis 1 up to a multiple of `block` and splits it into blocks first."""
  length = x.shape[1]
  pad = -length % block
  if pad:
    x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
  x = x.reshape(x.shape[0], -1, block, *x.shape[2:])
  return jnp.moveaxis(x, 1, 0)  # [num_blocks, B, block, ...]


def _block_dropout_keep(rng, rate, qi, ki, shape):
  block_rng = jax.random.fold_in(jax.random.fold_in(rng, qi), ki)
  return dropout_lib.keep_mask(block_rng, rate, shape)


def _blocked_forward(q, k, v, seg_q, seg_k, rng, *, block_q, block_k, dtype,
                     dropout_rate):
  """Returns (out [B,Sq,N,D] float32, logsumexp [nq,B,N,bq] float32)."""
  batch, len_q, heads, head_dim = q.shape
  scale = 1.0 / math.sqrt(head_dim)
  qb = _pad_to_blocks((q.astype(jnp.float32) * scale).astype(dtype), block_q)
  kb = _pad_to_blocks(k.astype(dtype), block_k)
  vb = _pad_to_blocks(v.astype(dtype), block_k)
  sqb = _pad_to_blocks(seg_q, block_q)  # Padding gets segment 0: masked.
  skb = _pad_to_blocks(seg_k, block_k)
  use_dropout = dropout_rate > 0.0

  def q_block(qi, q_xs):
    q_i, sq_i = q_xs

    def k_step(carry, k_xs):
      row_max, row_sum, acc = carry
      ki, k_j, v_j, sk_j = k_xs
      mask = mask_from_segments(sq_i, sk_j)
      s = jnp.einsum('bqnd,bknd->bnqk', q_i, k_j,
                     preferred_element_type=jnp.float32)
      s = jnp.where(mask, s, _MASK_VALUE)
      new_max = jnp.maximum(row_max, jnp.max(s, axis=-1))
      p = jnp.where(mask, jnp.exp(s - new_max[..., None]), 0.0)
      correction = jnp.exp(row_max - new_max)
      row_sum = row_sum * correction + jnp.sum(p, axis=-1)
      if use_dropout:
        keep = _block_dropout_keep(rng, dropout_rate, qi, ki, p.shape)
        p = jnp.where(keep, p / (1.0 - dropout_rate), 0.0)
      pv = jnp.einsum('bnqk,bknd->bnqd', p.astype(dtype), v_j,
                      preferred_element_type=jnp.float32)
      acc = acc * correction[..., None] + pv
      return (new_max, row_sum, acc), None

    init = (jnp.full((batch, heads, block_q), _MASK_VALUE, jnp.float32),
            jnp.zeros((batch, heads, block_q), jnp.float32),
            jnp.zeros((batch, heads, block_q, v.shape[-1]), jnp.float32))
    (row_max, row_sum, acc), _ = jax.lax.scan(
        k_step, init, (jnp.arange(kb.shape[0]), kb, vb, skb))
    has_key = row_sum > 0.0
    safe_sum = jnp.where(has_key, row_sum, 1.0)
    out = acc / safe_sum[..., None]
    # Rows without keys: lse 0 is never used, since their p is masked to 0.
    lse = jnp.where(has_key, row_max + jnp.log(safe_sum), 0.0)
    return out, lse

  def q_scan(_, xs):
    qi, q_i, sq_i = xs
    return None, q_block(qi, (q_i, sq_i))

  _, (out, lse) = jax.lax.scan(q_scan, None,
                               (jnp.arange(qb.shape[0]), qb, sqb))
  # out: [nq, B, N, bq, D] -> [B, Sq, N, D].
  out = jnp.moveaxis(out, 0, 1).transpose(0, 1, 3, 2, 4)
  out = out.reshape(batch, -1, heads, v.shape[-1])[:, :len_q]
  return out, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8, 9))
def _blocked(q, k, v, seg_q, seg_k, rng, block_q, block_k, dtype,
             dropout_rate):
  out, _ = _blocked_forward(q, k, v, seg_q, seg_k, rng, block_q=block_q,
                            block_k=block_k, dtype=dtype,
                            dropout_rate=dropout_rate)
  return out.astype(dtype)


def _blocked_fwd(q, k, v, seg_q, seg_k, rng, block_q, block_k, dtype,
                 dropout_rate):
  out, lse = _blocked_forward(q, k, v, seg_q, seg_k, rng, block_q=block_q,
                              block_k=block_k, dtype=dtype,
                              dropout_rate=dropout_rate)
  out = out.astype(dtype)
  return out, (q, k, v, seg_q, seg_k, rng, out, lse)


def _blocked_bwd(block_q, block_k, dtype, dropout_rate, residuals, d_out):
  """Flash-attention backward: recomputes each probability block from lse."""
  q, k, v, seg_q, seg_k, rng, out, lse = residuals
  batch, len_q, heads, head_dim = q.shape
  len_k = k.shape[1]
  scale = 1.0 / math.sqrt(head_dim)
  use_dropout = dropout_rate > 0.0
  # delta_i = Σ_j P_ij dP_ij = rowsum(dO ∘ O), also with dropout.
  delta = jnp.einsum('bqnd,bqnd->bnq', d_out.astype(jnp.float32),
                     out.astype(jnp.float32))
  qb = _pad_to_blocks((q.astype(jnp.float32) * scale).astype(dtype), block_q)
  dob = _pad_to_blocks(d_out.astype(dtype), block_q)
  sqb = _pad_to_blocks(seg_q, block_q)
  deltab = _pad_to_blocks(jnp.moveaxis(delta, 2, 1), block_q)  # [nq,B,bq,N]
  kb = _pad_to_blocks(k.astype(dtype), block_k)
  vb = _pad_to_blocks(v.astype(dtype), block_k)
  skb = _pad_to_blocks(seg_k, block_k)

  def k_block(d_q, k_xs):
    ki, k_j, v_j, sk_j = k_xs

    def q_step(carry, q_xs):
      d_k, d_v = carry
      qi, q_i, do_i, sq_i, lse_i, delta_i = q_xs
      mask = mask_from_segments(sq_i, sk_j)
      s = jnp.einsum('bqnd,bknd->bnqk', q_i, k_j,
                     preferred_element_type=jnp.float32)
      p = jnp.where(mask, jnp.exp(s - lse_i[..., None]), 0.0)
      dp = jnp.einsum('bqnd,bknd->bnqk', do_i, v_j,
                      preferred_element_type=jnp.float32)
      if use_dropout:
        keep = _block_dropout_keep(rng, dropout_rate, qi, ki, p.shape)
        p_drop = jnp.where(keep, p / (1.0 - dropout_rate), 0.0)
        dp = jnp.where(keep, dp / (1.0 - dropout_rate), 0.0)
      else:
        p_drop = p
      d_v = d_v + jnp.einsum('bnqk,bqnd->bknd', p_drop.astype(dtype), do_i,
                             preferred_element_type=jnp.float32)
      ds = p * (dp - jnp.moveaxis(delta_i, 2, 1)[..., None])
      ds = ds.astype(dtype)
      d_k = d_k + jnp.einsum('bnqk,bqnd->bknd', ds, q_i,
                             preferred_element_type=jnp.float32)
      d_q_i = jnp.einsum('bnqk,bknd->bqnd', ds, k_j,
                         preferred_element_type=jnp.float32)
      return (d_k, d_v), d_q_i

    init = (jnp.zeros((batch, block_k, heads, head_dim), jnp.float32),
            jnp.zeros((batch, block_k, heads, v.shape[-1]), jnp.float32))
    (d_k, d_v), d_q_blocks = jax.lax.scan(
        q_step, init, (jnp.arange(qb.shape[0]), qb, dob, sqb, lse, deltab))
    return d_q + d_q_blocks, (d_k, d_v)

  d_q0 = jnp.zeros(qb.shape, jnp.float32)
  d_q, (d_k, d_v) = jax.lax.scan(
      k_block, d_q0, (jnp.arange(kb.shape[0]), kb, vb, skb))

  def unblock(x, length):
    x = jnp.moveaxis(x, 0, 1)
    return x.reshape(batch, -1, heads, x.shape[-1])[:, :length]

  d_q = unblock(d_q, len_q) * scale  # q entered the scores pre-scaled.
  d_k = unblock(d_k, len_k)
  d_v = unblock(d_v, len_k)
  return (d_q.astype(q.dtype), d_k.astype(k.dtype), d_v.astype(v.dtype),
          None, None, None)


_blocked.defvjp(_blocked_fwd, _blocked_bwd)


def blocked_attention(q: jax.Array,
                      k: jax.Array,
                      v: jax.Array,
                      segment_ids_q: jax.Array,
                      segment_ids_k: jax.Array,
                      *,
                      dtype: jnp.dtype = jnp.float32,
                      block_size: int = 64,
                      dropout_rate: float = 0.0,
                      dropout_rng: jax.Array | None = None) -> jax.Array:
  """Memory-lean attention: query × key blocks with an online softmax.

  Never materialises [Sq, Sk]: the forward keeps a running max and sum per
  query (`lax.scan` over key blocks), and the custom backward recomputes each
  probability block from the saved log-sum-exp, so memory is O(S · block).
  Lengths that are not a multiple of `block_size` are padded internally with
  segment id 0 (masked). Equal to `dot_product_attention` within tolerance;
  with dropout the masks differ (drawn per block), not the distribution.

  Args:
    q: [B, Sq, N, D] queries.
    k: [B, Sk, N, D] keys.
    v: [B, Sk, N, D] values.
    segment_ids_q: int [B, Sq]; 0 = padding.
    segment_ids_k: int [B, Sk].
    dtype: compute dtype of the matmul inputs (accumulation is float32).
    block_size: query and key block length (clipped to the sequence length).
    dropout_rate: dropout on the attention probabilities.
    dropout_rng: PRNG key; dropout is applied iff given and the rate is > 0.

  Returns:
    [B, Sq, N, D] in `dtype`.
  """
  if block_size < 1:
    raise ValueError(f'attention block_size must be >= 1, got {block_size}.')
  use_dropout = dropout_rng is not None and dropout_rate > 0.0
  rng = dropout_rng if use_dropout else jax.random.key(0)
  return _blocked(q, k, v, segment_ids_q, segment_ids_k, rng,
                  min(block_size, q.shape[1]), min(block_size, k.shape[1]),
                  jnp.dtype(dtype), dropout_rate if use_dropout else 0.0)
