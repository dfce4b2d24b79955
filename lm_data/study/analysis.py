"""The study's comparisons for the report: scaling, task sensitivities, controls.

The general statistics they use (t intervals, Welch contrasts, slopes, the
power-law fit, correlations) are in `stats.py`.

Every effect comes with a 95% interval and a `significant` flag (the interval
excludes 0); `report.py` turns these into sentences.

Inputs are the arms' typed records (`records.ArmRecord`: recipe, unique
tokens, epochs, held-out metrics, count references, `tasks` and `probes` as
`records.TaskScore` per task), parsed once by `report.write_report`;
optionally per-item predictions (`paired.py`) for paired comparisons.

Methods (also stated in the report):
* Learning check: an arm has learned language when its held-out loss at
  [MASK] positions is at least LEARN_MARGIN_NATS below the unigram
  cross-entropy of the same positions and its overall accuracy beats the
  frequency-plus-copy baseline; on the held-out rows of the arm's own domains
  when it trains on a strict subset of the held-out domains, else on all rows
  pooled. Downstream claims (slopes, contrasts, downstream literature
  verdicts) use only arms that pass; the others are shown, marked.
* Domain effects on held-out loss at [MASK] (every arm): single-domain arm
  and leave-one-out arm minus the mixed reference arm on each domain's rows;
  Welch interval from the per-position loss SDs, treating the two arms'
  positions as independent samples (they are the same positions: see
  `_loss_difference`).
* Per-arm scores: mean over seeds with a Student-t interval (n - 1 df).
* Power law L(D) = E + B * D^-beta, only with >= stats.MIN_FIT_DOF residual degrees
  of freedom (>= 5 arms); for a fixed beta the model is linear in (E, B), so
  beta is profiled on a grid; E >= 0. Intervals from a residual bootstrap
  (residuals inflated by sqrt(n / (n - 3))). Otherwise only the log-linear
  trend of loss per decade of tokens (t interval, n - 2 df) is reported.
* Size slope: least squares of per-seed scores on log10(unique tokens), with
  a t interval. Seeds vary only fine-tuning (one pretraining run per arm), so
  pretraining variance enters only through the lack of fit.
* Domain and quality effects: differences of seed means with Welch intervals.
* Paired comparisons (arm vs arm, pretrained vs random init) on the same test
  items: `paired.py` (item bootstrap + seed variance, t interval, Holm across
  tasks, minimum detectable effect at alpha 0.05 and power 0.8).
* Correlations: Pearson and Spearman over arms with Fisher-z intervals, only
  with >= stats.MIN_CORRELATION_ARMS arms.
"""

from collections.abc import Sequence
import dataclasses
import math
from typing import Any

import numpy as np

from lm_data.study import paired
from lm_data.study import records
from lm_data.study import stats

Arm = records.ArmRecord
Score = records.TaskScore

# Subword tokens per English word (BERT-style vocabularies), to place our
# budgets on the word axis papers use.
TOKENS_PER_WORD = 1.3
MINIBERTAS_SATURATION_WORDS = (1e7, 1e8)
MUENNIGHOFF_MAX_REPEATS = 4.0
SIZE_KEYS = ('budget_fraction', 'token_budget')
QUALITY_KEYS = ('quality', 'degrade')
LOWER_IS_BETTER = frozenset({'mse', 'loss'})
# An arm has learned when its held-out loss at [MASK] is this far below the
# unigram cross-entropy of the same positions (and accuracy beats freq+copy).
LEARN_MARGIN_NATS = 0.5
POOLED = records.POOLED
# Evaluations compared in pairs: record key of the arm's scores -> name.
EVALUATIONS = {'probes': 'probe', 'tasks': 'finetune'}
# The random-init control of each evaluation (a key of the controls dict).
RANDOM_CONTROL = {'probe': 'random_init_probe', 'finetune': 'random_init'}
# Evaluations that fine-tune (their seed variance can be pooled).
FINE_TUNED = ('finetune', 'random_init')


# ------------------------------------------------------------------ the arms

def higher_is_better(metric: str) -> bool:
  return metric not in LOWER_IS_BETTER


def task_scores(result: Score | None) -> np.ndarray:
  """Per-seed scores of one arm on one task (the mean alone if no seeds)."""
  if result is None:
    return np.zeros(0, np.float64)
  scores = [s for s in result.scores or () if stats.finite(s)]
  if not scores and stats.finite(result.mean):
    scores = [result.mean]
  return np.asarray(scores, np.float64)


def _oriented(effect: dict, metric: str, significant: str = 'significant') -> dict:
  """Adds `improves`: True/False when effect[significant] holds, None otherwise."""
  better = effect['estimate'] > 0 if higher_is_better(metric) else effect['estimate'] < 0
  return effect | {'improves': better if effect.get(significant) else None,
                   'main_metric': metric}


def _compare(results: Sequence[Score | None], coefficients: Sequence[float],
             metric: str) -> dict | None:
  """Oriented stats.contrast of task results; None when one of them has no score."""
  groups = [task_scores(r) for r in results]
  if any(g.size == 0 for g in groups):
    return None
  return _oriented(stats.contrast(groups, coefficients), metric)


def manipulates_quality(recipe: dict) -> bool:
  """Filtering or degradation in the recipe."""
  degrade = recipe.get('degrade') or {}
  return bool(recipe.get('quality') or any(rate for rate in degrade.values()))


