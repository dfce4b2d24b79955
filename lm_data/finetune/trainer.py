"""Fine-tuning loop: jitted AdamW steps, dev evaluation per epoch, best epoch.

One `FineTuner` per (task, model config, recipe) compiles its train and predict
steps once; every seed and every init (pretrained / random) reuses them.
"""

from collections.abc import Callable, Iterator
import dataclasses
import functools
import math
from typing import Any

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lm_data import models
from lm_data import utils
from lm_data.finetune import encoding
from lm_data.finetune import metrics
from lm_data.finetune.tasks import base
from lm_data.train import optimizer as optimizer_lib

FEATURES = ('input_ids', 'type_ids', 'position_ids', 'segment_ids')
WARMUP_FRACTION = 0.1
# Training batches are drawn from groups of this many batches sorted by
# length (then shuffled), and on CPU cut to their longest row rounded up to
# encoding.LENGTH_BUCKET: as HF's group_by_length, ~1.5x fewer padded tokens.
LENGTH_GROUP_BATCHES = 16
WEIGHT_DECAY = 0.01
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-6
CLIP_NORM = 1.0
EVAL_BATCH_SIZE = 256
# Longest answer (in sub-tokens) a QA prediction may span.
MAX_ANSWER_TOKENS = 30
# Logit given to positions a QA span may not start or end at.
MASKED_LOGIT = -1e9
# Folded into the seed so the init, dropout and shuffle streams are independent.
INIT_STREAM, DROPOUT_STREAM, SHUFFLE_STREAM = 0, 1, 2

Params = Any


