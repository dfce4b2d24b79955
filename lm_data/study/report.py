"""The study report: `DIR/report/results.json`, `report.md` and PNG plots.

`write_report` is the single entry point; the orchestration calls it once
every arm has been pretrained and evaluated. A claim in report.md always
carries the interval that supports it; an interval that includes 0 reads
"no significant effect".
"""

from collections.abc import Sequence
import json
import math
from typing import Any

import numpy as np

from lm_data import utils
from lm_data.finetune import controls as controls_lib
from lm_data.finetune import run as finetune_run
from lm_data.study import analysis
from lm_data.study import paired
from lm_data.study import plots
from lm_data.study import records
from lm_data.study import stats

REPORT_DIR = 'report'
RESULTS_FILE = 'results.json'
REPORT_FILE = 'report.md'
REQUIRED_ARM_KEYS = records.REQUIRED_ARM_KEYS
DIGITS = 3
ZERO_WIDTH = 1e-9   # an interval narrower than this is printed as exact
POOLED = records.POOLED
MISSING = '–'
COUNT_UNITS = ((1e9, 'B'), (1e6, 'M'), (1e3, 'k'))
NOT_LEARNED = '†'
# Record keys of each evaluation and of its controls, and how they are labelled.
CONTROL_LABELS = (('random_init', 'random init (fine-tuned)'),
                  ('random_init_probe', 'random init (probe)'),
                  ('lexical', 'lexical (bag of words / tag per word)'),
                  ('baseline', 'majority / mean'))
INIT_OF = records.INIT_OF
Arm = records.ArmRecord
Controls = dict[str, records.Scores]


# ------------------------------------------------------------------- values

def _check_arms(arms: Sequence[dict]) -> None:
  names = set()
  for i, arm in enumerate(arms):
    missing = [k for k in REQUIRED_ARM_KEYS if k not in arm]
    if missing:
      raise ValueError(f'arm {i} ({arm.get("arm", "unnamed")}) lacks {missing}; '
                       f'write_report needs {list(REQUIRED_ARM_KEYS)} in every arm')
    if arm['arm'] in names:
      raise ValueError(f'arm name {arm["arm"]!r} appears twice; arm names must be unique')
    names.add(arm['arm'])
    for task, result in arm['tasks'].items():
      if 'main_metric' not in result:
        raise ValueError(f'arm {arm["arm"]!r}, task {task!r} lacks main_metric')


def _read_json(path: utils.AnyPath) -> dict | None:
  try:
    return json.loads(path.read_text())
  except (FileNotFoundError, json.JSONDecodeError):
    return None


def _predictions(task_dir: utils.AnyPath, files: Sequence[str], key):
  """Per-seed test predictions of the result `files` (None if one lacks them)."""
  seeds = []
  for name in files:
    result = _read_json(task_dir / name)
    preds = ((result or {}).get('predictions') or {}).get('test')
    if preds is None:
      return None
    seeds.append(np.asarray(preds))
  return seeds


def load_items(workdir: utils.AnyPath, arms: Sequence[Arm], controls: Controls) -> dict:
  """Per-item test predictions of every arm and control, for paired analyses.

  Reads `arms/<arm>/eval/<task>/items.json` and the result files named in the
  records (`files`); tasks or runs without them (older runs) are left out.
  Returns the `items` argument of `analysis.analyze`.
  """
  out: dict[str, dict] = {}
  arms_dir = utils.path(workdir) / 'arms'

  def add(task_dir, task, result: records.TaskScore, key):
    files = result.files
    if not files:
      return
    items = out.get(task)
    if items is None:
      meta = _read_json(task_dir / finetune_run.ITEMS_NAME)
      test = ((meta or {}).get('splits') or {}).get('test')
      if not test or not test.get('gold'):
        return
      groups = test.get('groups')
      items = out[task] = {'items': paired.TaskItems(
          meta['main_metric'], np.asarray(test['gold']),
          None if groups is None else np.asarray(groups, np.int64)), 'evals': {}}
    seeds = _predictions(task_dir, files, key)
    init = INIT_OF[key[1]]
    if seeds and all(len(p) == len(items['items'].gold) for p in seeds):
      items['evals'][(key[0], analysis.EVALUATIONS.get(key[1], key[1]))] = {
          'seeds': seeds, 'deterministic': init in controls_lib.SINGLE_INITS}

  for arm in arms:
    eval_dir = arms_dir / arm.arm / finetune_run.EVAL_SUBDIR
    for record_key in analysis.EVALUATIONS:
      for task, result in getattr(arm, record_key).items():
        add(eval_dir / task, task, result, (arm.arm, record_key))
  for control, _ in CONTROL_LABELS:
    for task, result in (controls.get(control) or {}).items():
      for arm in arms:   # copied into every arm's eval dir; the first one found
        task_dir = arms_dir / arm.arm / finetune_run.EVAL_SUBDIR / task
        if (task_dir / (result.files or ['-'])[0]).exists():
          add(task_dir, task, result, (analysis.CONTROLS, control))
          break
  return out


def _derived(arm: Arm, controls: Controls) -> dict:
  random_init = controls.get('random_init') or {}
  gains = {t: r.mean - random_init[t].mean for t, r in arm.tasks.items()
           if r.mean is not None
           and t in random_init and random_init[t].mean is not None}
  tokens = arm.unique_tokens
  return {'log10_unique_tokens': math.log10(tokens) if tokens > 0 else None,
          'words_estimate': tokens / analysis.TOKENS_PER_WORD,
          'heldout_loss': analysis.pooled_loss(arm),
          'gain_over_random_init': gains}


# --------------------------------------------------------------- formatting

