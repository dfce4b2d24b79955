"""Functional BERT: embeddings, post-LN encoder and the tied MLM head (Flax).

Each layer follows the study's equations (BERT's post-LN Transformer):
  H̃ = LN(H + Attn(H) W_O)
  H = LN(H̃ + f(H̃ W₁) W₂)
with f = GELU in google-research/bert's tanh form (default), the exact erf
form ('gelu_exact', HF's 'gelu'), or ReLU. Dropout sits where BERT puts it:
after the embedding LayerNorm, on the attention probabilities, after W_O and
after W₂. Params are `param_dtype`; matmuls take `dtype` inputs and accumulate
in float32; activations between ops are stored in `dtype` (as under autocast,
so bf16 halves their memory traffic); softmax, LayerNorm statistics, residual
sums, GELU and logits are computed in float32 inside their fusions.
"""

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lm_data.models import attention as attention_lib
from lm_data.models import dropout as dropout_lib

ACTIVATIONS = ('gelu', 'gelu_exact', 'relu')
ATTENTION_KINDS = ('dense', 'blocked')
POSITION_INITS = ('normal', 'sinusoidal')
NORM_POSITIONS = ('post', 'pre')
QKV_NAMES = ('query', 'key', 'value')
FUSED_QKV_NAME = 'qkv'
_QKV_AXIS = -2  # of the fused kernel [H, N, 3, D] and bias [N, 3, D]
_COMPUTE_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Model hyper-parameters; `dtype` is the compute dtype (f32 or bf16)."""
  vocab_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  intermediate_size: int
  max_len: int = 512
  type_vocab_size: int = 2
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  activation: str = 'gelu'
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  attention: str = 'dense'
  attention_block_size: int = 64
  # Dense attention in this many independent batch slices; 0 = 2 on CPU (where
  # it lets the small batched dots use both cores), 1 elsewhere.
  attention_batch_splits: int = 0
  layer_norm_eps: float = 1e-12
  initializer_range: float = 0.02
  # 'normal' (BERT) or 'sinusoidal': the learned position table starts as the
  # Transformer's sinusoids (scaled to initializer_range per component), whose
  # dot products depend on the offset only, so attention can find neighbours
  # from step 0. Still h0 = e + p with p learned.
  position_init: str = 'normal'
  # 'post' (BERT, the study's equations) or 'pre' (LN before each sublayer and
  # once after the last layer; an option for the recipe sweep only).
  norm_position: str = 'post'
  # One [H] -> [N, 3, D] projection (head-major: each head's q, k, v adjacent,
  # Megatron's layout) instead of three [H] -> [N, D] ones: one wider GEMM and
  # one read of the input. Same function; the params differ in layout only
  # (`convert_qkv_params`). Not slower on CPU (BUILD_NOTES.md, session 5).
  fused_qkv: bool = False
  # Dropout masks: 'hash' (counter-based, cheapest on CPU) or 'bits'
  # (jax.random.bits under jax_default_prng_impl); dense attention only.
  dropout_mask: str = 'hash'
  # Store activations between ops in float32 even under bf16 compute (the
  # pre-session-4 behaviour): an A/B lever for accelerators, off by default.
  f32_activations: bool = False

  def __post_init__(self):
    # Accept dtype names ('bfloat16') from JSON configs; store jnp dtypes.
    object.__setattr__(self, 'dtype', jnp.dtype(self.dtype))
    object.__setattr__(self, 'param_dtype', jnp.dtype(self.param_dtype))
    if self.dtype not in _COMPUTE_DTYPES:
      raise ValueError(f'unsupported compute dtype {self.dtype}; use float32 '
                       'or bfloat16.')
    for field, known in (('activation', ACTIVATIONS), ('attention', ATTENTION_KINDS),
                         ('norm_position', NORM_POSITIONS),
                         ('position_init', POSITION_INITS),
                         ('dropout_mask', dropout_lib.MASKS)):
      if getattr(self, field) not in known:
        raise ValueError(f'unknown {field} {getattr(self, field)!r}; known: '
                         f'{", ".join(known)}.')
    if self.dropout_mask != 'hash' and self.attention == 'blocked':
      raise ValueError("blocked attention draws hash dropout masks only; use "
                       "dropout_mask='hash' or attention='dense'.")
    if self.attention_batch_splits < 0:
      raise ValueError('attention_batch_splits must be >= 0 (0 = automatic).')
    if self.hidden_size % self.num_heads:
      raise ValueError(f'hidden_size {self.hidden_size} is not divisible by '
                       f'num_heads {self.num_heads}.')

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def activation_dtype(self) -> jnp.dtype:
    """The dtype activations are stored in between ops."""
    return jnp.dtype(jnp.float32) if self.f32_activations else self.dtype


def _kernel_init(config: BertConfig) -> nn.initializers.Initializer:
  return nn.initializers.truncated_normal(config.initializer_range)


def sinusoidal_init(scale: float) -> nn.initializers.Initializer:
  """[max_len, H] sin/cos table (Vaswani et al. 2017), times scale * sqrt(2).

  Each sin/cos component has variance 1/2, so the table has per-component
  standard deviation `scale`, like the normal init it replaces.
  """

  def init(key, shape, dtype=jnp.float32):
    del key  # deterministic
    length, dim = shape
    pos = jnp.arange(length, dtype=jnp.float32)[:, None]
    freq = jnp.exp(-math.log(10_000.0) * jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
    table = jnp.zeros(shape, jnp.float32)
    table = table.at[:, 0::2].set(jnp.sin(pos * freq))
    table = table.at[:, 1::2].set(jnp.cos(pos * freq[:dim // 2]))
    return (table * scale * math.sqrt(2.0)).astype(dtype)

  return init


def _activation(name: str, x: jax.Array) -> jax.Array:
  """f(x) computed in float32, returned in x's dtype (fused: no f32 copy stored)."""
  return _activation_f32(name, x.astype(jnp.float32)).astype(x.dtype)


