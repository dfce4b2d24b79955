"""Synthetic arms in the shape `report.write_report` receives."""

import numpy as np

HELDOUT_DOMAINS = ('legal', 'literature')
SEEDS = 3


def task_result(scores, metric='accuracy', domain=None):
  scores = [float(s) for s in scores]
  mean = float(np.mean(scores))
  return {'main_metric': metric, 'domain': domain, 'scores': scores, 'mean': mean,
          'std': float(np.std(scores, ddof=1)),
          'ci95': [float(min(scores)), float(max(scores))]}


def recipe(domains=HELDOUT_DOMAINS, budget_fraction=1.0, quality=(), degrade=None):
  return {'domains': list(domains), 'weights': None, 'budget_fraction': budget_fraction,
          'token_budget': 0, 'seed': 0, 'quality': list(quality),
          'degrade': dict(degrade or {}), 'extra_sources': [], 'decontaminate': True}


def arm(name, recipe_, unique_tokens, loss, tasks, tokens_seen=4_000_000):
  heldout = {d: {'loss': loss + 0.1 * k, 'accuracy': 0.3, 'predictions': 1000}
             for k, d in enumerate(HELDOUT_DOMAINS)}
  heldout['all'] = {'loss': loss, 'accuracy': 0.3, 'predictions': 2000}
  return {'arm': name, 'recipe': recipe_, 'unique_tokens': unique_tokens,
          'tokens_seen': tokens_seen, 'epochs': tokens_seen / unique_tokens,
          'steps': 100, 'train_flops': 1.5e12, 'data_stats': {'documents': 10},
          'heldout': heldout, 'tasks': tasks}


def size_arms():
  """4 nested arms: loss follows 2 + 50 D^-0.3; 'trec' gains 0.05 per decade,
  'flat' only noise."""
  rng = np.random.default_rng(0)
  arms = []
  for k, fraction in enumerate((1 / 64, 1 / 16, 1 / 4, 1.0)):
    tokens = int(4e6 * fraction)
    decade = np.log10(tokens)
    arms.append(arm(
        f'size_{k}', recipe(budget_fraction=fraction), tokens,
        2 + 50 * tokens**-0.3 + rng.normal(0, 0.01),
        {'trec': task_result(0.2 + 0.05 * decade + rng.normal(0, 0.005, SEEDS)),
         'flat': task_result(0.5 + rng.normal(0, 0.02, SEEDS), metric='mcc')}))
  return arms


def domain_arms():
  """3 single-domain arms; 'licences' is aligned with legal and gains 0.2 there."""
  rng = np.random.default_rng(1)
  arms = []
  for domain in ('legal', 'literature', 'religious'):
    gain = 0.2 if domain == 'legal' else 0.0
    arms.append(arm(domain, recipe(domains=[domain]), 1_000_000, 4.0 + rng.normal(0, 0.1),
                    {'licences': task_result(0.5 + gain + rng.normal(0, 0.01, SEEDS),
                                             metric='macro_f1', domain='legal'),
                     'trec': task_result(0.6 + rng.normal(0, 0.01, SEEDS))}))
  return arms


def controls():
  return {'random_init': {'trec': task_result([0.3, 0.31, 0.29]),
                          'licences': task_result([0.2, 0.22, 0.21], metric='macro_f1')},
          'baseline': {'trec': {'main_metric': 'accuracy', 'mean': 0.45}}}
