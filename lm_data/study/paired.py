"""Paired comparisons on the same test items, with power stated.

Two evaluations of one task (two arms, or an arm and a control) are scored on
the same test items, so their difference is measured in pairs: an item that
is hard for one is hard for the other, and that shared noise cancels.

The variance of a difference of seed-mean scores has two parts:
  * test items: a paired bootstrap over items (for tagging, over sentences)
    of the seed-mean difference, with one resampling shared by everything
    compared on the task (`Replicates`);
  * seeds: s_A²/n_A + s_B²/n_B from the per-seed scores on the full test set
    (zero for a deterministic fit such as a probe on a fixed encoder; unknown,
    and then left out with a note, for a trained init with one seed).
The interval is estimate ± t(0.975, df)·SE with Welch–Satterthwaite degrees
of freedom (the item part counts n_items - 1), the p-value is two-sided from
the same t, and the minimum detectable effect at two-sided alpha = 0.05 and
power 0.8 is MDE = (t(1 - alpha/2, df) + t(power, df))·SE, assuming the SE
under the alternative equals the observed one. A family of comparisons (one
per task) is corrected with Holm's step-down method.

Metrics are computed from per-unit sufficient statistics summed over the
resampled units, so every bootstrap replicate is one matrix product:
accuracy (correct, 1), token accuracy (correct words, words per sentence),
MCC and macro-F1 (the confusion-matrix cell of each item), Pearson (x, y,
xy, x², y², 1).
"""

from collections.abc import Sequence
import dataclasses
import math
from typing import Any

import numpy as np
import scipy.stats

from lm_data import utils

ALPHA = 0.05
POWER = 0.8
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0
CHUNK = 100                     # bootstrap replicates per matrix product
SUPPORTED = ('accuracy', 'token_accuracy', 'mcc', 'macro_f1', 'pearson')


# ----------------------------------------------------------- sufficient stats

def _confusion_cells(gold: np.ndarray, pred: np.ndarray, num_labels: int) -> np.ndarray:
  cells = np.zeros((gold.size, num_labels * num_labels))
  cells[np.arange(gold.size), gold * num_labels + pred] = 1.0
  return cells


def unit_stats(metric: str, gold: np.ndarray, pred: np.ndarray,
               groups: np.ndarray | None, num_units: int,
               num_labels: int) -> np.ndarray:
  """[units, k] statistics whose column sums determine the metric."""
  gold, pred = np.asarray(gold), np.asarray(pred)
  if metric in ('accuracy', 'token_accuracy'):
    per_item = np.stack([(gold == pred).astype(np.float64), np.ones(gold.size)], 1)
  elif metric in ('mcc', 'macro_f1'):
    per_item = _confusion_cells(gold.astype(np.int64), pred.astype(np.int64), num_labels)
  elif metric == 'pearson':
    x, y = gold.astype(np.float64), pred.astype(np.float64)
    per_item = np.stack([x, y, x * y, x * x, y * y, np.ones(x.size)], 1)
  else:
    raise ValueError(f'no per-item statistics for metric {metric!r}; '
                     f'supported: {", ".join(SUPPORTED)}')
  if groups is None:
    return per_item
  out = np.zeros((num_units, per_item.shape[1]))
  np.add.at(out, np.asarray(groups), per_item)
  return out


