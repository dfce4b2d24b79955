"""The domain ablation's learning gate, held-out-loss verdict and wording (issue 10).

Held-out metrics and count references are reduced from per-position arrays by
the study's own code (fixtures.loss_arm); the expectations are numpy on those
arrays.
"""

import numpy as np
import pytest

from lm_data.study import analysis
from lm_data.study import report
from tests.study import fixtures

ALL = fixtures.LOSS_DOMAINS
UNIGRAM = {'legal': 6.6, 'literature': 7.0, 'religious': 7.0}


def _licences(mean, seed):
  rng = np.random.default_rng(seed)
  return {'licences': fixtures.task_result(mean + rng.normal(0, 0.01, fixtures.SEEDS),
                                           metric='macro_f1', domain='legal')}


def study():
  """5 arms: in-domain text wins on legal and literature, loses on religious;
  only_religious is 0.2 nats below its unigram on its own rows (held back).
  Returns ({arm: arm dict}, {arm: raw positions})."""
  specs = {
      'mix_balanced': (ALL, {'legal': 6.2, 'literature': 6.5, 'religious': 6.0},
                       {'legal': 6.9, 'literature': 7.0, 'religious': 6.6}, 0.6),
      'only_legal': (['legal'], {'legal': 5.4, 'literature': 7.4, 'religious': 7.3},
                     UNIGRAM, 0.7),
      'only_literature': (['literature'],
                          {'legal': 7.5, 'literature': 6.0, 'religious': 7.5}, UNIGRAM, 0.5),
      'only_religious': (['religious'],
                         {'legal': 7.5, 'literature': 7.5, 'religious': 6.8}, UNIGRAM, 0.5),
      'mix_without_legal': (['literature', 'religious'],
                            {'legal': 7.4, 'literature': 6.5, 'religious': 6.0},
                            {'legal': 7.0, 'literature': 7.0, 'religious': 6.6}, 0.6),
  }
  arms, raw = {}, {}
  for seed, (name, (domains, loss, unigram, f1)) in enumerate(specs.items()):
    arms[name], raw[name] = fixtures.loss_arm(name, domains, loss, unigram,
                                              _licences(f1, seed), seed=seed)
  return arms, raw


def _numpy_margin(raw_arm, domains):
  """Unigram minus model loss at [MASK], pooled over `domains`' positions."""
  model = np.concatenate([raw_arm[d][0]['loss'][raw_arm[d][1]['is_mask']] for d in domains])
  unigram = np.concatenate([raw_arm[d][1]['unigram_loss'][raw_arm[d][1]['is_mask']]
                            for d in domains])
  return unigram.mean() - model.mean()


def _mask_losses(raw_arm, domain):
  model, refs = raw_arm[domain]
  return model['loss'][refs['is_mask']]


def test_gate_reads_own_domain_rows_for_a_subset_arm_and_pooled_rows_otherwise():
  arms, raw = study()
  legal = analysis.learning_check(fixtures.record(arms['only_legal']))
  assert legal['rows'] == 'own domains: legal' and legal['row_domains'] == ['legal']
  assert legal['margin_below_unigram_mask'] == pytest.approx(
      _numpy_margin(raw['only_legal'], ['legal']))
  assert legal['learned']
  # On the pooled rows the same arm would be held back: the change matters here.
  assert _numpy_margin(raw['only_legal'], ALL) < analysis.LEARN_MARGIN_NATS
  # Accuracy and its reference are read on the same (own) rows.
  model, refs = raw['only_legal']['legal']
  assert legal['model']['all']['accuracy'] == pytest.approx(model['hit'].mean())
  assert legal['baselines']['all']['freq_copy_accuracy'] == pytest.approx(
      refs['freq_copy_hit'].mean())

  # Two of three domains: pooled over them, weighted by their predictions.
  without = analysis.learning_check(fixtures.record(arms['mix_without_legal']))
  assert without['rows'] == 'own domains: literature, religious'
  assert without['margin_below_unigram_mask'] == pytest.approx(
      _numpy_margin(raw['mix_without_legal'], ['literature', 'religious']))
  assert without['learned']
  assert _numpy_margin(raw['mix_without_legal'], ALL) < analysis.LEARN_MARGIN_NATS

  # Every held-out domain: the pooled rows, as before.
  mix = analysis.learning_check(fixtures.record(arms['mix_balanced']))
  assert mix['rows'] == 'pooled' and mix['row_domains'] == list(ALL)
  assert mix['margin_below_unigram_mask'] == pytest.approx(
      _numpy_margin(raw['mix_balanced'], ALL))

  religious = analysis.learning_check(fixtures.record(arms['only_religious']))
  assert not religious['learned']
  assert religious['margin_below_unigram_mask'] == pytest.approx(
      _numpy_margin(raw['only_religious'], ['religious']))
  assert 'the unigram on the rows of its own domains (religious)' in religious['reasons'][0]

  # Without per-domain count references, or trained on a domain with no
  # held-out rows, the arm falls back to the pooled rows.
  no_refs = dict(arms['only_legal'], mlm_baselines={
      'all': arms['only_legal']['mlm_baselines']['all']})
  assert analysis.learning_check(fixtures.record(no_refs))['rows'] == 'pooled'
  unseen = dict(arms['only_legal'], recipe=fixtures.recipe(domains=['conversational']))
  assert analysis.learning_check(fixtures.record(unseen))['rows'] == 'pooled'