def _num(value: float | None, signed: bool = False) -> str:
  if value is None:
    return MISSING
  sign = '+' if signed else ''
  return f'{value:{sign}.{DIGITS}f}' if abs(value) < 1e3 else f'{value:{sign}.{DIGITS}g}'


def _count(value: float | None) -> str:
  if value is None:
    return MISSING
  for scale, unit in COUNT_UNITS:
    if abs(value) >= scale:
      return f'{value / scale:.3g}{unit}'
  return f'{value:.3g}'


def _ci(ci: Sequence[float] | None, signed: bool = False) -> str:
  return MISSING if not ci else f'[{_num(ci[0], signed)}, {_num(ci[1], signed)}]'


def _score(result: records.TaskScore | None) -> str:
  """mean ± std [95% t interval over seeds] (recomputed from the scores)."""
  if result is None or result.mean is None:
    return MISSING
  interval = stats.seed_interval(result.scores or [])
  if interval['n'] < 1:
    interval = {'mean': result.mean, 'std': result.std, 'ci95': None, 'n': 0}
  text = _num(interval['mean'])
  if interval['n'] > 1:
    text += f' ± {_num(interval["std"])} {_ci(interval["ci95"])}'
  return text


def _rounded(estimate: float | None, ci: Sequence[float] | None,
             signed: bool = False) -> str:
  """Estimate [CI] to the precision the interval supports (2 significant
  digits of its half-width)."""
  if estimate is None:
    return MISSING
  if not ci or ci[0] is None or ci[1] is None:
    return _num(estimate, signed)
  half = (ci[1] - ci[0]) / 2
  # A (numerically) zero-width interval, e.g. two encoders that both predict
  # one class on every item, supports no more than DIGITS + 1 digits.
  digits = (DIGITS if half <= ZERO_WIDTH else
            min(DIGITS + 1, max(0, 1 - math.floor(math.log10(half)))))
  sign = '+' if signed else ''
  f = lambda v: f'{v:{sign}.{digits}f}'
  return f'{f(estimate)} [{f(ci[0])}, {f(ci[1])}]'


def claim(subject: str, effect: dict, quantity: str, better: str, worse: str,
          unit: str = '') -> str:
  """One sentence: the effect with its CI, or 'no significant effect' with
  the minimum detectable effect (alpha 0.05 two-sided, power 0.8)."""
  value = f'{quantity} {_num(effect["estimate"], signed=True)}{unit}'
  if effect.get('ci95') is None:
    return f'{subject}: {value} (no CI: too few seeds or points)'
  interval = _ci(effect['ci95'], signed=True)
  if effect['significant'] and effect.get('significant_holm') is False:
    return (f'{subject}: no significant effect after Holm ({value} {interval}; the '
            f'interval excludes 0 before the correction across {effect["family_size"]} '
            'tasks)')
  if not effect['significant']:
    mde = effect.get('mde')
    power = '' if mde is None else f'; could detect ±{_num(mde)}{unit} (MDE)'
    return f'{subject}: no significant effect ({value} {interval}{power})'
  return f'{subject} {better if effect["improves"] else worse}: {value} {interval}'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  return lines + ['| ' + ' | '.join(row) + ' |' for row in rows]


def _plot(plots_written: dict, key: str, title: str) -> list[str]:
  return [f'![{title}]({plots_written[key]})', ''] if key in plots_written else []


# ------------------------------------------------------------------ sections

def _mark(name: str, held_back: Sequence[str]) -> str:
  return f'{name} {NOT_LEARNED}' if name in held_back else name


def _arms_section(arms: Sequence[Arm], held_back: Sequence[str] = ()) -> list[str]:
  domains = list(dict.fromkeys(d for a in arms for d in a.heldout if d != POOLED))
  header = ['arm', 'domains', 'unique tokens', 'tokens seen', 'epochs',
            'train FLOPs', f'held-out loss: {POOLED}'] + domains
  rows = []
  for arm in arms:
    loss = {d: arm.heldout[d].loss if d in arm.heldout else None
            for d in [POOLED] + domains}
    flops = arm.train_flops
    rows.append([_mark(arm.arm, held_back),
                 ', '.join(arm.recipe.get('domains') or ()) or MISSING,
                 _count(arm.unique_tokens), _count(arm.tokens_seen),
                 _num(arm.epochs), MISSING if flops is None else f'{flops:.2e}']
                + [_num(loss[d]) for d in [POOLED] + domains])
  return ['## Arms', ''] + _table(header, rows) + [''] + _early_stopping_lines(arms)


def _kept(name: str, es: dict) -> str:
  if es.get('cooldown_from') is None:
    return f'{name} kept step {es["best_step"]} of {es["stopped_at"]} trained'
  return (f'{name} stopped at step {es["stopped_at"]}, trained the decay from step '
          f'{es["cooldown_from"]} to {es["cooldown_end"]} and kept step {es["best_step"]} '
          f'({es["steps_trained"]} steps trained)')


def _early_stopping_lines(arms: Sequence[Arm]) -> list[str]:
  """Which step each early-stopped arm kept, and where it stopped."""
  done = [(a.arm, a.data_stats['early_stopping']) for a in arms
          if a.data_stats.get('early_stopping')]
  if not done:
    return []
  es = done[0][1]
  kept = '; '.join(_kept(name, e) for name, e in done)
  return [f'Early stopping (patience {es["patience"]}, scored at every checkpoint on the '
          f'{es["metric"]}): {kept}. Tokens seen, epochs and FLOPs are those of the '
          'kept step.', '']