def metric_from_sums(metric: str, sums: np.ndarray, num_labels: int) -> np.ndarray:
  """The metric of each row of summed statistics [..., k]."""
  sums = np.asarray(sums, np.float64)
  if metric in ('accuracy', 'token_accuracy'):
    return np.divide(sums[..., 0], sums[..., 1], out=np.zeros(sums.shape[:-1]),
                     where=sums[..., 1] > 0)
  if metric in ('mcc', 'macro_f1'):
    counts = sums.reshape(sums.shape[:-1] + (num_labels, num_labels))
    gold_totals, pred_totals = counts.sum(-1), counts.sum(-2)
    tp = np.diagonal(counts, axis1=-2, axis2=-1)
    if metric == 'macro_f1':
      denominator = gold_totals + pred_totals
      f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
      present = denominator > 0
      return np.divide((f1 * present).sum(-1), present.sum(-1),
                       out=np.zeros(f1.shape[:-1]), where=present.sum(-1) > 0)
    n = counts.sum((-2, -1))
    correct = tp.sum(-1)
    numerator = correct * n - (gold_totals * pred_totals).sum(-1)
    denominator = (np.sqrt(n**2 - (pred_totals**2).sum(-1))
                   * np.sqrt(n**2 - (gold_totals**2).sum(-1)))
    return np.divide(numerator, denominator, out=np.zeros(numerator.shape),
                     where=denominator > 0)
  if metric == 'pearson':
    sx, sy, sxy, sxx, syy, n = np.moveaxis(sums, -1, 0)
    cov = sxy - sx * sy / np.maximum(n, 1)
    vx = sxx - sx * sx / np.maximum(n, 1)
    vy = syy - sy * sy / np.maximum(n, 1)
    denominator = np.sqrt(np.clip(vx, 0, None) * np.clip(vy, 0, None))
    return np.divide(cov, denominator, out=np.zeros(cov.shape), where=denominator > 0)
  raise ValueError(f'no per-item statistics for metric {metric!r}')


# --------------------------------------------------------------- replicates

@dataclasses.dataclass
class TaskItems:
  """The test items of one task: gold labels and, for tagging, sentences."""
  metric: str
  gold: np.ndarray
  groups: np.ndarray | None = None

  @property
  def num_units(self) -> int:
    return int(self.groups.max()) + 1 if self.groups is not None and self.groups.size \
        else int(self.gold.size)

  @property
  def num_labels(self) -> int:
    return 0 if self.metric == 'pearson' else int(self.gold.max()) + 1


class Replicates:
  """Bootstrap replicates of a task's metric, one resampling of units shared
  by every evaluation scored on it (so differences are paired).

  `scores(preds)` -> (full-sample metric, [B] replicate metrics).
  """

  def __init__(self, items: TaskItems, *, samples: int = BOOTSTRAP_SAMPLES,
               seed: int = BOOTSTRAP_SEED):
    self.items = items
    rng = utils.rng(seed)
    units = items.num_units
    # Resampling counts per unit, [B, units]; drawn once per task.
    self.counts = rng.multinomial(units, np.full(units, 1.0 / units), size=samples
                                  ).astype(np.float32)

  def _labels(self, preds: np.ndarray) -> int:
    if self.items.metric == 'pearson':
      return 0
    return max(self.items.num_labels, int(np.max(preds)) + 1 if np.size(preds) else 0)

  def scores(self, preds: np.ndarray, num_labels: int | None = None
             ) -> tuple[float, np.ndarray]:
    items = self.items
    labels = num_labels if num_labels is not None else self._labels(preds)
    stats = unit_stats(items.metric, items.gold, preds, items.groups,
                       items.num_units, labels)
    full = float(metric_from_sums(items.metric, stats.sum(0), labels))
    replicated = np.concatenate([
        metric_from_sums(items.metric, self.counts[i:i + CHUNK] @ stats, labels)
        for i in range(0, self.counts.shape[0], CHUNK)])
    return full, replicated

  def evaluation(self, seeds: Sequence[np.ndarray], deterministic: bool) -> 'Scored':
    """Scores of one evaluation (one entry per seed)."""
    preds = [np.asarray(p) for p in seeds]
    labels = 0 if self.items.metric == 'pearson' else max(self._labels(p) for p in preds)
    scored = [self.scores(p, labels) for p in preds]
    return Scored(np.array([s[0] for s in scored]), np.stack([s[1] for s in scored]),
                  deterministic)


@dataclasses.dataclass
class Scored:
  full: np.ndarray          # [seeds] metric on the whole test set
  replicates: np.ndarray    # [seeds, B] metric on each bootstrap resample
  deterministic: bool       # a single deterministic fit: no seed variance
  # (variance of one seed's score, df) pooled over other evaluations of the
  # task trained the same way; used when this one has a single seed.
  pooled: tuple[float, int] | None = None

  @property
  def mean(self) -> float:
    return float(self.full.mean())

  def seed_part(self) -> tuple[float, int] | None:
    """(variance of the seed mean, its df); (0, 1) if deterministic, None if
    unknown (one seed and nothing pooled)."""
    if self.deterministic:
      return 0.0, 1
    if self.full.size >= 2:
      return float(self.full.var(ddof=1) / self.full.size), self.full.size - 1
    if self.pooled is not None:
      return self.pooled[0] / self.full.size, self.pooled[1]
    return None

  def seed_variance(self) -> float | None:
    """Variance of the seed mean; 0 if deterministic, None if unknown."""
    part = self.seed_part()
    return None if part is None else part[0]

  def item_se(self) -> float:
    """Test-sampling SE of the seed-mean score (bootstrap over items)."""
    return float(self.replicates.mean(0).std(ddof=1))


