"""write_report on synthetic size, domain and quality ablations."""

import json
import math

import ml_collections
import numpy as np
import pytest

from lm_data.study import report
from tests.study import fixtures
from tests.study import test_analysis
from lm_data.study import analysis

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
  # t interval over 3 seeds: 0.3 ± 4.303 * 0.01 / sqrt(3) = [0.275, 0.325].
  assert '| *random init (fine-tuned)* | – | 0.300 ± 0.010 [0.275, 0.325] |' in md
  assert '| *majority / mean* | – | 0.450 |' in md
  assert 'Power law L(D) = E + B·D^-β: not reported — too few arms to fit' in md
  assert 'Held-out loss falls significantly with data: -' in md
  assert '- trec improves with data: slope +0.05' in md
  assert '- flat: no significant effect (slope' in md
  assert '![held-out loss vs unique tokens](loss_vs_tokens.png)' in md
  assert '### Tasks ranked by data need' in md
  assert '**MiniBERTas (Zhang et al., 2021)**' in md


def test_early_stopped_arms_say_which_step_they_kept(tmp_path):
  arms = fixtures.size_arms()
  arms[0]['data_stats']['early_stopping'] = {
      'patience': 2, 'metric': 'held-out MLM loss at [MASK] on every 4th held-out batch of each domain',
      'history': [[500, 6.1], [1000, 6.0], [1500, 6.05], [2000, 6.2]], 'best_step': 1000,
      'stopped_at': 2000}
  report.write_report(tmp_path, {'name': 'size_ablation'}, arms, fixtures.controls())
  md = (tmp_path / 'report' / 'report.md').read_text()
  assert ('Early stopping (patience 2, scored at every checkpoint on the held-out MLM loss '
          'at [MASK] on every 4th held-out batch of each domain): size_0 kept step 1000 of 2000 '
          'trained.') in md
  assert 'size_1 kept' not in md
  arms[1]['data_stats']['early_stopping'] = {
      **arms[0]['data_stats']['early_stopping'], 'cooldown_from': 1000,
      'cooldown_end': 1600, 'cooldown_history': [[1500, 5.7], [1600, 5.6]], 'best_step': 1600,
      'steps_trained': 2600}
  report.write_report(tmp_path, {'name': 'size_ablation'}, arms, fixtures.controls())
  md = (tmp_path / 'report' / 'report.md').read_text()
  assert ('size_0 kept step 1000 of 2000 trained; size_1 stopped at step 2000, trained '
          'the decay from step 1000 to 1600 and kept step 1600 (2600 steps trained).') in md
  report.write_report(tmp_path, {'name': 'size_ablation'}, fixtures.size_arms(),
                      fixtures.controls())
  assert 'Early stopping' not in (tmp_path / 'report' / 'report.md').read_text()


def test_chosen_fine_tuning_rates_are_shown_only_for_a_grid(tmp_path):
  arms, controls = fixtures.size_arms(), fixtures.controls()
  report.write_report(tmp_path, {'name': 'size_ablation'}, arms, controls)
  assert 'rate chosen on dev' not in (tmp_path / 'report' / 'report.md').read_text()
  arms[3]['tasks']['trec']['chosen_learning_rates'] = [0.003]
  controls['random_init']['trec']['chosen_learning_rates'] = [0.001, 0.003, 0.001]
  results = report.write_report(tmp_path, {'name': 'size_ablation'}, arms, controls)
  md = (tmp_path / 'report' / 'report.md').read_text()
  assert '### Fine-tuning rate chosen on dev (per seed; finetune.learning_rates)' in md
  assert ('| encoder | flat | trec |\n|---|---|---|\n| size_0 | – | – |\n'
          '| size_1 | – | – |\n| size_2 | – | – |\n| size_3 | – | 0.003 |\n'
          '| *random init (fine-tuned)* | – | 0.001, 0.003, 0.001 |\n') in md
  assert results['arms'][3]['tasks']['trec']['chosen_learning_rates'] == [0.003]


def test_domain_ablation_report(tmp_path):
  results = report.write_report(tmp_path, {'name': 'domain_ablation'},
                                fixtures.domain_arms(), fixtures.controls())
  md = _check_outputs(tmp_path, results, {'domain_transfer'})
  assert 'licences gains from in-domain pretraining: gain of in-domain arm legal' in md
  assert '![domain x task transfer](domain_transfer.png)' in md
  assert '→ **agrees**' in md
  assert 'Held-out MLM loss vs data size' not in md