def _activation_f32(name: str, x: jax.Array) -> jax.Array:
  if name == 'gelu':
    # google-research/bert's modeling.gelu; ~8% faster per mini train step on
    # CPU than the erf form (BUILD_NOTES.md, 'Train step').
    return jax.nn.gelu(x, approximate=True)
  if name == 'gelu_exact':
    return jax.nn.gelu(x, approximate=False)
  return jax.nn.relu(x)


class Linear(nn.Module):
  """`x · kernel + bias` over the last `in_ndim` axes of x, as one 2-D matmul.

  `dtype` inputs, float32 accumulation and bias, `dtype` output. Flattening to 2-D matters on
  CPU: with N-D einsums XLA fused the erf-GELU backward into the dot, which then
  ran 2.7x slower than a plain [rows, in] x [in, out] matmul.
  """
  config: BertConfig
  kernel_shape: tuple[int, ...]  # in_dims + out_dims; the bias is out_dims.
  in_ndim: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.config
    in_dims = self.kernel_shape[:self.in_ndim]
    out_dims = self.kernel_shape[self.in_ndim:]
    kernel = self.param('kernel', _kernel_init(cfg), self.kernel_shape,
                        cfg.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, out_dims, cfg.param_dtype)
    rows = x.shape[:x.ndim - self.in_ndim]
    y = jnp.matmul(x.reshape(-1, math.prod(in_dims)).astype(cfg.dtype),
                   kernel.reshape(math.prod(in_dims), -1).astype(cfg.dtype),
                   preferred_element_type=jnp.float32)
    return (y.reshape(rows + out_dims)
            + bias.astype(jnp.float32)).astype(cfg.activation_dtype)


class LayerNorm(nn.Module):
  """(x - E[x]) / sqrt(Var[x] + eps) * scale + bias over the last axis.

  Float32 statistics, `dtype` output; params named as flax's LayerNorm. Written
  out because nn.LayerNorm's broadcast of `scale` was materialised as a full
  [B, S, H] array per layer by XLA on CPU (~5% of a mini train step).
  """
  config: BertConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.config
    features = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (features,), cfg.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, (features,), cfg.param_dtype)
    x = x.astype(jnp.float32)
    centred = x - jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(centred * centred, axis=-1, keepdims=True)
    y = centred * jax.lax.rsqrt(var + cfg.layer_norm_eps)
    return (y * scale.astype(jnp.float32)
            + bias.astype(jnp.float32)).astype(cfg.activation_dtype)


def layer_norm(config: BertConfig, name: str) -> LayerNorm:
  """LayerNorm with float32 statistics and `dtype` output."""
  return LayerNorm(config, name=name)


