"""Linear probes on frozen encoder features (MiniBERTas / edge probing).

A probe asks what a frozen encoder already represents: features are read once
per task and encoder, then a linear model is fitted on top of each layer.

Features (`extract`), one jitted forward pass per batch, every layer at once:
  * layers: the embedding output (after its LayerNorm) and each Transformer
    layer's output, `layer_names(num_layers)`;
  * sequence tasks (classification, regression): the mean over the row's
    non-padding tokens ([CLS] and [SEP] included);
  * sentence pairs, encoded as one row `[CLS] a [SEP] b [SEP]`: the means u
    and v over the two segments' tokens (type id 0 and 1) of that same
    encoding, combined as SentEval/InferSent do, [u, v, |u - v|, u * v]. A
    linear probe on the pooled row cannot express "b relates to a" (every
    encoder and the lexical baseline sat at chance on dialog_reply); the
    product and difference terms can;
  * token classification: the vector at each labelled position (the first
    sub-token of a word), one feature row per word.

Probes (`fit_select`), on features standardised with the training mean and
std:
  * classification: multinomial logistic regression, mean cross-entropy plus
    (l2 / 2)·||W||² (bias not penalised), solved by L-BFGS in JAX for every
    layer and every l2 of `L2_GRID` in one jitted call (warm-started from the
    largest l2 down);
  * regression: ridge regression in closed form from an eigendecomposition of
    the d x d Gram matrix (every l2 at once).
The (layer, l2) with the best dev main metric is the probe's score; per layer
the best l2 on dev gives the layer's score. The problems are convex: a probe on
a fixed encoder has no seed variance, only test-sample noise.
"""

from collections.abc import Callable, Sequence
import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from lm_data import models
from lm_data.finetune import encoding

FEATURES = ('input_ids', 'type_ids', 'position_ids', 'segment_ids')
EMBEDDINGS = 'embeddings'
# The modules whose outputs are the probed layers: BertEncoder's embedding
# LayerNorm and its Transformer layers.
_EMBED_MODULE = 'embed_ln'
_LAYER_PREFIX = 'layer_'
EXTRACT_BATCH_SIZE = 256
# L2 strengths tried on dev (mean-loss units, standardised features). 1.0 was
# never chosen on the 8 local tasks and 1e-4 was for tagging and licences.
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
RIDGE_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)   # ridge: sum-of-squares units / n
# L-BFGS stops at this many iterations or when the gradient's L2 norm is below
# GRADIENT_TOLERANCE. On POS tagging (34k words, 44 tags) 200 iterations at
# tolerance 1e-3 reach dev accuracy within 0.001 of a 1000-iteration fit, at a
# sixth of its cost (BUILD_NOTES, 'Probes'); in float32 a mean-loss gradient
# over tens of thousands of rows does not get much below 1e-4.
MAX_ITERATIONS = 200
GRADIENT_TOLERANCE = 1e-3
STD_FLOOR = 1e-6


def layer_names(num_layers: int) -> list[str]:
  return [EMBEDDINGS] + [f'{_LAYER_PREFIX}{i}' for i in range(num_layers)]


def _wanted(module, method_name: str) -> bool:
  return method_name == '__call__' and (
      module.name == _EMBED_MODULE or (module.name or '').startswith(_LAYER_PREFIX))


# Part of every probe result's key: bump when the features change, so a
# resumed evaluation does not reuse probes of the old features.
FEATURES_VERSION = 2   # 2: sentence pairs as [u, v, |u - v|, u * v]
POOLING = {'token_classification': 'token', 'pair_classification': 'pair'}
PAIR_PARTS = 4   # [u, v, |u - v|, u * v]


def _pooling(kind: str) -> str:
  return POOLING.get(kind, 'mean')


def _masked_mean(h, mask):
  """[layers, B, S, H] averaged over the positions where mask [B, S] is 1."""
  mask = mask.astype(jnp.float32)
  total = jnp.einsum('lbsh,bs->lbh', h, mask)
  return total / jnp.maximum(mask.sum(1), 1.0)[None, :, None]


@functools.cache
def _feature_fn(model_config: models.BertConfig, pooling: str) -> Callable:
  """Jitted (encoder params, features) -> [layers, B, H] ('mean'),
  [layers, B, 4H] ('pair') or [layers, B, S, H] ('token')."""
  encoder = models.BertEncoder(model_config)
  names = [_EMBED_MODULE] + [f'{_LAYER_PREFIX}{i}'
                             for i in range(model_config.num_layers)]

  def fn(params, features):
    _, state = encoder.apply(
        {'params': params}, *(features[k] for k in FEATURES), deterministic=True,
        capture_intermediates=_wanted, mutable=['intermediates'])
    found = state['intermediates']
    h = jnp.stack([found[n]['__call__'][0] for n in names]).astype(jnp.float32)
    if pooling == 'token':
      return h
    real = features['segment_ids'] > 0
    if pooling == 'mean':
      return _masked_mean(h, real)
    u = _masked_mean(h, real & (features['type_ids'] == 0))
    v = _masked_mean(h, real & (features['type_ids'] == 1))
    return jnp.concatenate([u, v, jnp.abs(u - v), u * v], -1)

  return jax.jit(fn)