def _recipe_key(recipe: dict, drop: Sequence[str]) -> str:
  return repr(sorted((k, repr(v)) for k, v in recipe.items() if k not in drop))


def size_group(arms: Sequence[Arm]) -> list[int]:
  """Indices of the largest set of arms that differ only in their budget."""
  groups: dict[str, list[int]] = {}
  for i, arm in enumerate(arms):
    if arm.unique_tokens > 0:
      groups.setdefault(_recipe_key(arm.recipe, SIZE_KEYS), []).append(i)
  sized = [g for g in groups.values()
           if len({arms[i].unique_tokens for i in g}) > 1]
  return max(sized, key=len) if sized else []


def _domains(arm: Arm) -> list[str]:
  return list(arm.recipe.get('domains') or ())


def varied_factors(arms: Sequence[Arm]) -> dict[str, bool]:
  """Which of size, domain and quality the arms vary (decides the analyses)."""
  budgets = {tuple(repr(a.recipe.get(k)) for k in SIZE_KEYS) for a in arms}
  domains = {tuple(sorted(_domains(a))) for a in arms}
  return {'size': len(budgets) > 1 and bool(size_group(arms)),
          'domain': len(domains) > 1,
          'quality': any(manipulates_quality(a.recipe) for a in arms)}


def task_names(arms: Sequence[Arm], key: str = 'tasks') -> list[str]:
  """Tasks scored by any arm (in its `tasks` or `probes`), sorted by name."""
  return sorted({t for arm in arms for t in getattr(arm, key)})


def task_meta(arms: Sequence[Arm], task: str) -> Score:
  """The first arm's result for `task` (its main_metric and domain)."""
  for arm in arms:
    for scores in (arm.tasks, arm.probes):
      if task in scores:
        return scores[task]
  raise KeyError(task)


def size_sensitivity(arms: Sequence[Arm], group: Sequence[int]) -> dict[str, dict]:
  """Per task: slope of score per decade of unique tokens, over `group`."""
  out = {}
  for task in task_names([arms[i] for i in group]):
    x, y = [], []
    for i in group:
      if task in arms[i].tasks:
        scores = task_scores(arms[i].tasks[task])
        x += [math.log10(arms[i].unique_tokens)] * scores.size
        y += scores.tolist()
    metric = task_meta(arms, task).main_metric
    if len(set(x)) < 2:
      out[task] = {'status': 'fewer than two sizes scored', 'main_metric': metric}
      continue
    out[task] = stats.regression_slope(x, y) | {'status': 'computed', 'main_metric': metric}
  # One family per evaluation: a size ablation has few arms, so a slope's
  # interval rests on 1-2 df, and 8 uncorrected tests would each risk a
  # chance "effect" (Holm, as the paired comparisons).
  paired.apply_holm({t: e for t, e in out.items() if e['status'] == 'computed'})
  return {t: _oriented(e, e['main_metric'], 'significant_holm')
          if e['status'] == 'computed' else e for t, e in out.items()}


def size_heldout_loss(arms: Sequence[Arm], group: Sequence[int]) -> dict[str, Any]:
  """Each size arm's pooled held-out loss at [MASK] minus the largest arm's.

  With one pretraining run per arm, a trend over 3-4 arms has 1-2 df; the
  arms' losses on the same held-out positions compare directly (the SE is
  over positions: `_loss_difference`), conditional on those runs.
  """
  if len(group) < 2:
    return {}
  ref = max(group, key=lambda i: arms[i].unique_tokens)
  pairs = {arms[i].arm: effect | {'reference': arms[ref].arm}
           for i in group if i != ref
           and (effect := _loss_difference(arms[i], arms[ref], POOLED)) is not None}
  return {'reference': arms[ref].arm, 'pairs': pairs}


def _single_domain_arms(arms: Sequence[Arm]) -> dict[str, int]:
  """Domain -> index of the first unmanipulated arm trained on it alone."""
  out = {}
  for i, arm in enumerate(arms):
    domains = _domains(arm)
    if len(domains) == 1 and not manipulates_quality(arm.recipe):
      out.setdefault(domains[0], i)
  return out


def domain_sensitivity(arms: Sequence[Arm]) -> dict[str, dict]:
  """Per task with a domain: in-domain arm minus the mean of the others.

  Also, where the arms hold the full mixture and the mixture without the
  task's domain, the gain from including that domain.
  """
  single = _single_domain_arms(arms)
  by_domains = {}
  for i, arm in enumerate(arms):
    if not manipulates_quality(arm.recipe):
      by_domains.setdefault(frozenset(_domains(arm)), i)
  full = max(by_domains, key=len, default=frozenset())
  out = {}
  for task in task_names(arms):
    meta = task_meta(arms, task)
    domain, metric = meta.domain, meta.main_metric
    if not domain:
      continue
    entry: dict[str, Any] = {'domain': domain, 'main_metric': metric}
    scored = {d: i for d, i in single.items()
              if task_scores(arms[i].tasks.get(task)).size}
    if domain in scored and len(scored) > 1:
      others = [i for d, i in scored.items() if d != domain]
      results = [arms[i].tasks[task] for i in [scored[domain]] + others]
      entry['in_domain'] = _compare(
          results, [1.0] + [-1.0 / len(others)] * len(others), metric) | {
              'in_domain_arm': arms[scored[domain]].arm,
              'out_of_domain_arms': [arms[i].arm for i in others]}
    else:
      entry['in_domain'] = {'status': f'needs scores of a single-domain {domain!r} '
                                      'arm and of another single-domain arm'}
    without = full - {domain}
    if domain in full and without in by_domains and len(without) > 1:
      i, j = by_domains[full], by_domains[without]
      inclusion = _compare([arms[i].tasks.get(task), arms[j].tasks.get(task)],
                           [1.0, -1.0], metric)
      if inclusion:
        entry['inclusion'] = inclusion | {'with_arm': arms[i].arm,
                                          'without_arm': arms[j].arm}
    out[task] = entry
  return out