class SelfAttention(nn.Module):
  """Multi-head self-attention: Q/K/V projections, attention, W_O."""
  config: BertConfig

  @nn.compact
  def __call__(self, h: jax.Array, segment_ids: jax.Array,
               mask: jax.Array | None, *, deterministic: bool) -> jax.Array:
    cfg = self.config
    heads, head_dim = cfg.num_heads, cfg.head_dim
    if cfg.fused_qkv:
      qkv = Linear(cfg, (cfg.hidden_size, heads, 3, head_dim), name='qkv')(h)
      q, k, v = (qkv[..., i, :] for i in range(3))  # [B, S, N, D] each
    else:
      # Three [H] -> [N,D] projections: the default, since every checkpoint so
      # far has this layout (a resumed run rebuilds its model from the config).
      q, k, v = (Linear(cfg, (cfg.hidden_size, heads, head_dim), name=name)(h)
                 for name in QKV_NAMES)
    use_dropout = not deterministic and cfg.attention_dropout_rate > 0.0
    dropout_rng = self.make_rng('dropout') if use_dropout else None
    if cfg.attention == 'dense':
      ctx = attention_lib.dot_product_attention(
          q, k, v, segment_ids, segment_ids, dtype=cfg.dtype, mask=mask,
          dropout_rate=cfg.attention_dropout_rate, dropout_rng=dropout_rng,
          batch_splits=(cfg.attention_batch_splits
                        or attention_lib.default_batch_splits()),
          dropout_mask=cfg.dropout_mask)
    else:
      ctx = attention_lib.blocked_attention(
          q, k, v, segment_ids, segment_ids, dtype=cfg.dtype,
          block_size=cfg.attention_block_size,
          dropout_rate=cfg.attention_dropout_rate, dropout_rng=dropout_rng)
    return Linear(cfg, (heads, head_dim, cfg.hidden_size), in_ndim=2,
                  name='out')(ctx)


class EncoderLayer(nn.Module):
  """One post-LN Transformer layer (the study's two equations)."""
  config: BertConfig

  @nn.compact
  def __call__(self, h: jax.Array, segment_ids: jax.Array,
               mask: jax.Array | None, *, deterministic: bool) -> jax.Array:
    cfg = self.config
    dropout = dropout_lib.Dropout(cfg.dropout_rate, cfg.dropout_mask)
    pre = cfg.norm_position == 'pre'

    def mlp(x):
      x = Linear(cfg, (cfg.hidden_size, cfg.intermediate_size), name='mlp_in')(x)
      x = _activation(cfg.activation, x)
      x = Linear(cfg, (cfg.intermediate_size, cfg.hidden_size), name='mlp_out')(x)
      return dropout(x, deterministic=deterministic)

    attention = SelfAttention(cfg, name='attention')
    if pre:  # h + Attn(LN(h)), then h + F(LN(h)); the residual stream stays f32.
      x = layer_norm(cfg, 'attention_ln')(h)
      h = h.astype(jnp.float32) + dropout(
          attention(x, segment_ids, mask, deterministic=deterministic),
          deterministic=deterministic)
      return h + mlp(layer_norm(cfg, 'output_ln')(h))
    attn = attention(h, segment_ids, mask, deterministic=deterministic)
    attn = dropout(attn, deterministic=deterministic)
    # Residual sums in float32; the LayerNorm casts back to `dtype`.
    h = layer_norm(cfg, 'attention_ln')(h.astype(jnp.float32) + attn)
    return layer_norm(cfg, 'output_ln')(h.astype(jnp.float32) + mlp(h))


class BertEncoder(nn.Module):
  """Token + position + type embeddings -> LN -> dropout -> N layers."""
  config: BertConfig

  @nn.compact
  def __call__(self, input_ids: jax.Array, type_ids: jax.Array,
               position_ids: jax.Array, segment_ids: jax.Array, *,
               deterministic: bool) -> jax.Array:
    """Returns hidden states [B, S, H] in `config.dtype`.

    Args:
      input_ids: int32 [B, S] token ids.
      type_ids: int32 [B, S] sentence A/B ids.
      position_ids: int32 [B, S], restarting at 0 for each packed document.
      segment_ids: int32 [B, S]; 0 = padding; attention stays within a segment.
      deterministic: disables dropout (evaluation).
    """
    cfg = self.config
    if input_ids.shape[-1] > cfg.max_len:
      raise ValueError(f'sequence length {input_ids.shape[-1]} exceeds '
                       f'max_len {cfg.max_len}; raise BertConfig.max_len.')

    def embed(num_embeddings: int, name: str, init=None) -> nn.Embed:
      return nn.Embed(num_embeddings, cfg.hidden_size,
                      embedding_init=init or _kernel_init(cfg),
                      param_dtype=cfg.param_dtype, name=name)

    position_init = (sinusoidal_init(cfg.initializer_range)
                     if cfg.position_init == 'sinusoidal' else None)
    x = (embed(cfg.vocab_size, 'token_embed')(input_ids)
         + embed(cfg.max_len, 'position_embed', position_init)(position_ids)
         + embed(cfg.type_vocab_size, 'type_embed')(type_ids))
    h = layer_norm(cfg, 'embed_ln')(x.astype(jnp.float32))
    h = dropout_lib.Dropout(cfg.dropout_rate, cfg.dropout_mask)(h, deterministic=deterministic)
    # Dense attention: one mask per forward, shared by every layer.
    mask = (attention_lib.mask_from_segments(segment_ids, segment_ids)
            if cfg.attention == 'dense' else None)
    for i in range(cfg.num_layers):
      h = EncoderLayer(cfg, name=f'layer_{i}')(
          h, segment_ids, mask, deterministic=deterministic)
    if cfg.norm_position == 'pre':
      h = layer_norm(cfg, 'final_ln')(h)
    return h


