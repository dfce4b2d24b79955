"""General statistics of the study: t intervals, Welch contrasts, regression
slopes, the power-law fit with its bootstrap band, and correlations.

`analysis.py` applies them to the arms; nothing here knows a study record.
"""

import functools
import itertools
import math
from typing import Any
from collections.abc import Sequence

import numpy as np
import scipy.stats

from lm_data import utils
from lm_data.finetune import metrics
from lm_data.study import paired

CI_LEVEL = metrics.CI_LEVEL
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0
POWER_LAW_PARAMS = 3            # E, B, beta
# Residual degrees of freedom a fit needs before its parameters are reported:
# with fewer, the curve (nearly) interpolates the points and its intervals
# only restate them.
MIN_FIT_DOF = 2
# Fisher-z intervals need n > 3; below 5 arms they span most of [-1, 1].
MIN_CORRELATION_ARMS = 5
EXACT_PERMUTATION_MAX_N = 8     # 8! = 40320 orders
SPEARMAN_SE_FACTOR = 1.06       # Fieller, Hartley & Pearson (1957): se = 1.06/sqrt(n-3)
BETA_BOUNDS = (1e-3, 3.0)       # scaling exponents outside this are not plausible
BETA_COARSE_POINTS = 200
BETA_FINE_POINTS = 50
BETA_REFINEMENTS = 2            # finer grids around the best beta
BAND_POINTS = 50



def finite(value: float | None) -> bool:
  return value is not None and math.isfinite(value)


@functools.lru_cache(maxsize=None)
def t_quantile(p: float, df: float) -> float:
  """Quantile of Student's t with `df` degrees of freedom (p >= 0.5)."""
  if not 0.5 <= p < 1 or df <= 0:
    raise ValueError(f't_quantile needs 0.5 <= p < 1 and df > 0, got {p}, {df}')
  return float(scipy.stats.t.ppf(p, df))


def seed_interval(scores: Sequence[float]) -> dict[str, Any]:
  """Mean, std and the 95% t interval over seeds (None below 2 seeds)."""
  scores = np.asarray([s for s in scores if finite(s)], np.float64)
  if scores.size == 0:
    return {'mean': None, 'std': None, 'ci95': None, 'n': 0}
  stats = metrics.mean_std_ci(scores)
  return {k: stats[k] for k in ('mean', 'std', 'ci95', 'n')}


def _effect(estimate: float, se: float | None, df: float | None,
            **extra) -> dict[str, Any]:
  """An estimate with its t interval, whether the interval excludes 0, and
  the minimum detectable effect (two-sided alpha 0.05, power 0.8, same SE)."""
  mde = p_value = None
  if se == 0:
    ci = [float(estimate), float(estimate)]   # identical scores: no spread
    p_value = 0.0 if estimate else 1.0
  elif se is None or df is None or not df > 0:
    ci = None
  else:
    half = t_quantile(1 - (1 - CI_LEVEL) / 2, df) * se
    ci = [float(estimate - half), float(estimate + half)]
    mde = half + t_quantile(paired.POWER, df) * se
    p_value = float(2 * scipy.stats.t.sf(abs(estimate) / se, df))
  significant = None if ci is None else bool(ci[0] > 0 or ci[1] < 0)
  return dict(estimate=float(estimate), ci95=ci, significant=significant,
              se=se, df=df, mde=mde, p_value=p_value, **extra)


