"""Heads: output shapes and losses against numpy; QA decoding; baselines."""

import chex
import jax
import numpy as np
import pytest

from lm_data import models
from lm_data.finetune import controls
from lm_data.finetune import encoding
from lm_data.finetune import trainer
from lm_data.finetune.tasks import base
from tests.finetune import fakes

B, S, L = 3, 8, 4


def _features(rng):
  segment_ids = np.ones((B, S), np.int32)
  segment_ids[:, -2:] = 0
  type_ids = np.zeros((B, S), np.int32)
  type_ids[:, 3:6] = 1
  return {'input_ids': rng.integers(5, fakes.VOCAB, (B, S)).astype(np.int32),
          'type_ids': type_ids,
          'position_ids': np.broadcast_to(np.arange(S, dtype=np.int32), (B, S)),
          'segment_ids': segment_ids}


def _np_ce(logits, labels):
  logits = logits - logits.max(-1, keepdims=True)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  return -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]


@pytest.mark.parametrize('kind, shape', [
    ('classification', [(B, L)]), ('pair_classification', [(B, L)]),
    ('regression', [(B, 1)]), ('token_classification', [(B, S, L)]),
    ('qa', [(B, S), (B, S)])])
def test_head_output_shapes(kind, shape):
  model = trainer.make_model(kind, fakes.tiny_config(), L)
  features = _features(np.random.default_rng(0))
  args = [features[k] for k in trainer.FEATURES]
  params = model.init(jax.random.PRNGKey(0), *args, deterministic=True)
  assert 'encoder' in params['params']
  out = model.apply(params, *args, deterministic=True)
  chex.assert_shape(jax.tree.leaves(out), shape)


def test_classification_and_regression_losses_match_numpy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(B, L)).astype(np.float32)
  labels = np.array([0, 3, 1], np.int32)
  loss = trainer.loss_fn('classification', logits, {'labels': labels}, {})
  np.testing.assert_allclose(loss, _np_ce(logits, labels).mean(), rtol=1e-5)
  values = rng.normal(size=(B, 1)).astype(np.float32)
  targets = np.array([0.5, -1.0, 2.0], np.float32)
  loss = trainer.loss_fn('regression', values, {'labels': targets}, {})
  np.testing.assert_allclose(loss, ((values[:, 0] - targets)**2).mean(), rtol=1e-5)


def test_token_loss_weights_positions():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(B, S, L)).astype(np.float32)
  labels = rng.integers(0, L, (B, S)).astype(np.int32)
  weights = (rng.random((B, S)) < 0.5).astype(np.float32)
  loss = trainer.loss_fn('token_classification', logits,
                         {'labels': labels, 'label_weights': weights}, {})
  expected = (_np_ce(logits, labels) * weights).sum() / weights.sum()
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_qa_loss_masks_non_context_positions():
  rng = np.random.default_rng(3)
  features = _features(rng)
  start = rng.normal(size=(B, S)).astype(np.float32)
  end = rng.normal(size=(B, S)).astype(np.float32)
  targets = {'start_positions': np.array([3, 4, 5], np.int32),
             'end_positions': np.array([4, 5, 5], np.int32)}
  loss = trainer.loss_fn('qa', (start, end), targets, features)
  context = slice(3, 6)   # type 1 and not padding
  expected = 0.5 * (
      _np_ce(start[:, context], targets['start_positions'] - 3).mean()
      + _np_ce(end[:, context], targets['end_positions'] - 3).mean())
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_best_spans_respect_order_and_context():
  features = _features(np.random.default_rng(0))
  start = np.zeros((B, S), np.float32)
  end = np.zeros((B, S), np.float32)
  start[0, 4], end[0, 5] = 5, 5          # a valid span 4..5
  start[1, 0], end[1, 0] = 9, 9          # [CLS] is not context: ignored
  start[1, 5], end[1, 3] = 5, 5          # end before start: not allowed
  starts, ends = trainer.best_spans(start, end, features)
  assert (starts[0], ends[0]) == (4, 5)
  assert 3 <= starts[1] <= ends[1] <= 5 and (starts[1], ends[1]) != (5, 3)


def test_baselines_use_train_labels_only():
  train = encoding.Encoded({}, {'labels': np.array([2, 2, 1])}, np.arange(3), 0)
  dev = encoding.Encoded({}, {'labels': np.array([0, 1])}, np.arange(2), 0)
  np.testing.assert_array_equal(
      controls.baseline_predictions('classification', train, dev), [2, 2])
  reg = encoding.Encoded({}, {'labels': np.array([1.0, 2.0, 6.0])}, np.arange(3), 0)
  np.testing.assert_allclose(
      controls.baseline_predictions('regression', reg, dev), [3.0, 3.0])
  tokens = encoding.Encoded({}, {'labels': np.array([[0, 5, 5, 7]]),
                                 'label_weights': np.array([[0, 1, 1, 1]])},
                            np.arange(1), 0)
  np.testing.assert_array_equal(
      controls.baseline_predictions('token_classification', tokens, tokens),
      [[5, 5, 5, 5]])