def _loss_difference(a: Arm, b: Arm, domain: str) -> dict | None:
  """a - b of held-out loss at [MASK] on `domain`'s rows (None if unmeasured).

  Both arms are scored on the same positions (the same raw held-out rows and
  evaluation masks), but the records hold each arm's per-position mean and SD
  only, not the paired differences. So the SE treats the two means as
  independent samples: too wide when losses correlate across arms (hard tokens
  are hard for both), too narrow as positions within a document are not
  independent. Records from before the SD was stored get no interval.
  """
  ha, hb = a.heldout.get(domain), b.heldout.get(domain)
  if ha is None or hb is None or not (stats.finite(ha.loss_mask)
                                      and stats.finite(hb.loss_mask)):
    return None
  effect = stats.mean_difference(ha.loss_mask, ha.loss_sd_mask, ha.predictions_mask,
                                 hb.loss_mask, hb.loss_sd_mask, hb.predictions_mask)
  # Lower loss is better. 'lower' keeps the sign for records without an SE.
  return effect | {'lower': effect['estimate'] < 0,
                   'improves': (effect['estimate'] < 0) if effect['significant']
                               else None}


def domain_heldout_loss(arms: Sequence[Arm]) -> dict[str, Any]:
  """Held-out loss at [MASK] per (arm, held-out domain), and the domain effects
  on it against the reference (mixed) arm:

  - in_domain: per domain d with a single-domain arm, that arm minus the
    reference on d's rows (negative: in-domain text gives the lower loss);
  - leave_out: per arm trained on the reference's domains but one, X, its loss
    minus the reference's on X (positive: leaving X out costs X) and on each
    other domain.
  Uses every arm: held-out loss needs no learning gate.
  """
  domains = list(dict.fromkeys(d for a in arms for d in a.heldout_domains()))
  table = {a.arm: {d: a.heldout[d].loss_mask for d in domains + [POOLED]
                   if d in a.heldout} for a in arms}
  out: dict[str, Any] = {'metric': 'held-out loss at [MASK] (nats)',
                         'domains': domains, 'table': table}
  best = {}
  for d in domains + [POOLED]:
    scored = [(v[d], name) for name, v in table.items() if stats.finite(v.get(d))]
    if scored:
      best[d] = min(scored)[1]
  out['best_arm'] = best
  ref = reference_arm(arms)
  if ref is None or len(_domains(ref)) < 2:
    return out | {'status': 'no mixed reference arm'}
  in_domain = {}
  for d, i in _single_domain_arms(arms).items():
    effect = _loss_difference(arms[i], ref, d)
    if effect is not None:
      in_domain[d] = effect | {'arm': arms[i].arm, 'reference': ref.arm,
                               'reference_has_domain': d in _domains(ref)}
  full = set(_domains(ref))
  leave_out = {}
  for a in arms:
    mine = set(_domains(a))
    if manipulates_quality(a.recipe) or not (mine < full and len(full - mine) == 1):
      continue
    (left,) = full - mine
    others = {d: e for d in domains if d != left
              and (e := _loss_difference(a, ref, d)) is not None}
    leave_out[a.arm] = {
        'left_out': left, 'reference': ref.arm,
        'on_left_out': _loss_difference(a, ref, left),
        'on_others': others,
        'largest_other_change': max((abs(e['estimate']) for e in others.values()),
                                    default=None)}
  se = any(e['se'] is not None for e in in_domain.values())
  return out | {'status': 'computed', 'reference': ref.arm, 'in_domain': in_domain,
                'leave_out': leave_out,
                'se': ('per-position loss SDs of both arms (independent samples, '
                       'Welch interval)') if se else None}


def quality_reference(arms: Sequence[Arm], arm: Arm) -> int | None:
  """The unfiltered arm to compare `arm` with: no quality steps or degradation,
  preferably the same recipe otherwise (domains, budget)."""
  plain = [i for i, a in enumerate(arms) if not manipulates_quality(a.recipe)]
  key = _recipe_key(arm.recipe, QUALITY_KEYS)
  same = [i for i in plain if _recipe_key(arms[i].recipe, QUALITY_KEYS) == key]
  return (same or plain or [None])[0]


def quality_sensitivity(arms: Sequence[Arm]) -> dict[str, Any]:
  """Per quality arm and task: score minus its unfiltered reference's."""
  out: dict[str, Any] = {'status': 'computed', 'arms': {}}
  for arm in arms:
    if not manipulates_quality(arm.recipe):
      continue
    ref = quality_reference(arms, arm)
    if ref is None:
      return {'status': 'no unfiltered arm (every recipe filters, degrades or adds '
                        'sources)'}
    reference = arms[ref]
    per_task = {t: _compare([r, reference.tasks.get(t)], [1.0, -1.0],
                            r.main_metric) for t, r in arm.tasks.items()}
    out['arms'][arm.arm] = {
        'reference': reference.arm,
        'same_recipe_otherwise': (_recipe_key(reference.recipe, QUALITY_KEYS)
                                  == _recipe_key(arm.recipe, QUALITY_KEYS)),
        'quality': list(arm.recipe.get('quality') or ()),
        'degrade': {k: v for k, v in (arm.recipe.get('degrade') or {}).items() if v},
        'tasks': {t: e for t, e in per_task.items() if e}}
  return out