def _rates_table(arms: Sequence[Arm], controls: Controls,
                 tasks: Sequence[str]) -> list[str]:
  """The fine-tuning rate dev chose per seed, when a rate grid was used."""
  scored = [(a.arm, a.tasks) for a in arms]
  scored.append(('*random init (fine-tuned)*', controls.get('random_init') or {}))
  if not any(s.chosen_learning_rates for _, by_task in scored for s in by_task.values()):
    return []

  def cell(score) -> str:
    rates = score and score.chosen_learning_rates
    return ', '.join(f'{r:g}' for r in rates) if rates else '–'

  return (['### Fine-tuning rate chosen on dev (per seed; finetune.learning_rates)', '']
          + _table(['encoder'] + list(tasks),
                   [[name] + [cell(by_task.get(t)) for t in tasks]
                    for name, by_task in scored]) + [''])


def _scores_section(arms: Sequence[Arm], controls: Controls,
                    held_back: Sequence[str] = ()) -> list[str]:
  tasks = analysis.task_names(arms) or analysis.task_names(arms, 'probes')
  if not tasks:
    return ['## Downstream scores', '', 'No task results.', '']
  header = ['arm'] + [f'{t} ({analysis.task_meta(arms, t).main_metric})'
                      for t in tasks]
  lines = ['## Downstream scores', '',
           'Test split, whole. Main metric per task: mean ± std [95% t interval] '
           'over seeds (a probe on a fixed encoder is one deterministic fit). '
           'Controls: *random init* fine-tunes or probes an untrained encoder; '
           '*lexical* is bag-of-words naive Bayes (ridge for regression, most '
           'frequent tag per word for tagging) on the same training examples; '
           '*majority / mean* predicts the most frequent label.']
  if held_back:
    lines.append(f'{NOT_LEARNED} the encoder has not learned beyond the count '
                 'baselines (see "Did the encoder learn?"): its rows are shown but '
                 'left out of every verdict.')
  lines.append('')
  for key, title, shown in (
      ('tasks', 'Fine-tuning', ('random_init', 'lexical', 'baseline')),
      ('probes', 'Linear probe (best layer on dev)',
       ('random_init_probe', 'lexical', 'baseline'))):
    if not any(getattr(a, key) for a in arms):
      continue
    rows = [[_mark(a.arm, held_back)] + [_score(getattr(a, key).get(t))
                                        for t in tasks] for a in arms]
    for kind, label in (c for c in CONTROL_LABELS if c[0] in shown):
      control = controls.get(kind) or {}
      if control:
        rows.append([f'*{label}*'] + [_score(control.get(t)) for t in tasks])
    lines += [f'### {title}', ''] + _table(header, rows) + ['']
  lines += _rates_table(arms, controls, tasks)
  probe_layers = [(a.arm, t, r.layers) for a in arms
                  for t, r in sorted(a.probes.items()) if r.layers]
  if probe_layers:
    layers = list(dict.fromkeys(l for _, _, ls in probe_layers for l in ls))
    lines += ['### Probe accuracy per layer (test, l2 chosen on dev per layer)', '']
    lines += _table(['arm', 'task'] + layers,
                    [[arm, task] + [_num((ls.get(l) or {}).get('mean')) for l in layers]
                     for arm, task, ls in probe_layers]) + ['']
  return lines


def _learning_section(result: dict, plots_written: dict) -> list[str]:
  learning = result.get('learning') or {}
  checks = learning.get('arms') or {}
  if not checks:
    return []
  margin = learning['margin_nats']
  lines = ['## Did the encoder learn?', '',
           'Held-out MLM loss and accuracy next to count '
           'models scored on the same masked positions, estimated from the '
           'arm\'s own training tokens: *unigram* (word frequencies; at [MASK] '
           'this is also the frequency+copy model), *freq+copy* (frequencies, and '
           'the visible token where BERT kept it), *bigram* (left and right '
           'neighbours), *majority* (always the most frequent token). [MASK] = '
           'positions whose input is [MASK] (the main pretraining metric); other = '
           'random or kept tokens. An arm has learned when its loss at [MASK] is '
           f'at least {margin:g} nats below the unigram and its overall accuracy '
           'is above freq+copy. *Rows*: an arm trained on only some of the held-out '
           'domains is judged on the held-out rows of its own domains (pooled '
           'over them), any other arm on all rows pooled.', '']
  rows = []
  for arm, c in checks.items():
    m, b = c['model'], c['baselines']
    rows.append([
        arm, c.get('rows', POOLED), _num(m['mask']['loss']), _num(b['mask'].get('unigram_loss')),
        _num(c['margin_below_unigram_mask'], True), _num(b['mask'].get('bigram_loss')),
        _num(m['mask']['accuracy']), _num(b['mask'].get('bigram_accuracy')),
        _num(m['other']['loss']), _num(b['other'].get('freq_copy_loss')),
        _num(m['other']['accuracy']), _num(b['other'].get('freq_copy_accuracy')),
        _num(m['all']['accuracy']), _num(b['all'].get('freq_copy_accuracy')),
        _num(b['all'].get('majority_accuracy')),
        'yes' if c['learned'] else f'**no** {NOT_LEARNED}'])
  lines += _table(['arm', 'rows', 'loss [MASK]', 'unigram [MASK]', 'margin below unigram',
                   'bigram [MASK]', 'acc [MASK]', 'bigram acc [MASK]', 'loss other',
                   'freq+copy loss other', 'acc other', 'freq+copy acc other',
                   'acc all', 'freq+copy acc all', 'majority acc', 'learned'], rows)
  lines.append('')
  for arm, c in checks.items():
    if not c['learned']:
      lines.append(f'- {arm} has not learned clearly beyond the baselines: '
                   + '; '.join(c['reasons']) + '. Its downstream rows are marked '
                   f'{NOT_LEARNED} and excluded from verdicts.')
  if any(not c['learned'] for c in checks.values()):
    lines.append('')
  return lines + _plot(plots_written, 'learning', 'held-out loss at [MASK] vs baselines')


