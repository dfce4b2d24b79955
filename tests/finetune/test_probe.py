"""Linear probes: features against a direct forward pass, solvers against scipy
and numpy references, selection on dev."""

import jax
import numpy as np
import pytest
import scipy.optimize

from lm_data import models
from lm_data.finetune import encoding
from lm_data.finetune import metrics
from lm_data.finetune import probe
from lm_data.finetune.tasks import base
from tests.finetune import fakes


def _encoder(config, seed=0):
  encoder = models.BertEncoder(config)
  dummy = np.zeros((1, 8), np.int32)
  return encoder, encoder.init(jax.random.PRNGKey(seed), dummy, dummy, dummy,
                               np.ones_like(dummy), deterministic=True)['params']


def _sentences(n, seed):
  rng = np.random.default_rng(seed)
  words = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta']
  return [' '.join(rng.choice(words, rng.integers(1, 9))) for _ in range(n)]


def _layer_outputs(encoder, params, features):
  """Every layer's output by capturing intermediates at full width (no cut)."""
  _, state = encoder.apply({'params': params},
                           *(features[k] for k in probe.FEATURES),
                           deterministic=True, capture_intermediates=True,
                           mutable=['intermediates'])
  found = state['intermediates']
  names = ['embed_ln'] + [f'layer_{i}' for i in range(encoder.config.num_layers)]
  return np.stack([np.asarray(found[n]['__call__'][0]) for n in names])


def test_sequence_features_are_masked_means_of_every_layer():
  config = fakes.tiny_config(num_layers=2)
  encoder, params = _encoder(config)
  texts = _sentences(40, 0)
  texts[5] = texts[3]                    # a duplicate row is encoded once
  features, _ = encoding.encode_texts(fakes.FakeTokenizer(), texts, None, 24)
  data = encoding.Encoded(features, {'labels': np.zeros(40, np.int32)},
                          np.arange(40), 0)
  got = probe.extract(config, params, {'train': data, 'test': data}, 'classification')
  h = _layer_outputs(encoder, params, features)              # [3, 40, 24, H]
  mask = (features['segment_ids'] > 0)[None, :, :, None]
  expected = (h * mask).sum(2) / mask.sum(2)
  assert got['train'].shape == (3, 40, config.hidden_size)
  np.testing.assert_allclose(got['train'], expected, atol=2e-5)
  np.testing.assert_allclose(got['test'], expected, atol=2e-5)
  assert probe.layer_names(2) == ['embeddings', 'layer_0', 'layer_1']


def test_pair_features_combine_the_two_segments_means():
  config = fakes.tiny_config(num_layers=1)
  encoder, params = _encoder(config, seed=1)
  a, b = _sentences(30, 2), _sentences(30, 3)
  features, _ = encoding.encode_texts(fakes.FakeTokenizer(), a, b, 32)
  data = encoding.Encoded(features, {'labels': np.zeros(30, np.int32)},
                          np.arange(30), 0)
  got = probe.extract(config, params, {'test': data}, 'pair_classification')['test']
  h = _layer_outputs(encoder, params, features)              # [2, 30, 32, H]
  real = features['segment_ids'] > 0
  parts = []
  for segment in (0, 1):
    mask = (real & (features['type_ids'] == segment))[None, :, :, None]
    assert mask.sum(2).min() > 0
    parts.append((h * mask).sum(2) / mask.sum(2))
  u, v = parts
  expected = np.concatenate([u, v, np.abs(u - v), u * v], -1)
  assert got.shape == (2, 30, 4 * config.hidden_size)
  np.testing.assert_allclose(got, expected, atol=2e-5)


def test_token_features_sit_at_labelled_positions():
  config = fakes.tiny_config(num_layers=1)
  encoder, params = _encoder(config, seed=3)
  sentences = [s.split() for s in _sentences(30, 1)]
  tags = [[i % 3 for i in range(len(s))] for s in sentences]
  data = encoding.encode_words(fakes.FakeTokenizer(), sentences, tags, 16)
  got = probe.extract(config, params, {'test': data}, 'token_classification')['test']
  h = _layer_outputs(encoder, params, data.features)
  keep = data.targets['label_weights'] > 0
  np.testing.assert_allclose(got, h[:, keep], atol=2e-5)
  assert np.array_equal(probe.probe_targets('token_classification', data),
                        data.targets['labels'][keep])
  groups = probe.item_groups('token_classification', data)
  assert np.array_equal(np.bincount(groups, minlength=30), keep.sum(1))