def quality_heldout_loss(arms: Sequence[Arm]) -> dict[str, Any]:
  """Each quality arm's pooled held-out loss at [MASK] minus its unfiltered
  reference's, on the same positions (every arm: held-out loss needs no gate)."""
  pairs = {}
  for arm in arms:
    ref = quality_reference(arms, arm) if manipulates_quality(arm.recipe) else None
    if ref is not None and (effect := _loss_difference(arm, arms[ref], POOLED)):
      pairs[arm.arm] = effect | {'reference': arms[ref].arm}
  return {'pairs': pairs}


def pooled_loss(arm: Arm) -> float | None:
  """The arm's held-out loss pooled over domains (None if not measured)."""
  pooled = arm.pooled()
  return None if pooled is None else pooled.loss


def loss_correlations(arms: Sequence[Arm]) -> dict[str, dict]:
  """Per task: stats.correlation over arms of pooled held-out loss and mean score."""
  out = {}
  for task in task_names(arms):
    pairs = [(pooled_loss(a), a.tasks[task].mean) for a in arms
             if task in a.tasks and stats.finite(a.tasks[task].mean)
             and stats.finite(pooled_loss(a))]
    loss, score = (np.array(v, np.float64) for v in zip(*pairs)) if pairs else ([], [])
    out[task] = stats.correlation(loss, score) | {
        'main_metric': task_meta(arms, task).main_metric}
  return out


def rank_by_data_need(size: dict[str, dict]) -> list[dict]:
  """Tasks by their size slope (oriented: higher = gains more from data)."""
  rows = []
  for task, effect in size.items():
    if effect.get('status') != 'computed':
      continue
    sign = 1.0 if higher_is_better(effect['main_metric']) else -1.0
    ci = effect['ci95'] and sorted(sign * v for v in effect['ci95'])
    rows.append({'task': task, 'slope': sign * effect['estimate'], 'ci95': ci,
                 'significant': effect.get('significant_holm', effect['significant'])})
  rows.sort(key=lambda r: -r['slope'])
  for k, row in enumerate(rows):
    row['rank'] = k + 1
    row['overlaps'] = [other['task'] for other in rows if other is not row
                       and row['ci95'] and other['ci95']
                       and row['ci95'][0] <= other['ci95'][1]
                       and other['ci95'][0] <= row['ci95'][1]]
  return rows


def repetition(arms: Sequence[Arm], group: Sequence[int]) -> dict[str, Any]:
  """Arms that repeat their data more than the arm with the most unique tokens,
  but at most MUENNIGHOFF_MAX_REPEATS epochs, compared with that arm."""
  ref = max(group, key=lambda i: arms[i].unique_tokens)
  ref_epochs = arms[ref].epochs or 0
  if not 0 < ref_epochs <= MUENNIGHOFF_MAX_REPEATS:
    return {'status': f'the arm with the most unique data, {arms[ref].arm}, '
                      f'does not train for 0-{MUENNIGHOFF_MAX_REPEATS:g} epochs'}
  compared = {}
  for i in group:
    epochs = arms[i].epochs or 0
    if i == ref or not ref_epochs < epochs <= MUENNIGHOFF_MAX_REPEATS:
      continue
    loss, ref_loss = pooled_loss(arms[i]), pooled_loss(arms[ref])
    tasks = {t: _compare([r, arms[ref].tasks.get(t)], [1.0, -1.0],
                         r.main_metric) for t, r in arms[i].tasks.items()}
    compared[arms[i].arm] = {
        'epochs': epochs,
        'loss_change': (loss - ref_loss) / ref_loss
                       if stats.finite(loss) and stats.finite(ref_loss) else None,
        'tasks': {t: e for t, e in tasks.items() if e}}
  if not compared:
    return {'status': f'no arm trains for {ref_epochs:.3g}-'
                      f'{MUENNIGHOFF_MAX_REPEATS:g} epochs',
            'reference': arms[ref].arm}
  return {'status': 'computed', 'reference': arms[ref].arm,
          'reference_epochs': ref_epochs, 'arms': compared}


# ---------------------------------------------------------------- literature

LITERATURE = {
    'minibertas': ('MiniBERTas (Zhang et al., 2021)',
                   'below 10M-100M words, MLM loss and downstream scores keep '
                   'improving with data; syntactic/semantic probing saturates '
                   'around 10M-100M words while NLU keeps improving'),
    'dont_stop': ("Don't Stop Pretraining (Gururangan et al., 2020)",
                  'pretraining on in-domain text improves tasks of that domain'),
    'dont_stop_loss': ("Don't Stop Pretraining (Gururangan et al., 2020)",
                       'pretraining on in-domain text lowers the masked-LM loss '
                       'on held-out text of that domain'),
    'cramming': ('Cramming (Geiping & Goldstein, 2023)',
                 'at fixed compute, filtered/deduplicated data beats the same '
                 'amount of unfiltered data'),
    'muennighoff': ('Scaling data-constrained LMs (Muennighoff et al., 2023)',
                    f'up to ~{MUENNIGHOFF_MAX_REPEATS:g} epochs of repeated data '
                    'are about as good as unique data'),
}


