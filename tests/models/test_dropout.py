"""Dropout masks (hash and jax.random.bits): rate, independence across keys and
elements, scaling."""

import jax
import numpy as np
import pytest

from lm_data.models import dropout

_SHAPE = (4, 64, 64)  # 16384 draws: the keep fraction's std is ~0.004.
_FRACTION_TOL = 0.02


@pytest.mark.parametrize('kind', dropout.MASKS)
@pytest.mark.parametrize('rate', [0.0, 0.1, 0.5, 0.9])
def test_keep_fraction_matches_rate(rate, kind):
  keep = np.asarray(dropout.keep_mask(jax.random.key(0), rate, _SHAPE, kind))
  assert abs(keep.mean() - (1 - rate)) < _FRACTION_TOL


@pytest.mark.parametrize('kind,impl', [('hash', 'threefry2x32'), ('bits', 'threefry2x32'),
                                       ('bits', 'rbg'), ('bits', 'unsafe_rbg')])
def test_masks_are_deterministic_and_independent(kind, impl):
  rate = 0.5
  mask = lambda seed: np.asarray(dropout.keep_mask(jax.random.key(seed, impl=impl), rate,
                                                   _SHAPE, kind))
  a, b = mask(0), mask(1)
  np.testing.assert_array_equal(a, mask(0))
  # Independent masks agree on (1-rate)² + rate² = 1/2 of the entries.
  assert abs((a == b).mean() - 0.5) < _FRACTION_TOL
  # Neighbouring elements (along each axis) are uncorrelated.
  flat = a.astype(np.float64)
  for axis in range(flat.ndim):
    x = np.moveaxis(flat, axis, 0)
    assert abs(np.corrcoef(x[:-1].ravel(), x[1:].ravel())[0, 1]) < 0.05


def test_dropout_zeroes_or_rescales():
  rate = 0.25
  x = np.random.default_rng(0).normal(size=_SHAPE).astype(np.float32) + 5.0
  y = np.asarray(dropout.dropout(x, rate, jax.random.key(0)))
  kept = y != 0
  np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-6)
  assert abs(kept.mean() - (1 - rate)) < _FRACTION_TOL


def test_module_is_identity_when_deterministic():
  x = np.ones(_SHAPE, np.float32)
  module = dropout.Dropout(0.5)
  np.testing.assert_array_equal(module.apply({}, x, deterministic=True), x)
  y = module.apply({}, x, deterministic=False,
                   rngs={'dropout': jax.random.key(0)})
  assert set(np.unique(np.asarray(y))) == {0.0, 2.0}
  bits = dropout.Dropout(0.5, mask='bits').apply({}, x, deterministic=False,
                                                rngs={'dropout': jax.random.key(0)})
  assert set(np.unique(np.asarray(bits))) == {0.0, 2.0}
  assert (np.asarray(bits) != np.asarray(y)).any()  # another mask, same key