def _synthetic(n, seed):
  """Label 1 iff the keyword 'good' appears; 60% of examples are label 0."""
  rng = np.random.default_rng(seed)
  fillers = ['the', 'a', 'movie', 'was', 'plot', 'cast', 'very', 'quite']
  out = []
  for i in range(n):
    label = int(rng.random() < 0.4)
    words = list(rng.choice(fillers, 5))
    words.insert(int(rng.integers(0, 6)), 'good' if label else 'bad')
    out.append(base.Example(text=' '.join(words), label=label, group=str(i)))
  return out


@pytest.fixture(scope='module')
def tuned():
  tok = fakes.FakeTokenizer()
  train = encoding.encode(tok, 'classification', _synthetic(512, 0), 16)
  dev = encoding.encode(tok, 'classification', _synthetic(64, 1), 16)
  recipe = base.FinetuneSettings(learning_rate=1e-2, epochs=3, batch_size=32, max_len=16)
  tuner = trainer.FineTuner('classification', fakes.tiny_config(), 2, recipe,
                            len(train))
  fits = [tuner.fit(tuner.init_params(0), train, dev, seed=0,
                    main_metric='accuracy', patience=0) for _ in range(2)]
  return tuner, train, dev, fits


def test_fine_tuned_model_beats_majority(tuned):
  tuner, train, dev, fits = tuned
  accuracy = tuner.evaluate(fits[0].params, dev)['accuracy']
  majority = trainer.score('classification', 2, controls.baseline_predictions(
      'classification', train, dev), dev.targets)['accuracy']
  assert accuracy > majority + 0.2, (accuracy, majority)
  assert fits[0].dev_history[fits[0].best_epoch - 1] == max(fits[0].dev_history)


def test_fit_is_deterministic_per_seed(tuned):
  _, _, _, fits = tuned
  chex.assert_trees_all_equal(fits[0].params, fits[1].params)
  assert fits[0].dev_history == fits[1].dev_history


def test_fit_stops_before_the_next_epoch_when_asked(tuned):
  tuner, train, dev, _ = tuned
  asked = []

  def should_stop():
    asked.append(True)
    return len(asked) > 1   # let the first epoch run

  with pytest.raises(trainer.Stopped, match='t: stopped before epoch 2'):
    tuner.fit(tuner.init_params(0), train, dev, seed=0, main_metric='accuracy',
              patience=0, label='t', should_stop=should_stop)
  assert len(asked) == 2


def test_pretrained_encoder_replaces_random_one():
  recipe = base.FinetuneSettings(max_len=16)
  tuner = trainer.FineTuner('classification', fakes.tiny_config(), 2, recipe, 8)
  random_params = tuner.init_params(0)
  encoder = jax.tree.map(lambda x: np.full_like(x, 0.5), random_params['encoder'])
  params = tuner.init_params(0, encoder)
  chex.assert_trees_all_equal(params['encoder'], encoder)
  chex.assert_trees_all_equal(params['classifier'], random_params['classifier'])
  other = trainer.FineTuner('classification', fakes.tiny_config(hidden_size=64),
                            2, recipe, 8)
  with pytest.raises(ValueError, match='do not fit'):
    other.init_params(0, encoder)


def test_pretrained_encoder_of_either_qkv_layout_loads():
  """A fused-QKV encoder drops into a separate-projection task model and back."""
  recipe = base.FinetuneSettings(max_len=16)
  tuners = {fused: trainer.FineTuner('classification', fakes.tiny_config(fused_qkv=fused),
                                     2, recipe, 8) for fused in (False, True)}
  for source, target in ((False, True), (True, False)):
    encoder = tuners[source].init_params(1)['encoder']
    params = tuners[target].init_params(0, encoder)
    chex.assert_trees_all_equal(
        params['encoder'], models.convert_qkv_params(encoder, fused=target))
    assert ('qkv' in params['encoder']['layer_0']['attention']) == target