def _effect_cell(effect: dict | None, holm: bool = True) -> str:
  """Δ [95% CI] with a Holm mark, or 'n.s.' with the MDE."""
  if not effect:
    return MISSING
  if not effect.get('se'):
    return f'{_num(effect["estimate"], True)} (identical predictions)' \
        if effect['estimate'] == 0 else f'{_num(effect["estimate"], True)} (no spread)'
  text = _rounded(effect['estimate'], effect['ci95'], signed=True)
  if effect.get('significant_holm'):
    return text + (' \\*' if holm else '')
  if not effect['significant']:
    return text + f' (n.s.; MDE {_num(effect["mde"])})'
  return text


def _random_section(result: dict, held_back: Sequence[str]) -> list[str]:
  comparisons = result.get('pretrained_vs_random') or {}
  if not comparisons:
    return []
  lines = ['## Pretrained vs random init', '',
           'Per task: pretrained minus random-init encoder, by linear probe and by '
           'fine-tuning, paired on the same test items: 95% t interval combining a '
           'bootstrap over test items with the seed variance (Welch df); '
           '\\* = significant after Holm correction across tasks; n.s. rows give '
           'the minimum detectable effect (MDE; alpha 0.05 two-sided, power 0.8). '
           'The lexical baseline is shown beside it.', '']
  summary = result.get('beats_random_init')
  if summary:
    lines += [f'Reference arm {summary["reference_arm"]}'
              + ('' if summary['learned'] else f' {NOT_LEARNED} (has not learned)')
              + f': pretrained beats random init on **{summary["count"]} of '
              f'{summary["of"]}** tasks ({summary["count_holm"]} after Holm). '
              'Per arm: ' + ', '.join(f'{a} {v["count"]}/{v["of"]}'
                                      for a, v in summary['by_arm'].items()) + '.', '']
  for arm, entry in comparisons.items():
    count = entry['beats_random_init']
    mark = f' {NOT_LEARNED} (not learned: no verdict)' if arm in held_back else ''
    lines += [f'### {arm}{mark}', '',
              f'**The pretrained encoder beats the random-init control on '
              f'{count["count"]} of {count["of"]} tasks** (95% interval above 0, by '
              f'probe or by fine-tuning; {count["count_holm"]} after Holm). By probe: '
              f'{", ".join(count["by_probe"]) or "none"}; by fine-tuning: '
              f'{", ".join(count["by_finetune"]) or "none"}.'
              + _untrained_text(count), '']
    rows = []
    for task in sorted(set(entry['probe']) | set(entry['finetune'])):
      p, f = entry['probe'].get(task), entry['finetune'].get(task)
      rows.append([task, _num((p or {}).get('a')), _num((p or {}).get('b')),
                   _effect_cell(p), _num((f or {}).get('a')), _num((f or {}).get('b')),
                   _effect_cell(f), _num(entry['lexical'].get(task))])
    lines += _table(['task', 'probe: pretrained', 'probe: random', 'probe Δ [95% CI]',
                     'fine-tune: pretrained', 'fine-tune: random', 'fine-tune Δ [95% CI]',
                     'lexical'], rows) + ['']
  return lines


def _untrained_text(count: dict) -> str:
  over = count.get('by_finetune_over_untrained_control')
  if not over:
    return ''
  return (f' Not counted: fine-tuning on {", ".join(over)}, where the fine-tuned '
          'random-init control predicted one label for every test item on every seed '
          '(it never trained, so the difference shows that fine-tuning left the '
          'constant prediction, not better features).')


def _pairs_section(result: dict, held_back: Sequence[str]) -> list[str]:
  pairs = (result.get('arm_pairs') or {}).get('pairs') or {}
  reference = (result.get('arm_pairs') or {}).get('reference')
  shown = {k: v for k, v in pairs.items() if reference in (v['a'], v['b'])}
  if not shown:
    return []
  tasks = sorted({t for v in shown.values() for ev in analysis.RANDOM_CONTROL
                  for t in v[ev]})
  lines = ['## Arms compared on the same test items', '',
           f'Each arm minus the reference arm {reference} (every pair is in '
           'results.json, `analysis.arm_pairs`): paired over test items and '
           'independent over seeds, 95% t interval; \\* = significant after Holm '
           'across the tasks of that row; n.s. gives the minimum detectable effect '
           '(alpha 0.05 two-sided, power 0.8): a "no effect" reading only rules out '
           'effects of about that size.', '']
  for ev, title in (('probe', 'Linear probe'), ('finetune', 'Fine-tuning')):
    rows = [[_mark(v['a'], held_back) + ' − ' + _mark(v['b'], held_back)]
            + [_effect_cell(v[ev].get(t)) for t in tasks]
            for v in shown.values() if v[ev]]
    if rows:
      lines += [f'### {title}', ''] + _table(['pair'] + tasks, rows) + ['']
  return lines


def _trend_text(trend: dict | None) -> str:
  if not trend or trend.get('status') != 'computed':
    return ''
  verdict = ('falls significantly' if trend['ci95'] and trend['ci95'][1] < 0 else
             'rises significantly' if trend['ci95'] and trend['ci95'][0] > 0 else
             'shows no significant trend')
  return (f'Held-out loss {verdict} with data: '
          f'{_rounded(trend["estimate"], trend["ci95"], signed=True)} nats per decade of '
          f'unique tokens (least squares over {trend["n"]} arms, t interval with '
          f'{trend["n"] - 2} df; one pretraining run per arm).')