def test_logistic_regression_matches_scipy():
  rng = np.random.default_rng(0)
  n, d, c = 300, 5, 3
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (x @ rng.normal(size=(d, c)) + rng.normal(size=c) + rng.gumbel(size=(n, c))).argmax(1)
  for l2 in (1e-2, 1e-1):
    ((w, b),), _ = probe.fit_logistic(x, y, c, [l2], tolerance=1e-6)

    def objective(theta):
      w_, b_ = theta[:d * c].reshape(d, c), theta[d * c:]
      logits = x @ w_ + b_
      logits = logits - logits.max(1, keepdims=True)
      lse = np.log(np.exp(logits).sum(1))
      return (lse - logits[np.arange(n), y]).mean() + 0.5 * l2 * (w_ * w_).sum()

    ref = scipy.optimize.minimize(objective, np.zeros(d * c + c), method='L-BFGS-B',
                                  options={'gtol': 1e-10, 'ftol': 1e-14, 'maxiter': 5000})
    theta = np.concatenate([w.ravel(), b])
    assert objective(theta) == pytest.approx(ref.fun, abs=1e-6)
    np.testing.assert_allclose(w, ref.x[:d * c].reshape(d, c), atol=2e-3)
  # Several l2 at once (warm-started path) give each one's own solution.
  path, iterations = probe.fit_logistic(x, y, c, [1e-1, 1e-2], tolerance=1e-6)
  single, _ = probe.fit_logistic(x, y, c, [1e-2], tolerance=1e-6)
  np.testing.assert_allclose(path[1][0], single[0][0], atol=1e-3)
  assert np.abs(path[0][0]).sum() < np.abs(path[1][0]).sum()   # more shrinkage
  assert all(0 < k <= probe.MAX_ITERATIONS for k in iterations)


def test_ridge_matches_normal_equations():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(200, 6))
  y = x @ rng.normal(size=6) + 3.0 + rng.normal(size=200)
  (w, b), = probe.fit_ridge(x, y, [0.5])
  # Reference: [x 1] with the penalty n * l2 on w only (mean-loss units).
  a = np.hstack([x, np.ones((200, 1))])
  penalty = np.diag([200 * 0.5] * 6 + [0.0])
  ref = np.linalg.solve(a.T @ a + penalty, a.T @ y)
  np.testing.assert_allclose(np.append(w, b), ref, rtol=1e-8)


def test_fit_select_picks_the_informative_layer_on_dev():
  rng = np.random.default_rng(2)
  n = {'train': 400, 'dev': 200, 'test': 200}
  labels = {s: rng.integers(0, 2, k) for s, k in n.items()}
  # Layer 0 is noise; layer 1 carries the label.
  feats = {s: np.stack([rng.normal(size=(k, 4)),
                        rng.normal(size=(k, 4)) + 2.0 * labels[s][:, None]]).astype(np.float32)
           for s, k in n.items()}
  score = lambda split, preds: metrics.classification_metrics(labels[split], preds, 2)
  fit = probe.fit_select('classification', 2, feats, labels, ['embeddings', 'layer_0'],
                         score, 'accuracy')
  assert fit.layer == 'layer_0' and fit.dev > 0.95
  assert fit.layers['embeddings']['metrics']['test']['accuracy'] < 0.65
  assert set(fit.predictions) == {'dev', 'test'}
  assert fit.l2 in probe.L2_GRID
  # Regression: ridge on the informative layer.
  values = {s: feats[s][1] @ np.array([1.0, -1.0, 0.5, 0.0]) for s in n}
  fit = probe.fit_select('regression', 0, feats, values, ['embeddings', 'layer_0'],
                         lambda split, p: metrics.regression_metrics(values[split], p),
                         'pearson')
  assert fit.layer == 'layer_0' and fit.dev > 0.99


def test_random_probe_encoder_is_random_finetunings_start():
  from lm_data.finetune import run, trainer
  config = fakes.tiny_config()
  tuner = trainer.FineTuner('token_classification', config, 5,
                            base.FinetuneSettings(max_len=16), 64)
  expected = tuner.init_params(4)['encoder']
  got = run._probe_encoder(config, 4)
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
    np.testing.assert_array_equal(a, b)
