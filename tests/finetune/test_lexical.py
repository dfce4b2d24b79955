"""Lexical baselines against hand-computed values and dense references."""

import numpy as np
import pytest

from lm_data.finetune import lexical
from lm_data.finetune import metrics
from lm_data.finetune.tasks import base


def test_words_and_pair_features():
  assert lexical.words("It's GOOD, isn't it?") == ['it', 's', 'good', 'isn', 't', 'it']
  pair = base.Example(text='Hi there', text_b='hello')
  assert lexical.features(pair) == ['a:hi', 'a:there', 'b:hello']


def test_naive_bayes_by_hand():
  docs = [['good', 'good', 'fun'], ['bad', 'boring'], ['good', 'plot']]
  labels = np.array([1, 0, 1])
  vocab = lexical.Vocabulary(docs)            # good fun bad boring plot
  predict = lexical.naive_bayes(vocab.counts(docs), labels, 2, alpha=1.0)
  # Class 1: counts good 3, fun 1, plot 1 (+1 each) over 5 + 5 = 10;
  # class 0: bad 1, boring 1 (+1 each) over 2 + 5 = 7. Priors 1/3, 2/3.
  # 'bad plot': class 0: log(1/3) + log(2/7) + log(1/7); class 1: log(2/3) +
  # log(1/10) + log(2/10).
  score0 = np.log(1 / 3) + np.log(2 / 7) + np.log(1 / 7)
  score1 = np.log(2 / 3) + np.log(1 / 10) + np.log(2 / 10)
  assert score0 > score1
  test = [['bad', 'plot'], ['good'], ['unseen']]
  assert predict(vocab.counts(test)).tolist() == [0, 1, 1]   # unseen: the prior


def test_ridge_matches_dense_solution():
  rng = np.random.default_rng(0)
  docs = [list(rng.choice(list('abcdefgh'), rng.integers(1, 6))) for _ in range(80)]
  vocab = lexical.Vocabulary(docs)
  x = vocab.counts(docs, binary=True)
  y = rng.normal(size=80) + 2.0
  predict = lexical.ridge(x, y, damping=1.5)
  dense = x.toarray()
  xc, yc = dense - dense.mean(0), y - y.mean()
  w = np.linalg.solve(xc.T @ xc + 1.5**2 * np.eye(dense.shape[1]), xc.T @ yc)
  expected = dense @ w + (y.mean() - dense.mean(0) @ w)
  np.testing.assert_allclose(predict(x), expected, atol=1e-6)


def test_most_frequent_tag():
  train = [base.Example(words=('The', 'dog', 'runs'), tags=(0, 1, 2)),
           base.Example(words=('the', 'runs', 'runs'), tags=(0, 1, 1)),
           base.Example(words=('A', 'dog'), tags=(0, 1))]
  tag = lexical.most_frequent_tag(train)
  # runs: tag 1 twice, tag 2 once; 'THE' via lower case; unseen: overall top (1).
  assert tag(['runs', 'THE', 'cat', 'A']) == [1, 0, 1, 0]


def test_fit_select_tagging_follows_kept_words_and_selects_on_dev():
  train = [base.Example(words=('x', 'y'), tags=(1, 2))] * 3
  splits = {'train': train, 'dev': train,
            'test': [base.Example(words=('y', 'x', 'y'), tags=(2, 1, 2))]}
  kept = {'dev': np.array([2, 2, 2]), 'test': np.array([2])}   # last word truncated
  gold = {'dev': np.array([1, 2] * 3), 'test': np.array([2, 1])}
  score = lambda s, p: metrics.token_metrics(gold[s], p, np.ones(len(p)), 3)
  preds, _ = lexical.fit_select('token_classification', 3, splits, score,
                                'token_accuracy', words_kept=kept)
  assert preds['test'].tolist() == [2, 1]

  rng = np.random.default_rng(1)
  make = lambda n: [base.Example(text=' '.join(rng.choice(['good', 'bad'], 1).tolist()
                                               + ['filler'] * 3), label=0)
                    for _ in range(n)]
  splits = {s: make(n) for s, n in (('train', 60), ('dev', 30), ('test', 30))}
  splits = {s: [base.Example(text=e.text, label=int('good' in e.text)) for e in ex]
            for s, ex in splits.items()}
  labels = {s: np.array([e.label for e in ex]) for s, ex in splits.items()}
  score = lambda s, p: metrics.classification_metrics(labels[s], p, 2)
  preds, info = lexical.fit_select('classification', 2, splits, score, 'accuracy')
  assert (preds['test'] == labels['test']).all()
  assert info['setting']['alpha'] in lexical.NB_ALPHAS
  assert set(info['dev_by_setting']) == {f'alpha={a}' for a in lexical.NB_ALPHAS}
