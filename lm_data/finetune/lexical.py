"""Lexical baselines: what a task's words give with no encoder at all.

Word level (lower-cased `\\w+` tokens), so they do not depend on the
SentencePiece vocabulary, and trained on the same (capped) training examples
as the encoders:

  classification    multinomial naive Bayes on word counts, additive
                    smoothing alpha chosen on dev (NB_ALPHAS);
  sentence pairs    the same on the words of each side as separate features
                    ('a:' and 'b:' prefixes): no feature sees both sides, so
                    a task that needs the relation between them stays near
                    chance, which is what the control should show;
  regression        ridge regression on binary bag-of-words (sparse LSQR),
                    penalty chosen on dev (RIDGE_DAMPING);
  token tagging     the most frequent tag of each word form in training
                    (exact form, then lower-cased, then the most frequent
                    tag overall).
"""

import collections
from collections.abc import Callable, Sequence
import re

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from lm_data.finetune.tasks import base

WORD = re.compile(r'\w+')
NB_ALPHAS = (0.03, 0.1, 0.3, 1.0, 3.0)
# LSQR damping d minimises ||X w - y||² + d²·||w||².
RIDGE_DAMPING = (1.0, 3.0, 10.0, 30.0)
LSQR_ITERATIONS = 1000


def words(text: str) -> list[str]:
  return WORD.findall(text.lower())


def features(example: base.Example) -> list[str]:
  """Bag-of-words tokens of an example (pairs: side-prefixed)."""
  if example.text_b is None:
    return words(example.text)
  return ([f'a:{w}' for w in words(example.text)]
          + [f'b:{w}' for w in words(example.text_b)])


class Vocabulary:
  """Word -> column over the training examples."""

  def __init__(self, docs: Sequence[list[str]]):
    self.index = {}
    for doc in docs:
      for w in doc:
        self.index.setdefault(w, len(self.index))

  def counts(self, docs: Sequence[list[str]], binary: bool = False
             ) -> scipy.sparse.csr_matrix:
    rows, cols = [], []
    for i, doc in enumerate(docs):
      ids = [self.index[w] for w in doc if w in self.index]
      if binary:
        ids = sorted(set(ids))
      rows += [i] * len(ids)
      cols += ids
    matrix = scipy.sparse.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(docs), len(self.index)))
    matrix.sum_duplicates()
    return matrix


def naive_bayes(train_x: scipy.sparse.csr_matrix, train_y: np.ndarray,
                num_labels: int, alpha: float
                ) -> Callable[[scipy.sparse.csr_matrix], np.ndarray]:
  """Multinomial NB with additive smoothing; returns x -> predicted labels."""
  train_y = np.asarray(train_y, np.int64)
  onehot = np.eye(num_labels)[train_y]                      # [n, C]
  word_counts = np.asarray(train_x.T @ onehot).T + alpha    # [C, V]
  log_likelihood = np.log(word_counts / word_counts.sum(1, keepdims=True))
  class_counts = onehot.sum(0)
  log_prior = np.log(np.maximum(class_counts, 1e-300) / class_counts.sum())
  log_prior = np.where(class_counts > 0, log_prior, -np.inf)

  def predict(x):
    return np.asarray(x @ log_likelihood.T + log_prior).argmax(1)
  return predict


def ridge(train_x: scipy.sparse.csr_matrix, train_y: np.ndarray, damping: float
          ) -> Callable[[scipy.sparse.csr_matrix], np.ndarray]:
  """min ||X w + b - y||² + damping²·||w||² (b unpenalised, by centring y and
  the columns); returns x -> predictions."""
  y = np.asarray(train_y, np.float64)
  mean_x = np.asarray(train_x.mean(0)).ravel()
  centred = scipy.sparse.linalg.LinearOperator(   # X - 1·mean(X), never dense
      train_x.shape, dtype=np.float64,
      matvec=lambda v: np.asarray(train_x @ v).ravel() - mean_x @ v,
      rmatvec=lambda r: np.asarray(train_x.T @ r).ravel() - mean_x * r.sum())
  w = scipy.sparse.linalg.lsqr(centred, y - y.mean(), damp=damping,
                               iter_lim=LSQR_ITERATIONS)[0]
  b = y.mean() - mean_x @ w

  def predict(x):
    return np.asarray(x @ w).ravel() + b
  return predict


def most_frequent_tag(train: Sequence[base.Example]
                      ) -> Callable[[Sequence[str]], list[int]]:
  """Word -> its most frequent training tag (exact, lower-cased, overall)."""
  exact, lower = collections.defaultdict(collections.Counter), \
      collections.defaultdict(collections.Counter)
  overall = collections.Counter()
  for example in train:
    for word, tag in zip(example.words, example.tags):
      exact[word][tag] += 1
      lower[word.lower()][tag] += 1
      overall[tag] += 1
  # Ties go to the smallest tag index (Counter order is insertion order).
  best = lambda counter: min(counter.items(), key=lambda kv: (-kv[1], kv[0]))[0]
  exact_best = {w: best(c) for w, c in exact.items()}
  lower_best = {w: best(c) for w, c in lower.items()}
  default = best(overall)

  def tag(sentence):
    return [exact_best.get(w, lower_best.get(w.lower(), default)) for w in sentence]
  return tag


def fit_select(kind: str, num_labels: int, splits: dict[str, Sequence[base.Example]],
               score: Callable[[str, np.ndarray], dict[str, float]],
               main_metric: str, *, words_kept: dict[str, np.ndarray] | None = None
               ) -> tuple[dict[str, np.ndarray], dict]:
  """Trains on 'train', selects the setting on 'dev', predicts every split.

  Args:
    splits: {split: examples}; needs 'train' and 'dev'.
    score: (split, predictions) -> metric dict (predictions as the encoders'
      are: labels, values, or for tagging one tag per kept word, flattened).
    words_kept: tagging only: {split: words per example that the encoding
      kept} so that predictions line up with the encoders' labelled positions.
  Returns ({split: predictions} for every split but train, {'setting': ...,
  'dev_by_setting': {...}}).
  """
  evaluated = [s for s in splits if s != 'train']
  if kind == 'token_classification':
    tagger = most_frequent_tag(splits['train'])
    preds = {}
    for s in evaluated:
      kept = words_kept[s]
      preds[s] = np.array([t for e, k in zip(splits[s], kept)
                           for t in tagger(e.words[:k])], np.int64)
    return preds, {'setting': 'most frequent tag per word'}
  docs = {s: [features(e) for e in examples] for s, examples in splits.items()}
  vocab = Vocabulary(docs['train'])
  regression = kind == 'regression'
  x = {s: vocab.counts(d, binary=regression) for s, d in docs.items()}
  y = np.array([e.label for e in splits['train']],
               np.float64 if regression else np.int64)
  grid = RIDGE_DAMPING if regression else NB_ALPHAS
  models = [ridge(x['train'], y, g) if regression
            else naive_bayes(x['train'], y, num_labels, g) for g in grid]
  dev = [score('dev', m(x['dev']))[main_metric] for m in models]
  j = int(np.argmax(dev))
  name = 'damping' if regression else 'alpha'
  return ({s: models[j](x[s]) for s in evaluated},
          {'setting': {name: grid[j]},
           'dev_by_setting': {f'{name}={g}': float(v) for g, v in zip(grid, dev)}})