# --------------------------------------------------------------- inference

def pool_seed_variance(scored: Sequence[Scored]) -> tuple[float, int] | None:
  """Pooled variance of one seed's score over evaluations with >= 2 seeds:
  sum (n_k - 1) s_k² / sum (n_k - 1), with its degrees of freedom."""
  groups = [s.full for s in scored if not s.deterministic and s.full.size >= 2]
  df = sum(g.size - 1 for g in groups)
  if df == 0:
    return None
  return float(sum(g.var(ddof=1) * (g.size - 1) for g in groups) / df), int(df)


def t_effect(estimate: float, variances: Sequence[tuple[float, float]], *,
             alpha: float = ALPHA, power: float = POWER) -> dict[str, Any]:
  """Estimate with a Welch–Satterthwaite t interval, p-value and MDE.

  variances: (variance, degrees of freedom) of each independent part.
  """
  parts = [(v, d) for v, d in variances if v > 0]
  variance = sum(v for v, _ in parts)
  if variance <= 0:
    return {'estimate': float(estimate), 'se': 0.0, 'df': None,
            'ci95': [float(estimate)] * 2, 'p_value': 0.0 if estimate else 1.0,
            'mde': 0.0}
  df = variance**2 / sum(v * v / d for v, d in parts)
  se = math.sqrt(variance)
  critical = float(scipy.stats.t.ppf(1 - alpha / 2, df))
  p_value = float(2 * scipy.stats.t.sf(abs(estimate) / se, df))
  mde = (critical + float(scipy.stats.t.ppf(power, df))) * se
  return {'estimate': float(estimate), 'se': se, 'df': float(df),
          'ci95': [float(estimate - critical * se), float(estimate + critical * se)],
          'p_value': p_value, 'mde': float(mde)}


def compare(a: Scored, b: Scored, *, num_units: int) -> dict[str, Any]:
  """a minus b: paired over items, independent over seeds."""
  estimate = a.mean - b.mean
  item_var = float((a.replicates.mean(0) - b.replicates.mean(0)).var(ddof=1))
  parts = [(item_var, max(num_units - 1, 1))]
  notes = []
  for name, side in (('a', a), ('b', b)):
    part = side.seed_part()
    if part is None:
      notes.append(f'{name}: one seed, its seed variance is unknown and left out')
    elif part[0] > 0:
      parts.append(part)
      if side.full.size < 2:
        notes.append(f'{name}: one seed, seed variance pooled over the task\'s '
                     f'other fine-tuned evaluations ({part[1]} df)')
  out = t_effect(estimate, parts)
  out.update(item_se=math.sqrt(item_var), seeds=[int(a.full.size), int(b.full.size)],
             significant=bool(out['ci95'][0] > 0 or out['ci95'][1] < 0))
  if notes:
    out['note'] = '; '.join(notes)
  return out


def holm(p_values: Sequence[float | None]) -> list[float | None]:
  """Holm step-down adjusted p-values (None stays None, not counted)."""
  index = [i for i, p in enumerate(p_values) if p is not None]
  m = len(index)
  order = sorted(index, key=lambda i: p_values[i])
  adjusted: list[float | None] = [None] * len(p_values)
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (m - rank) * p_values[i]))
    adjusted[i] = running
  return adjusted


def apply_holm(family: dict[str, dict], alpha: float = ALPHA) -> dict[str, dict]:
  """Adds p_holm and significant_holm to each comparison of a family (tasks)."""
  names = [k for k, v in family.items() if v.get('p_value') is not None]
  adjusted = holm([family[k]['p_value'] for k in names])
  for name, p in zip(names, adjusted):
    family[name]['p_holm'] = p
    family[name]['significant_holm'] = bool(p < alpha)
    family[name]['family_size'] = len(names)
  return family