def test_pooling_per_domain_records_reproduces_the_pooled_set():
  arms, _ = study()
  arm = fixtures.record(arms['mix_balanced'])
  pooled, stored = arm.heldout_over(list(ALL)), arm.pooled()
  for key in ('loss', 'accuracy', 'loss_mask', 'accuracy_mask', 'loss_other',
              'predictions_mask', 'loss_sd', 'loss_sd_mask', 'loss_sd_other'):
    assert getattr(pooled, key) == pytest.approx(getattr(stored, key)), key
  for kind in ('mask', 'other', 'all'):
    assert arm.references_over(list(ALL), kind).to_dict() == pytest.approx(
        arm.references(kind).to_dict())


def test_heldout_loss_verdict_counts_domains():
  arms, raw = study()
  result = analysis.analyze(fixtures.records(list(arms.values())))
  loss = result['domain_heldout_loss']
  assert loss['status'] == 'computed' and loss['reference'] == 'mix_balanced'
  assert loss['best_arm']['legal'] == 'only_legal'
  assert loss['best_arm']['literature'] == 'only_literature'
  in_domain = loss['in_domain']
  assert list(in_domain) == ['legal', 'literature', 'religious']
  for d, improves in (('legal', True), ('literature', True), ('religious', False)):
    a, b = _mask_losses(raw[f'only_{d}'], d), _mask_losses(raw['mix_balanced'], d)
    e = in_domain[d]
    assert e['arm'] == f'only_{d}' and e['reference'] == 'mix_balanced'
    assert e['estimate'] == pytest.approx(a.mean() - b.mean())
    assert e['se'] == pytest.approx(np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size),
                                     rel=1e-6)
    assert e['significant'] and e['improves'] is improves
  left = loss['leave_out']['mix_without_legal']
  assert left['left_out'] == 'legal' and set(left['on_others']) == {'literature', 'religious'}
  cost = (_mask_losses(raw['mix_without_legal'], 'legal').mean()
          - _mask_losses(raw['mix_balanced'], 'legal').mean())
  assert left['on_left_out']['estimate'] == pytest.approx(cost) and cost > 1
  assert left['on_left_out']['significant']

  item = [x for x in result['literature'] if x['key'] == 'dont_stop_loss']
  assert len(item) == 1
  item = item[0]
  assert (item['lower'], item['of'], item['verdict']) == (2, 3, 'mixed')
  assert item['evidence_from'] == 'held-out loss' and not item['point_estimates']
  # The held-back arm (only_religious) still counts here: no gate on loss.
  assert [x['domain'] for x in item['evidence']] == ['legal', 'literature', 'religious']
  assert result['held_back_arms'] == ['only_religious']

  # Records from before the per-position SD was stored: the sign stands in.
  for a in arms.values():
    for h in a['heldout'].values():
      for k in ('loss_sd', 'loss_sd_mask', 'loss_sd_other'):
        h.pop(k)
  old = analysis.analyze(fixtures.records(list(arms.values())))
  item = [x for x in old['literature'] if x['key'] == 'dont_stop_loss'][0]
  assert item['point_estimates'] and (item['lower'], item['of']) == (2, 3)
  assert item['verdict'] == 'mixed'
  assert old['domain_heldout_loss']['in_domain']['legal']['ci95'] is None
  assert old['domain_heldout_loss']['se'] is None


def test_report_names_held_back_arms_and_renders_the_domain_table(tmp_path):
  arms, _ = study()
  results = report.write_report(tmp_path, {'name': 'domain_ablation'},
                                list(arms.values()), fixtures.controls())
  md = (tmp_path / 'report' / 'report.md').read_text()
  analysis_ = results['analysis']
  # The downstream Don't Stop contrast leaves only_religious out.
  licences = analysis_['domain_sensitivity']['licences']['in_domain']
  assert licences['out_of_domain_arms'] == ['only_literature']

  literature = md[md.index('## Comparison with the literature'):md.index('## Methods')]
  assert 'None of the compared findings applies' not in literature
  assert 'Held back (1 of 5 arms;' in literature
  assert 'only_religious: loss at [MASK] only 0.' in literature
  assert 'the rows of its own domains (religious) (needs 0.5 below)' in literature
  assert ('The downstream verdicts therefore exclude them; the verdict from '
          'held-out loss is drawn from every arm.') in literature
  assert "is significantly below mix_balanced's for 2 of 3 domains, significantly " \
         'above for 1' in literature
  assert '→ **mixed**' in literature

  assert '### Held-out loss at [MASK] per domain' in md
  legal = analysis_['domain_heldout_loss']['table']['only_legal']['legal']
  assert f'| only_legal | **{legal:.3f}** |' in md
  assert '- in-domain, legal: only_legal − mix_balanced = -0.' in md
  assert '- without legal: mix_without_legal − mix_balanced on legal = +1.' in md
  assert '| only_legal | own domains: legal |' in md

  # No downstream finding left: the wording says so instead of "none applies".
  no_tasks = dict(analysis_, literature=[
      x for x in analysis_['literature'] if x['evidence_from'] == 'held-out loss'])
  text = '\n'.join(report._literature_section(no_tasks))
  assert 'and without them no downstream finding can be compared' in text
  assert 'only_religious' in text
