"""PNG plots for the study report (matplotlib, Agg canvas; no pyplot state).

Each plot is drawn only when the arms vary what it shows; `write_plots`
returns {plot name: file name} for the ones written.
"""

import math
from collections.abc import Sequence
from typing import Any

from matplotlib.backends import backend_agg
from matplotlib import figure as mpl_figure
from matplotlib import patches
from matplotlib import ticker
import numpy as np

from lm_data import utils
from lm_data.study import analysis
from lm_data.study import records
from lm_data.study import stats

Arm = records.ArmRecord

DPI = 120
PANEL_SIZE = (4.0, 3.2)        # inches per subplot
WIDE_PANEL = (7.0, 3.6)        # one panel with its legend outside
MAX_COLUMNS = 3
BAND_ALPHA = 0.25
DOMAIN_LINE_ALPHA = 0.5
HEATMAP_CELL = (0.9, 0.5)      # inches per task column / arm row
HEATMAP_MARGIN = (3.0, 2.0)    # inches for labels and the colour bar
LABEL_ROTATION = 35
LIGHT_TEXT_ABOVE = 0.6         # |value| / colour limit above which cell text is white

LOSS_PLOT = 'loss_vs_tokens.png'
TASK_PLOT = 'task_vs_tokens.png'
DOMAIN_PLOT = 'domain_transfer.png'
QUALITY_PLOT = 'quality_bars.png'
LEARNING_PLOT = 'learning.png'
# Count-model references drawn on the loss plots: (key, label, line style).
REFERENCES = (('unigram_loss', 'unigram', '--'), ('freq_copy_loss', 'freq+copy', '-.'),
              ('bigram_loss', 'bigram', ':'))


def _figure(panels: int) -> tuple[mpl_figure.Figure, list[Any]]:
  columns = min(MAX_COLUMNS, panels)
  rows = math.ceil(panels / columns)
  fig = mpl_figure.Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows),
                          dpi=DPI, layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  axes = fig.subplots(rows, columns, squeeze=False).ravel().tolist()
  for ax in axes[panels:]:
    ax.set_visible(False)
  return fig, axes[:panels]


def _save(fig: mpl_figure.Figure, out_dir: utils.AnyPath, name: str) -> str:
  # Through a file object: matplotlib opens paths itself, which fails on gs://.
  with utils.atomic_file(out_dir / name) as f:
    fig.savefig(f, format=name.rsplit('.', 1)[-1])
  return name


def _error(result: records.TaskScore) -> tuple[float, float]:
  """Asymmetric error bar (below, above): the t interval over the seeds."""
  ci = stats.seed_interval(result.scores or [])['ci95']
  if not ci:
    return 0.0, 0.0
  return max(result.mean - ci[0], 0.0), max(ci[1] - result.mean, 0.0)


def _mean(scores: records.Scores, task: str) -> float | None:
  score = scores.get(task)
  return None if score is None else score.mean


def _control_lines(ax, controls: dict[str, records.Scores], task: str) -> None:
  for kind, style, color in (('random_init', '--', 'gray'),
                             ('random_init_probe', '--', 'C2'),
                             ('lexical', '-.', 'C3'), ('baseline', ':', 'gray')):
    mean = _mean(controls.get(kind) or {}, task)
    if mean is not None:
      ax.axhline(mean, linestyle=style, color=color, linewidth=1,
                 label=kind.replace('_', ' '))


def _reference(arm: Arm, kind: str, key: str) -> float | None:
  refs = arm.references(kind)
  return None if refs is None else getattr(refs, key)


def _losses(group: Sequence[Arm], domain: str, key: str = 'loss') -> list[tuple]:
  """Sorted (unique tokens, held-out `key` on `domain`) of the arms that have it."""
  points = [(a.unique_tokens, getattr(a.heldout[domain], key)) for a in group
            if domain in a.heldout]
  return sorted(p for p in points if p[1] is not None)


