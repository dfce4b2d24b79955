"""Evaluation metrics in numpy, and statistics over fine-tuning seeds.

Every metric takes host arrays of gold labels and predictions and returns a
float. `task_metrics(kind, ...)` gives the metric dict reported for a task kind.
"""

from collections.abc import Sequence

import numpy as np
import scipy.stats

CI_LEVEL = 0.95


def accuracy(gold: np.ndarray, pred: np.ndarray,
             weights: np.ndarray | None = None) -> float:
  gold, pred = np.asarray(gold), np.asarray(pred)
  weights = np.ones(gold.shape) if weights is None else np.asarray(weights)
  total = weights.sum()
  return float((weights * (gold == pred)).sum() / total) if total else 0.0


def confusion_matrix(gold: np.ndarray, pred: np.ndarray,
                     num_labels: int) -> np.ndarray:
  """counts[i, j] = number of examples with gold label i predicted as j."""
  counts = np.zeros((num_labels, num_labels), np.int64)
  np.add.at(counts, (np.asarray(gold, np.int64), np.asarray(pred, np.int64)), 1)
  return counts


def f1_per_label(counts: np.ndarray) -> np.ndarray:
  """F1 of each label from a confusion matrix (0 where it is undefined)."""
  tp = np.diag(counts).astype(np.float64)
  denominator = counts.sum(0) + counts.sum(1)   # 2tp + fp + fn
  return np.divide(2 * tp, denominator, out=np.zeros_like(tp),
                   where=denominator > 0)


def macro_f1(gold: np.ndarray, pred: np.ndarray, num_labels: int) -> float:
  """Mean F1 over the labels that occur in gold or predictions."""
  counts = confusion_matrix(gold, pred, num_labels)
  present = (counts.sum(0) + counts.sum(1)) > 0
  return float(f1_per_label(counts)[present].mean()) if present.any() else 0.0


def mcc(gold: np.ndarray, pred: np.ndarray, num_labels: int) -> float:
  """Matthews correlation (Gorodkin's multi-class form; the usual one for 2)."""
  counts = confusion_matrix(gold, pred, num_labels).astype(np.float64)
  n = counts.sum()
  correct = np.trace(counts)
  true_totals, pred_totals = counts.sum(1), counts.sum(0)
  numerator = correct * n - true_totals @ pred_totals
  denominator = np.sqrt(n**2 - pred_totals @ pred_totals) * np.sqrt(
      n**2 - true_totals @ true_totals)
  return float(numerator / denominator) if denominator > 0 else 0.0


def pearson(gold: np.ndarray, pred: np.ndarray) -> float:
  x = np.asarray(gold, np.float64) - np.mean(gold)
  y = np.asarray(pred, np.float64) - np.mean(pred)
  denominator = np.sqrt((x * x).sum() * (y * y).sum())
  return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def rankdata(values: np.ndarray) -> np.ndarray:
  """Ranks 1..n with ties given their average rank."""
  values = np.asarray(values)
  order = np.argsort(values, kind='stable')
  ranks = np.empty(len(values), np.float64)
  sorted_values = values[order]
  start = 0
  for end in range(1, len(values) + 1):
    if end == len(values) or sorted_values[end] != sorted_values[start]:
      ranks[order[start:end]] = (start + end + 1) / 2   # mean of start+1..end
      start = end
  return ranks


def spearman(gold: np.ndarray, pred: np.ndarray) -> float:
  return pearson(rankdata(gold), rankdata(pred))


def span_scores(gold_start: np.ndarray, gold_end: np.ndarray,
                pred_start: np.ndarray,
                pred_end: np.ndarray) -> dict[str, float]:
  """Exact match and token-overlap F1 of predicted vs gold spans (inclusive)."""
  exact, f1 = [], []
  for gs, ge, ps, pe in zip(gold_start, gold_end, pred_start, pred_end):
    exact.append(float(gs == ps and ge == pe))
    overlap = max(0, min(ge, pe) - max(gs, ps) + 1)
    if overlap == 0 or pe < ps:
      f1.append(0.0)
      continue
    precision, recall = overlap / (pe - ps + 1), overlap / (ge - gs + 1)
    f1.append(2 * precision * recall / (precision + recall))
  return {'exact_match': float(np.mean(exact)), 'span_f1': float(np.mean(f1))}


def classification_metrics(gold, pred, num_labels: int) -> dict[str, float]:
  return {'accuracy': accuracy(gold, pred),
          'macro_f1': macro_f1(gold, pred, num_labels),
          'mcc': mcc(gold, pred, num_labels)}


def regression_metrics(gold, pred) -> dict[str, float]:
  gold, pred = np.asarray(gold, np.float64), np.asarray(pred, np.float64)
  return {'pearson': pearson(gold, pred), 'spearman': spearman(gold, pred),
          'mse': float(np.mean((gold - pred)**2))}


def token_metrics(gold, pred, weights, num_labels: int) -> dict[str, float]:
  """Metrics over the labelled positions (weight > 0) of [N, S] arrays."""
  keep = np.asarray(weights) > 0
  gold, pred = np.asarray(gold)[keep], np.asarray(pred)[keep]
  return {'token_accuracy': accuracy(gold, pred),
          'macro_f1': macro_f1(gold, pred, num_labels)}


def mean_std_ci(values: Sequence[float]) -> dict:
  """Mean, sample std and a 95% Student-t interval of the mean over seeds.

  mean ± t(0.975, n - 1) · std / sqrt(n); one value, or identical values,
  give no interval width (ci95 None for n = 1).
  """
  values = np.asarray(values, np.float64)
  if values.size == 0:
    raise ValueError('mean_std_ci needs at least one value')
  mean = float(values.mean())
  std = float(values.std(ddof=1)) if values.size > 1 else 0.0
  ci = None
  if values.size > 1:
    half = float(scipy.stats.t.ppf(0.5 + CI_LEVEL / 2, values.size - 1)
                 * std / np.sqrt(values.size))
    ci = [mean - half, mean + half]
  return {'mean': mean, 'std': std, 'ci95': ci, 'n': int(values.size),
          'values': values.tolist()}