class MLMHead(nn.Module):
  """Dense + activation + LN, then the decoder tied to the token embedding."""
  config: BertConfig

  @nn.compact
  def __call__(self, x: jax.Array, embedding: jax.Array) -> jax.Array:
    """x: [B, P, H] hidden states at masked positions; embedding: [V, H]."""
    cfg = self.config
    x = Linear(cfg, (cfg.hidden_size, cfg.hidden_size), name='transform')(x)
    x = _activation(cfg.activation, x)
    x = layer_norm(cfg, 'transform_ln')(x)
    bias = self.param('output_bias', nn.initializers.zeros, (cfg.vocab_size,),
                      cfg.param_dtype)
    rows = x.reshape(-1, cfg.hidden_size).astype(cfg.dtype)  # 2-D: see Linear.
    logits = jnp.einsum('rh,vh->rv', rows, embedding.astype(cfg.dtype),
                        preferred_element_type=jnp.float32)
    return logits.reshape(x.shape[:-1] + (-1,)) + bias.astype(jnp.float32)


class BertForMLM(nn.Module):
  """Encoder + MLM head, projecting to the vocabulary only at mlm_positions."""
  config: BertConfig

  @nn.compact
  def __call__(self, input_ids: jax.Array, type_ids: jax.Array,
               position_ids: jax.Array, segment_ids: jax.Array,
               mlm_positions: jax.Array, *, deterministic: bool) -> jax.Array:
    """Returns float32 logits [B, P, V] at `mlm_positions` (int32 [B, P])."""
    encoder = BertEncoder(self.config, name='encoder')
    h = encoder(input_ids, type_ids, position_ids, segment_ids,
                deterministic=deterministic)
    # Gather first (as google-research/bert): the [H, V] projection then costs
    # P rather than S rows per example.
    h = jnp.take_along_axis(h, mlm_positions[..., None], axis=1)
    embedding = encoder.variables['params']['token_embed']['embedding']
    return MLMHead(self.config, name='mlm_head')(h, embedding)


def convert_qkv_params(params: Any, *, fused: bool) -> Any:
  """`params` (any subtree: model, encoder, layer) in the requested Q/K/V layout.

  fused=True stacks each attention's query/key/value kernels [H, N, D] and
  biases [N, D] into `qkv` [H, N, 3, D] / [N, 3, D] (`BertConfig.fused_qkv`);
  fused=False splits them back. Subtrees already in that layout and all other
  entries are returned as they are; numpy stays numpy, jax arrays stay jax.
  """
  if not isinstance(params, Mapping):
    return params
  out = {name: convert_qkv_params(sub, fused=fused) for name, sub in params.items()}
  if fused and all(name in out for name in QKV_NAMES):
    parts = [out.pop(name) for name in QKV_NAMES]
    out[FUSED_QKV_NAME] = {leaf: _xp(parts[0][leaf]).stack([p[leaf] for p in parts],
                                                           axis=_QKV_AXIS)
                           for leaf in parts[0]}
  elif not fused and FUSED_QKV_NAME in out:
    qkv = out.pop(FUSED_QKV_NAME)
    for i, name in enumerate(QKV_NAMES):
      out[name] = {leaf: _xp(x).take(x, i, axis=_QKV_AXIS) for leaf, x in qkv.items()}
  return out


def _xp(x):
  return jnp if isinstance(x, jax.Array) else np