def test_quality_ablation_report(tmp_path):
  arms = test_analysis.quality_arms()
  for a, loss in zip(arms, (5.2, 5.21, 7.05)):
    a['heldout']['all'].update(loss_mask=loss, loss_sd_mask=2.7, predictions_mask=30_000)
  results = report.write_report(tmp_path, {'name': 'quality_ablation'}, arms, {})
  md = _check_outputs(tmp_path, results, {'quality_bars'})
  assert '| heuristic | heuristic | unfiltered | +0.100 [' in md
  assert '- trec on noise: no significant effect (difference from unfiltered' in md
  assert 'trec on heuristic is better than unfiltered' in md
  assert 'no interval over seeds' not in md
  # Held-out loss on the same positions (Welch: SE = 2.7 * sqrt(2 / 30000)).
  assert '- noise − unfiltered: +1.850 [+1.807, +1.893]\n' in md
  assert '- heuristic − unfiltered: +0.010 [-0.033, +0.053] (n.s.)\n' in md
  one_seed = test_analysis.quality_arms()
  for arm in one_seed:   # one fine-tuning seed per arm, as the CPU configs run
    arm['tasks']['trec'] = fixtures.task_result(arm['tasks']['trec']['scores'][:1])
  md = _check_outputs(tmp_path, report.write_report(
      tmp_path, {'name': 'quality_ablation'}, one_seed, {}), {'quality_bars'})
  assert md.count('no interval over seeds') == 1 and 'no CI' not in md
  assert '- 2 of these differences have no interval over seeds' in md


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
  powered = dict(null, mde=0.031)
  assert report.claim('trec', powered, 'slope', 'improves', 'worsens', ' acc') == (
      'trec: no significant effect (slope +0.010 acc [-0.020, +0.040]; could detect '
      '±0.031 acc (MDE))')
  strong = {'estimate': 0.05, 'ci95': [0.02, 0.08], 'significant': True, 'improves': True}
  assert report.claim('trec', strong, 'slope', 'improves with data', 'worsens',
                      ' accuracy/decade') == (
      'trec improves with data: slope +0.050 accuracy/decade [+0.020, +0.080]')
  worse = dict(strong, estimate=-0.05, ci95=[-0.08, -0.02], improves=False)
  assert report.claim('trec', worse, 'slope', 'improves', 'worsens').startswith(
      'trec worsens: slope -0.050')


def test_interval_precision_is_bounded():
  # Two encoders that predict one class everywhere: a zero-width interval up
  # to float noise prints with DIGITS digits, not 18.
  assert report._rounded(0.0, [-3.8e-17, 3.8e-17], signed=True) == (
      '+0.000 [-0.000, +0.000]')
  assert report._rounded(0.5, [0.49999, 0.50001]) == '0.5000 [0.5000, 0.5000]'
  assert report._rounded(0.01, [-0.02, 0.04], signed=True) == '+0.010 [-0.020, +0.040]'


def test_bad_arms_fail_clearly(tmp_path):
  arms = fixtures.size_arms()
  del arms[1]['heldout']
  with pytest.raises(ValueError, match=r"arm 1 \(size_1\) lacks \['heldout'\]"):
    report.write_report(tmp_path, {'name': 'x'}, arms, {})
  arms = fixtures.size_arms()
  arms[2]['arm'] = 'size_0'
  with pytest.raises(ValueError, match="'size_0' appears twice"):
    report.write_report(tmp_path, {'name': 'x'}, arms, {})


