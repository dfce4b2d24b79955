"""Paired comparisons: metrics from sufficient statistics, bootstrap replicates,
intervals and MDE against scipy, Holm by hand, power by simulation."""

import numpy as np
import pytest
import scipy.stats

from lm_data.finetune import metrics
from lm_data.study import paired


@pytest.mark.parametrize('metric', ['accuracy', 'mcc', 'macro_f1', 'pearson'])
def test_metric_from_sums_matches_finetune_metrics(metric):
  rng = np.random.default_rng(0)
  if metric == 'pearson':
    gold = rng.normal(size=300)
    pred = gold + rng.normal(size=300)
    expected = metrics.pearson(gold, pred)
  else:
    gold = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.6, gold, rng.integers(0, 4, 300))
    pred[pred == 3] = 2                       # a label never predicted
    expected = {'accuracy': metrics.accuracy(gold, pred),
                'mcc': metrics.mcc(gold, pred, 4),
                'macro_f1': metrics.macro_f1(gold, pred, 4)}[metric]
  stats = paired.unit_stats(metric, gold, pred, None, gold.size, 4)
  assert paired.metric_from_sums(metric, stats.sum(0), 4) == pytest.approx(expected)


def test_token_accuracy_sums_over_sentences():
  gold = np.array([1, 2, 3, 1, 1, 2])
  pred = np.array([1, 0, 3, 1, 0, 2])
  groups = np.array([0, 0, 0, 1, 2, 2])
  stats = paired.unit_stats('token_accuracy', gold, pred, groups, 3, 4)
  assert stats.tolist() == [[2, 3], [1, 1], [1, 2]]
  assert paired.metric_from_sums('token_accuracy', stats.sum(0), 4) == pytest.approx(4 / 6)


@pytest.mark.parametrize('metric', ['accuracy', 'mcc', 'pearson', 'token_accuracy'])
def test_replicates_are_the_metric_on_resampled_units(metric):
  rng = np.random.default_rng(1)
  n = 120
  groups = np.repeat(np.arange(40), 3) if metric == 'token_accuracy' else None
  if metric == 'pearson':
    gold = rng.normal(size=n)
    pred = gold + rng.normal(size=n)
  else:
    gold = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.7, gold, rng.integers(0, 3, n))
  reps = paired.Replicates(paired.TaskItems(metric, gold, groups), samples=20)
  full, replicated = reps.scores(pred)
  for b in (0, 7, 19):
    units = np.repeat(np.arange(reps.counts.shape[1]), reps.counts[b].astype(int))
    index = (np.concatenate([np.flatnonzero(groups == u) for u in units])
             if groups is not None else units)
    g, p = gold[index], pred[index]
    expected = {'accuracy': lambda: metrics.accuracy(g, p),
                'token_accuracy': lambda: metrics.accuracy(g, p),
                'mcc': lambda: metrics.mcc(g, p, 3),
                'pearson': lambda: metrics.pearson(g, p)}[metric]()
    assert replicated[b] == pytest.approx(expected, abs=1e-9)
  assert reps.counts.sum(1).tolist() == [reps.counts.shape[1]] * 20


