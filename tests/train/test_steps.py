"""Loss, jit vs pmap, gradient accumulation, and an overfit check."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_data.models.bert import BertForMLM
from lm_data.train import optimizer as optim
from lm_data.train import steps
from lm_data.train import trainer
from tests.train import fixtures

VOCAB = 64


def _setup(**train):
  cfg = fixtures.tiny_config(**train)
  model = BertForMLM(trainer.model_config_for(cfg, VOCAB))
  tx = optim.make_optimizer(cfg.train)
  schedule = optim.train_schedule(cfg.train)
  state = steps.create_train_state(model, tx, seq_len=cfg.seq_len,
                                   max_predictions=cfg.mask.max_predictions, seed=0)
  return cfg, model, tx, schedule, state


def test_mlm_loss_matches_numpy_cross_entropy():
  logits = np.array([[[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]],
                     [[1.0, 1.0, 1.0], [-2.0, 4.0, 0.0]]], np.float32)
  labels = np.array([[0, 1], [2, 1]], np.int32)
  weights = np.array([[1.0, 1.0], [1.0, 0.0]], np.float32)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
  loss_sum, correct = steps.mlm_loss(jnp.asarray(logits), labels, weights)
  np.testing.assert_allclose(loss_sum, (nll * weights).sum(), rtol=1e-6)
  # Hits: [0 yes, 1 no | 2 tied for the max: counts as a hit, masked slot].
  np.testing.assert_allclose(correct, 2.0)


def test_mlm_loss_gradient_matches_softmax_minus_one_hot():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 7)).astype(np.float32) * 3
  labels = rng.integers(0, 7, (2, 3)).astype(np.int32)
  weights = rng.uniform(size=(2, 3)).astype(np.float32)
  grad = jax.grad(lambda x: steps.mlm_loss(x, labels, weights)[0])(jnp.asarray(logits))
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  expected = (probs - np.eye(7, dtype=np.float32)[labels]) * weights[..., None]
  chex.assert_trees_all_close(grad, expected, rtol=1e-5, atol=1e-6)


def test_jit_and_pmap_steps_give_the_same_params():
  assert jax.local_device_count() == 2, 'conftest sets two fake CPU devices'
  cfg, model, tx, schedule, state = _setup()
  mesh = steps.make_mesh()
  jit_step = steps.make_jit_train_step(model, tx, schedule, mesh)
  pmap_step = steps.make_pmap_train_step(model, tx, schedule)
  jit_state = state
  pmap_state = steps.replicate(jax.device_get(state))
  sharding = steps.batch_sharding(mesh)
  for k in range(3):
    batch = fixtures.mlm_batch(k)
    jit_state, jm = jit_step(jit_state, jax.device_put(batch, sharding))
    pmap_state, pm = pmap_step(pmap_state, steps.shard_for_pmap(batch))
    np.testing.assert_allclose(jm['loss_sum'], steps.unreplicate(pm)['loss_sum'], rtol=1e-5)
  chex.assert_trees_all_close(jax.device_get(jit_state.params),
                              jax.device_get(steps.unreplicate(pmap_state).params),
                              rtol=1e-5, atol=1e-6)
  assert int(jit_state.step) == 3


def test_gradient_accumulation_equals_one_big_batch():
  _, model, tx, schedule, state = _setup()
  mesh = steps.make_mesh()
  one = steps.make_jit_train_step(model, tx, schedule, mesh)
  two = steps.make_jit_train_step(model, tx, schedule, mesh, accum_steps=2)
  batch = fixtures.mlm_batch(7)
  s1, m1 = one(jax.tree.map(jnp.copy, state), batch)
  s2, m2 = two(state, batch)
  np.testing.assert_allclose(m1['loss_sum'], m2['loss_sum'], rtol=1e-5)
  chex.assert_trees_all_close(s1.params, s2.params, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('accum_steps', [1, 2])
def test_batch_splits_give_the_gradient_of_the_whole_batch(accum_steps):
  _, model, tx, schedule, state = _setup()
  mesh = steps.make_mesh()
  batch = fixtures.mlm_batch(5)
  results = []
  for splits in (1, 2):
    step = steps.make_jit_train_step(model, tx, schedule, mesh,
                                     accum_steps=accum_steps, batch_splits=splits)
    results.append(step(jax.tree.map(jnp.copy, state), batch))
  (s1, m1), (s2, m2) = results
  np.testing.assert_allclose(m1['loss_sum'], m2['loss_sum'], rtol=1e-5)
  np.testing.assert_allclose(m1['correct_sum'], m2['correct_sum'])
  chex.assert_trees_all_close(s1.params, s2.params, rtol=1e-5, atol=1e-6)


def test_weight_decay_skips_biases_and_layernorm():
  _, _, _, _, state = _setup()
  mask = optim.decay_mask(state.params)
  flat = {'/'.join(k.key for k in path): v
          for path, v in jax.tree_util.tree_leaves_with_path(mask)}
  assert not flat['encoder/layer_0/attention/query/bias']
  assert not flat['encoder/embed_ln/scale']
  assert flat['encoder/layer_0/attention/query/kernel']
  assert flat['encoder/token_embed/embedding']


def test_linear_warmup_then_linear_decay():
  cfg = fixtures.tiny_config(learning_rate=1.0, warmup_steps=4, num_train_steps=12)
  schedule = optim.train_schedule(cfg.train)
  np.testing.assert_allclose([schedule(s) for s in (0, 2, 4, 8, 12)],
                             [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)


def test_wsd_holds_the_peak_then_decays_over_the_last_fraction():
  cfg = fixtures.tiny_config(learning_rate=1.0, warmup_steps=4, num_train_steps=20,
                             schedule='wsd', decay_fraction=0.25)
  schedule = optim.train_schedule(cfg.train)
  # Warm-up to step 4, flat to step 15, then linear to 0 over the last 5 steps.
  np.testing.assert_allclose([schedule(s) for s in (0, 2, 4, 10, 15, 17, 20)],
                             [0.0, 0.5, 1.0, 1.0, 1.0, 0.6, 0.0], atol=1e-6)
  with pytest.raises(ValueError, match=r'decay_fraction=0 must be in \(0, 1\]'):
    optim.learning_rate_schedule(1.0, warmup_steps=0, num_train_steps=10,
                                 schedule='wsd', decay_fraction=0)


def test_two_layer_model_overfits_one_batch():
  cfg, model, tx, schedule, state = _setup(learning_rate=1e-2, warmup_steps=5,
                                            num_train_steps=100, schedule='constant')
  step = steps.make_jit_train_step(model, tx, schedule,
                                   steps.make_mesh(jax.devices()[:1]))
  batch = fixtures.mlm_batch(3, vocab=VOCAB)
  for _ in range(cfg.train.num_train_steps):
    state, m = step(state, batch)
  loss = float(m['loss_sum'] / m['weight_sum'])
  assert loss < 0.01, loss  # from ~log(64) = 4.2 at init
  assert float(m['correct_sum']) == float(m['weight_sum'])


def test_nan_loss_stops_training_naming_the_step(tmp_path):
  cfg = fixtures.tiny_config(learning_rate=1e30, warmup_steps=0, clip_norm=0.0)
  with pytest.raises(trainer.NonFiniteError, match='at step [0-9]'):
    trainer.pretrain(cfg, tmp_path, train_iter=fixtures.CountingIterator(),
                     eval_sets={}, vocab_size=VOCAB, meta={})


class _PoisonedIterator(fixtures.CountingIterator):
  """Batch k = `bad` carries NaN loss weights: the loss of step bad+1 is non-finite."""

  def __init__(self, bad: int):
    super().__init__()
    self.bad = bad

  def __next__(self):
    k = self.k
    out = super().__next__()
    if k == self.bad:
      out['mlm_weights'] = np.full_like(out['mlm_weights'], np.nan)
    return out


@pytest.mark.parametrize('log_every,checkpoint_every,batches_read', [
    (4, 12, 9),    # fetched after log step 8, with step 9 queued
    (100, 8, 8),   # fetched before the step-8 checkpoint, which would hold NaN
])
def test_nan_stops_within_log_every_steps_and_is_never_checkpointed(
    tmp_path, log_every, checkpoint_every, batches_read):
  cfg = fixtures.tiny_config(num_train_steps=30, log_every=log_every,
                             checkpoint_every=checkpoint_every)
  batches = _PoisonedIterator(bad=4)
  with pytest.raises(trainer.NonFiniteError, match='at step 5 '):
    trainer.pretrain(cfg, tmp_path, train_iter=batches, eval_sets={},
                     vocab_size=VOCAB, meta={})
  assert batches.k == batches_read
  assert not list((tmp_path / 'checkpoints').glob('[0-9]*'))


def test_metrics_fetched_once_per_log_period(tmp_path, monkeypatch):
  fetches = []
  device_get = jax.device_get
  monkeypatch.setattr(jax, 'device_get', lambda x: fetches.append(x) or device_get(x))
  cfg = fixtures.tiny_config(num_train_steps=12, log_every=4, checkpoint_every=100)
  trainer.pretrain(cfg, tmp_path, train_iter=fixtures.CountingIterator(), eval_sets={},
                   vocab_size=VOCAB, meta={})
  assert [len(f) for f in fetches] == [4, 4, 4]  # steps 1-4, 5-8, 9-12
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  first = [r for r in records if r.get('event') == 'first_step']
  assert len(first) == 1 and first[0]['step'] == 1
  assert first[0]['time_to_first_step_s'] >= first[0]['init_s'] > 0
  assert [r['step'] for r in records if 'loss' in r] == [4, 8, 12]
