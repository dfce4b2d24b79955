"""Synthetic arms in the shape `report.write_report` receives."""

import numpy as np

from lm_data.study import records as records_lib

HELDOUT_DOMAINS = ('legal', 'literature')
SEEDS = 3


def record(arm_: dict) -> records_lib.ArmRecord:
  """An arm dict as analysis reads it (report.write_report parses them so)."""
  return records_lib.ArmRecord.from_dict(arm_)


def records(arms_: list[dict]) -> list[records_lib.ArmRecord]:
  return [record(a) for a in arms_]


def task_result(scores, metric='accuracy', domain=None):
  scores = [float(s) for s in scores]
  mean = float(np.mean(scores))
  return {'main_metric': metric, 'domain': domain, 'scores': scores, 'mean': mean,
          'std': float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
          'ci95': [float(min(scores)), float(max(scores))] if len(scores) > 1 else None}


def recipe(domains=HELDOUT_DOMAINS, budget_fraction=1.0, quality=(), degrade=None):
  return {'domains': list(domains), 'weights': None, 'budget_fraction': budget_fraction,
          'token_budget': 0, 'seed': 0, 'quality': list(quality),
          'degrade': dict(degrade or {}), 'decontaminate': True}


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


def add_learning(arms, mask_loss, unigram, accuracy, freq_copy_accuracy):
  """Held-out metrics at [MASK]/other positions and count-model references
  in the format of study.run's arm records."""
  for arm, loss, acc in zip(arms, mask_loss, accuracy):
    all_ = arm['heldout']['all']
    all_.update(loss_mask=loss, accuracy_mask=acc - 0.02, predictions_mask=1600,
                loss_other=loss - 3.0, accuracy_other=acc + 0.1, predictions_other=400,
                accuracy=acc)
    refs = {'unigram_loss': unigram, 'freq_copy_loss': unigram, 'bigram_loss': 4.9,
            'freq_copy_accuracy': 0.04, 'majority_accuracy': 0.043,
            'bigram_accuracy': 0.2, 'predictions': 1600}
    other = dict(refs, freq_copy_loss=2.7, freq_copy_accuracy=0.5, bigram_loss=2.0)
    total = dict(refs, freq_copy_loss=6.288, freq_copy_accuracy=freq_copy_accuracy)
    arm['mlm_baselines'] = {'all': {'mask': refs, 'other': other, 'all': total}}
  return arms


def paired_items(arms, n=400):
  """Per-item test predictions for analysis.analyze: 'trec' (accuracy) where
  pretrained probes reach 0.5 + 0.1 * k and random ones 0.5, 'flat' (MCC)
  where every evaluation is the same 70%-correct predictor with noise."""
  from lm_data.study import analysis, paired
  rng = np.random.default_rng(5)
  gold = {'trec': rng.integers(0, 6, n), 'flat': rng.integers(0, 2, n)}

  def predictor(task, p, size=1):
    g = gold[task]
    k = 6 if task == 'trec' else 2
    return [np.where(rng.random(n) < p, g, (g + 1 + rng.integers(0, k - 1, n)) % k)
            for _ in range(size)]

  items = {t: {'items': paired.TaskItems('accuracy' if t == 'trec' else 'mcc', g),
               'evals': {}} for t, g in gold.items()}
  for k, arm in enumerate(arms):
    name = arm['arm']
    items['trec']['evals'][(name, 'probe')] = {
        'seeds': predictor('trec', 0.5 + 0.1 * k), 'deterministic': True}
    items['trec']['evals'][(name, 'finetune')] = {
        'seeds': predictor('trec', 0.5 + 0.1 * k, 3), 'deterministic': False}
    for ev, size in (('probe', 1), ('finetune', 3)):
      items['flat']['evals'][(name, ev)] = {'seeds': predictor('flat', 0.7, size),
                                            'deterministic': ev == 'probe'}
  controls = analysis.CONTROLS
  for t in gold:
    p = 0.5 if t == 'trec' else 0.7
    items[t]['evals'][(controls, 'random_init_probe')] = {
        'seeds': predictor(t, p, 3), 'deterministic': False}
    items[t]['evals'][(controls, 'random_init')] = {
        'seeds': predictor(t, p, 3), 'deterministic': False}
    items[t]['evals'][(controls, 'lexical')] = {
        'seeds': predictor(t, 0.75), 'deterministic': True}
  return items