def _scaling_section(result: dict, plots_written: dict) -> list[str]:
  scaling = result['loss_scaling']
  lines = ['## Held-out MLM loss vs data size', '',
           f'Arms: {", ".join(result["size_arms"])}.', '']
  loss = result.get('size_heldout_loss') or {}
  if loss.get('pairs'):
    each = ', '.join(f'{arm} {_loss_cell(e)}' for arm, e in loss['pairs'].items())
    lines += [f'Each arm minus {loss["reference"]}, pooled held-out loss at [MASK] on '
              f'the same positions (Welch interval over positions; one pretraining run '
              f'per arm, so it is conditional on those runs): {each}.', '']
  if scaling['status'] != 'fitted':
    lines += [f'Power law L(D) = E + B·D^-β: not reported — {scaling["status"]} '
              f'({scaling["note"]}).', '']
    if _trend_text(scaling.get('trend')):
      lines += [_trend_text(scaling['trend']), '']
  else:
    fit, ci = scaling['fit'], scaling['ci95'] or {}
    lines.append(f'Fit L(D) = E + B·D^-β over {fit["n"]} arms (D = unique tokens; '
                 f'{fit["n"] - stats.POWER_LAW_PARAMS} residual df; shown to the '
                 'precision the intervals support): '
                 f'E = {_rounded(fit["E"], ci.get("E"))}, '
                 f'B = {fit["B"]:.2g} {_ci(ci.get("B"))}, '
                 f'β = {_rounded(fit["beta"], ci.get("beta"))}.')
    if fit['beta_at_bound']:
      lines.append(f'β sits at its search bound {stats.BETA_BOUNDS}: the data do '
                   'not pin the exponent down.')
    if scaling['significant_decrease'] is not None:
      low, high = scaling['band']['low'], scaling['band']['high']
      if scaling['significant_decrease']:
        lines.append(f'Held-out loss falls with data: the fitted loss at the largest '
                     f'arm {_ci([low[-1], high[-1]])} lies below that at the smallest '
                     f'{_ci([low[0], high[0]])}.')
      else:
        lines.append('No significant fall of held-out loss with data: the bands at '
                     f'the smallest {_ci([low[0], high[0]])} and largest '
                     f'{_ci([low[-1], high[-1]])} arms overlap.')
    if _trend_text(scaling.get('trend')):
      lines.append(_trend_text(scaling['trend']))
    lines.append('')
  return lines + _plot(plots_written, 'loss_vs_tokens', 'held-out loss vs unique tokens')


def _size_section(result: dict, plots_written: dict) -> list[str]:
  lines = ['## Sensitivity to data size', '',
           'Slope of each task\'s score against log10(unique tokens), per-seed '
           'points, t interval.', '']
  if not result['size_sensitivity']:
    lines += ['No slope: fewer than two sizes among the arms that have learned.', '']
  for task, effect in result['size_sensitivity'].items():
    if effect.get('status') != 'computed':
      lines.append(f'- {task}: {effect["status"]}')
      continue
    lines.append('- ' + claim(task, effect, 'slope', 'improves with data',
                              'gets worse with more data',
                              f' {effect["main_metric"]}/decade'))
  probe = result.get('probe_size_sensitivity') or {}
  if probe:
    lines += ['', 'Linear probes (one score per arm, so the interval is over arms):', '']
    for task, effect in probe.items():
      if effect.get('status') != 'computed':
        lines.append(f'- {task}: {effect["status"]}')
      else:
        lines.append('- ' + claim(task, effect, 'probe slope', 'improves with data',
                                  'gets worse with more data',
                                  f' {effect["main_metric"]}/decade'))
  if result.get('held_back_arms'):
    lines += ['', f'Left out (not learned): {", ".join(result["held_back_arms"])}.']
  lines.append('')
  lines += _plot(plots_written, 'task_vs_tokens', 'task score vs unique tokens')
  ranking = result['ranking']
  if ranking:
    lines += ['### Tasks ranked by data need', '',
              'Ordered by the size slope (oriented so that higher = gains more from '
              'data; units are each task\'s metric per decade). Tasks whose CIs '
              'overlap cannot be told apart.', '']
    lines += _table(
        ['rank', 'task', 'slope per decade [95% CI]', 'significant', 'CI overlaps'],
        [[str(r['rank']), r['task'],
          f'{_num(r["slope"], True)} {_ci(r["ci95"], True)}',
          {True: 'yes', False: 'no'}.get(r['significant'], MISSING),
          ', '.join(r['overlaps']) or 'none'] for r in ranking])
    lines.append('')
  return lines


def _loss_cell(effect: dict | None) -> str:
  """A held-out loss difference: Δ [95% CI], 'n.s.' when the interval holds 0."""
  if not effect:
    return MISSING
  if effect['ci95'] is None:
    return f'{_num(effect["estimate"], True)} (no SE)'
  text = _rounded(effect['estimate'], effect['ci95'], signed=True)
  return text if effect['significant'] else text + ' (n.s.)'


def _domain_loss_lines(loss: dict) -> list[str]:
  """The arm x held-out domain table of loss at [MASK] and its domain effects."""
  domains, table = loss['domains'], loss['table']
  if not domains:
    return []
  columns = domains + [POOLED]
  lines = ['### Held-out loss at [MASK] per domain', '',
           'Rows: pretraining arm (every arm; held-out loss needs no learning '
           'gate); columns: held-out domain, the same rows and masks for every '
           'arm. Bold: the lowest loss in the column.', '']
  rows = []
  for arm, losses in table.items():
    cells = [_num(losses.get(d)) for d in columns]
    rows.append([arm] + [f'**{c}**' if loss['best_arm'].get(d) == arm else c
                         for c, d in zip(cells, columns)])
  lines += _table(['arm'] + columns, rows) + ['']
  if loss.get('status') != 'computed':
    return lines + [f'No domain effect on held-out loss: {loss.get("status")}.', '']
  ref = loss['reference']
  interval = ('95% Welch interval from each arm\'s per-position loss SD, as if '
              'the two arms\' positions were independent' if loss['se'] else
              'no interval: this run stored no per-position loss SD')
  lines.append(f'Differences from the reference arm {ref} on each domain\'s rows, '
               f'in nats (negative: lower loss than {ref}; {interval}):')
  lines.append('')
  for d, e in loss['in_domain'].items():
    lines.append(f'- in-domain, {d}: {e["arm"]} − {ref} = {_loss_cell(e)}')
  for arm, e in loss['leave_out'].items():
    others = ', '.join(f'{d} {_loss_cell(x)}' for d, x in e['on_others'].items())
    lines.append(f'- without {e["left_out"]}: {arm} − {ref} on {e["left_out"]} = '
                 f'{_loss_cell(e["on_left_out"])}; on the other domains: '
                 f'{others or MISSING}')
  return lines + ['']