def test_holm_by_hand():
  # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1 -> max(0.06, 0.04)
  assert paired.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
  assert paired.holm([0.5, None, 0.9]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
  family = paired.apply_holm({'a': {'p_value': 0.01}, 'b': {'p_value': 0.02},
                              'c': {'p_value': 0.2}})
  assert [family[k]['significant_holm'] for k in 'abc'] == [True, True, False]
  assert family['b']['p_holm'] == pytest.approx(0.04)


def test_t_effect_against_scipy():
  effect = paired.t_effect(0.05, [(0.02**2, 10)])
  t975, t80 = scipy.stats.t.ppf(0.975, 10), scipy.stats.t.ppf(0.8, 10)
  assert effect['ci95'] == pytest.approx([0.05 - t975 * 0.02, 0.05 + t975 * 0.02])
  assert effect['p_value'] == pytest.approx(2 * scipy.stats.t.sf(2.5, 10))
  assert effect['mde'] == pytest.approx((t975 + t80) * 0.02)
  # Large df: the familiar (1.96 + 0.84) x SE.
  assert paired.t_effect(0.0, [(1.0, 1e9)])['mde'] == pytest.approx(2.8016, abs=1e-3)
  # Welch-Satterthwaite df of two parts.
  effect = paired.t_effect(0.1, [(0.01, 4), (0.03, 9)])
  assert effect['df'] == pytest.approx(0.04**2 / (0.01**2 / 4 + 0.03**2 / 9))


def test_paired_item_se_matches_the_paired_t_formula():
  """Deterministic sides (probes): the bootstrap SE of the accuracy difference
  is the paired-t SE sqrt(var(d_i) / n) of the per-item differences."""
  rng = np.random.default_rng(2)
  n = 2000
  gold = rng.integers(0, 2, n)
  hard = rng.random(n) < 0.3                  # shared difficulty: pairs correlate
  a = np.where(hard, 1 - gold, gold)
  b = np.where(hard | (rng.random(n) < 0.05), 1 - gold, gold)
  reps = paired.Replicates(paired.TaskItems('accuracy', gold))
  scored_a, scored_b = reps.evaluation([a], True), reps.evaluation([b], True)
  effect = paired.compare(scored_a, scored_b, num_units=n)
  d = (a == gold).astype(float) - (b == gold).astype(float)
  assert effect['estimate'] == pytest.approx(d.mean())
  assert effect['se'] == pytest.approx(d.std(ddof=1) / np.sqrt(n), rel=0.1)
  unpaired = np.sqrt(scored_a.item_se()**2 + scored_b.item_se()**2)
  assert effect['se'] < 0.5 * unpaired
  assert effect['significant'] and 'note' not in effect


def test_seed_variance_enters_and_one_seed_is_flagged():
  rng = np.random.default_rng(3)
  gold = rng.integers(0, 2, 500)
  seeds = [np.where(rng.random(500) < p, gold, 1 - gold) for p in (0.7, 0.8, 0.75)]
  reps = paired.Replicates(paired.TaskItems('accuracy', gold), samples=300)
  trained = reps.evaluation(seeds, deterministic=False)
  fixed = reps.evaluation([seeds[0]], deterministic=True)
  effect = paired.compare(trained, fixed, num_units=500)
  full = np.array([np.mean(s == gold) for s in seeds])
  assert trained.seed_variance() == pytest.approx(full.var(ddof=1) / 3)
  item_var = effect['item_se']**2
  assert effect['se']**2 == pytest.approx(item_var + full.var(ddof=1) / 3)
  lonely = paired.compare(reps.evaluation(seeds[:1], False), fixed, num_units=500)
  assert 'one seed' in lonely['note']


def test_mde_gives_the_stated_power():
  """Simulated paired accuracies with a true difference equal to the MDE are
  detected ~80% of the time, and a null difference ~5%."""
  rng = np.random.default_rng(4)
  n, trials = 400, 150
  gold = np.zeros(n, int)
  base_p = 0.7
  probe_reps = paired.Replicates(paired.TaskItems('accuracy', gold), samples=200)
  pilot = paired.compare(probe_reps.evaluation([(rng.random(n) > base_p).astype(int)], True),
                         probe_reps.evaluation([(rng.random(n) > base_p).astype(int)], True),
                         num_units=n)
  delta = pilot['mde']
  hits = nulls = 0
  for t in range(trials):
    reps = paired.Replicates(paired.TaskItems('accuracy', gold), samples=200, seed=t)
    u, v = rng.random(n), rng.random(n)
    a = (u > base_p + delta).astype(int)            # accuracy base_p + delta
    b = (v > base_p).astype(int)
    c = (rng.random(n) > base_p).astype(int)
    ea, eb, ec = (reps.evaluation([x], True) for x in (a, b, c))
    hits += paired.compare(ea, eb, num_units=n)['significant']
    nulls += paired.compare(ec, eb, num_units=n)['significant']
  assert 0.68 <= hits / trials <= 0.92
  assert nulls / trials <= 0.12


def test_one_seed_borrows_the_pooled_seed_variance():
  rng = np.random.default_rng(6)
  gold = rng.integers(0, 2, 300)
  reps = paired.Replicates(paired.TaskItems('accuracy', gold), samples=200)
  draw = lambda p: np.where(rng.random(300) < p, gold, 1 - gold)
  groups = [reps.evaluation([draw(0.7), draw(0.75), draw(0.72)], False),
            reps.evaluation([draw(0.8), draw(0.78)], False)]
  pooled = paired.pool_seed_variance(groups + [reps.evaluation([draw(0.7)], True)])
  var = [g.full.var(ddof=1) for g in groups]
  assert pooled == (pytest.approx((2 * var[0] + 1 * var[1]) / 3), 3)
  single = reps.evaluation([draw(0.7)], False)
  single.pooled = pooled
  effect = paired.compare(single, groups[0], num_units=300)
  assert 'pooled' in effect['note']
  expected = effect['item_se']**2 + pooled[0] + var[0] / 3
  assert effect['se']**2 == pytest.approx(expected)
