"""Dropout with counter-based hash bits: ~20x cheaper than jax.random on CPU.

`jax.random.bernoulli` runs threefry per element (about 11 ns of CPU each here,
a fifth of a BERT-mini train step). Dropout only needs well-spread,
uncorrelated bits, so the keep mask hashes each element's flat index with two
32-bit seeds drawn from the PRNG key (two rounds of Wellons' `lowbias32`
integer mixer); XLA fuses it into the consumer, so the mask never hits memory.
Deterministic given the key, like jax.random.

mask='bits' draws the mask from `jax.random.bits` instead, under the process's
PRNG implementation (`jax_default_prng_impl`: threefry2x32, rbg, unsafe_rbg);
an A/B lever for accelerators (BUILD_NOTES.md, session 4: 9-20x slower on CPU).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

_UINT32_RANGE = 2**32
# lowbias32 multipliers (Chris Wellons, "Prospecting for Hash Functions").
_MIX_MUL_1 = 0x7FEB352D
_MIX_MUL_2 = 0x846CA68B
MASKS = ('hash', 'bits')


def _mix(x: jax.Array) -> jax.Array:
  x = x ^ (x >> 16)
  x = x * jnp.uint32(_MIX_MUL_1)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(_MIX_MUL_2)
  return x ^ (x >> 16)


def keep_mask(rng: jax.Array, rate: float, shape: tuple[int, ...],
              mask: str = 'hash') -> jax.Array:
  """Boolean mask of `shape`, each entry True with probability 1 - rate."""
  if mask == 'bits':
    bits = jax.random.bits(rng, shape, jnp.uint32)
  else:
    seed = jax.random.bits(rng, (2,), jnp.uint32)
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
      index += jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(
          stride % _UINT32_RANGE)
      stride *= shape[axis]
    bits = _mix(_mix(index ^ seed[0]) + seed[1])
  return bits >= jnp.uint32(min(round(rate * _UINT32_RANGE),
                                _UINT32_RANGE - 1))


def dropout(x: jax.Array, rate: float, rng: jax.Array, mask: str = 'hash') -> jax.Array:
  """Zeroes entries with probability `rate`, scales the rest by 1/(1-rate)."""
  keep = keep_mask(rng, rate, x.shape, mask)
  # Scaled in float32: 1/(1-rate) rounded to bf16 would bias every kept value.
  scaled = (x.astype(jnp.float32) * (1.0 / (1.0 - rate))).astype(x.dtype)
  return jnp.where(keep, scaled, jnp.zeros_like(x))


class Dropout(nn.Module):
  """Drop-in for `nn.Dropout` using `dropout` (rng collection 'dropout')."""
  rate: float
  mask: str = 'hash'  # see MASKS

  @nn.compact
  def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    return dropout(x, self.rate, self.make_rng('dropout'), self.mask)