def _unique_rows(features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """(first index of each distinct row, row -> distinct row) by ids and types."""
  keys = np.concatenate([features['input_ids'], features['type_ids']], 1)
  _, first, inverse = np.unique(keys, axis=0, return_index=True,
                                return_inverse=True)
  return first, inverse.ravel()


def extract_rows(model_config: models.BertConfig, encoder_params: Any,
                 features: dict[str, np.ndarray], kind: str,
                 weights: np.ndarray | None = None) -> np.ndarray:
  """Frozen features of every layer for the rows of `features`.

  Sequence kinds: float32 [layers, rows, H] (pairs: [layers, rows, 4H]).
  Token classification: one row per position with weights > 0, row-major:
  [layers, positions, H].
  Batches of similar length, cut to their longest row (`length_batches`).
  """
  pooling = _pooling(kind)
  token_level = pooling == 'token'
  fn = _feature_fn(model_config, pooling)
  n = features['segment_ids'].shape[0]
  layers, hidden = model_config.num_layers + 1, model_config.hidden_size
  if pooling == 'pair':
    hidden *= PAIR_PARTS
  if token_level:
    keep = np.asarray(weights) > 0
    # Position p of row r is feature row offset[r] + (rank of p in row r).
    offset = np.concatenate([[0], np.cumsum(keep.sum(1))])
    out = np.zeros((layers, int(offset[-1]), hidden), np.float32)
  else:
    out = np.zeros((layers, n, hidden), np.float32)
  for index, width in encoding.length_batches(features, EXTRACT_BATCH_SIZE):
    padded = np.resize(index, EXTRACT_BATCH_SIZE)        # wrap: fixed batch shape
    h = np.asarray(fn(encoder_params, {k: features[k][padded, :width]
                                       for k in FEATURES}))[:, :index.size]
    if token_level:
      rows, cols = np.nonzero(keep[index, :width])
      target = offset[index[rows]] + (np.cumsum(keep[index, :width], 1)[rows, cols] - 1)
      out[:, target] = h[:, rows, cols]
    else:
      out[:, index] = h
  return out


def extract(model_config: models.BertConfig, encoder_params: Any,
            splits: dict[str, encoding.Encoded], kind: str) -> dict[str, np.ndarray]:
  """{split: features of `extract_rows`}; a row that occurs in several
  (sequence-level) splits is encoded once."""
  if kind == 'token_classification':
    return {s: extract_rows(model_config, encoder_params, e.features, kind,
                            e.targets['label_weights']) for s, e in splits.items()}
  names = list(splits)
  merged = {k: np.concatenate([splits[s].features[k] for s in names])
            for k in FEATURES}
  first, inverse = _unique_rows(merged)
  unique = extract_rows(model_config, encoder_params,
                        {k: v[first] for k, v in merged.items()}, kind)
  bounds = np.cumsum([0] + [len(splits[s]) for s in names])
  return {s: unique[:, inverse[bounds[i]:bounds[i + 1]]]
          for i, s in enumerate(names)}


def probe_targets(kind: str, data: encoding.Encoded) -> np.ndarray:
  """Labels aligned with `extract`'s rows."""
  labels = data.targets['labels']
  if kind == 'token_classification':
    return labels[data.targets['label_weights'] > 0]
  return labels


def item_groups(kind: str, data: encoding.Encoded) -> np.ndarray | None:
  """Token classification: the example index of each feature row, else None."""
  if kind != 'token_classification':
    return None
  weights = data.targets['label_weights'] > 0
  return np.broadcast_to(np.arange(weights.shape[0])[:, None], weights.shape)[weights]


# ------------------------------------------------------------------ solvers

def _lbfgs(fun: Callable, init, max_iterations: int, tolerance: float):
  """Minimises `fun` from `init` with optax's L-BFGS (zoom line search)."""
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(fun)

  def step(carry):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad,
                                value_fn=fun)
    return optax.apply_updates(params, updates), state

  def going(carry):
    _, state = carry
    count = otu.tree_get(state, 'count')
    norm = otu.tree_norm(otu.tree_get(state, 'grad'))
    return (count == 0) | ((count < max_iterations) & (norm >= tolerance))

  params, state = jax.lax.while_loop(going, step, (init, opt.init(init)))
  return params, otu.tree_get(state, 'count')


def logistic_objective(params, x, y, l2):
  """Mean softmax cross-entropy + (l2 / 2)·||W||²; params = (W [d, C], b [C])."""
  w, b = params
  logits = x @ w + b
  ce = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], -1)[:, 0]
  return ce.mean() + 0.5 * l2 * jnp.sum(w * w)


@functools.partial(jax.jit, static_argnames=('num_classes', 'max_iterations'))
def _logistic_path(x, y, l2s, num_classes: int, max_iterations: int,
                   tolerance: float):
  """Solutions for every l2 (largest first, warm-started); x: [n, d]."""
  d = x.shape[1]
  init = (jnp.zeros((d, num_classes), jnp.float32),
          jnp.zeros((num_classes,), jnp.float32))

  def one(params, l2):
    solved, count = _lbfgs(lambda p: logistic_objective(p, x, y, l2), params,
                           max_iterations, tolerance)
    return solved, (solved, count)

  _, (path, counts) = jax.lax.scan(one, init, l2s)
  return path, counts