def _verdict(improves: Sequence[bool | None], *, expect_change: bool = True) -> str:
  """Agreement of significant effects with the literature's direction.

  `expect_change=False` (repetition ~ unique data) agrees unless some effect
  is significantly worse.
  """
  if not improves:
    return 'not applicable'
  better = sum(v is True for v in improves)
  worse = sum(v is False for v in improves)
  if not expect_change:
    return 'contradicts' if worse else 'agrees'
  if worse and not better:
    return 'contradicts'
  if worse:
    return 'mixed'
  if better == len(improves):
    return 'agrees'
  return 'partly agrees' if better else 'inconclusive (no significant effect)'


def _loss_pairs_higher(loss: dict) -> dict | None:
  """How many smaller size arms have a significantly higher held-out loss."""
  pairs = loss.get('pairs') or {}
  if not pairs:
    return None
  higher = sum(bool(e['significant']) and e['estimate'] > 0 for e in pairs.values())
  lower = sum(bool(e['significant']) and e['estimate'] < 0 for e in pairs.values())
  return {'higher': higher, 'lower': lower, 'of': len(pairs),
          'reference': loss['reference'],
          # the loss half of the claim: True when every smaller arm is worse
          'improves': True if higher == len(pairs) else (False if lower else None)}


def literature(analysis: dict, arms: Sequence[Arm], group: Sequence[int]) -> list[dict]:
  """Our results next to the published findings, where they apply."""
  out = []

  def add(key, verdict, evidence, evidence_from='downstream scores', **context):
    paper, claim = LITERATURE[key]
    out.append({'key': key, 'paper': paper, 'claim': claim, 'verdict': verdict,
                'evidence': evidence, 'evidence_from': evidence_from, **context})

  size = analysis.get('size_sensitivity') or {}
  computed = {t: e for t, e in size.items() if e.get('status') == 'computed'}
  if computed:
    words = [arms[i].unique_tokens / TOKENS_PER_WORD for i in group]
    pairs = _loss_pairs_higher(analysis.get('size_heldout_loss') or {})
    # The claim covers MLM loss and downstream scores: the loss counts once.
    loss = [pairs['improves']] if pairs else []
    add('minibertas', _verdict([e['improves'] for e in computed.values()] + loss),
        [{'task': t, 'effect': e} for t, e in computed.items()],
        words_range=[min(words), max(words)],
        below_saturation=max(words) < MINIBERTAS_SATURATION_WORDS[0],
        loss_falls=(analysis.get('loss_scaling') or {}).get('significant_decrease'),
        loss_pairs=pairs)
  domain = analysis.get('domain_sensitivity') or {}
  in_domain = [{'task': t, 'effect': e['in_domain']} for t, e in domain.items()
               if 'estimate' in e.get('in_domain', {})]
  if in_domain:
    add('dont_stop', _verdict([x['effect']['improves'] for x in in_domain]), in_domain)
  loss = analysis.get('domain_heldout_loss') or {}
  compared = [{'domain': d, 'arm': e['arm'], 'effect': e}
              for d, e in (loss.get('in_domain') or {}).items()]
  if compared:
    tested = all(x['effect']['significant'] is not None for x in compared)
    # Records without per-position SDs (before session 6) have no interval:
    # there the sign of each difference stands in for a test, and says so.
    improves = [x['effect']['improves'] if tested else x['effect']['lower']
                for x in compared]
    add('dont_stop_loss', _verdict(improves), compared, evidence_from='held-out loss',
        reference=loss['reference'], lower=sum(x['effect']['lower'] for x in compared),
        of=len(compared), point_estimates=not tested)
  quality = analysis.get('quality_sensitivity') or {}
  filtered = [{'arm': name, 'reference': q['reference'], 'task': t, 'effect': e}
              for name, q in (quality.get('arms') or {}).items()
              if q['quality'] and not q['degrade']
              for t, e in q['tasks'].items()]
  if filtered:
    seen = {a.arm: a.tokens_seen for a in arms}
    add('cramming', _verdict([x['effect']['improves'] for x in filtered]), filtered,
        equal_compute=all(seen[x['arm']] == seen[x['reference']] for x in filtered))
  rep = analysis.get('repetition') or {}
  repeated = [{'arm': name, 'task': t, 'effect': e, 'epochs': r['epochs'],
               'loss_change': r['loss_change']}
              for name, r in (rep.get('arms') or {}).items()
              for t, e in r['tasks'].items()]
  if repeated:
    add('muennighoff', _verdict([x['effect']['improves'] for x in repeated],
                                expect_change=False), repeated,
        reference=rep['reference'])
  return out


# ------------------------------------------------------------------ learning

def gate_domains(arm: Arm) -> list[str] | None:
  """The held-out domains the learning gate reads for `arm`; None: pooled.

  `records.own_domains`, the rows early stopping scored (pooled over them),
  when each has per-domain count references; else pooled.
  """
  own = records.own_domains(_domains(arm), arm.heldout_domains())
  if own is None:
    return None
  if any(arm.references_over([d], 'mask') is None for d in own):
    return None
  return own


