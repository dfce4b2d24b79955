"""Each metric against values computed by hand."""

import math

import numpy as np
import scipy.stats
import pytest

from lm_data.finetune import metrics


def test_accuracy_and_weights():
  assert metrics.accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75
  assert metrics.accuracy([0, 1], [1, 1], weights=[0.0, 1.0]) == 1.0


def test_binary_mcc_by_hand():
  # tp=3, tn=4, fp=1, fn=2: (12 - 2) / sqrt(4 * 5 * 5 * 6) = 10 / sqrt(600)
  gold = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
  pred = [1, 1, 1, 0, 0, 0, 0, 0, 0, 1]
  assert metrics.mcc(gold, pred, 2) == pytest.approx(10 / math.sqrt(600))


def test_mcc_perfect_inverse_and_constant():
  assert metrics.mcc([0, 1, 2], [0, 1, 2], 3) == pytest.approx(1.0)
  assert metrics.mcc([0, 1, 0, 1], [1, 0, 1, 0], 2) == pytest.approx(-1.0)
  assert metrics.mcc([0, 1, 0, 1], [0, 0, 0, 0], 2) == 0.0   # undefined -> 0


def test_macro_f1_by_hand():
  # label 0: tp=1 fp=1 fn=1 -> F1 1/2; label 1: tp=1 fp=0 fn=1 -> 2/3;
  # label 2: tp=1 fp=1 fn=0 -> 2/3; label 3 absent everywhere: ignored.
  gold = [0, 0, 1, 1, 2]
  pred = [0, 2, 1, 0, 2]
  assert metrics.macro_f1(gold, pred, 4) == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)


def test_pearson_and_spearman_with_ties():
  assert metrics.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
  # ranks: gold [1, 2.5, 2.5, 4]; pred [1, 2, 3, 4]
  # centred: [-1.5, 0, 0, 1.5] . [-1.5, -.5, .5, 1.5] = 4.5;
  # norms sqrt(4.5) * sqrt(5) -> 4.5 / sqrt(22.5)
  np.testing.assert_array_equal(metrics.rankdata([3, 1, 3, 2]), [3.5, 1, 3.5, 2])
  assert metrics.spearman([1, 2, 2, 3], [10, 20, 30, 40]) == pytest.approx(
      4.5 / math.sqrt(22.5))


def test_regression_metrics_mse():
  out = metrics.regression_metrics([0.0, 1.0], [1.0, 1.0])
  assert out['mse'] == pytest.approx(0.5)


def test_token_metrics_ignore_unweighted_positions():
  gold = np.array([[0, 1, 2], [1, 1, 0]])
  pred = np.array([[0, 1, 0], [1, 0, 2]])
  weights = np.array([[1, 1, 0], [1, 1, 0]])
  out = metrics.token_metrics(gold, pred, weights, 3)
  assert out['token_accuracy'] == 0.75
  # label 0: tp 1 fp 1 fn 0 -> 2/3; label 1: tp 2 fp 0 fn 1 -> 4/5; 2 unseen
  assert out['macro_f1'] == pytest.approx((2 / 3 + 0.8) / 2)


def test_span_scores_by_hand():
  # exact; overlap 2 of pred 3 / gold 2 -> P 2/3 R 1 F1 0.8; disjoint -> 0
  out = metrics.span_scores([1, 4, 0], [2, 5, 0], [1, 4, 3], [2, 6, 3])
  assert out['exact_match'] == pytest.approx(1 / 3)
  assert out['span_f1'] == pytest.approx((1 + 0.8 + 0) / 3)


def test_mean_std_ci_is_a_t_interval():
  out = metrics.mean_std_ci([1.0, 2.0, 3.0])
  assert out['mean'] == 2.0 and out['std'] == pytest.approx(1.0) and out['n'] == 3
  # t(0.975, 2) = 4.302653 (tables); half width = t * std / sqrt(3).
  half = 4.302653 / np.sqrt(3)
  assert out['ci95'] == pytest.approx([2 - half, 2 + half], abs=1e-5)
  values = [0.61, 0.58, 0.66, 0.6]
  ref = scipy.stats.t.interval(0.95, 3, loc=np.mean(values),
                               scale=scipy.stats.sem(values))
  assert metrics.mean_std_ci(values)['ci95'] == pytest.approx(list(ref))
  assert metrics.mean_std_ci([0.5]) == {'mean': 0.5, 'std': 0.0, 'ci95': None,
                                        'n': 1, 'values': [0.5]}
  assert metrics.mean_std_ci([0.5, 0.5])['ci95'] == [0.5, 0.5]