def fit_logistic(x: np.ndarray, y: np.ndarray, num_classes: int,
                 l2s: Sequence[float] = L2_GRID, *,
                 max_iterations: int = MAX_ITERATIONS,
                 tolerance: float = GRADIENT_TOLERANCE):
  """L2-regularised multinomial logistic regression for each l2.

  Returns ([(W [d, C], b [C]) per l2, in the order given], iterations per l2).
  """
  l2s = np.asarray(l2s, np.float32)
  order = np.argsort(-l2s)          # warm start from the strongest penalty
  path, counts = _logistic_path(jnp.asarray(x, jnp.float32),
                                jnp.asarray(y, jnp.int32), jnp.asarray(l2s[order]),
                                num_classes=num_classes,
                                max_iterations=max_iterations, tolerance=tolerance)
  w, b = (np.asarray(a) for a in path)
  counts = np.asarray(counts)
  back = np.argsort(order)
  return [(w[i], b[i]) for i in back], counts[back].tolist()


def fit_ridge(x: np.ndarray, y: np.ndarray, l2s: Sequence[float] = RIDGE_GRID):
  """Ridge regression: min_w,b mean((x w + b - y)²) + l2 ||w||², for each l2.

  Closed form on centred data from one eigendecomposition of x'x / n.
  Returns [(w [d], b) per l2].
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  mx, my = x.mean(0), y.mean()
  xc, yc = x - mx, y - my
  n = x.shape[0]
  values, vectors = np.linalg.eigh(xc.T @ xc / n)
  projected = vectors.T @ (xc.T @ yc / n)
  out = []
  for l2 in l2s:
    w = vectors @ (projected / (values + l2))
    out.append((w, float(my - mx @ w)))
  return out


# -------------------------------------------------------------- the probe

@dataclasses.dataclass
class Standardiser:
  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def fit(cls, x: np.ndarray) -> 'Standardiser':
    return cls(x.mean(0), np.maximum(x.std(0), STD_FLOOR))

  def __call__(self, x: np.ndarray) -> np.ndarray:
    return ((x - self.mean) / self.std).astype(np.float32)


@dataclasses.dataclass
class ProbeFit:
  """What `fit_select` chose and its predictions on every evaluated split.

  layer, l2: the (layer, l2) with the best dev main metric;
  layers: per layer, the best l2 on dev and that fit's metrics per split;
  predictions: {split: predictions of the chosen probe} (labels / values,
    one per feature row);
  iterations: L-BFGS iterations per (layer, l2) (classification).
  """
  layer: str
  l2: float
  dev: float
  predictions: dict[str, np.ndarray]
  layers: dict[str, dict]
  iterations: list[list[int]] | None = None


def _predict(kind: str, params, x: np.ndarray) -> np.ndarray:
  w, b = params
  out = x @ w + b
  return out if kind == 'regression' else np.asarray(out).argmax(-1)


def fit_select(kind: str, num_labels: int, features: dict[str, np.ndarray],
               targets: dict[str, np.ndarray], names: Sequence[str],
               score: Callable[[str, np.ndarray], dict[str, float]],
               main_metric: str) -> ProbeFit:
  """Fits every (layer, l2) on 'train', selects on 'dev', predicts the rest.

  Args:
    features: {split: [layers, rows, H]} from `extract`; needs train and dev.
    targets: {split: labels per feature row}.
    names: layer names (len = layers).
    score: (split, predictions) -> metric dict of that split.
    main_metric: the dev metric that selects (higher is better).
  """
  splits = [s for s in features if s != 'train']
  best = None
  layers, iterations = {}, []
  for k, name in enumerate(names):
    scale = Standardiser.fit(features['train'][k])
    x = {s: scale(f[k]) for s, f in features.items()}
    if kind == 'regression':
      grid = RIDGE_GRID
      fits = fit_ridge(x['train'], targets['train'], grid)
    else:
      grid = L2_GRID
      fits, counts = fit_logistic(x['train'], targets['train'], num_labels, grid)
      iterations.append(counts)
    dev_scores = [score('dev', _predict(kind, p, x['dev']))[main_metric] for p in fits]
    # Best dev score; a tie goes to the stronger penalty.
    j = max(range(len(grid)), key=lambda i: (dev_scores[i], grid[i]))
    preds = {s: _predict(kind, fits[j], x[s]) for s in splits}
    layers[name] = {'l2': float(grid[j]), 'dev_by_l2': [float(v) for v in dev_scores],
                    'metrics': {s: score(s, preds[s]) for s in splits}}
    if best is None or dev_scores[j] > best[0]:
      best = (dev_scores[j], name, float(grid[j]), preds)
  dev, layer, l2, preds = best
  return ProbeFit(layer=layer, l2=l2, dev=float(dev), predictions=preds,
                  layers=layers, iterations=iterations or None)
