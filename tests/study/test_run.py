"""Bad ablation configs fail before any work, with a message saying what to change."""

import pytest

from configs import domain_ablation, quality_ablation, size_ablation
from lm_data.study import run


@pytest.mark.parametrize('module', [size_ablation, domain_ablation, quality_ablation])
def test_shipped_configs_and_variants_validate(module):
  for arg in (None, 'smoke'):
    arms = run.select_arms(module.get_config(arg))
    assert arms and len({a.name for a in arms}) == len(arms)
  one = module.get_config('arm=' + module.get_config().arms[0].name)
  assert [a.name for a in run.select_arms(one)] == [one.arms[0].name]


def _bad(mutate, match):
  c = size_ablation.get_config('smoke')
  with c.unlocked():
    mutate(c)
  with pytest.raises(ValueError, match=match):
    run.select_arms(c)


def test_unknown_arm():
  _bad(lambda c: setattr(c, 'arm', 'size_1-3'), "unknown arm 'size_1-3'; known: size_1-64")


def test_unknown_domain():
  _bad(lambda c: c.arms[0].data.update(domains=['lgeal']), "unknown domain.*lgeal.*legal")


def test_budget_fraction_out_of_range():
  _bad(lambda c: c.arms[0].data.update(budget_fraction=2.0), r'budget_fraction=2.0 must be in \(0, 1\]')


def test_unknown_task_and_preset():
  _bad(lambda c: setattr(c.finetune, 'tasks', ('sentiment',)), "unknown task 'sentiment'")
  _bad(lambda c: setattr(c.model, 'preset', 'huge'), "unknown model preset 'huge'")


def test_duplicate_and_unsafe_arm_names():
  _bad(lambda c: c.arms[1].update(name=c.arms[0].name), 'duplicate arm names')
  _bad(lambda c: c.arms[0].update(name='a/b'), 'folder name')


def test_unknown_config_argument():
  with pytest.raises(ValueError, match="unknown config argument 'smok'"):
    size_ablation.get_config('smok')