def _domain_section(result: dict, plots_written: dict) -> list[str]:
  lines = ['## Sensitivity to domain', '']
  lines += _domain_loss_lines(result.get('domain_heldout_loss') or
                              {'domains': [], 'table': {}})
  if 'domain_heldout_loss' in result:
    lines += ['### Domain-aligned tasks', '']
  domain = result['domain_sensitivity']
  if not domain:
    lines += ['No task is aligned with a pretraining domain.', '']
  for task, entry in domain.items():
    effect, unit = entry['in_domain'], f' {entry["main_metric"]}'
    if 'in_domain_paired' in entry:
      for other, e in entry['in_domain_paired'].items():
        lines.append('- ' + claim(
            task, e, f'{effect["in_domain_arm"]} − {other} (fine-tuning, paired over '
            'test items)', 'gains from in-domain pretraining',
            'loses from in-domain pretraining', unit))
    elif 'estimate' not in effect:
      lines.append(f'- {task} (domain {entry["domain"]}): {effect["status"]}')
    else:
      lines.append('- ' + claim(
          task, effect, f'gain of in-domain arm {effect["in_domain_arm"]} over the '
          f'mean of {", ".join(effect["out_of_domain_arms"])}',
          'gains from in-domain pretraining', 'loses from in-domain pretraining', unit))
    if 'inclusion' in entry:
      inclusion = entry['inclusion']
      paired_inclusion = entry.get('inclusion_paired')
      quantity = (f'{inclusion["with_arm"]} − {inclusion["without_arm"]} (fine-tuning, '
                  'paired over test items)' if paired_inclusion else
                  f'gain of {inclusion["with_arm"]} over {inclusion["without_arm"]}')
      lines.append('- ' + claim(
          task, paired_inclusion or inclusion, quantity,
          f'gains from adding {entry["domain"]} to the mixture',
          f'loses from adding {entry["domain"]} to the mixture', unit))
  lines.append('')
  return lines + _plot(plots_written, 'domain_transfer', 'domain x task transfer')


def _quality_section(result: dict, plots_written: dict) -> list[str]:
  quality = result['quality_sensitivity']
  lines = ['## Sensitivity to quality', '']
  loss = (result.get('quality_heldout_loss') or {}).get('pairs')
  if loss:
    lines += ['Held-out loss at [MASK], pooled, each arm minus its unfiltered reference '
              'on the same positions (every arm; Welch interval over positions, one '
              'pretraining run per arm):', '']
    lines += [f'- {arm} − {e["reference"]}: {_loss_cell(e)}' for arm, e in loss.items()]
    lines.append('')
  if quality['status'] != 'computed':
    return lines + [quality['status'] + '.', '']
  lines += ['Difference of each quality arm from its unfiltered reference arm '
            '(same recipe otherwise where one exists; Welch interval over seeds).', '']
  tasks = list(dict.fromkeys(t for q in quality['arms'].values() for t in q['tasks']))
  rows, claims, without_ci = [], [], 0
  for name, q in quality['arms'].items():
    steps = ', '.join(q['quality'] + [f'{k}={v:g}' for k, v in q['degrade'].items()])
    reference = q['reference'] + ('' if q['same_recipe_otherwise']
                                  else ' (differs in more than quality)')
    cells = []
    for task in tasks:
      effect = q['tasks'].get(task)
      cells.append(MISSING if effect is None else
                   f'{_num(effect["estimate"], True)} {_ci(effect["ci95"], True)}')
      if effect is not None and effect.get('ci95') is None:
        without_ci += 1   # one seed a side: said once below, not per cell
      elif effect is not None:
        claims.append('- ' + claim(
            f'{task} on {name}', effect, f'difference from {q["reference"]}',
            'is better than unfiltered', 'is worse than unfiltered',
            f' {effect["main_metric"]}'))
    rows.append([name, steps, reference] + cells)
  if without_ci:
    claims.append(f'- {without_ci} of these differences have no interval over seeds '
                  '(one fine-tuning seed a side); "Arms compared on the same test items" '
                  'gives each one paired over test items, with its interval.')
  lines += _table(['arm', 'steps', 'vs'] + tasks, rows) + [''] + claims + ['']
  return lines + _plot(plots_written, 'quality_bars', 'quality arms per task')


def _correlation_cell(c: dict) -> str:
  text = _rounded(c['estimate'], c['ci95'], signed=True)
  if c.get('p_exact') is not None:   # ranks in perfect order: no Fisher interval
    verdict = '' if c['significant'] else ', n.s.'
    return text + f' (exact permutation p {c["p_exact"]:.3f}{verdict})'
  return text + ('' if c['significant'] else ' (n.s.)')


