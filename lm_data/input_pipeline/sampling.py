"""Nested token-budget subsets, domain mixtures and repetition counts.

Every subset is a prefix of one seeded permutation of a domain's documents, so
for the same seed the 1M-token subset lies inside the 4M-token one, and a
mixture of domains is a set of such prefixes (one per domain) sized by weight.
Budgets are met exactly: the last document of a prefix is cut to fit.
"""

from collections.abc import Mapping, Sequence
import dataclasses

import numpy as np

from lm_data import utils

@dataclasses.dataclass(frozen=True)
class Subset:
  """Documents chosen for a budget, in the (seeded) order they were drawn.

  Attributes:
    indices: int64 [n] indices into the domain's document list.
    lengths: int64 [n] tokens taken from each; equal to the document's length
      except possibly the last, which is cut so the total equals the budget.
  """
  indices: np.ndarray
  lengths: np.ndarray

  @property
  def num_tokens(self) -> int:
    return int(self.lengths.sum())


def permutation(num_docs: int, *, seed: int, domain: str) -> np.ndarray:
  """The document order of `domain` that every budget with `seed` shares."""
  return utils.rng(seed, domain, 'subset').permutation(num_docs)


def nested_subset(token_counts: Sequence[int], budget: int | None, *,
                  seed: int, domain: str, shuffle: bool = True) -> Subset:
  """The shortest prefix of the seeded permutation holding `budget` tokens.

  Args:
    token_counts: tokens per document of one domain (canonical order).
    budget: tokens wanted; None takes every document.
    seed: subset seed; the same seed gives nested prefixes for all budgets.
    domain: folded into the seed so domains get independent orders.
    shuffle: False keeps the given order (a stream that is already shuffled
      and read only as far as the budget needs).

  Returns:
    The Subset; its `num_tokens` equals `budget` (or the domain's total).

  Raises:
    ValueError: if the budget is negative or exceeds the domain's tokens.
  """
  counts = np.asarray(token_counts, dtype=np.int64)
  order = (permutation(len(counts), seed=seed, domain=domain) if shuffle
           else np.arange(len(counts)))
  lengths = counts[order]
  total = int(lengths.sum())
  if budget is None:
    return Subset(order, lengths)
  if budget < 0:
    raise ValueError(f'token budget must be >= 0, got {budget}')
  if budget > total:
    raise ValueError(
        f'domain {domain!r} has {total:,} tokens but the budget asks for '
        f'{budget:,}; lower the token budget (or the weight of {domain!r})')
  if budget == 0:
    return Subset(order[:0], lengths[:0])
  cumulative = np.cumsum(lengths)
  # First position whose running total reaches the budget.
  last = int(np.searchsorted(cumulative, budget, side='left'))
  taken = lengths[:last + 1].copy()
  taken[last] -= int(cumulative[last]) - budget
  return Subset(order[:last + 1], taken)


def mixture_budgets(weights: Mapping[str, float], total: int) -> dict[str, int]:
  """Splits `total` tokens over domains in proportion to `weights`.

  Budgets are rounded down and the remainder goes to the domains with the
  largest fractional parts, so they sum to `total` exactly.

  Raises:
    ValueError: on an empty mapping or weights that are negative or all zero.
  """
  if not weights:
    raise ValueError('mixture weights are empty; give at least one domain')
  bad = {d: w for d, w in weights.items() if not w >= 0}
  if bad:
    raise ValueError(f'mixture weights must be >= 0; got {bad}')
  weight_sum = float(sum(weights.values()))
  if weight_sum <= 0:
    raise ValueError(f'mixture weights sum to 0: {dict(weights)}')
  exact = {d: total * w / weight_sum for d, w in weights.items()}
  budgets = {d: int(np.floor(x)) for d, x in exact.items()}
  remainder = total - sum(budgets.values())
  by_fraction = sorted(exact, key=lambda d: (budgets[d] - exact[d], d))
  for domain in by_fraction[:remainder]:
    budgets[domain] += 1
  return budgets


def max_mixture_total(weights: Mapping[str, float],
                      available: Mapping[str, int]) -> int:
  """The largest total whose weighted shares every domain can supply."""
  weight_sum = float(sum(weights.values()))
  return int(min(available[d] * weight_sum / w
                 for d, w in weights.items() if w > 0))


def mixture_subsets(token_counts: Mapping[str, Sequence[int]],
                    weights: Mapping[str, float] | None,
                    total: int | None, *, seed: int) -> dict[str, Subset]:
  """Per-domain nested subsets whose token counts follow `weights`.

  Args:
    token_counts: domain -> tokens per document (canonical order).
    weights: domain -> weight in tokens; None = natural proportions (each
      domain's share of all tokens).
    total: total tokens over all domains; None = everything (natural) or the
      largest total the weights allow (the scarcest domain is used up).
    seed: subset seed shared by all budgets.

  Raises:
    ValueError: if weights name other domains than `token_counts`, or a domain
      has too few tokens for its share (the message says how many it has).
  """
  available = {d: int(np.sum(c, dtype=np.int64))
               for d, c in token_counts.items()}
  if weights is None:
    weights = available
  elif set(weights) != set(token_counts):
    raise ValueError(
        f'mixture weights name {sorted(weights)} but the recipe domains are '
        f'{sorted(token_counts)}; give one weight per domain')
  if total is None:
    if weights is available:
      return {d: nested_subset(c, None, seed=seed, domain=d)
              for d, c in token_counts.items()}
    total = max_mixture_total(weights, available)
  budgets = mixture_budgets(weights, total)
  short = {d: (b, available[d]) for d, b in budgets.items() if b > available[d]}
  if short:
    detail = '; '.join(f'{d!r} has {have:,} tokens, its share needs {want:,}'
                       for d, (want, have) in sorted(short.items()))
    raise ValueError(
        f'mixture of {total:,} tokens cannot be met: {detail}; lower the '
        'token budget or the weights of those domains')
  return {d: nested_subset(token_counts[d], budgets[d], seed=seed, domain=d)
          for d in token_counts}


def epochs_for(total_train_tokens: int, unique_tokens: int) -> float:
  """Passes over the unique data that a step budget of tokens implies."""
  if unique_tokens <= 0:
    raise ValueError(
        f'no unique training tokens ({unique_tokens}); the recipe selected no '
        'data: raise its token budget or check its domains')
  return total_train_tokens / unique_tokens