def _write_eval_files(workdir, arms, controls, items):
  """Result files with per-item predictions, as finetune.run writes them, and
  the `files` entries study.run puts in the records."""
  record_key = {'finetune': 'tasks', 'probe': 'probes'}
  init_name = {'finetune': 'seed', 'probe': 'probe', 'random_init': 'random_seed',
               'random_init_probe': 'random_probe_seed', 'lexical': 'lexical'}
  for task, entry in items.items():
    task_items = entry['items']
    for arm in arms:
      task_dir = workdir / 'arms' / arm['arm'] / 'eval' / task
      task_dir.mkdir(parents=True, exist_ok=True)
      (task_dir / 'items.json').write_text(json.dumps({
          'main_metric': task_items.metric,
          'splits': {'test': {'gold': task_items.gold.tolist(), 'groups': None}}}))
    for (owner, ev), v in entry['evals'].items():
      name = arms[0]['arm'] if owner == analysis.CONTROLS else owner
      task_dir = workdir / 'arms' / name / 'eval' / task
      files = []
      for k, preds in enumerate(v['seeds']):
        fname = (f'{init_name[ev]}.json' if v['deterministic']
                 else f'{init_name[ev]}_{k}.json')
        (task_dir / fname).write_text(json.dumps({'predictions': {'test': preds.tolist()}}))
        files.append(fname)
      if owner == analysis.CONTROLS:
        target = controls.setdefault(ev, {})
        target.setdefault(task, {'main_metric': task_items.metric, 'mean': 0.5,
                                 'scores': [0.5]})['files'] = files
      else:
        arm = next(a for a in arms if a['arm'] == owner)
        arm.setdefault(record_key[ev], {}).setdefault(
            task, {'main_metric': task_items.metric, 'mean': 0.5, 'scores': [0.5]})['files'] = files


def vs_0_count(analysis_):
  return analysis_['pretrained_vs_random']['size_0']['beats_random_init']['count']


def test_report_learning_probes_pretrained_vs_random_and_pairs(tmp_path):
  arms = fixtures.add_learning(fixtures.size_arms(), [6.8, 6.1, 5.9, 5.7], 6.875,
                               [0.10, 0.16, 0.17, 0.18], 0.132)
  controls = fixtures.controls()
  _write_eval_files(tmp_path, arms, controls, fixtures.paired_items(arms))
  results = report.write_report(tmp_path, {'name': 'size_ablation'}, arms, controls)
  md = _check_outputs(tmp_path, results, {'loss_vs_tokens', 'task_vs_tokens', 'learning'})
  assert '## Did the encoder learn?' in md
  assert '| size_0 | pooled | 6.800 | 6.875 | +0.075 |' in md and '**no** †' in md
  assert '- size_0 has not learned clearly beyond the baselines' in md
  assert '| size_0 † | legal, literature |' in md
  analysis_ = results['analysis']
  assert analysis_['held_back_arms'] == ['size_0']
  vs = analysis_['pretrained_vs_random']['size_3']
  assert vs['beats_random_init']['count'] == 1 and vs['beats_random_init']['of'] == 2
  assert ('**The pretrained encoder beats the random-init control on 1 of 2 tasks**'
          in md)
  assert '### size_0 † (not learned: no verdict)' in md
  summary = analysis_['beats_random_init']
  assert (summary['reference_arm'], summary['count'], summary['of']) == ('size_3', 1, 2)
  assert summary['by_arm']['size_0'] == {'count': vs_0_count(analysis_), 'of': 2}
  assert 'Reference arm size_3: pretrained beats random init on **1 of 2** tasks' in md
  assert '## Arms compared on the same test items' in md
  assert 'MDE' in md and '(n.s.; MDE ' in md
  assert 'reference arm size_3' in md
  # The per-item predictions stay out of results.json.
  text = (tmp_path / 'report' / 'results.json').read_text()
  assert '"gold"' not in text and len(text) < 400_000
  pairs = analysis_['arm_pairs']['pairs']
  assert pairs['size_0 - size_3']['probe']['trec']['p_holm'] is not None
  assert list(analysis_['pretrained_vs_random']) == ['size_0', 'size_1', 'size_2', 'size_3']


def test_report_says_which_fine_tuning_wins_are_over_an_untrained_control(tmp_path):
  arms = fixtures.add_learning(fixtures.size_arms(), [6.8, 6.1, 5.9, 5.7], 6.875,
                               [0.10, 0.16, 0.17, 0.18], 0.132)
  controls = fixtures.controls()
  items = fixtures.paired_items(arms)
  gold = items['trec']['items'].gold
  items['trec']['evals'][(analysis.CONTROLS, 'random_init')]['seeds'] = [
      np.full_like(gold, 0) for _ in range(3)]
  _write_eval_files(tmp_path, arms, controls, items)
  md = (tmp_path / 'report' / 'report.md')
  report.write_report(tmp_path, {'name': 'size_ablation'}, arms, controls)
  assert ('Not counted: fine-tuning on trec, where the fine-tuned random-init control '
          'predicted one label for every test item on every seed') in md.read_text()