def learning_check(arm: Arm) -> dict[str, Any] | None:
  """Has the arm learned beyond count-model references? None without them.

  Reads the held-out metrics at [MASK] and other positions and the references
  computed on the same predictions (`study/baselines.py`), on the rows of
  `gate_domains` (pooled over them by predictions, as the pooled set is
  formed) or, when that is None, on the rows pooled over every domain.
  """
  own = gate_domains(arm)
  none = records.CountReferences(predictions=0)
  if own is None:
    rows, heldout = 'pooled', arm.pooled()
    refs = {k: arm.references(k) for k in ('mask', 'other', 'all')}
  else:
    rows, heldout = f'own domains: {", ".join(own)}', arm.heldout_over(own)
    refs = {k: arm.references_over(own, k) for k in ('mask', 'other', 'all')}
  heldout = heldout or records.HeldoutMetrics(predictions=0)
  mask, total = (refs[k] or none for k in ('mask', 'all'))
  if not (stats.finite(heldout.loss_mask) and stats.finite(mask.unigram_loss)
          and stats.finite(heldout.accuracy) and stats.finite(total.freq_copy_accuracy)):
    return None
  margin = mask.unigram_loss - heldout.loss_mask
  beats_copy = heldout.accuracy > total.freq_copy_accuracy
  on = 'the pooled rows' if own is None else f'the rows of its own domains ({", ".join(own)})'
  reasons = []
  if margin < LEARN_MARGIN_NATS:
    where = (f'only {margin:.2f} nats below' if margin >= 0
             else f'{-margin:.2f} nats above')
    reasons.append(f'loss at [MASK] {where} the unigram on {on} '
                   f'(needs {LEARN_MARGIN_NATS:g} below)')
  if not beats_copy:
    reasons.append(f'accuracy {heldout.accuracy:.3f} not above the frequency+copy '
                   f'baseline {total.freq_copy_accuracy:.3f} on {on}')
  bigram = math.nan if mask.bigram_loss is None else mask.bigram_loss
  return {'learned': not reasons, 'reasons': reasons,
          'rows': rows, 'row_domains': own or arm.heldout_domains(),
          'margin_below_unigram_mask': margin,
          'bigram_margin_mask': bigram - heldout.loss_mask,
          'model': {'mask': {'loss': heldout.loss_mask,
                             'accuracy': heldout.accuracy_mask},
                    'other': {'loss': heldout.loss_other,
                              'accuracy': heldout.accuracy_other},
                    'all': {'loss': heldout.loss,
                            'accuracy': heldout.accuracy}},
          # As the record's JSON holds them ({} where absent).
          'baselines': {k: r.to_dict() if (r := refs[k]) else {}
                        for k in ('mask', 'other', 'all')}}


# -------------------------------------------------------- paired comparisons

def _scored(items: dict | None) -> dict[str, dict]:
  """Per task: {(arm, evaluation): paired.Scored} on one shared resampling."""
  out = {}
  for task in sorted(items or {}):
    entry = items[task]
    if entry['items'].metric not in paired.SUPPORTED:
      continue
    replicates = paired.Replicates(entry['items'])
    scored = {key: replicates.evaluation(v['seeds'], v['deterministic'])
              for key, v in entry['evals'].items() if v['seeds']}
    # A fine-tuned evaluation with one seed borrows the seed variance pooled
    # over the task's other fine-tuned evaluations (pretrained arms and the
    # random-init control): seed noise is assumed similar across encoders.
    trained = [s for (_, ev), s in scored.items() if ev in FINE_TUNED]
    pooled = paired.pool_seed_variance(trained)
    for s in trained:
      s.pooled = pooled
    out[task] = {'units': entry['items'].num_units,
                 'metric': entry['items'].metric, 'scored': scored,
                 'pooled_seed_variance': pooled,
                 'constant': sorted(key for key, v in entry['evals'].items()
                                    if v['seeds'] and all(map(_constant, v['seeds'])))}
  return out


def _constant(predictions) -> bool:
  """Whether one seed predicted the same label (or value) for every test item."""
  values = np.asarray(predictions)
  return values.dtype != object and values.size > 0 and bool((values == values.flat[0]).all())


def _family(scored: dict, key_a, key_b, tasks: Sequence[str] | None = None) -> dict:
  """a - b per task (where both are scored), Holm-corrected across tasks."""
  family = {}
  for task, entry in scored.items():
    if tasks is not None and task not in tasks:
      continue
    a, b = entry['scored'].get(key_a), entry['scored'].get(key_b)
    if a is None or b is None:
      continue
    family[task] = paired.compare(a, b, num_units=entry['units']) | {
        'main_metric': entry['metric'], 'a': a.mean, 'b': b.mean}
  return paired.apply_holm(family)


CONTROLS = '__controls__'


