"""The parallelism strategies: placement round trips, and jit and pmap train alike."""

import json

import chex
import jax
import numpy as np
import pytest

from lm_data.models.bert import BertForMLM
from lm_data.train import optimizer as optim
from lm_data.train import parallel
from lm_data.train import steps
from lm_data.train import trainer
from tests.train import fixtures

VOCAB = 64


def _strategy(mode):
  cfg = fixtures.tiny_config()
  model = BertForMLM(trainer.model_config_for(cfg, VOCAB))
  tx, schedule = optim.make_optimizer(cfg.train), optim.train_schedule(cfg.train)
  state = steps.create_train_state(model, tx, seq_len=cfg.seq_len,
                                   max_predictions=cfg.mask.max_predictions, seed=0)
  return parallel.make_strategy(mode, model, tx, schedule, steps.make_mesh()), state


@pytest.mark.parametrize('mode', parallel.MODES)
def test_placed_state_comes_back_and_metrics_are_single_values(mode):
  assert jax.local_device_count() == 2, 'conftest sets two fake CPU devices'
  strategy, state = _strategy(mode)
  host = jax.device_get(state)
  placed = strategy.place_state(state)
  chex.assert_trees_all_equal(jax.device_get(strategy.host_state(placed)), host)
  batch = fixtures.mlm_batch(0)
  placed, m = strategy.train_step(placed, strategy.place_batch(batch))
  m = strategy.one_copy(jax.device_get(m))
  assert np.shape(m['weight_sum']) == ()
  # Every device's rows count: the global number of real prediction slots.
  assert float(m['weight_sum']) == batch['mlm_weights'].sum() == 31
  assert int(jax.device_get(strategy.host_state(placed).step)) == 1


def test_jit_and_pmap_pretrain_to_the_same_params(tmp_path):
  params = {}
  for mode in parallel.MODES:
    result = trainer.pretrain(fixtures.tiny_config(parallelism=mode, num_train_steps=3),
                              tmp_path / mode, train_iter=fixtures.CountingIterator(),
                              eval_sets={}, vocab_size=VOCAB, meta={})
    params[mode] = jax.device_get(result.params)
  chex.assert_trees_all_close(params['jit'], params['pmap'], rtol=1e-5, atol=1e-6)
  losses = {}
  for mode in parallel.MODES:
    lines = (tmp_path / mode / 'metrics.jsonl').read_text().splitlines()
    losses[mode] = [r['loss'] for r in map(json.loads, lines) if 'loss' in r]
  np.testing.assert_allclose(losses['jit'], losses['pmap'], rtol=1e-5)
  assert len(losses['jit']) == 3