def loss_plot(out_dir: utils.AnyPath, arms: Sequence[Arm], result: dict) -> str:
  """Held-out MLM loss vs unique tokens, with the power law and its band."""
  group = [a for a in arms if a.arm in result['size_arms']]
  fig = mpl_figure.Figure(figsize=WIDE_PANEL, dpi=DPI, layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  ax = fig.subplots()
  domains = list(dict.fromkeys(d for a in group for d in a.heldout if d != records.POOLED))
  for domain in domains:
    points = _losses(group, domain)
    if points:
      ax.plot(*zip(*points), marker='.', linewidth=1,
              alpha=DOMAIN_LINE_ALPHA, label=domain)
  pooled = _losses(group, records.POOLED)
  if pooled:
    ax.plot(*zip(*pooled), 'ko', label='all (pooled)')
  masked = _losses(group, records.POOLED, 'loss_mask')
  if masked:
    ax.plot(*zip(*masked), 'rs', label='at [MASK] (pooled)')
  # References of the arm with the most data (on its own held-out predictions).
  full = max(group, key=lambda a: a.unique_tokens, default=None)
  for key, label, style in REFERENCES if full else ():
    value = _reference(full, 'all', key)
    if value is not None:
      ax.axhline(value, color='k', linestyle=style, linewidth=1,
                 label=f'{label}, all ({full.arm})')
  if full and _reference(full, 'mask', 'unigram_loss') is not None:
    ax.axhline(_reference(full, 'mask', 'unigram_loss'), color='r', linestyle='--',
               linewidth=1, label=f'unigram at [MASK] ({full.arm})')
  scaling = result.get('loss_scaling') or {}
  band = scaling.get('band')
  if band:
    fit = scaling['fit']
    ax.plot(band['tokens'], band['fit'], 'k-',
            label=f'E + B·D^-β, β={fit["beta"]:.2f}, E={fit["E"]:.2f}')
    if 'low' in band:
      ax.fill_between(band['tokens'], band['low'], band['high'], color='k',
                      alpha=BAND_ALPHA, label=f'{stats.CI_LEVEL:.0%} bootstrap band')
  ax.set_xscale('log')
  ax.set_xlabel('unique pretraining tokens D')
  ax.set_ylabel('held-out MLM loss')
  ax.set_title(f'held-out loss vs data size ({len(group)} arms)')
  ax.xaxis.set_minor_formatter(ticker.NullFormatter())
  ax.legend(fontsize='x-small', loc='upper left', bbox_to_anchor=(1.01, 1.0))
  return _save(fig, out_dir, LOSS_PLOT)


def task_plot(out_dir: utils.AnyPath, arms: Sequence[Arm], controls: dict[str, records.Scores],
              result: dict) -> str:
  """Each task's score vs unique tokens (CI error bars, controls as lines)."""
  group = [a for a in arms if a.arm in result['size_arms']]
  tasks = analysis.task_names(group)
  fig, axes = _figure(len(tasks))
  for ax, task in zip(axes, tasks):
    scored = sorted(((a.unique_tokens, a.tasks[task]) for a in group
                     if _mean(a.tasks, task) is not None),
                    key=lambda s: s[0])
    if scored:
      x = [s[0] for s in scored]
      errors = np.array([_error(s[1]) for s in scored]).T
      ax.errorbar(x, [s[1].mean for s in scored], yerr=errors, fmt='o-',
                  capsize=3, label='fine-tuned')
    probed = sorted((a.unique_tokens, _mean(a.probes, task)) for a in group
                    if _mean(a.probes, task) is not None)
    if probed:
      ax.plot(*zip(*probed), 's-', color='C2', label='probe')
    slope = result['size_sensitivity'].get(task, {})
    if slope.get('status') == 'computed' and scored:
      line = np.geomspace(x[0], x[-1], 2)
      ax.plot(line, slope['intercept'] + slope['estimate'] * np.log10(line),
              color='C1', linewidth=1, label=f'slope {slope["estimate"]:+.3f}/decade')
    _control_lines(ax, controls, task)
    ax.set_xscale('log')
    ax.set_xlabel('unique pretraining tokens')
    ax.set_ylabel(analysis.task_meta(group, task).main_metric)
    ax.set_title(task)
    ax.legend(fontsize='x-small')
  return _save(fig, out_dir, TASK_PLOT)


def domain_plot(out_dir: utils.AnyPath, arms: Sequence[Arm],
                controls: dict[str, records.Scores]) -> str:
  """Arms x tasks: score minus random init (or z-score per task when a task
  lacks the control); in-domain cells outlined."""
  tasks = analysis.task_names(arms)
  random_init = controls.get('random_init') or {}
  relative = all(_mean(random_init, t) is not None for t in tasks)
  values = np.full((len(arms), len(tasks)), np.nan)
  for i, arm in enumerate(arms):
    for j, task in enumerate(tasks):
      mean = _mean(arm.tasks, task)
      if mean is not None:
        values[i, j] = mean
  if relative:
    values -= np.array([random_init[t].mean for t in tasks])[None, :]
    label = 'score - random-init score'
  else:
    with np.errstate(invalid='ignore', divide='ignore'):
      spread = np.nanstd(values, axis=0)
      values = (values - np.nanmean(values, axis=0)) / np.where(spread > 0, spread, 1)
    label = 'score, z-scored per task'
  fig = mpl_figure.Figure(
      figsize=(HEATMAP_MARGIN[0] + HEATMAP_CELL[0] * len(tasks),
               HEATMAP_MARGIN[1] + HEATMAP_CELL[1] * len(arms)),
      dpi=DPI, layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  ax = fig.subplots()
  limit = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
  image = ax.imshow(values, cmap='RdBu', vmin=-limit or -1, vmax=limit or 1,
                    aspect='auto')
  fig.colorbar(image, ax=ax, label=label)
  ax.set_xticks(range(len(tasks)), tasks, rotation=LABEL_ROTATION, ha='right')
  ax.set_yticks(range(len(arms)), [a.arm for a in arms])
  for i, arm in enumerate(arms):
    domains = arm.recipe.get('domains') or ()
    for j, task in enumerate(tasks):
      if np.isfinite(values[i, j]):
        dark = abs(values[i, j]) > LIGHT_TEXT_ABOVE * limit
        ax.text(j, i, f'{values[i, j]:+.2f}', ha='center', va='center',
                fontsize='x-small', color='white' if dark else 'black')
      domain = analysis.task_meta(arms, task).domain
      if domain and list(domains) == [domain]:
        ax.add_patch(patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False,
                                       edgecolor='k', linewidth=2))
  ax.set_title('domain x task transfer (outlined: in-domain)')
  return _save(fig, out_dir, DOMAIN_PLOT)


def quality_plot(out_dir: utils.AnyPath, arms: Sequence[Arm],
                 controls: dict[str, records.Scores], result: dict) -> str:
  """Per task, bars of the unfiltered (gray) and quality arms, CI error bars."""
  quality = result['quality_sensitivity']
  references = {q['reference'] for q in quality['arms'].values()}
  shown = ([a for a in arms if a.arm in references]
           + [a for a in arms if a.arm in quality['arms']])
  tasks = analysis.task_names(shown)
  fig, axes = _figure(len(tasks))
  for ax, task in zip(axes, tasks):
    scored = [(a.arm, a.tasks[task]) for a in shown if _mean(a.tasks, task) is not None]
    positions = np.arange(len(scored))
    errors = np.array([_error(r) for _, r in scored]).reshape(-1, 2).T
    ax.bar(positions, [r.mean for _, r in scored], yerr=errors, capsize=3,
           color=['gray' if name in references else 'C0' for name, _ in scored])
    ax.set_xticks(positions, [name for name, _ in scored], rotation=LABEL_ROTATION,
                  ha='right', fontsize='x-small')
    _control_lines(ax, controls, task)
    ax.set_ylabel(analysis.task_meta(shown, task).main_metric)
    ax.set_title(task)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize='x-small')
  return _save(fig, out_dir, QUALITY_PLOT)


