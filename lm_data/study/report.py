"""The study report: `DIR/report/results.json`, `report.md` and PNG plots.

`write_report` is the single entry point; the orchestration calls it once
every arm has been pretrained and evaluated. A claim in report.md always
carries the interval that supports it; an interval that includes 0 reads
"no significant effect".
"""

from collections.abc import Sequence
import json
import math
import os
import pathlib
from typing import Any

import numpy as np

from lm_data.study import analysis
from lm_data.study import plots

REPORT_DIR = 'report'
RESULTS_FILE = 'results.json'
REPORT_FILE = 'report.md'
REQUIRED_ARM_KEYS = ('arm', 'recipe', 'unique_tokens', 'heldout', 'tasks')
DIGITS = 3
POOLED = 'all'
MISSING = '–'
COUNT_UNITS = ((1e9, 'B'), (1e6, 'M'), (1e3, 'k'))


# ------------------------------------------------------------------- values

def _json_safe(value: Any) -> Any:
  """Plain JSON types; NaN and infinities become null."""
  if hasattr(value, 'to_dict'):                 # ml_collections.ConfigDict
    value = value.to_dict()
  if isinstance(value, dict):
    return {str(k): _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple, np.ndarray)):
    return [_json_safe(v) for v in value]
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  return value


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


