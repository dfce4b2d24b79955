"""Tests for study.records: the typed per-arm record and its JSON schema."""

import json
import pathlib

import pytest

from lm_data.study import records
from lm_data.study import report
from lm_data.study import run

# An arm_result.json written by the size-ablation smoke study (size_1-4).
REAL_RECORD = pathlib.Path(__file__).parent / 'data' / 'arm_result.json'


def test_a_real_record_round_trips_to_the_same_json():
  written = json.loads(REAL_RECORD.read_text())
  record = records.ArmRecord.from_dict(written)
  assert record.to_dict() == written
  assert json.dumps(record.to_dict(), sort_keys=True) == json.dumps(written, sort_keys=True)
  # Typed access reaches what the report reads by key.
  trec = record.tasks['trec']
  assert trec.main_metric == written['tasks']['trec']['main_metric'] == 'accuracy'
  assert trec.scores == written['tasks']['trec']['scores']
  assert record.probes['trec'].chosen_layers == written['probes']['trec']['chosen_layers']
  assert set(record.controls) == set(records.CONTROL_NAMES) == set(written['controls'])
  assert set(report.REQUIRED_ARM_KEYS) <= set(record.to_dict())


def test_optional_score_fields_are_written_only_when_set():
  score = records.TaskScore(main_metric='mcc', domain=None, kind='classification',
                            scores=[0.1, 0.3], mean=0.2, std=0.1414, ci95=None)
  assert set(score.to_dict()) == {'main_metric', 'domain', 'kind', 'scores', 'mean',
                                  'std', 'ci95'}
  with_files = records.TaskScore(**{**score.to_dict(), 'files': ['seed_0.json']})
  assert with_files.to_dict()['files'] == ['seed_0.json']


def test_task_scores_reads_a_finetuning_summary():
  summary = {'tasks': {'trec': {
      'kind': 'classification', 'domain': None, 'main_metric': 'accuracy',
      'inits': {'pretrained': {'test': {'accuracy': {
          'values': [0.5, 0.7], 'mean': 0.6, 'std': 0.1414, 'ci95': [0.4, 0.8]}},
          'files': ['seed_0.json', 'seed_1.json']}}}}}
  scores = run.task_scores(summary, 'pretrained')
  assert scores['trec'].to_dict() == {
      'main_metric': 'accuracy', 'domain': None, 'kind': 'classification',
      'scores': [0.5, 0.7], 'mean': 0.6, 'std': 0.1414, 'ci95': [0.4, 0.8],
      'files': ['seed_0.json', 'seed_1.json']}
  assert run.task_scores(summary, 'probe') == {}


def test_a_partial_record_reads_with_defaults_and_typed_metrics():
  written = json.loads(REAL_RECORD.read_text())
  partial = {k: written[k] for k in records.REQUIRED_ARM_KEYS}
  record = records.ArmRecord.from_dict({**partial, 'derived': {'heldout_loss': 1.0}})
  assert (record.budget, record.tokens_seen, record.probes, record.controls,
          record.mlm_baselines) == (None, None, {}, {}, {})
  assert record.references('mask') is None
  pooled = written['heldout']['all']
  assert record.pooled().loss == pooled['loss']
  assert record.pooled().loss_mask == pooled['loss_mask']
  assert record.pooled().to_dict() == pooled
  full = records.ArmRecord.from_dict(written)
  mask = written['mlm_baselines']['all']['mask']
  assert full.references('mask').unigram_loss == mask['unigram_loss']
  # In arm_result.json's (sorted) key order: results.json copies them.
  assert list(full.references('mask').to_dict()) == sorted(mask)
  assert list(full.pooled().to_dict()) == sorted(pooled)
  # A set with no predictions has only the count (baselines.summarise, reduce_sums).
  assert records.CountReferences.from_dict({'predictions': 0}).to_dict() == {'predictions': 0}
  assert records.HeldoutMetrics.from_dict({'predictions': 0.0}).to_dict() == {'predictions': 0.0}
  # Missing a required key is an error, not a silent default.
  with pytest.raises(TypeError, match='unique_tokens'):
    records.ArmRecord.from_dict({k: v for k, v in partial.items() if k != 'unique_tokens'})


def test_pooling_the_domains_of_a_real_record_gives_its_pooled_set():
  """trainer.evaluate and baselines.heldout_baselines pool every domain into
  'all'; records.heldout_over / references_over pool means the same way."""
  record = records.ArmRecord.from_dict(json.loads(REAL_RECORD.read_text()))
  domains = record.heldout_domains()
  assert len(domains) > 1 and records.POOLED not in domains
  pooled, stored = record.heldout_over(domains), record.pooled()
  for key in ('loss', 'accuracy', 'loss_mask', 'accuracy_mask', 'predictions_mask',
              'loss_other', 'accuracy_other', 'predictions_other', 'predictions'):
    # rel 1e-6: the trainer summed in float32.
    assert getattr(pooled, key) == pytest.approx(getattr(stored, key), rel=1e-6), key
  assert pooled.loss_sd is None   # this run predates the per-position SD
  for kind in ('mask', 'other', 'all'):
    assert record.references_over(domains, kind).to_dict() == pytest.approx(
        record.references(kind).to_dict(), rel=1e-9)
  # A single domain is that domain's own metrics.
  assert record.heldout_over(domains[:1]).loss_mask == pytest.approx(
      record.heldout[domains[0]].loss_mask)
  assert record.heldout_over(['no_such_domain']) is None


def test_an_arm_is_judged_on_its_own_domains_only_when_they_are_a_strict_subset():
  """The rows early stopping scores and the learning gate reads (one rule)."""
  held_out = ['legal', 'literature', 'conversational']
  assert records.own_domains(['conversational'], held_out) == ['conversational']
  # Held-out order, whatever the recipe's order; a domain with no held-out rows is ignored.
  assert records.own_domains(['conversational', 'social', 'legal'], held_out) == [
      'legal', 'conversational']
  assert records.own_domains(['legal', 'literature', 'conversational'], held_out) is None
  assert records.own_domains(['legal', 'conversational', 'literature', 'news'], held_out) is None
  assert records.own_domains([], held_out) is None
  assert records.own_domains(['social'], held_out) is None