def test_qa_fits_and_scores_on_a_tiny_fixture():
  """The answer is always the word after 'is': the span head learns it."""
  rng = np.random.default_rng(0)
  names = ['ann', 'bob', 'cyd', 'dee', 'eve', 'fay']
  examples = []
  for _ in range(96):
    name = str(rng.choice(names))
    filler = ' '.join(rng.choice(['the', 'a', 'so'], int(rng.integers(0, 4))))
    context = f'{filler} it is {name} ok'.strip()
    examples.append(base.Example(text='who', text_b=context,
                                 answer_start=context.index(f'is {name}') + 3,
                                 answer_text=name))
  tok = fakes.FakeTokenizer()
  train = encoding.encode(tok, 'qa', examples[:64], 16)
  dev = encoding.encode(tok, 'qa', examples[64:], 16)
  recipe = base.FinetuneSettings(learning_rate=1e-2, epochs=6, batch_size=16, max_len=16)
  tuner = trainer.FineTuner('qa', fakes.tiny_config(), 0, recipe, len(train))
  fit = tuner.fit(tuner.init_params(0), train, dev, seed=0,
                  main_metric='span_f1', patience=0)
  scores = tuner.evaluate(fit.params, dev)
  baseline = trainer.score('qa', 0, controls.baseline_predictions(
      'qa', train, dev), dev.targets)
  assert set(scores) == {'exact_match', 'span_f1'}
  assert scores['exact_match'] > baseline['exact_match'] + 0.2, (scores, baseline)


def test_length_grouped_batches_cover_each_row_once_and_fit_their_width():
  tok = fakes.FakeTokenizer()
  texts = [' '.join(['word'] * int(k)) for k in np.random.default_rng(0).integers(1, 30, 200)]
  data = encoding.encode(tok, 'classification',
                         [base.Example(text=t, label=0) for t in texts], 48)
  tuner = trainer.FineTuner('classification', fakes.tiny_config(max_len=48), 2,
                            base.FinetuneSettings(batch_size=16, max_len=48), len(data),
                            min_steps=40)
  assert (tuner.steps_per_epoch, tuner.epochs) == (12, 4)   # ceil(40 / 12) epochs
  assert tuner.num_train_steps == 48
  lengths = encoding.row_lengths(data.features)
  for epoch in (1, 2):
    batches = list(tuner._batches(data, seed=3, epoch=epoch))
    rows = np.concatenate([index for index, _ in batches])
    assert len(batches) == 12 and len(set(rows.tolist())) == rows.size == 192
    for index, width in batches:
      assert lengths[index].max() <= width <= 48
      assert width == 48 or width % encoding.LENGTH_BUCKET == 0
    assert len({w for _, w in batches}) > 1          # short batches are cut
  first = [i.tolist() for i, _ in tuner._batches(data, seed=3, epoch=1)]
  assert first == [i.tolist() for i, _ in tuner._batches(data, seed=3, epoch=1)]


@pytest.mark.parametrize('kind', ['classification', 'token_classification', 'qa'])
def test_predict_in_length_batches_equals_a_full_width_forward(kind):
  rng = np.random.default_rng(1)
  tok = fakes.FakeTokenizer()
  config = fakes.tiny_config(max_len=32)
  n = 300                                   # > EVAL_BATCH_SIZE: two batches
  words = [list(rng.choice(['aa', 'bbb', 'cccc', 'dd'], int(rng.integers(1, 14))))
           for _ in range(n)]
  if kind == 'token_classification':
    data = encoding.encode_words(tok, words, [[1] * len(w) for w in words], 32)
  elif kind == 'qa':
    data = encoding.encode(tok, 'qa', [base.Example(
        text='q', text_b=' '.join(w), answer_start=0, answer_text=w[0]) for w in words], 32)
  else:
    data = encoding.encode(tok, kind, [base.Example(text=' '.join(w), label=0)
                                       for w in words], 32)
  tuner = trainer.FineTuner(kind, config, 3, base.FinetuneSettings(max_len=32), len(data))
  params = tuner.init_params(0)
  model = trainer.make_model(kind, config, 3)
  full = model.apply({'params': params}, *(data.features[k] for k in trainer.FEATURES),
                     deterministic=True)
  expected = trainer.predictions(kind, jax.tree.map(np.asarray, full), data.features)
  got = tuner.predict(params, data)
  if kind == 'token_classification':         # padding positions carry no label
    keep = data.targets['label_weights'] > 0
    expected, got = expected[keep], got[keep]
  for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
    np.testing.assert_array_equal(e, g)


def test_early_stopping_waits_for_min_steps():
  tok = fakes.FakeTokenizer()
  train = encoding.encode(tok, 'classification',
                          [base.Example(text='same words here', label=0)] * 64, 16)
  dev = encoding.encode(tok, 'classification',
                        [base.Example(text='same words here', label=k % 2)
                         for k in range(16)], 16)
  recipe = base.FinetuneSettings(learning_rate=1e-3, epochs=5, batch_size=16, max_len=16)
  # A constant input: dev accuracy never moves, so patience 1 stops at epoch 2
  # (8 steps) -- unless 12 steps must be done first (epoch 3).
  for min_steps, expected_steps in ((0, 8), (12, 12)):
    tuner = trainer.FineTuner('classification', fakes.tiny_config(), 2, recipe, 64,
                              min_steps=min_steps)
    assert tuner.num_train_steps == 20
    fit = tuner.fit(tuner.init_params(0), train, dev, seed=0, main_metric='accuracy',
                    patience=1)
    assert fit.steps_run == expected_steps, min_steps