def _derived(arm: dict, controls: dict) -> dict:
  random_init = controls.get('random_init') or {}
  gains = {t: r['mean'] - random_init[t]['mean'] for t, r in arm['tasks'].items()
           if r.get('mean') is not None
           and (random_init.get(t) or {}).get('mean') is not None}
  tokens = arm['unique_tokens']
  return {'log10_unique_tokens': math.log10(tokens) if tokens > 0 else None,
          'words_estimate': tokens / analysis.TOKENS_PER_WORD,
          'heldout_loss': ((arm['heldout'] or {}).get(POOLED) or {}).get('loss'),
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


def _score(result: dict | None) -> str:
  if not result or result.get('mean') is None:
    return MISSING
  text = _num(result['mean'])
  if result.get('std') is not None:
    text += f' ± {_num(result["std"])}'
  if result.get('ci95'):
    text += f' {_ci(result["ci95"])}'
  return text


def claim(subject: str, effect: dict, quantity: str, better: str, worse: str,
          unit: str = '') -> str:
  """One sentence: the effect with its CI, or 'no significant effect'."""
  value = f'{quantity} {_num(effect["estimate"], signed=True)}{unit}'
  if effect.get('ci95') is None:
    return f'{subject}: {value} (no CI: too few seeds or points)'
  interval = _ci(effect['ci95'], signed=True)
  if not effect['significant']:
    return f'{subject}: no significant effect ({value} {interval})'
  return f'{subject} {better if effect["improves"] else worse}: {value} {interval}'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  return lines + ['| ' + ' | '.join(row) + ' |' for row in rows]


def _plot(plots_written: dict, key: str, title: str) -> list[str]:
  return [f'![{title}]({plots_written[key]})', ''] if key in plots_written else []


# ------------------------------------------------------------------ sections

def _arms_section(arms: Sequence[dict]) -> list[str]:
  domains = list(dict.fromkeys(d for a in arms for d in a['heldout'] if d != POOLED))
  header = ['arm', 'domains', 'unique tokens', 'tokens seen', 'epochs',
            'train FLOPs', f'held-out loss: {POOLED}'] + domains
  rows = []
  for arm in arms:
    loss = {d: (arm['heldout'].get(d) or {}).get('loss') for d in [POOLED] + domains}
    flops = arm.get('train_flops')
    rows.append([arm['arm'], ', '.join(arm['recipe'].get('domains') or ()) or MISSING,
                 _count(arm['unique_tokens']), _count(arm.get('tokens_seen')),
                 _num(arm.get('epochs')), MISSING if flops is None else f'{flops:.2e}']
                + [_num(loss[d]) for d in [POOLED] + domains])
  return ['## Arms', ''] + _table(header, rows) + ['']


def _scores_section(arms: Sequence[dict], controls: dict) -> list[str]:
  tasks = analysis.task_names(arms)
  if not tasks:
    return ['## Downstream scores', '', 'No task results.', '']
  header = ['arm'] + [f'{t} ({analysis.task_meta(arms, t)["main_metric"]})'
                      for t in tasks]
  rows = [[a['arm']] + [_score(a['tasks'].get(t)) for t in tasks] for a in arms]
  for kind in ('random_init', 'baseline'):
    control = controls.get(kind) or {}
    if control:
      rows.append([f'*{kind.replace("_", " ")}*']
                  + [_score(control.get(t)) for t in tasks])
  return (['## Downstream scores', '',
           'Main metric per task: mean ± std [95% CI] over fine-tuning seeds. '
           'Controls: *random init* fine-tunes an untrained encoder; *baseline* '
           'is the task\'s non-neural baseline.', '']
          + _table(header, rows) + [''])


def _scaling_section(result: dict, plots_written: dict) -> list[str]:
  scaling = result['loss_scaling']
  lines = ['## Held-out MLM loss vs data size', '',
           f'Arms: {", ".join(result["size_arms"])}.', '']
  if scaling['status'] != 'fitted':
    lines += [f'Power law L(D) = E + B·D^-β: {scaling["status"]} '
              f'({scaling["note"]}).', '']
  else:
    fit, ci = scaling['fit'], scaling['ci95'] or {}
    lines.append(f'Fit L(D) = E + B·D^-β over {fit["n"]} arms (D = unique tokens): '
                 f'E = {_num(fit["E"])} {_ci(ci.get("E"))}, '
                 f'B = {fit["B"]:.3g} {_ci(ci.get("B"))}, '
                 f'β = {_num(fit["beta"])} {_ci(ci.get("beta"))}.')
    if scaling.get('note'):
      lines.append(scaling['note'] + '.')
    if fit['beta_at_bound']:
      lines.append(f'β sits at its search bound {analysis.BETA_BOUNDS}: the data do '
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
    lines.append('')
  return lines + _plot(plots_written, 'loss_vs_tokens', 'held-out loss vs unique tokens')


def _size_section(result: dict, plots_written: dict) -> list[str]:
  lines = ['## Sensitivity to data size', '',
           'Slope of each task\'s score against log10(unique tokens), per-seed '
           'points, t interval.', '']
  for task, effect in result['size_sensitivity'].items():
    if effect.get('status') != 'computed':
      lines.append(f'- {task}: {effect["status"]}')
      continue
    lines.append('- ' + claim(task, effect, 'slope', 'improves with data',
                              'gets worse with more data',
                              f' {effect["main_metric"]}/decade'))
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


def _domain_section(result: dict, plots_written: dict) -> list[str]:
  lines = ['## Sensitivity to domain', '']
  domain = result['domain_sensitivity']
  if not domain:
    lines += ['No task is aligned with a pretraining domain.', '']
  for task, entry in domain.items():
    effect = entry['in_domain']
    if 'estimate' not in effect:
      lines.append(f'- {task} (domain {entry["domain"]}): {effect["status"]}')
    else:
      lines.append('- ' + claim(
          task, effect, f'gain of in-domain arm {effect["in_domain_arm"]} over the '
          f'mean of {", ".join(effect["out_of_domain_arms"])}',
          'gains from in-domain pretraining', 'loses from in-domain pretraining',
          f' {entry["main_metric"]}'))
    if 'inclusion' in entry:
      inclusion = entry['inclusion']
      lines.append('- ' + claim(
          task, inclusion, f'gain of {inclusion["with_arm"]} over '
          f'{inclusion["without_arm"]}', f'gains from adding {entry["domain"]} to '
          'the mixture', f'loses from adding {entry["domain"]} to the mixture',
          f' {entry["main_metric"]}'))
  lines.append('')
  return lines + _plot(plots_written, 'domain_transfer', 'domain x task transfer')


def _quality_section(result: dict, plots_written: dict) -> list[str]:
  quality = result['quality_sensitivity']
  lines = ['## Sensitivity to quality', '']
  if quality['status'] != 'computed':
    return lines + [quality['status'] + '.', '']
  lines += ['Difference of each quality arm from its unfiltered reference arm '
            '(same recipe otherwise where one exists; Welch interval over seeds).', '']
  tasks = list(dict.fromkeys(t for q in quality['arms'].values() for t in q['tasks']))
  rows, claims = [], []
  for name, q in quality['arms'].items():
    steps = ', '.join(q['quality'] + [f'{k}={v:g}' for k, v in q['degrade'].items()]
                      + [f'+{s}' for s in q['extra_sources']])
    reference = q['reference'] + ('' if q['same_recipe_otherwise']
                                  else ' (differs in more than quality)')
    cells = []
    for task in tasks:
      effect = q['tasks'].get(task)
      cells.append(MISSING if effect is None else
                   f'{_num(effect["estimate"], True)} {_ci(effect["ci95"], True)}')
      if effect is not None:
        claims.append('- ' + claim(
            f'{task} on {name}', effect, f'difference from {q["reference"]}',
            'is better than unfiltered', 'is worse than unfiltered',
            f' {effect["main_metric"]}'))
    rows.append([name, steps, reference] + cells)
  lines += _table(['arm', 'steps', 'vs'] + tasks, rows) + [''] + claims + ['']
  return lines + _plot(plots_written, 'quality_bars', 'quality arms per task')


def _correlation_section(result: dict) -> list[str]:
  corr = result['loss_correlation']
  if not corr:
    return []
  lines = ['## Held-out loss vs task score', '',
           f'Correlation over arms of the pooled held-out MLM loss with each task\'s '
           'mean score (bootstrap over arms). Negative = lower loss goes with a '
           'higher score.', '']
  rows = []
  for task, c in corr.items():
    if c['status'] != 'computed':
      rows.append([task, c['status'], MISSING, str(c['n'])])
      continue
    rows.append([task] + [
        f'{_num(c[k]["estimate"], True)} {_ci(c[k]["ci95"], True)}'
        + ('' if c[k]['significant'] else ' (n.s.)') for k in ('pearson', 'spearman')]
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
    falls = item['loss_falls']
    if falls is not None:
      text += (' Held-out loss falls significantly.' if falls else
               ' Held-out loss does not fall significantly.')
    return text
  if item['key'] == 'dont_stop':
    return (f'{better} of {len(effects)} domain-aligned tasks gain significantly '
            f'from in-domain pretraining, {worse} lose.')
  if item['key'] == 'cramming':
    text = (f'{better} of {len(effects)} (filtered arm, task) pairs beat the '
            f'unfiltered arm significantly, {worse} are worse.')
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


def _literature_section(result: dict) -> list[str]:
  lines = ['## Comparison with the literature', '']
  if not result['literature']:
    return lines + ['None of the compared findings applies to what these arms vary.', '']
  for item in result['literature']:
    lines.append(f'- **{item["paper"]}**: {item["claim"]}. Here: '
                 f'{_literature_text(item)} → **{item["verdict"]}**.')
  return lines + ['']


def _methods_section() -> list[str]:
  return ['## Methods', '',
          '- Every interval is 95%. "No significant effect" means the interval '
          'includes 0.',
          '- Power law: β profiled on a log grid in '
          f'{list(analysis.BETA_BOUNDS)} (E ≥ 0, B by least squares for each β); '
          f'{analysis.BOOTSTRAP_SAMPLES} residual-bootstrap refits give the CIs and '
          'the band.',
          '- Size slopes: least squares on per-seed scores; t interval with n - 2 '
          'degrees of freedom. Seeds vary fine-tuning only, so pretraining noise '
          'shows up only as lack of fit.',
          '- Domain and quality effects: differences of seed means, Welch '
          'intervals.',
          '- Correlations: percentile bootstrap over arms (few arms: wide and '
          'approximate).', '']


def render(results: dict) -> str:
  """report.md from the results.json content."""
  arms, controls, result = results['arms'], results['controls'], results['analysis']
  plots_written = results['plots']
  varied = [k for k, v in result['varies'].items() if v] or ['nothing']
  lines = [f'# Study report: {results["name"] or "unnamed ablation"}', '',
           f'{len(arms)} arms; the arms vary: {", ".join(varied)}.', '']
  lines += _arms_section(arms) + _scores_section(arms, controls)
  if 'loss_scaling' in result:
    lines += _scaling_section(result, plots_written)
    lines += _size_section(result, plots_written)
  if 'domain_sensitivity' in result:
    lines += _domain_section(result, plots_written)
  if 'quality_sensitivity' in result:
    lines += _quality_section(result, plots_written)
  lines += _correlation_section(result) + _literature_section(result)
  return '\n'.join(lines + _methods_section())


def _write_atomic(path: pathlib.Path, text: str) -> None:
  tmp = path.with_name(path.name + '.tmp')
  tmp.write_text(text)
  os.replace(tmp, path)


def write_report(workdir: pathlib.Path, config: Any, arms: list[dict],
                 controls: dict) -> dict:
  """Writes DIR/report/{results.json, report.md, *.png}; returns results.json."""
  _check_arms(arms)
  controls = controls or {}
  arms = [dict(arm, derived=_derived(arm, controls)) for arm in arms]
  result = _json_safe(analysis.analyze(arms))
  out_dir = pathlib.Path(workdir) / REPORT_DIR
  plots_written = plots.write_plots(out_dir, arms, controls, result)
  results = _json_safe({'name': config.get('name', ''), 'arms': arms,
                        'controls': controls, 'analysis': result,
                        'plots': plots_written})
  _write_atomic(out_dir / RESULTS_FILE,
                json.dumps(results, indent=1, allow_nan=False))
  _write_atomic(out_dir / REPORT_FILE, render(results))
  return results
