"""Count-model references against brute-force numpy, and the eval-step split."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_data.input_pipeline import masking
from lm_data.models.bert import BertForMLM
from lm_data.study import baselines
from lm_data.train import metrics
from lm_data.train import steps
from lm_data.train import trainer
from tests.train import fixtures

V = 12  # ids 0-4 special, 5-11 ordinary
CFG = masking.MaskConfig(vocab_size=V, mask_rate=0.3, max_predictions=6)


def _train_rows():
  rng = np.random.default_rng(0)
  tokens = rng.integers(5, V, size=(6, 16)).astype(np.int32)
  tokens[:, 0] = masking.CLS_ID
  segment_ids = np.ones_like(tokens)
  segment_ids[:, 9:] = 2          # two documents per row
  segment_ids[0, 14:] = 0         # padding
  tokens[0, 14:] = masking.PAD_ID
  return tokens, segment_ids


def _brute_force(tokens, segment_ids):
  """Unigram and bigram counts by loops, add-one unigram over ordinary ids."""
  ordinary = list(range(5, V))
  uni = {y: 1.0 for y in ordinary}
  pairs = {}
  for row, seg in zip(tokens.tolist(), segment_ids.tolist()):
    for i, (t, s) in enumerate(zip(row, seg)):
      if s and t >= 5:
        uni[t] += 1
        if i + 1 < len(row) and seg[i + 1] == s and row[i + 1] >= 5:
          pairs[(t, row[i + 1])] = pairs.get((t, row[i + 1]), 0) + 1
  total = sum(uni.values())
  p = np.zeros(V)
  for y, c in uni.items():
    p[y] = c / total
  return p, pairs


def test_count_model_matches_brute_force_scores():
  tokens, segment_ids = _train_rows()
  model = baselines.CountModel(tokens, segment_ids, CFG)
  p, pairs = _brute_force(tokens, segment_ids)
  np.testing.assert_allclose(model.unigram, p, rtol=1e-12)

  labels = np.array([5, 6, 7, 8, 9])
  seen = np.array([masking.MASK_ID, 6, 11, masking.MASK_ID, 9])
  left = np.array([7, -1, 5, 10, -1])
  right = np.array([-1, 8, 9, 5, -1])
  got = baselines.CountModel.score(model, labels, seen, left, right)

  keep = 1 - CFG.mask_prob - CFG.random_prob
  rand = CFG.random_prob / CFG.replacement_ids.size
  w = baselines.BIGRAM_WEIGHT
  for i, (y, s, l, r) in enumerate(zip(labels, seen, left, right)):
    assert got['unigram_loss'][i] == pytest.approx(-math.log(p[y]))
    corrupt = np.ones(V) if s == masking.MASK_ID else np.array(
        [rand + (keep if z == s else 0.0) for z in range(V)])
    post = p * corrupt / (p * corrupt).sum()
    assert got['freq_copy_loss'][i] == pytest.approx(-math.log(post[y]))
    assert got['freq_copy_hit'][i] == float(post[y] >= post.max())

    def expert(cond):  # cond(z) -> count of the pair with candidate z
      counts = np.array([cond(z) for z in range(V)], float)
      if counts.sum() == 0:
        return p
      return w * counts / counts.sum() + (1 - w) * p
    fwd = expert(lambda z: pairs.get((l, z), 0)) if l >= 0 else p
    bwd = expert(lambda z: pairs.get((z, r), 0)) if r >= 0 else p
    prior = np.where(p > 0, fwd * bwd / np.where(p > 0, p, 1), 0.0)
    post = prior * corrupt / (prior * corrupt).sum()
    assert got['bigram_loss'][i] == pytest.approx(-math.log(post[y]), rel=1e-9)
  assert got['majority_hit'].tolist() == [float(y == np.argmax(p)) for y in labels]


def test_heldout_baselines_split_by_position_kind():
  tokens, segment_ids = _train_rows()
  model = baselines.CountModel(tokens, segment_ids, CFG)
  batch = masking.mask_batch(tokens, segment_ids, seed=3, step=0, row_offset=0, cfg=CFG)
  out = baselines.heldout_baselines(model, {'a': [batch], 'b': [batch]})
  assert set(out) == {'a', 'b', 'all'}
  a = out['a']
  n = int(batch['mlm_weights'].sum())
  assert a['all']['predictions'] == n
  assert a['mask']['predictions'] + a['other']['predictions'] == n
  assert out['all']['all']['predictions'] == 2 * n
  # The pooled mean over all predictions is the prediction-weighted mean of kinds.
  for key in ('unigram_loss', 'bigram_loss', 'freq_copy_accuracy'):
    mixed = (a['mask'][key] * a['mask']['predictions']
             + a['other'][key] * a['other']['predictions']) / n
    assert a['all'][key] == pytest.approx(mixed)
  # Copying the visible token makes the other positions much easier.
  assert a['other']['freq_copy_loss'] < a['mask']['freq_copy_loss']


def test_eval_step_splits_mask_positions_like_numpy():
  cfg = fixtures.tiny_config()
  vocab = 64
  model = BertForMLM(trainer.model_config_for(cfg, vocab))
  rng = np.random.default_rng(1)
  tokens = rng.integers(5, vocab, size=(4, cfg.seq_len)).astype(np.int32)
  segment_ids = np.ones_like(tokens)
  mcfg = masking.MaskConfig(vocab_size=vocab, mask_rate=0.3,
                            max_predictions=cfg.mask.max_predictions)
  batch = masking.mask_batch(tokens, segment_ids, seed=0, step=0, row_offset=0, cfg=mcfg)
  params = model.init(jax.random.PRNGKey(0), *(jnp.asarray(batch[k]) for k in steps.MODEL_INPUTS),
                      jnp.asarray(batch['mlm_positions']), deterministic=True)['params']
  mesh = steps.make_mesh()
  out = jax.device_get(steps.make_eval_step(model, mesh)(params, batch))
  red = metrics.reduce_sums(out)

  logits = np.asarray(model.apply({'params': params}, *(batch[k] for k in steps.MODEL_INPUTS),
                                  batch['mlm_positions'], deterministic=True), np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, batch['mlm_ids'][..., None], -1)[..., 0]
  seen = np.take_along_axis(batch['input_ids'], batch['mlm_positions'], 1)
  w = batch['mlm_weights'] > 0
  is_mask = w & (seen == masking.MASK_ID)
  other = w & ~is_mask
  assert is_mask.sum() > 0 and other.sum() > 0
  assert red['predictions_mask'] == is_mask.sum()
  assert red['predictions_other'] == other.sum()
  np.testing.assert_allclose(red['loss_mask'], nll[is_mask].mean(), rtol=1e-5)
  np.testing.assert_allclose(red['loss_other'], nll[other].mean(), rtol=1e-5)
  # Per-position SDs from the sums of squares (what gives held-out losses an SE).
  np.testing.assert_allclose(red['loss_sd_mask'], nll[is_mask].std(ddof=1), rtol=1e-4)
  np.testing.assert_allclose(red['loss_sd_other'], nll[other].std(ddof=1), rtol=1e-4)
  np.testing.assert_allclose(red['loss_sd'], nll[w].std(ddof=1), rtol=1e-4)
  np.testing.assert_allclose(red['loss'], nll[w].mean(), rtol=1e-5)