def stream_key(seed: int, stream: int) -> jax.Array:
  """The JAX key of one stream (init, dropout) of a fine-tuning seed."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), stream)


def make_model(kind: str, config: models.BertConfig,
               num_labels: int) -> nn.Module:
  """The task model of `kind`; its encoder submodule is named 'encoder'."""
  if kind in ('classification', 'pair_classification'):
    return models.BertForSequenceClassification(config, num_labels)
  if kind == 'regression':
    return models.BertForSequenceClassification(config, 1)
  if kind == 'token_classification':
    return models.BertForTokenClassification(config, num_labels)
  if kind == 'qa':
    return models.BertForQuestionAnswering(config)
  raise ValueError(
      f'unknown task kind {kind!r}; known: {", ".join(base.KINDS)}')


def _span_logits(logits: jax.Array, features: dict) -> jax.Array:
  """QA logits with every position outside the context masked out."""
  context = (features['type_ids'] == 1) & (features['segment_ids'] > 0)
  return jnp.where(context, logits.astype(jnp.float32), MASKED_LOGIT)


def loss_fn(kind: str, outputs, targets: dict, features: dict) -> jax.Array:
  """Mean batch loss: softmax CE, MSE, weighted token CE or start/end CE."""
  if kind == 'regression':
    values = outputs[..., 0].astype(jnp.float32)
    return jnp.mean((values - targets['labels'])**2)
  if kind == 'token_classification':
    ce = optax.softmax_cross_entropy_with_integer_labels(
        outputs.astype(jnp.float32), targets['labels'])
    weights = targets['label_weights']
    return jnp.sum(ce * weights) / jnp.maximum(jnp.sum(weights), 1.0)
  if kind == 'qa':
    start, end = outputs
    return 0.5 * (
        optax.softmax_cross_entropy_with_integer_labels(
            _span_logits(start, features), targets['start_positions']).mean()
        + optax.softmax_cross_entropy_with_integer_labels(
            _span_logits(end, features), targets['end_positions']).mean())
  return optax.softmax_cross_entropy_with_integer_labels(
      outputs.astype(jnp.float32), targets['labels']).mean()


def best_spans(start_logits: np.ndarray, end_logits: np.ndarray,
               features: dict) -> tuple[np.ndarray, np.ndarray]:
  """Best start <= end < start + MAX_ANSWER_TOKENS, both in the context."""
  context = (features['type_ids'] == 1) & (features['segment_ids'] > 0)
  starts, ends = [], []
  length = start_logits.shape[1]
  offsets = np.arange(length)
  allowed = ((offsets[None, :] >= offsets[:, None])
             & (offsets[None, :] - offsets[:, None] < MAX_ANSWER_TOKENS))
  for s, e, c in zip(start_logits, end_logits, context):
    scores = np.where(allowed & c[:, None] & c[None, :],
                      s[:, None] + e[None, :], -np.inf)
    i, j = np.unravel_index(np.argmax(scores), scores.shape)
    starts.append(i)
    ends.append(j)
  return np.array(starts), np.array(ends)


def predictions(kind: str, outputs, features: dict):
  """Host predictions from model outputs (numpy)."""
  if kind == 'regression':
    return np.asarray(outputs)[..., 0]
  if kind == 'qa':
    return best_spans(np.asarray(outputs[0]), np.asarray(outputs[1]), features)
  return np.asarray(outputs).argmax(-1)


def score(kind: str, num_labels: int, preds, targets: dict) -> dict[str, float]:
  """The metric dict of a task kind."""
  if kind == 'regression':
    return metrics.regression_metrics(targets['labels'], preds)
  if kind == 'token_classification':
    return metrics.token_metrics(targets['labels'], preds,
                                 targets['label_weights'], num_labels)
  if kind == 'qa':
    return metrics.span_scores(targets['start_positions'],
                               targets['end_positions'], *preds)
  return metrics.classification_metrics(targets['labels'], preds, num_labels)


def _full_width(shape: tuple[int, ...], kind: str, width: int) -> tuple[int, ...]:
  """Per-row output shape at the full sequence width (token and QA outputs)."""
  if kind in ('token_classification', 'qa'):
    return (width,) + shape[1:]
  return shape


class Stopped(Exception):
  """A stop was asked for (the study got SIGTERM): no further fit or epoch
  starts; results already written are kept, and a re-run resumes from them."""


@dataclasses.dataclass
class FitResult:
  params: Params            # host copy of the best dev epoch's params
  best_epoch: int           # 1-based
  dev_history: list[float]  # dev main metric after each epoch
  steps_run: int = 0        # optimizer steps taken (fewer after early stopping)


def _rows(data: encoding.Encoded, index: np.ndarray,
          width: int | None = None) -> tuple[dict, dict]:
  """Features and targets of rows `index`, cut to `width` tokens if given
  (per-token targets too; per-row targets are unchanged)."""
  cut = slice(None) if width is None else slice(0, width)
  features = {k: data.features[k][index, cut] for k in FEATURES}
  seq = data.features['segment_ids'].shape[1]
  targets = {k: v[index, cut] if v.ndim == 2 and v.shape[1] == seq else v[index]
             for k, v in data.targets.items()}
  return features, targets


@dataclasses.dataclass(frozen=True)
class _Steps:
  model: nn.Module
  optimizer: optax.GradientTransformation
  train_step: Any   # (params, opt_state, features, targets, rng, lr) -> ...
  predict: Any      # (params, features) -> outputs


@functools.cache
def _compiled_steps(kind: str, model_config: models.BertConfig,
                    num_labels: int) -> _Steps:
  """Jitted steps shared by every task with the same model and head shape.

  The learning rate is an argument (the schedule runs on the host), so tasks
  and recipes that differ only in schedule, epochs or data reuse one compile.
  """
  model = make_model(kind, model_config, num_labels)
  # AdamW at unit rate; the step scales its updates by the scheduled rate,
  # which is exactly AdamW at that rate (decoupled decay included).
  optimizer = optax.chain(
      optax.clip_by_global_norm(CLIP_NORM),
      optax.adamw(1.0, b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS,
                  weight_decay=WEIGHT_DECAY, mask=optimizer_lib.decay_mask))

  def apply(params, features, **kwargs):
    return model.apply({'params': params}, *(features[k] for k in FEATURES),
                       **kwargs)

  def train_step(params, opt_state, features, targets, rng, learning_rate):
    def loss_of(p):
      outputs = apply(p, features, deterministic=False, rngs={'dropout': rng})
      return loss_fn(kind, outputs, targets, features)
    loss, grads = jax.value_and_grad(loss_of)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    updates = jax.tree.map(lambda u: learning_rate * u, updates)
    return optax.apply_updates(params, updates), opt_state, loss

  return _Steps(model, optimizer,
                jax.jit(train_step, donate_argnums=(0, 1)),
                jax.jit(functools.partial(apply, deterministic=True)))


class FineTuner:
  """Training and prediction of one task model under one recipe.

  Attributes:
    steps_per_epoch: from the train size and batch size (the last partial
      batch of each epoch is dropped).
    epochs: recipe.epochs, or more to reach `min_steps` optimizer steps
      (early stopping waits until they are done).
    num_train_steps: epochs x steps_per_epoch.
    learning_rates: the host-side schedule, linear warm-up over
      WARMUP_FRACTION of the steps then linear decay to 0.
  """

  def __init__(self, kind: str, model_config: models.BertConfig,
               num_labels: int, recipe: base.FinetuneSettings, num_train: int,
               min_steps: int = 0):
    if num_train < 1:
      raise ValueError('fine-tuning needs at least one training example')
    self.kind, self.num_labels, self.recipe = kind, num_labels, recipe
    self._steps = _compiled_steps(kind, model_config, num_labels)
    self.batch_size = min(recipe.batch_size, num_train)
    self.steps_per_epoch = num_train // self.batch_size
    self.min_steps = min_steps
    self.epochs = max(recipe.epochs, math.ceil(min_steps / self.steps_per_epoch))
    self.num_train_steps = self.steps_per_epoch * self.epochs
    schedule = optimizer_lib.learning_rate_schedule(
        recipe.learning_rate, warmup_steps=math.ceil(WARMUP_FRACTION * self.num_train_steps),
        num_train_steps=self.num_train_steps)
    self.learning_rates = np.asarray(
        schedule(np.arange(self.num_train_steps)), np.float32)

  def init_params(self, seed: int,
                  encoder_params: Params | None = None) -> Params:
    """Random init; the encoder replaced by `encoder_params` if given.

    The head's init depends only on `seed`, so a pretrained and a random-init
    run of one seed start from the same head.
    """
    dummy = np.zeros((1, self.recipe.max_len), np.int32)
    params = self._steps.model.init(
        stream_key(seed, INIT_STREAM),
        dummy, dummy, dummy, np.ones_like(dummy), deterministic=True)['params']
    params = jax.device_get(params)
    if encoder_params is not None:
      # Either Q/K/V layout loads: converted to this model's (BertConfig.fused_qkv).
      encoder_params = models.convert_qkv_params(
          encoder_params, fused=self._steps.model.config.fused_qkv)
      expected = jax.tree.map(np.shape, params['encoder'])
      given = jax.tree.map(np.shape, encoder_params)
      if expected != given:
        raise ValueError(
            'pretrained encoder params do not fit the task model built from '
            f'its config: expected shapes {expected}, got {given}')
      params = {**params, 'encoder': encoder_params}
    return params

  def _batches(self, data: encoding.Encoded, seed: int,
               epoch: int) -> Iterator[tuple[np.ndarray, int]]:
    """(row indices, width) of each step of an epoch.

    A fresh permutation per epoch; within consecutive groups of
    LENGTH_GROUP_BATCHES batches rows are sorted by length, and the batches of
    the epoch are then shuffled, so a batch holds rows of similar length and
    is cut to its longest (rounded up to encoding.LENGTH_BUCKET).
    """
    rng = utils.rng(seed, SHUFFLE_STREAM, epoch)
    order = rng.permutation(len(data))[:self.steps_per_epoch * self.batch_size]
    lengths = encoding.row_lengths(data.features)
    width = data.features['segment_ids'].shape[1]
    group = LENGTH_GROUP_BATCHES * self.batch_size
    for start in range(0, order.size, group):
      chunk = order[start:start + group]
      order[start:start + group] = chunk[np.argsort(lengths[chunk], kind='stable')]
    batches = order.reshape(self.steps_per_epoch, self.batch_size)
    bucket = encoding.length_bucket()
    for b in rng.permutation(self.steps_per_epoch):
      index = batches[b]
      yield index, encoding.bucket_width(int(lengths[index].max()), width, bucket)

  def predict(self, params: Params, data: encoding.Encoded):
    """Host predictions for every row of `data`.

    Rows go in batches of similar length cut to their longest row
    (`encoding.length_batches`; padding does not change outputs), each padded
    to EVAL_BATCH_SIZE rows by repeating its own rows.
    """
    n, width = len(data), data.features['segment_ids'].shape[1]
    merged = None
    for index, cut in encoding.length_batches(data.features, EVAL_BATCH_SIZE):
      padded = np.resize(index, EVAL_BATCH_SIZE)
      out = self._steps.predict(params, {k: data.features[k][padded, :cut]
                                         for k in FEATURES})
      out = jax.tree.map(lambda x: np.asarray(x)[:index.size], out)
      if merged is None:    # [n, ...] with the sequence axis back at full width
        merged = jax.tree.map(
            lambda x: np.full((n,) + _full_width(x.shape[1:], self.kind, width),
                              MASKED_LOGIT if self.kind == 'qa' else 0, x.dtype), out)
      for full, part in zip(jax.tree.leaves(merged), jax.tree.leaves(out)):
        full[(index,) + tuple(slice(0, d) for d in part.shape[1:])] = part
    return predictions(self.kind, merged, data.features)

  def evaluate(self, params: Params,
               data: encoding.Encoded) -> dict[str, float]:
    if len(data) == 0:
      raise ValueError('cannot evaluate on an empty split')
    return score(self.kind, self.num_labels, self.predict(params, data),
                 data.targets)

  def fit(self, params: Params, train: encoding.Encoded, dev: encoding.Encoded,
          *, seed: int, main_metric: str, patience: int,
          label: str = '',
          should_stop: Callable[[], bool] | None = None) -> FitResult:
    """Trains for self.epochs; keeps the epoch with the best dev main metric.

    Once at least `min_steps` optimizer steps are done, stops early after
    `patience` epochs without improvement (0 disables). All main metrics are
    higher-is-better. `label` tags the log lines. `should_stop` is asked before
    each epoch; True raises `Stopped`.
    """
    opt_state = self._steps.optimizer.init(params)
    dropout_key = stream_key(seed, DROPOUT_STREAM)
    best, best_params, best_epoch, history = -math.inf, params, 0, []
    step = 0
    for epoch in range(1, self.epochs + 1):
      if should_stop is not None and should_stop():
        raise Stopped(f'{label}: stopped before epoch {epoch}')
      for index, width in self._batches(train, seed, epoch):
        features, targets = _rows(train, index, width)
        params, opt_state, loss = self._steps.train_step(
            params, opt_state, features, targets,
            jax.random.fold_in(dropout_key, step), self.learning_rates[step])
        step += 1
      if not np.isfinite(float(loss)):
        raise FloatingPointError(
            f'{label}: fine-tuning loss is {float(loss)} at epoch {epoch}, step '
            f'{step}; lower the learning rate')
      value = self.evaluate(params, dev)[main_metric]
      history.append(value)
      logging.debug('%s epoch %d/%d (step %d): loss %.4f, dev %s %.4f', label,
                    epoch, self.epochs, step, float(loss), main_metric, value)
      if value > best:
        best, best_params, best_epoch = value, jax.device_get(params), epoch
      elif patience and epoch - best_epoch >= patience and step >= self.min_steps:
        break
    return FitResult(best_params, best_epoch, history, step)
