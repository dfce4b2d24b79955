"""Tests for the curation registry and the in-process runner."""

import itertools

import pytest

from lm_data import curation
from lm_data.curation import dedup
from lm_data.curation import quality
from lm_data.curation import registry
from lm_data.input_pipeline import prepare as prepare_lib
from tests.curation import fixtures

ALL_STEPS = curation.names()


def _context():
  return fixtures.context()


def test_every_prepare_step_is_registered_and_every_step_accepted():
  assert set(prepare_lib.QUALITY_STEPS) <= set(curation.quality_steps())
  assert {'decontaminate', 'degrade'} <= set(curation.names())
  recipe = prepare_lib.Recipe.from_config(
      {'domains': ['news'], 'quality': list(curation.quality_steps())})
  assert curation.recipe_steps(recipe) == list(curation.quality_steps())
  with pytest.raises(ValueError, match='unknown quality step .*heuristic'):
    prepare_lib.Recipe.from_config({'domains': ['news'], 'quality': ['x']})


def test_unknown_step_names_the_known_ones():
  with pytest.raises(ValueError, match='unknown curation step .*heuristic'):
    curation.get('heuristik')


def test_registering_a_name_twice_fails():
  with pytest.raises(ValueError, match='registered twice'):
    curation.register(curation.Step(name='heuristic', run=lambda d, c: (d, {})))


def test_step_scope_needs_its_key():
  with pytest.raises(ValueError, match='group_key'):
    curation.Step(name='x', run=lambda d, c: (d, {}), scope='group')


def test_recipe_steps_order():
  recipe = prepare_lib.Recipe.from_config({
      'domains': ['news'], 'quality': ['dedup_near', 'heuristic'],
      'decontaminate': True, 'degrade': {'markup': 0.1}})
  assert curation.recipe_steps(recipe) == [
      'dedup_near', 'heuristic', 'decontaminate', 'degrade']


def test_run_steps_counts_removals_by_domain_as_the_implementations_do():
  docs = fixtures.docs()
  kept, stats = curation.run_steps(docs, ['heuristic', 'dedup_exact'],
                                   _context())
  expected, details = quality.heuristic_filter(docs)
  expected, exact = dedup.exact_dedup(expected)
  assert kept == expected
  assert [s['details'] for s in stats] == [details, exact]
  assert stats[1]['removed'] == {'news': 1, 'legal': 0}  # d100 copies d003.
  assert 'd102' not in {d.doc_id for d in kept}  # The junk text.
  assert sum(stats[0]['removed'].values()) == details['removed'] > 0


@pytest.mark.parametrize('name', ALL_STEPS)
def test_every_step_removes_or_changes_something(name):
  docs = fixtures.docs()
  kept, details = curation.get(name).run(docs, _context())
  assert kept != docs, details


def _parts(step, docs):
  """The input split as a distributed runner may split it (step.scope)."""
  if step.scope == 'document':
    return [[d] for d in docs]
  key = lambda d: step.group_key(d)  # noqa: E731
  groups = {}
  for d in docs:
    groups.setdefault(key(d), []).append(d)
  return list(groups.values())


@pytest.mark.parametrize('name', [n for n in ALL_STEPS
                                  if curation.get(n).scope != 'custom'])
def test_scope_split_reaches_the_whole_input_decision(name):
  """What a Beam runner relies on: the step run on each part of its scope
  keeps what the step run on everything keeps, and the counts add up."""
  step, docs, ctx = curation.get(name), fixtures.docs(), _context()
  whole, whole_details = step.run(docs, ctx)
  results = [step.run(part, ctx) for part in _parts(step, docs)]
  order = {(d.source, d.doc_id): i for i, d in enumerate(docs)}
  kept = sorted(itertools.chain(*(r[0] for r in results)),
                key=lambda d: order[(d.source, d.doc_id)])
  assert kept == whole
  summed = {}
  for _, details in results:
    for k, v in step.counts(details).items():
      summed[k] = summed.get(k, 0) + v
  assert {k: v for k, v in summed.items() if v} == {k: v for k, v in step.counts(whole_details).items() if v}