def _correlation_section(result: dict) -> list[str]:
  corr = result['loss_correlation']
  if not corr:
    return []
  lines = ['## Held-out loss vs task score', '',
           'Correlation over arms of the pooled held-out MLM loss with each task\'s '
           f'mean score (Fisher-z intervals; at least {stats.MIN_CORRELATION_ARMS} '
           'arms; a Spearman of ±1 gets the exact permutation p instead). Negative = '
           'lower loss goes with a higher score.', '']
  rows = []
  for task, c in corr.items():
    if c['status'] != 'computed':
      rows.append([task, c['status'], MISSING, str(c['n'])])
      continue
    rows.append([task] + [_correlation_cell(c[k]) for k in ('pearson', 'spearman')]
                + [str(c['n'])])
  return lines + _table(['task', 'Pearson [95% CI]', 'Spearman [95% CI]', 'arms'],
                        rows) + ['']


def _literature_text(item: dict) -> str:
  effects = [e['effect'] for e in item['evidence']]
  better = sum(e['improves'] is True for e in effects)
  worse = sum(e['improves'] is False for e in effects)
  if item['key'] == 'minibertas':
    low, high = item['words_range']
    text = (f'our size arms span {_count(low)}–{_count(high)} words (unique tokens / '
            f'{analysis.TOKENS_PER_WORD:g})')
    if item['below_saturation']:
      text += (', below the range where MiniBERTas saw probing saturate, so every '
               'task is expected to improve')
    text += (f'. {better} of {len(effects)} tasks improve significantly with data, '
             f'{worse} get worse.')
    falls, pairs = item['loss_falls'], item.get('loss_pairs')
    if falls is not None:
      text += (' Held-out loss falls significantly.' if falls else
               ' Held-out loss does not fall significantly with data (trend over arms).')
    if pairs:
      text += (f' On the same held-out positions, {pairs["higher"]} of {pairs["of"]} '
               f'smaller arms have a significantly higher loss at [MASK] than '
               f'{pairs["reference"]}.')
    return text
  if item['key'] == 'dont_stop':
    if item.get('paired'):
      return (f'{better} of {len(effects)} (domain-aligned task, out-of-domain arm) '
              'comparisons gain significantly from in-domain pretraining (fine-tuning, '
              f'paired over test items, Holm across each pair\'s tasks), {worse} lose.')
    return (f'{better} of {len(effects)} domain-aligned tasks gain significantly '
            f'from in-domain pretraining, {worse} lose.')
  if item['key'] == 'dont_stop_loss':
    ref = item['reference']
    each = ', '.join(f'{x["domain"]} {_loss_cell(x["effect"])}' for x in item['evidence'])
    text = 'on held-out text of its own domain, the single-domain arm\'s loss at [MASK] '
    if item['point_estimates']:
      each = ', '.join(f'{x["domain"]} {_num(x["effect"]["estimate"], True)}'
                       for x in item['evidence'])
      return text + (f'is below {ref}\'s for {item["lower"]} of {item["of"]} domains '
                     f'(difference in nats, {each}; point estimates: this run stored '
                     'no per-position loss SD, so no interval).')
    return text + (f'is significantly below {ref}\'s for {better} of {len(effects)} '
                   f'domains, significantly above for {worse} (difference in nats, '
                   f'{each}).')
  if item['key'] == 'cramming':
    how = (' (fine-tuning, paired over test items, Holm across each arm\'s tasks)'
           if item.get('paired') else '')
    text = (f'{better} of {len(effects)} (filtered arm, task) pairs beat the '
            f'unfiltered arm significantly{how}, {worse} are worse.')
    if not item['equal_compute']:
      text += (' Tokens seen differ between these arms, so this is not the '
               'fixed-compute comparison Cramming makes.')
    return text
  changes = {e['arm']: e['loss_change'] for e in item['evidence']}
  loss = '; '.join(f'{arm}: {MISSING if c is None else f"{c:+.1%}"}'
                   for arm, c in changes.items())
  return (f'against {item["reference"]} (the most unique data), arms that train '
          f'for up to {analysis.MUENNIGHOFF_MAX_REPEATS:g} epochs change held-out '
          f'loss by {loss} '
          f'(one pretraining run per arm: no CI); {worse} of {len(effects)} task '
          'scores are significantly worse.')


def _held_back_text(result: dict) -> str:
  """Which arms the downstream verdicts leave out, and why (their gate)."""
  learning = result.get('learning') or {}
  checks = learning.get('arms') or {}
  held_back = result['held_back_arms']
  why = '; '.join(f'{a}: {" and ".join(checks.get(a, {}).get("reasons") or ["not learned"])}'
                  for a in held_back)
  items = result['literature']
  downstream = [i for i in items if i.get('evidence_from') != 'held-out loss']
  margin = learning.get('margin_nats', analysis.LEARN_MARGIN_NATS)
  text = (f'Held back ({len(held_back)} of {len(checks)} arms; not learned beyond the '
          f'count baselines, whose gate needs the loss at [MASK] at least {margin:g} nats below '
          'the unigram of the same rows and accuracy above freq+copy): '
          f'{why}. The downstream verdicts therefore exclude them')
  text += '' if downstream else ', and without them no downstream finding can be compared'
  if len(downstream) < len(items):
    text += '; the verdict from held-out loss is drawn from every arm'
  return text + '.'


def _literature_section(result: dict) -> list[str]:
  lines = ['## Comparison with the literature', '']
  if result.get('held_back_arms'):
    lines += [_held_back_text(result), '']
  if not result['literature']:
    if result.get('held_back_arms'):
      return lines
    return lines + ['None of the compared findings applies to what these arms vary.', '']
  for item in result['literature']:
    lines.append(f'- **{item["paper"]}**: {item["claim"]}. Here: '
                 f'{_literature_text(item)} → **{item["verdict"]}**.')
  return lines + ['']