def regression_slope(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
  """OLS slope of y on x with a t interval (df = n - 2)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.size < 2 or np.ptp(x) == 0:
    raise ValueError('a slope needs at least two distinct x values')
  xc = x - x.mean()
  slope = float(xc @ (y - y.mean()) / (xc @ xc))
  intercept = float(y.mean() - slope * x.mean())
  df = x.size - 2
  se = None
  if df > 0:
    residuals = y - intercept - slope * x
    se = float(np.sqrt(residuals @ residuals / df / (xc @ xc)))
  return _effect(slope, se, df if df > 0 else None, intercept=intercept,
                 n=int(x.size))


def contrast(groups: Sequence[Sequence[float]],
             coefficients: Sequence[float]) -> dict[str, Any]:
  """sum_j c_j * mean(group_j), with a Welch-Satterthwaite t interval."""
  groups = [np.asarray(g, np.float64) for g in groups]
  if any(g.size == 0 for g in groups):
    raise ValueError('every group of a contrast needs at least one score')
  estimate = sum(c * g.mean() for c, g in zip(coefficients, groups))
  if any(g.size < 2 for g in groups):
    return _effect(estimate, None, None)    # no within-group variance
  terms = [c * c * g.var(ddof=1) / g.size for c, g in zip(coefficients, groups)]
  return _welch(estimate, terms, [g.size for g in groups])


def _welch(estimate: float, terms: Sequence[float], sizes: Sequence[float]
           ) -> dict[str, Any]:
  """`_effect` with SE sqrt(sum terms) and Welch-Satterthwaite df; terms[j] is
  the variance contributed by a sample of sizes[j] (>= 2)."""
  variance = float(sum(terms))
  if variance == 0:
    return _effect(estimate, 0.0, None)
  df = variance**2 / sum(t * t / (n - 1) for t, n in zip(terms, sizes))
  return _effect(estimate, math.sqrt(variance), float(df))


def mean_difference(mean_a: float, sd_a: float | None, n_a: float | None,
                    mean_b: float, sd_b: float | None, n_b: float | None
                    ) -> dict[str, Any]:
  """mean_a - mean_b from two samples' means, SDs and sizes, with a Welch t
  interval (no interval when an SD or a size below 2 is missing)."""
  estimate = mean_a - mean_b
  if not all(finite(v) for v in (sd_a, sd_b, n_a, n_b)) or min(n_a, n_b) < 2:
    return _effect(estimate, None, None)
  return _welch(estimate, (sd_a * sd_a / n_a, sd_b * sd_b / n_b), (n_a, n_b))


# ----------------------------------------------------------------- power law

def power_law(tokens: np.ndarray, e: float, b: float, beta: float) -> np.ndarray:
  return e + b * np.asarray(tokens, np.float64)**(-beta)


def _profile(x: np.ndarray, y: np.ndarray, betas: np.ndarray):
  """Best (E >= 0, B) for each beta; returns (E, B, rss) arrays over betas."""
  f = x[None, :]**(-betas[:, None])                       # [G, n]
  n = x.size
  sf, sff = f.sum(1), (f * f).sum(1)
  sy, sfy = y.sum(), f @ y
  det = n * sff - sf * sf
  with np.errstate(divide='ignore', invalid='ignore'):
    e = (sff * sy - sf * sfy) / det
    b = (n * sfy - sf * sy) / det
  clamp = ~(e >= 0)                                       # also catches det = 0
  e = np.where(clamp, 0.0, e)
  b = np.where(clamp, sfy / sff, b)
  residuals = y[None, :] - e[:, None] - b[:, None] * f
  return e, b, (residuals * residuals).sum(1)


def fit_power_law(tokens: Sequence[float], loss: Sequence[float]) -> dict[str, Any]:
  """Least-squares L(D) = E + B * D^-beta (E >= 0, beta in BETA_BOUNDS)."""
  tokens = np.asarray(tokens, np.float64)
  y = np.asarray(loss, np.float64)
  if tokens.size < POWER_LAW_PARAMS or np.unique(tokens).size < POWER_LAW_PARAMS:
    raise ValueError(f'a power law needs >= {POWER_LAW_PARAMS} distinct sizes')
  # Scale D so that x^-beta stays well conditioned for every beta.
  reference = float(np.exp(np.log(tokens).mean()))
  x = tokens / reference
  betas = np.geomspace(*BETA_BOUNDS, BETA_COARSE_POINTS)
  for _ in range(BETA_REFINEMENTS + 1):
    e, b, rss = _profile(x, y, betas)
    i = int(np.argmin(rss))
    previous = betas
    betas = np.geomspace(betas[max(i - 1, 0)], betas[min(i + 1, betas.size - 1)],
                         BETA_FINE_POINTS)
  beta = float(previous[i])
  at_bound = bool(np.isclose(beta, BETA_BOUNDS, rtol=1e-6).any())
  return {'E': float(e[i]), 'B': float(b[i] * reference**beta), 'beta': beta,
          'rss': float(rss[i]), 'n': int(tokens.size), 'beta_at_bound': at_bound}


def _percentile_ci(samples: np.ndarray) -> list[float] | None:
  samples = samples[np.isfinite(samples)]
  if samples.size == 0:
    return None
  tail = (1 - CI_LEVEL) / 2 * 100
  return [float(v) for v in np.percentile(samples, [tail, 100 - tail])]


def loss_trend(tokens: Sequence[float], loss: Sequence[float]) -> dict[str, Any]:
  """Held-out loss per decade of unique tokens: OLS slope, t interval (n - 2)."""
  x = np.log10(np.asarray(tokens, np.float64))
  if x.size < 3 or np.unique(x).size < 2:
    return {'status': f'{np.unique(x).size} distinct sizes: no interval for a trend'}
  return regression_slope(x, loss) | {'status': 'computed'}


def loss_scaling(tokens: Sequence[float], loss: Sequence[float], *,
                 samples: int = BOOTSTRAP_SAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
  """Power-law fit with residual-bootstrap CIs for E, B, beta and a band.

  Fitted only with >= MIN_FIT_DOF residual degrees of freedom; otherwise the
  status says why and `trend` (loss per decade) is all that is reported.
  """
  tokens = np.asarray(tokens, np.float64)
  loss = np.asarray(loss, np.float64)
  distinct = np.unique(tokens).size
  trend = loss_trend(tokens, loss)
  if distinct - POWER_LAW_PARAMS < MIN_FIT_DOF:
    return {'status': 'too few arms to fit',
            'note': f'{distinct} distinct sizes for {POWER_LAW_PARAMS} parameters leave '
                    f'{max(distinct - POWER_LAW_PARAMS, 0)} residual degree(s) of freedom '
                    f'(a fit needs {MIN_FIT_DOF}): the curve would pass (nearly) through '
                    'every point, so its parameters are not reported',
            'trend': trend,
            'significant_decrease': (bool(trend['ci95'][1] < 0)
                                     if trend.get('ci95') else None),
            'points': {'tokens': tokens.tolist(), 'loss': loss.tolist()}}
  fit = fit_power_law(tokens, loss)
  grid = np.geomspace(tokens.min(), tokens.max(), BAND_POINTS)
  out = {'status': 'fitted', 'fit': fit, 'ci95': None, 'band': None,
         'significant_decrease': None, 'trend': trend,
         'points': {'tokens': tokens.tolist(), 'loss': loss.tolist()}}
  dof = tokens.size - POWER_LAW_PARAMS
  predicted = power_law(tokens, fit['E'], fit['B'], fit['beta'])
  residuals = (loss - predicted) * np.sqrt(tokens.size / dof)
  rng = utils.rng(seed)
  params = np.empty((samples, POWER_LAW_PARAMS))
  curves = np.empty((samples, grid.size))
  for s in range(samples):
    y = predicted + rng.choice(residuals, tokens.size, replace=True)
    refit = fit_power_law(tokens, y)
    params[s] = refit['E'], refit['B'], refit['beta']
    curves[s] = power_law(grid, *params[s])
  tail = (1 - CI_LEVEL) / 2 * 100
  low, high = np.percentile(curves, [tail, 100 - tail], axis=0)
  out['ci95'] = {name: _percentile_ci(params[:, k])
                 for k, name in enumerate(('E', 'B', 'beta'))}
  out['band'] = {'tokens': grid.tolist(),
                 'fit': power_law(grid, fit['E'], fit['B'], fit['beta']).tolist(),
                 'low': low.tolist(), 'high': high.tolist()}
  # Loss falls with data when the band at the largest size lies wholly below
  # the band at the smallest.
  out['significant_decrease'] = bool(high[-1] < low[0])
  return out


# --------------------------------------------------------------- correlation

def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
  """Pearson correlation; None when either side is constant."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if np.ptp(x) == 0 or np.ptp(y) == 0:
    return None
  return metrics.pearson(x, y)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
  """Spearman rank correlation (ties get average ranks); None when constant."""
  return pearson(metrics.rankdata(np.asarray(x)), metrics.rankdata(np.asarray(y)))


def fisher_interval(r: float, n: int, se_factor: float = 1.0) -> list[float] | None:
  """95% interval of a correlation from Fisher's z (se = factor / sqrt(n - 3))."""
  if n <= 3 or r is None:
    return None
  if abs(r) >= 1:
    return [float(r), float(r)]
  half = scipy.stats.norm.ppf(0.5 + CI_LEVEL / 2) * se_factor / math.sqrt(n - 3)
  z = math.atanh(r)
  return [math.tanh(z - half), math.tanh(z + half)]


def spearman_permutation_p(x: Sequence[float], y: Sequence[float]) -> float | None:
  """Two-sided exact p of Spearman's rho: every order of y's ranks (n <= 8)."""
  rx, ry = metrics.rankdata(np.asarray(x)), metrics.rankdata(np.asarray(y))
  if rx.size > EXACT_PERMUTATION_MAX_N or np.ptp(rx) == 0 or np.ptp(ry) == 0:
    return None
  orders = np.array(list(itertools.permutations(range(ry.size))))
  cx = rx - rx.mean()
  sums = np.abs((ry[orders] - ry.mean()) @ cx)   # rho is proportional to this sum
  observed = abs(float((ry - ry.mean()) @ cx))
  return float(np.mean(sums >= observed - 1e-9))


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
  """Pearson and Spearman with Fisher-z intervals (>= MIN_CORRELATION_ARMS)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.size < MIN_CORRELATION_ARMS:
    return {'status': f'too few arms ({x.size} < {MIN_CORRELATION_ARMS}) for a '
                      'correlation interval', 'n': int(x.size)}
  out = {'status': 'computed', 'n': int(x.size)}
  for name, fn, factor in (('pearson', pearson, 1.0),
                           ('spearman', spearman, SPEARMAN_SE_FACTOR)):
    estimate = fn(x, y)
    perfect = name == 'spearman' and estimate is not None and abs(estimate) >= 1 - 1e-12
    if perfect and (p := spearman_permutation_p(x, y)) is not None:
      # Ranks in perfect order: Fisher's z has no interval there, and a
      # [-1, -1] would claim certainty from a handful of arms. The exact
      # permutation test says how rare a perfect order is (2/n! at n arms).
      out[name] = {'estimate': estimate, 'ci95': None, 'p_exact': p,
                   'significant': bool(p < 1 - CI_LEVEL)}
      continue
    ci = fisher_interval(estimate, x.size, factor) if estimate is not None else None
    out[name] = {'estimate': estimate, 'ci95': ci,
                 'significant': None if ci is None else bool(ci[0] > 0 or ci[1] < 0)}
  return out
