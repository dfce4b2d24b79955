"""write_report on synthetic size, domain and quality ablations."""

import json
import math

import ml_collections
import pytest

from lm_data.study import report
from tests.study import fixtures
from tests.study import test_analysis

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _no_nan(text: str) -> dict:
  def refuse(constant):
    raise AssertionError(f'{constant} in results.json')
  return json.loads(text, parse_constant=refuse)


def _check_outputs(tmp_path, results, plots):
  out = tmp_path / 'report'
  assert _no_nan((out / 'results.json').read_text()) == results
  assert set(results['plots']) == set(plots)
  for name in results['plots'].values():
    assert (out / name).read_bytes()[:len(PNG_MAGIC)] == PNG_MAGIC
  return (out / 'report.md').read_text()


def test_size_ablation_report(tmp_path):
  results = report.write_report(tmp_path, {'name': 'size_ablation'},
                                fixtures.size_arms(), fixtures.controls())
  md = _check_outputs(tmp_path, results, {'loss_vs_tokens', 'task_vs_tokens'})
  assert results['name'] == 'size_ablation'
  assert [a['arm'] for a in results['arms']] == ['size_0', 'size_1', 'size_2', 'size_3']
  derived = results['arms'][3]['derived']
  assert derived['log10_unique_tokens'] == pytest.approx(math.log10(4e6))
  assert derived['gain_over_random_init']['trec'] == pytest.approx(
      results['arms'][3]['tasks']['trec']['mean'] - 0.3)
  assert '| arm | domains | unique tokens |' in md
  assert '| size_3 | legal, literature | 4M | 4M | 1.000 |' in md
  assert '| *random init* | 0.300 ± 0.010 [0.290, 0.310] | – |' in md
  assert '| *baseline* | 0.450 | – |' in md
  assert 'Fit L(D) = E + B·D^-β over 4 arms' in md
  assert '- trec improves with data: slope +0.050 accuracy/decade [' in md
  assert '- flat: no significant effect (slope' in md
  assert '![held-out loss vs unique tokens](loss_vs_tokens.png)' in md
  assert '### Tasks ranked by data need' in md
  assert '**MiniBERTas (Zhang et al., 2021)**' in md


def test_domain_ablation_report(tmp_path):
  results = report.write_report(tmp_path, {'name': 'domain_ablation'},
                                fixtures.domain_arms(), fixtures.controls())
  md = _check_outputs(tmp_path, results, {'domain_transfer'})
  assert 'licences gains from in-domain pretraining: gain of in-domain arm legal' in md
  assert '![domain x task transfer](domain_transfer.png)' in md
  assert '→ **agrees**' in md
  assert 'Held-out MLM loss vs data size' not in md


def test_quality_ablation_report(tmp_path):
  results = report.write_report(tmp_path, {'name': 'quality_ablation'},
                                test_analysis.quality_arms(), {})
  md = _check_outputs(tmp_path, results, {'quality_bars'})
  assert '| heuristic | heuristic | unfiltered | +0.100 [' in md
  assert '- trec on noise: no significant effect (difference from unfiltered' in md
  assert 'trec on heuristic is better than unfiltered' in md


def test_mixed_and_degenerate_arms(tmp_path):
  """Two sizes, a quality arm and a single-domain arm, NaN losses, a task
  without seeds, a failed evaluation: no crash, no NaN, too few arms to fit."""
  arms = fixtures.size_arms()[:2] + test_analysis.quality_arms()[1:2]
  arms += fixtures.domain_arms()[:1]
  arms[0]['heldout']['legal']['loss'] = float('nan')
  arms[1]['tasks']['trec'] = {'main_metric': 'accuracy', 'domain': None,
                              'scores': [], 'mean': 0.5, 'std': None, 'ci95': None}
  arms[2]['tasks']['flat'] = {'main_metric': 'mcc', 'domain': None, 'scores': [],
                              'mean': None, 'std': None, 'ci95': None}   # eval failed
  arms[3]['heldout']['all']['loss'] = float('nan')
  results = report.write_report(tmp_path, ml_collections.ConfigDict({'name': 'mixed'}),
                                arms, {})
  md = _check_outputs(tmp_path, results,
                      {'loss_vs_tokens', 'task_vs_tokens', 'domain_transfer',
                       'quality_bars'})
  assert results['name'] == 'mixed'
  assert results['arms'][0]['heldout']['legal']['loss'] is None
  assert 'too few arms to fit' in md
  heuristic = results['analysis']['quality_sensitivity']['arms']['heuristic']
  assert list(heuristic['tasks']) == ['trec']


def test_claim_wording():
  null = {'estimate': 0.01, 'ci95': [-0.02, 0.04], 'significant': False, 'improves': None}
  assert report.claim('trec', null, 'slope', 'improves with data', 'worsens') == (
      'trec: no significant effect (slope +0.010 [-0.020, +0.040])')
  strong = {'estimate': 0.05, 'ci95': [0.02, 0.08], 'significant': True, 'improves': True}
  assert report.claim('trec', strong, 'slope', 'improves with data', 'worsens',
                      ' accuracy/decade') == (
      'trec improves with data: slope +0.050 accuracy/decade [+0.020, +0.080]')
  worse = dict(strong, estimate=-0.05, ci95=[-0.08, -0.02], improves=False)
  assert report.claim('trec', worse, 'slope', 'improves', 'worsens').startswith(
      'trec worsens: slope -0.050')


def test_bad_arms_fail_clearly(tmp_path):
  arms = fixtures.size_arms()
  del arms[1]['heldout']
  with pytest.raises(ValueError, match=r"arm 1 \(size_1\) lacks \['heldout'\]"):
    report.write_report(tmp_path, {'name': 'x'}, arms, {})
  arms = fixtures.size_arms()
  arms[2]['arm'] = 'size_0'
  with pytest.raises(ValueError, match="'size_0' appears twice"):
    report.write_report(tmp_path, {'name': 'x'}, arms, {})