def _methods_section() -> list[str]:
  return ['## Methods', '',
          '- Every interval is 95%. "No significant effect" means the interval '
          'includes 0; paired comparisons then state the minimum detectable effect.',
          '- Test splits are evaluated whole; only training examples are capped.',
          '- Per-arm scores: mean over seeds with a Student-t interval (n - 1 df).',
          '- Paired comparisons (arm vs arm, pretrained vs random init): the '
          'difference of seed-mean scores on the same test items; its variance '
          f'is a paired bootstrap over test items ({paired.BOOTSTRAP_SAMPLES} '
          'resamples, sentences for tagging) plus s²/n of each side\'s seeds; '
          't interval with Welch–Satterthwaite df; Holm correction across the '
          'tasks of each family; MDE = (t(0.975, df) + t(0.8, df)) × SE, i.e. '
          'alpha 0.05 two-sided and power 0.8, assuming the same SE under the '
          'alternative. A fine-tuned evaluation with one seed uses the seed '
          'variance pooled over the task\'s other fine-tuned evaluations (the '
          'random-init control\'s seeds, arms with several seeds).',
          f'- Power law: only with >= {stats.MIN_FIT_DOF} residual degrees of '
          f'freedom; β profiled on a log grid in {list(stats.BETA_BOUNDS)} '
          f'(E ≥ 0, B by least squares for each β); {stats.BOOTSTRAP_SAMPLES} '
          'residual-bootstrap refits give the CIs and the band. Otherwise the '
          'log-linear trend (t interval, n - 2 df).',
          '- Size slopes: least squares on per-seed scores; t interval with n - 2 '
          'degrees of freedom. Seeds vary fine-tuning only, so pretraining noise '
          'shows up only as lack of fit. A task improves (or gets worse) with data '
          'only when its slope is significant after Holm across the tasks of that '
          'evaluation. Size arms are also compared on held-out loss at [MASK] with '
          'the largest arm, on the same positions (Welch over positions).',
          '- Domain and quality effects: differences of seed means, Welch '
          'intervals. Where per-item predictions exist, the domain-aligned and '
          'Cramming verdicts read the paired fine-tuning comparisons instead '
          '(Holm across the tasks of each pair).',
          f'- Correlations: Fisher-z intervals, only with >= '
          f'{stats.MIN_CORRELATION_ARMS} arms; Spearman\'s ρ = ±1 (ranks in '
          f'perfect order) gets the exact permutation p over all orders instead '
          f'(up to {stats.EXACT_PERMUTATION_MAX_N} arms).',
          '- Domain effects on held-out loss at [MASK]: each arm minus the mixed '
          'reference arm on one domain\'s held-out rows; 95% Welch interval from '
          'the two arms\' per-position loss SDs, as if their positions were '
          'independent (they are the same positions, which correlation would '
          'make the interval too wide; positions within a document are not '
          'independent, which makes it too narrow).',
          f'- Arms that have not learned (loss at [MASK] less than '
          f'{analysis.LEARN_MARGIN_NATS:g} nats below the unigram, or accuracy not '
          'above frequency+copy, on the held-out rows of the arm\'s own domains when '
          'it trains on some of them, else on all rows) are left out of slopes, '
          'contrasts, correlations and downstream literature verdicts; the '
          'held-out-loss comparisons use every arm.', '']


def render(results: dict) -> str:
  """report.md from the results.json content."""
  arms = [Arm.from_dict(a) for a in results['arms']]
  controls = records.controls_from_dict(results['controls'])
  result = results['analysis']
  plots_written = results['plots']
  held_back = result.get('held_back_arms') or []
  varied = [k for k, v in result['varies'].items() if v] or ['nothing']
  lines = [f'# Study report: {results["name"] or "unnamed ablation"}', '',
           f'{len(arms)} arms; the arms vary: {", ".join(varied)}.', '']
  lines += _arms_section(arms, held_back) + _learning_section(result, plots_written)
  lines += _scores_section(arms, controls, held_back)
  lines += _random_section(result, held_back) + _pairs_section(result, held_back)
  if 'loss_scaling' in result:
    lines += _scaling_section(result, plots_written)
    lines += _size_section(result, plots_written)
  if 'domain_sensitivity' in result:
    lines += _domain_section(result, plots_written)
  if 'quality_sensitivity' in result:
    lines += _quality_section(result, plots_written)
  lines += _correlation_section(result) + _literature_section(result)
  return '\n'.join(lines + _methods_section())


def write_report(workdir: utils.AnyPath, config: Any, arms: list[dict],
                 controls: dict) -> dict:
  """Writes DIR/report/{results.json, report.md, *.png}; returns results.json.

  `arms` are the arm records' JSON (arm_result.json), `controls` their
  {control: {task: score}}; both are parsed into `records` types once, here,
  and go into results.json as given (plus each arm's `derived`). Per-item
  predictions (for the paired comparisons) are read from the arms' eval
  folders under `workdir`; they are not copied into results.json.
  """
  _check_arms(arms)
  controls = controls or {}
  typed = [Arm.from_dict(arm) for arm in arms]
  typed_controls = records.controls_from_dict(controls)
  arms = [dict(arm, derived=_derived(record, typed_controls))
          for arm, record in zip(arms, typed)]
  items = load_items(utils.path(workdir), typed, typed_controls)
  result = utils.json_safe(analysis.analyze(typed, items))
  out_dir = utils.path(workdir) / REPORT_DIR
  plots_written = plots.write_plots(out_dir, typed, typed_controls, result)
  results = utils.json_safe({'name': config.get('name', ''), 'arms': arms,
                        'controls': controls, 'analysis': result,
                        'plots': plots_written})
  utils.write_json(out_dir / RESULTS_FILE, results, allow_nan=False)
  utils.atomic_write(out_dir / REPORT_FILE, render(results))
  return results