def learning_plot(out_dir: utils.AnyPath, arms: Sequence[Arm], result: dict) -> str:
  """Per arm: held-out loss at [MASK] and at other positions beside its count
  references, and the learning threshold (unigram - LEARN_MARGIN_NATS)."""
  checks = result['learning']['arms']
  names = [a.arm for a in arms if a.arm in checks]
  fig, axes = _figure(2)
  x = np.arange(len(names))
  for ax, kind in zip(axes, ('mask', 'other')):
    model = [checks[n]['model'][kind]['loss'] for n in names]
    ax.plot(x, [np.nan if v is None else v for v in model], 'ko', label='encoder')
    for key, label, style in REFERENCES:
      values = [checks[n]['baselines'][kind].get(key) for n in names]
      ax.plot(x, [np.nan if v is None else v for v in values], marker='_',
              markersize=14, linestyle='none', label=label)
    if kind == 'mask':
      threshold = [checks[n]['baselines']['mask'].get('unigram_loss', np.nan)
                   - result['learning']['margin_nats'] for n in names]
      ax.plot(x, threshold, 'r_', markersize=14,
              label=f'unigram - {result["learning"]["margin_nats"]:g} (learned below)')
    ax.set_xticks(x, names, rotation=LABEL_ROTATION, ha='right', fontsize='x-small')
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylabel('held-out loss (nats)')
    ax.set_title('at [MASK]' if kind == 'mask' else 'at random / kept positions')
    ax.legend(fontsize='x-small', loc='best')
  return _save(fig, out_dir, LEARNING_PLOT)


def write_plots(out_dir: utils.AnyPath, arms: Sequence[Arm],
                controls: dict[str, records.Scores], result: dict) -> dict[str, str]:
  """The plots that apply to `result['varies']`; {plot: file name}.

  `arms` and `controls` are the typed records; `result` is analysis.analyze's.
  """
  out_dir.mkdir(parents=True, exist_ok=True)
  written = {}
  has_tasks = bool(analysis.task_names(arms))
  if (result.get('learning') or {}).get('arms'):
    written['learning'] = learning_plot(out_dir, arms, result)
  if result.get('size_arms'):
    written['loss_vs_tokens'] = loss_plot(out_dir, arms, result)
    if analysis.task_names([a for a in arms if a.arm in result['size_arms']]):
      written['task_vs_tokens'] = task_plot(out_dir, arms, controls, result)
  if result['varies']['domain'] and has_tasks:
    written['domain_transfer'] = domain_plot(out_dir, arms, controls)
  quality = result.get('quality_sensitivity') or {}
  if quality.get('arms') and has_tasks:
    written['quality_bars'] = quality_plot(out_dir, arms, controls, result)
  return written
