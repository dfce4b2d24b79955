"""Tests for nested token-budget subsets and domain mixtures."""

import numpy as np
import pytest

from lm_data.input_pipeline import sampling


def _counts(n=200, seed=0):
  return np.random.default_rng(seed).integers(1, 50, size=n)


def _taken(counts, subset):
  """{doc index: tokens taken} of a subset, checked against the counts."""
  assert len(set(subset.indices.tolist())) == len(subset.indices)
  taken = dict(zip(subset.indices.tolist(), subset.lengths.tolist()))
  for index, length in taken.items():
    assert 0 < length <= counts[index]
  return taken


def test_budget_is_met_exactly_with_only_the_last_document_cut():
  counts = _counts()
  subset = sampling.nested_subset(counts, 1000, seed=0, domain='legal')
  assert subset.num_tokens == 1000
  np.testing.assert_array_equal(subset.lengths[:-1],
                                counts[subset.indices[:-1]])
  # The prefix is the shortest one reaching the budget.
  assert counts[subset.indices[:-1]].sum() < 1000


def test_subsets_are_nested_for_the_same_seed():
  counts = _counts()
  small = _taken(counts, sampling.nested_subset(counts, 500, seed=7,
                                                domain='legal'))
  large = _taken(counts, sampling.nested_subset(counts, 2000, seed=7,
                                                domain='legal'))
  for index, length in small.items():
    assert large[index] >= length


def test_subsets_depend_on_seed_and_domain():
  counts = _counts()
  base = sampling.nested_subset(counts, 500, seed=0, domain='legal')
  again = sampling.nested_subset(counts, 500, seed=0, domain='legal')
  np.testing.assert_array_equal(base.indices, again.indices)
  for seed, domain in ((1, 'legal'), (0, 'literature')):
    other = sampling.nested_subset(counts, 500, seed=seed, domain=domain)
    assert not np.array_equal(base.indices, other.indices)


def test_no_budget_takes_everything():
  counts = _counts(20)
  subset = sampling.nested_subset(counts, None, seed=0, domain='d')
  assert sorted(subset.indices.tolist()) == list(range(20))
  assert subset.num_tokens == counts.sum()


def test_budget_above_the_domain_says_how_many_tokens_it_has():
  counts = np.array([3, 4, 5])
  with pytest.raises(ValueError, match="'legal' has 12 tokens but the budget "
                     'asks for 13'):
    sampling.nested_subset(counts, 13, seed=0, domain='legal')


def test_mixture_budgets_sum_to_total_and_follow_weights():
  budgets = sampling.mixture_budgets({'a': 1.0, 'b': 1.0, 'c': 1.0}, 100)
  assert sum(budgets.values()) == 100
  assert sorted(budgets.values()) == [33, 33, 34]
  assert sampling.mixture_budgets({'a': 3, 'b': 1}, 1000) == {'a': 750,
                                                             'b': 250}


def test_mixture_proportions_within_tolerance():
  counts = {'a': _counts(300, 1), 'b': _counts(300, 2), 'c': _counts(300, 3)}
  weights = {'a': 0.5, 'b': 0.3, 'c': 0.2}
  subsets = sampling.mixture_subsets(counts, weights, 4000, seed=0)
  tokens = {d: s.num_tokens for d, s in subsets.items()}
  assert sum(tokens.values()) == 4000
  for domain, weight in weights.items():
    assert abs(tokens[domain] / 4000 - weight) < 1e-3


def test_mixtures_of_different_totals_are_nested():
  counts = {'a': _counts(300, 1), 'b': _counts(300, 2)}
  weights = {'a': 2.0, 'b': 1.0}
  small = sampling.mixture_subsets(counts, weights, 1500, seed=5)
  large = sampling.mixture_subsets(counts, weights, 6000, seed=5)
  for domain in counts:
    small_taken = _taken(counts[domain], small[domain])
    large_taken = _taken(counts[domain], large[domain])
    assert all(large_taken[i] >= n for i, n in small_taken.items())


def test_natural_proportions_follow_domain_sizes():
  counts = {'a': np.full(100, 10), 'b': np.full(100, 30)}  # 1000 vs 3000.
  subsets = sampling.mixture_subsets(counts, None, 400, seed=0)
  assert subsets['a'].num_tokens == 100
  assert subsets['b'].num_tokens == 300
  everything = sampling.mixture_subsets(counts, None, None, seed=0)
  assert everything['b'].num_tokens == 3000


def test_weights_without_total_use_up_the_scarcest_domain():
  counts = {'a': np.full(10, 10), 'b': np.full(100, 10)}  # 100 vs 1000.
  subsets = sampling.mixture_subsets(counts, {'a': 1, 'b': 1}, None, seed=0)
  assert subsets['a'].num_tokens == 100
  assert subsets['b'].num_tokens == 100


def test_mixture_too_large_for_a_domain_names_it():
  counts = {'a': np.full(10, 10), 'b': np.full(100, 10)}
  with pytest.raises(ValueError, match="'a' has 100 tokens, its share needs "
                     '500'):
    sampling.mixture_subsets(counts, {'a': 1, 'b': 1}, 1000, seed=0)


def test_weights_must_match_domains():
  counts = {'a': np.full(10, 10), 'b': np.full(10, 10)}
  with pytest.raises(ValueError, match='one weight per domain'):
    sampling.mixture_subsets(counts, {'a': 1, 'c': 1}, 10, seed=0)
  with pytest.raises(ValueError, match='must be >= 0'):
    sampling.mixture_budgets({'a': -1.0, 'b': 2.0}, 10)


def test_epochs_for():
  assert sampling.epochs_for(4_000_000, 1_000_000) == 4.0
  with pytest.raises(ValueError, match='no unique training tokens'):
    sampling.epochs_for(100, 0)