# A domain study whose held-out metrics and count references come from
# per-position arrays through the study's own reductions (train.metrics
# .reduce_sums, study.baselines.summarise), so tests can check the analysis
# against numpy on the raw positions.
LOSS_DOMAINS = ('legal', 'literature', 'religious')
# [MASK] predictions per domain (unequal, so pooling weights matter); other
# positions get a quarter as many.
LOSS_PREDICTIONS = {'legal': 300, 'literature': 500, 'religious': 200}


def _positions(rng, domain, loss_mask, unigram_mask):
  n = LOSS_PREDICTIONS[domain]
  m = n // 4
  is_mask = np.r_[np.ones(n, bool), np.zeros(m, bool)]
  model = {'loss': np.r_[rng.normal(loss_mask, 2.0, n), rng.normal(loss_mask - 3, 1.5, m)],
           'hit': np.r_[rng.random(n) < 0.12, rng.random(m) < 0.5].astype(float)}
  refs = {'unigram_loss': np.r_[rng.normal(unigram_mask, 2.0, n),
                                rng.normal(unigram_mask, 2.0, m)],
          'majority_hit': (rng.random(n + m) < 0.04).astype(float),
          'freq_copy_hit': np.r_[rng.random(n) < 0.04, rng.random(m) < 0.3].astype(float),
          'bigram_loss': rng.normal(4.0, 1.0, n + m),
          'bigram_hit': (rng.random(n + m) < 0.2).astype(float),
          'is_mask': is_mask}
  refs['freq_copy_loss'] = np.where(is_mask, refs['unigram_loss'], 2.5)
  return model, refs


def _sums(model, is_mask):
  out = {}
  for suffix, sel in (('', np.ones_like(is_mask)), ('_mask', is_mask)):
    loss = model['loss'][sel]
    out.update({f'loss_sum{suffix}': loss.sum(), f'loss_sq_sum{suffix}': (loss**2).sum(),
                f'correct_sum{suffix}': model['hit'][sel].sum(),
                f'weight_sum{suffix}': float(sel.sum())})
  return out


def loss_arm(name, domains, loss_mask, unigram_mask, tasks=None, seed=0):
  """An arm trained on `domains` whose [MASK] losses on each held-out domain
  are N(loss_mask[d], 2) and its unigram's N(unigram_mask[d], 2).

  Returns (the arm dict, {domain: (model arrays, reference arrays)}).
  """
  from lm_data.study import baselines
  from lm_data.train import metrics
  rng = np.random.default_rng(seed)
  raw = {d: _positions(rng, d, loss_mask[d], unigram_mask[d]) for d in LOSS_DOMAINS}
  sums = {d: _sums(model, refs['is_mask']) for d, (model, refs) in raw.items()}
  heldout = {d: metrics.reduce_sums(s) for d, s in sums.items()}
  heldout['all'] = metrics.reduce_sums({k: sum(s[k] for s in sums.values())
                                        for k in sums['legal']})
  mlm_baselines = {d: baselines.summarise(refs) for d, (_, refs) in raw.items()}
  mlm_baselines['all'] = baselines.summarise(
      {k: np.concatenate([refs[k] for _, refs in raw.values()])
       for k in raw['legal'][1]})
  arm_ = {'arm': name, 'recipe': recipe(domains=domains), 'unique_tokens': 744_000,
          'tokens_seen': 2_460_000, 'epochs': 3.3, 'steps': 1200, 'heldout': heldout,
          'mlm_baselines': mlm_baselines, 'tasks': tasks or {}}
  return arm_, raw