def pretrained_vs_random(arms: Sequence[Arm], scored: dict) -> dict[str, Any]:
  """Per arm: pretrained minus random init, by probe and by fine-tuning.

  Paired on test items (`paired.compare`), Holm across tasks per arm and
  evaluation; `beats_random_init` counts tasks where either interval lies
  above 0 (and, stricter, where either Holm-adjusted test rejects).
  """
  # A fine-tuned control that predicted one label for every test item on
  # every seed never trained: beating it shows that fine-tuning left the
  # constant prediction, not that the pretrained features are better.
  untrained_all = {t for t, e in scored.items()
                   if (CONTROLS, RANDOM_CONTROL['finetune']) in e['constant']}
  out = {}
  for arm in arms:
    name = arm.arm
    entry: dict[str, Any] = {}
    for evaluation, control in RANDOM_CONTROL.items():
      entry[evaluation] = _family(scored, (name, evaluation), (CONTROLS, control))
    tasks = sorted(set(entry['probe']) | set(entry['finetune']))
    if not tasks:
      continue
    untrained = untrained_all & set(tasks)

    def counted(ev, task):
      return ev == 'probe' or task not in untrained

    wins = {ev: sorted(t for t, e in entry[ev].items() if e['ci95'][0] > 0)
            for ev in RANDOM_CONTROL}
    wins_holm = {ev: sorted(t for t, e in entry[ev].items()
                            if e['significant_holm'] and e['estimate'] > 0)
                 for ev in RANDOM_CONTROL}
    either = sorted({t for ev in wins for t in wins[ev] if counted(ev, t)})
    entry['lexical'] = {t: e['scored'][(CONTROLS, 'lexical')].mean
                        for t, e in scored.items() if (CONTROLS, 'lexical') in e['scored']}
    entry['beats_random_init'] = {
        'criterion': 'pretrained minus random init: 95% t interval above 0, by '
                     'probe or by fine-tuning; not by fine-tuning where the '
                     'fine-tuned random-init control predicted one label for every '
                     'test item on every seed',
        'count': len(either), 'of': len(tasks), 'tasks': either,
        'by_probe': wins['probe'],
        'by_finetune': [t for t in wins['finetune'] if counted('finetune', t)],
        'untrained_control': sorted(untrained),
        'by_finetune_over_untrained_control': [t for t in wins['finetune'] if t in untrained],
        'count_holm': len({t for ev in wins_holm for t in wins_holm[ev] if counted(ev, t)})}
    out[name] = entry
  return out


def reference_arm(arms: Sequence[Arm]) -> Arm | None:
  """The arm others are compared with: unmanipulated, most domains, most data."""
  plain = [a for a in arms if not manipulates_quality(a.recipe)] or list(arms)
  if not plain:
    return None
  return max(plain, key=lambda a: (len(_domains(a)), a.unique_tokens or 0))


def arm_pairs(arms: Sequence[Arm], scored: dict) -> dict[str, Any]:
  """Every pair of arms, by probe and by fine-tuning, on the same test items.

  Each (pair, evaluation) is a family over tasks, Holm-corrected; every
  comparison carries its minimum detectable effect.
  """
  names = [a.arm for a in arms]
  ref = reference_arm(arms)
  pairs = {}
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      first, second = (b, a) if ref and a == ref.arm else (a, b)
      entry = {ev: _family(scored, (first, ev), (second, ev)) for ev in RANDOM_CONTROL}
      if any(entry.values()):
        pairs[f'{first} - {second}'] = {'a': first, 'b': second, **entry}
  return {'reference': ref.arm if ref else None, 'pairs': pairs}


def _pair_family(pairs: dict, a: str, b: str, evaluation: str) -> dict[str, dict]:
  """a minus b per task from `arm_pairs`, whichever order it stored the pair in."""
  family = (pairs['pairs'].get(f'{a} - {b}') or {}).get(evaluation)
  if family:
    return family
  family = (pairs['pairs'].get(f'{b} - {a}') or {}).get(evaluation) or {}
  # Holm's p-values do not depend on the sign.
  return {task: e | {'estimate': -e['estimate'], 'ci95': [-e['ci95'][1], -e['ci95'][0]],
                     'a': e['b'], 'b': e['a']} for task, e in family.items()}


def _paired_cramming(items: list[dict], pairs: dict) -> None:
  """Cramming's evidence from the paired fine-tuning comparisons where they exist.

  The seed-based differences of `quality_sensitivity` have no interval when
  each arm has one fine-tuning seed (the CPU configs); the paired ones do
  (test items plus pooled seed variance), Holm-corrected across the tasks of
  each (filtered arm, reference) pair: a task counts when its Holm test rejects.
  """
  for item in items:
    if item['key'] != 'cramming':
      continue
    evidence, arms = [], {}
    for x in item['evidence']:
      arms.setdefault(x['arm'], x['reference'])
    for arm, reference in arms.items():
      family = _pair_family(pairs, arm, reference, 'finetune')
      if not family:
        evidence += [x for x in item['evidence'] if x['arm'] == arm]
        continue
      for task, e in family.items():
        evidence.append({'arm': arm, 'reference': reference, 'task': task,
                         'effect': _oriented(e, e['main_metric'], 'significant_holm'),
                         'paired': True})
    item['evidence'] = evidence
    item['verdict'] = _verdict([x['effect']['improves'] for x in evidence])
    item['paired'] = any(x.get('paired') for x in evidence)


def _paired_domain(out: dict) -> None:
  """Domain-aligned contrasts from the paired fine-tuning comparisons where they exist.

  As for Cramming: with one fine-tuning seed per arm (the CPU configs) the
  seed-based contrasts of `domain_sensitivity` have no interval; paired over
  test items they do. The in-domain arm is compared with each other
  single-domain arm, and the mixture with the mixture without the task's
  domain; a comparison counts when its Holm test (across that pair's tasks)
  rejects.
  """
  pairs, domain = out['arm_pairs'], out.get('domain_sensitivity') or {}

  def paired_effect(a, b, task):
    e = _pair_family(pairs, a, b, 'finetune').get(task)
    return None if e is None else _oriented(e, e['main_metric'], 'significant_holm')

  for task, entry in domain.items():
    effect = entry['in_domain']
    if 'estimate' in effect:
      each = {o: paired_effect(effect['in_domain_arm'], o, task)
              for o in effect['out_of_domain_arms']}
      if all(each.values()):
        entry['in_domain_paired'] = each
    if 'inclusion' in entry:
      inclusion = paired_effect(entry['inclusion']['with_arm'],
                                entry['inclusion']['without_arm'], task)
      if inclusion:
        entry['inclusion_paired'] = inclusion
  for item in out['literature']:
    if item['key'] != 'dont_stop':
      continue
    evidence = []
    for x in item['evidence']:
      each = domain[x['task']].get('in_domain_paired')
      evidence += ([{'task': x['task'], 'out_of_domain_arm': o, 'effect': e, 'paired': True}
                    for o, e in each.items()] if each else [x])
    item['evidence'] = evidence
    item['verdict'] = _verdict([x['effect']['improves'] for x in evidence])
    item['paired'] = any(x.get('paired') for x in evidence)


def item_uncertainty(scored: dict) -> dict[str, dict]:
  """Test-sampling SE of each evaluation's seed-mean score, per task."""
  out: dict[str, dict] = {}
  for task, entry in scored.items():
    for (arm, evaluation), s in entry['scored'].items():
      out.setdefault(arm, {}).setdefault(evaluation, {})[task] = {
          'mean': s.mean, 'item_se': s.item_se(), 'seeds': int(s.full.size),
          'seed_sd': float(s.full.std(ddof=1)) if s.full.size > 1 else None}
  return out


# ------------------------------------------------------------------ analyze

def analyze(arms: Sequence[Arm], items: dict | None = None) -> dict[str, Any]:
  """Every analysis that applies to what the arms vary.

  `items` (optional, `report.load_items`): per task {'items': paired.TaskItems,
  'evals': {(arm or CONTROLS, evaluation): {'seeds': [predictions],
  'deterministic': bool}}}, for the paired comparisons.
  """
  varies = varied_factors(arms)
  out: dict[str, Any] = {'varies': varies}
  learning = {a.arm: learning_check(a) for a in arms}
  out['learning'] = {'margin_nats': LEARN_MARGIN_NATS,
                     'arms': {k: v for k, v in learning.items() if v is not None}}
  held_back = [k for k, v in learning.items() if v is not None and not v['learned']]
  out['held_back_arms'] = held_back
  claim_arms = [a for a in arms if a.arm not in held_back]
  group = size_group(arms) if varies['size'] else []
  if group:
    sized = [arms[i] for i in group if stats.finite(pooled_loss(arms[i]))]
    out['size_arms'] = [arms[i].arm for i in group]
    out['loss_scaling'] = stats.loss_scaling([a.unique_tokens for a in sized],
                                             [pooled_loss(a) for a in sized])
    out['size_heldout_loss'] = size_heldout_loss(arms, group)   # every arm: no gate
  claim_group = size_group(claim_arms) if varies['size'] else []
  if group:
    out['size_sensitivity'] = size_sensitivity(claim_arms, claim_group) if claim_group else {}
    out['ranking'] = rank_by_data_need(out['size_sensitivity'])
    out['repetition'] = (repetition(claim_arms, claim_group) if claim_group else
                         {'status': 'fewer than two sizes among arms that learned'})
    probe_arms = [dataclasses.replace(a, tasks=a.probes) for a in claim_arms]
    if claim_group and task_names(probe_arms):
      out['probe_size_sensitivity'] = size_sensitivity(probe_arms, claim_group)
  if varies['domain']:
    out['domain_sensitivity'] = domain_sensitivity(claim_arms)
    out['domain_heldout_loss'] = domain_heldout_loss(arms)   # every arm: no gate
  if varies['quality']:
    out['quality_sensitivity'] = quality_sensitivity(claim_arms)
    out['quality_heldout_loss'] = quality_heldout_loss(arms)   # every arm: no gate
  out['loss_correlation'] = loss_correlations(claim_arms)
  out['literature'] = literature(out, claim_arms, claim_group)
  scored = _scored(items)
  if scored:
    out['item_uncertainty'] = item_uncertainty(scored)
    out['pretrained_vs_random'] = pretrained_vs_random(arms, scored)
    ref = reference_arm(arms)
    wins = out['pretrained_vs_random']
    if ref and ref.arm in wins:
      out['beats_random_init'] = {
          'reference_arm': ref.arm, **wins[ref.arm]['beats_random_init'],
          'learned': ref.arm not in held_back,
          'by_arm': {a: {k: w['beats_random_init'][k] for k in ('count', 'of')}
                     for a, w in wins.items()}}
    if len(arms) > 1:
      out['arm_pairs'] = arm_pairs(arms, scored)
      _paired_cramming(out['literature'], out['arm_pairs'])
      _paired_domain(out)
  out['power'] = {'alpha': paired.ALPHA, 'power': paired.POWER,
                  'mde': 'MDE = (t(1 - alpha/2, df) + t(power, df)) x SE, the SE '
                         'of the paired difference (test items + seeds), '
                         'assuming the same SE under the alternative'}
  return out
