"""Early stopping on held-out loss: the rule, the kept checkpoint, and resume."""

import json

import chex
import numpy as np
import pytest

from lm_data import checks
from lm_data import errors
from lm_data.input_pipeline import loader
from lm_data.models.bert import BertForMLM
from lm_data.train import checkpoint
from lm_data.train import early_stopping
from lm_data.train import optimizer
from lm_data.train import steps
from lm_data.train import trainer
from tests.train import fixtures

VOCAB = 64


def test_stops_after_patience_scores_without_a_new_lowest():
  es = early_stopping.EarlyStopping(patience=2)
  assert es.best_step is None and not es.exhausted()
  assert [es.update(s, v) for s, v in [(2, 5.0), (4, 4.0), (6, 4.5), (8, 3.9)]] == [False] * 4
  assert es.best_step == 8
  assert not es.update(10, 3.95)   # one score since the lowest
  assert es.update(12, 4.2) and es.stopped_at == 12 and es.best_step == 8
  tie = early_stopping.EarlyStopping(patience=1, history=[(2, 3.0), (4, 3.0)])
  assert tie.best_step == 4        # as Orbax's BestN keeps the later of equal values


def test_resume_drops_later_scores_unless_the_run_had_stopped(tmp_path):
  path = tmp_path / early_stopping.FILE
  assert early_stopping.EarlyStopping.resume(path, 2, 0).history == []
  es = early_stopping.EarlyStopping(patience=2)
  for step, loss in [(2, 5.0), (4, 4.0), (6, 4.5), (8, 4.6)]:
    es.update(step, loss)
  es.save(path)
  assert json.loads(path.read_text())['best_step'] == 4
  # Killed mid-run and restored at step 6: the score at 8 is redone.
  mid = early_stopping.EarlyStopping.resume(path, 2, 6)
  assert mid.history == [(2, 5.0), (4, 4.0), (6, 4.5)] and mid.stopped_at is None
  # Stopped, then killed before the steps after 4 were deleted (restored at 8).
  late = early_stopping.EarlyStopping.resume(path, 2, 8)
  assert late.stopped_at == 8 and late.best_step == 4
  # Stopped and cleaned up: the latest checkpoint is the best step.
  done = early_stopping.EarlyStopping.resume(path, 2, 4)
  assert done.stopped_at == 8 and len(done.history) == 4


def test_selection_scores_every_fourth_batch_of_the_chosen_domains():
  sets = {'legal': list(range(9)), 'news': list(range(10, 15))}
  assert early_stopping.selection_sets(sets) == {'legal': [0, 4, 8], 'news': [10, 14]}
  assert early_stopping.selection_sets(sets, ['news']) == {'news': [10, 14]}
  with pytest.raises(ValueError, match=r"\['social'\] have no held-out rows"):
    early_stopping.selection_sets(sets, ['news', 'social'])
  es = early_stopping.EarlyStopping(patience=1, domains=['news'])
  assert es.to_dict()['domains'] == ['news']
  assert early_stopping.EarlyStopping(patience=1).to_dict()['domains'] == 'all'


def _skewed(seed: int) -> dict:
  """fixtures.mlm_batch with token ids skewed towards small ids: a unigram to
  learn first (held-out loss falls), then two batches to memorise (it rises)."""
  b = fixtures.mlm_batch(seed)
  skew = lambda x: 5 + (x - 5) ** 2 // (VOCAB - 5)
  ids = b['input_ids']
  b['input_ids'] = np.where((ids == 0) | (ids == 4), ids, skew(ids)).astype(np.int32)
  b['mlm_ids'] = skew(b['mlm_ids']).astype(np.int32)
  # The first prediction of each row sees its own token (BERT's kept 10%): the
  # score counts only the [MASK] positions.
  np.put_along_axis(b['input_ids'], b['mlm_positions'][:, :1], b['mlm_ids'][:, :1], 1)
  return b


class TwoBatches(fixtures.CountingIterator):
  def __next__(self):
    if self.k == getattr(self, 'crash_at', None):
      raise KeyboardInterrupt(f'killed before batch {self.k}')
    out = _skewed(self.k % 2)
    self.k += 1
    return out


HELD_OUT = {'a': [_skewed(100 + i) for i in range(4)]}


def _config(**train):
  return fixtures.tiny_config(**{'num_train_steps': 16, 'checkpoint_every': 2,
                                 'learning_rate': 1e-2, 'warmup_steps': 2, **train})


def _pretrain(arm_dir, it=None, **train):
  return trainer.pretrain(_config(**train), arm_dir, train_iter=it or TwoBatches(),
                          eval_sets=HELD_OUT, vocab_size=VOCAB, meta={})


def _params_at(arm_dir, step):
  manager = checkpoint.make_manager(arm_dir / 'checkpoints', read_only=True)
  restored = manager.restore(step, args=checkpoint.ocp.args.Composite(
      state=checkpoint.ocp.args.PyTreeRestore()))
  return restored.state['params']


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """The same training with early stopping, and without it keeping every checkpoint."""
  root = tmp_path_factory.mktemp('es')
  reference = _pretrain(root / 'reference', keep_period=2)
  stopped = _pretrain(root / 'stopped', early_stopping_patience=2)
  return root, reference, stopped


def test_keeps_the_lowest_held_out_step_and_deletes_the_later_ones(runs):
  root, _, result = runs
  es = result.early_stopping
  losses = dict(es['history'])
  best = min(losses, key=losses.get)
  # It stopped two scores after the lowest, before the 16 configured steps.
  assert es['best_step'] == best == result.step < es['stopped_at'] == best + 4 < 16
  assert sorted(losses) == list(range(2, es['stopped_at'] + 1, 2))
  assert losses[best] < losses[2]    # it learned before it overfitted
  kept = sorted(int(p.name) for p in (root / 'stopped' / 'checkpoints').iterdir()
                if p.name.isdigit())
  assert kept[-1] == best           # every downstream reader gets the chosen step
  summary = json.loads((root / 'stopped' / 'pretrain_summary.json').read_text())
  assert summary['step'] == best and summary['early_stopping'] == es
  eval_step, to_device = _eval()
  assert result.heldout['all']['loss'] == pytest.approx(
      trainer.evaluate(eval_step, result.params, HELD_OUT, to_device)['all']['loss'])


def _eval():
  """(eval step, batch placement) for the tiny model, as the trainer builds them."""
  model = BertForMLM(trainer.model_config_for(_config(), VOCAB))
  mesh = steps.make_mesh()
  sharding = steps.batch_sharding(mesh)
  return (steps.make_eval_step(model, mesh),
          lambda b: loader.global_batch_to_device(b, sharding=sharding))


def test_chosen_params_and_scores_are_those_of_the_same_run_without_stopping(runs):
  root, _, result = runs
  best = result.step
  # Same batches, same schedule (16 steps): the checkpoint kept at `best` is
  # the plain run's step `best`, and each score is that step's held-out loss.
  chex.assert_trees_all_equal(result.params, _params_at(root / 'reference', best))
  chex.assert_trees_all_equal(_params_at(root / 'stopped', best),
                              _params_at(root / 'reference', best))
  selection = early_stopping.selection_sets(HELD_OUT)
  eval_step, to_device = _eval()
  for step, loss in result.early_stopping['history']:
    got = trainer.evaluate(eval_step, _params_at(root / 'reference', step), selection, to_device)
    assert loss == pytest.approx(got['all']['loss_mask'], rel=1e-6), step


def test_killed_runs_resume_to_the_same_choice_without_training_again(
    runs, tmp_path, monkeypatch):
  """Killed mid-run, then killed again after stopping but before the later
  steps were deleted: the re-run deletes them and returns the same params."""
  _, _, straight = runs
  it = TwoBatches()
  it.crash_at = 5
  with pytest.raises(KeyboardInterrupt):
    _pretrain(tmp_path, it, early_stopping_patience=2)

  def killed(self, step):
    raise KeyboardInterrupt('killed while deleting')

  monkeypatch.setattr(checkpoint.ocp.CheckpointManager, 'delete', killed)
  with pytest.raises(KeyboardInterrupt):
    _pretrain(tmp_path, early_stopping_patience=2)
  monkeypatch.undo()
  it = TwoBatches()
  result = _pretrain(tmp_path, it, early_stopping_patience=2)
  # Restored at the stopping step (its data state), not trained further.
  assert it.k == straight.early_stopping['stopped_at']
  assert result.early_stopping == straight.early_stopping and result.step == straight.step
  chex.assert_trees_all_equal(result.params, straight.params)
  kept = sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit())
  assert kept[-1] == straight.step


# ---------------------------------------------------------------- cool-down

def test_a_cooldown_branch_replaces_the_scores_after_its_start(tmp_path):
  es = early_stopping.EarlyStopping(patience=2)
  for step, loss in [(2, 5.0), (4, 4.0), (6, 4.5), (8, 4.6)]:
    es.update(step, loss)
  assert es.stopped_at == 8 and es.best_step == 4
  es.begin_cooldown(6)
  assert (es.cooldown_from, es.cooldown_end) == (4, 10) and not es.cooled_down
  # Branch scores at 6 and 8 replace the main run's; it stops only at its end.
  assert not es.update(6, 4.1) and es.best_step == 4
  assert not es.update(8, 3.5) and es.best_step == 8
  path = tmp_path / early_stopping.FILE
  es.save(path)           # killed here, restored at the branch's step 8
  assert es.update(10, 3.7) and es.cooled_down and es.best_step == 8
  saved = es.to_dict()
  assert saved['steps_trained'] == 8 + 6 and saved['stopped_at'] == 8
  mid = early_stopping.EarlyStopping.resume(path, 2, 6)
  assert mid.cooldown_history == [(6, 4.1)] and mid.cooldown_end == 10
  assert mid.history == es.history  # the main run's record stays whole
  es.save(path)
  done = early_stopping.EarlyStopping.resume(path, 2, 8)
  assert done.cooled_down and done.to_dict() == saved
  again = early_stopping.EarlyStopping.resume(path, 2, 10)   # killed before deleting 10
  assert again.cooled_down and again.best_step == 8
  # Restored before the branch (its start step's checkpoint was lost): no branch.
  before = early_stopping.EarlyStopping.resume(path, 2, 2)
  assert before.cooldown_from is None and before.history == [(2, 5.0)]


def test_cooldown_schedule_is_the_wsd_decay_moved_to_its_start():
  cfg = _config(schedule='wsd', decay_fraction=0.25, learning_rate=1e-2).train
  assert optimizer.wsd_decay(cfg) == (12, 4)
  lr = optimizer.cooldown_schedule(cfg, 8)
  want = [min(t / 2, 1) * 1e-2 for t in range(8)] + [1e-2 * (1 - (t - 8) / 4) for t in range(8, 12)] + [0.0] * 4
  np.testing.assert_allclose([float(lr(t)) for t in range(16)], want, rtol=1e-6, atol=1e-9)
  early = optimizer.cooldown_schedule(cfg, 1)  # from inside the warm-up: from the rate there
  np.testing.assert_allclose([float(early(t)) for t in range(1, 6)],
                             [5e-3, 3.75e-3, 2.5e-3, 1.25e-3, 0.0], rtol=1e-6, atol=1e-9)


COOLDOWN = dict(schedule='wsd', decay_fraction=0.25, early_stopping_patience=2,
                cooldown_on_stop=True)


class KilledAfter(TwoBatches):
  """TwoBatches that dies at its `calls`-th batch, counted over restores."""

  def __init__(self, calls):
    super().__init__()
    self.left = calls

  def __next__(self):
    self.left -= 1
    if self.left < 0:
      raise KeyboardInterrupt('killed')
    return super().__next__()


@pytest.fixture(scope='module')
def cooled(tmp_path_factory):
  root = tmp_path_factory.mktemp('cooldown')
  return root, _pretrain(root / 'cooled', **COOLDOWN)


def test_early_stopping_on_the_held_rate_trains_the_decay_from_the_kept_step(cooled):
  root, result = cooled
  es = result.early_stopping
  main = dict(es['history'])
  start = min(main, key=main.get)
  # Stopped by patience, its kept step from before the wsd decay (steps 12-16).
  assert es['stopped_at'] == start + 4 < 16 and start < 12
  assert (es['cooldown_from'], es['cooldown_end']) == (start, start + 4)
  assert [s for s, _ in es['cooldown_history']] == [start + 2, start + 4]
  assert es['steps_trained'] == es['stopped_at'] + 4
  branch = dict(es['cooldown_history'])
  candidates = {start: main[start], **branch}
  assert es['best_step'] == result.step == min(candidates, key=candidates.get)
  kept = sorted(int(p.name) for p in (root / 'cooled' / 'checkpoints').iterdir()
                if p.name.isdigit())
  assert kept[-1] == result.step
  # The branch is a run whose wsd decay starts at `start`, on the same batches:
  # a straight run of start + 4 steps with a 4-step decay scores the same.
  ref_dir = root / 'straight'
  _pretrain(ref_dir, schedule='wsd', num_train_steps=start + 4,
            decay_fraction=4 / (start + 4), keep_period=2)
  selection = early_stopping.selection_sets(HELD_OUT)
  eval_step, to_device = _eval()
  for step, loss in es['cooldown_history']:
    got = trainer.evaluate(eval_step, _params_at(ref_dir, step), selection, to_device)
    assert loss == pytest.approx(got['all']['loss_mask'], rel=1e-5), step
  lines = [json.loads(l) for l in (root / 'cooled' / 'metrics.jsonl').read_text().splitlines()]
  # The branch repeats step numbers of the main run: its lines say so.
  tagged = [r['step'] for r in lines if r.get('branch') == 'cooldown' and 'learning_rate' in r]
  assert tagged == list(range(start + 1, start + 5))
  rates = {r['step']: r['learning_rate'] for r in lines
           if 'learning_rate' in r and r.get('branch') == 'cooldown'}
  # Logged after each update: the rate that update used (step - 1's).
  np.testing.assert_allclose([rates[s] for s in range(start + 1, start + 5)],
                             [1e-2 * (1 - k / 4) for k in range(4)], rtol=1e-6)


def test_a_run_killed_in_its_cooldown_resumes_to_the_same_result(cooled, tmp_path,
                                                                 monkeypatch):
  _, straight = cooled
  es = straight.early_stopping
  # Killed while deleting the main run's later checkpoints for the branch ...
  deletes = []

  def killed(self, step):
    deletes.append(step)
    raise KeyboardInterrupt('killed while deleting')

  monkeypatch.setattr(checkpoint.ocp.CheckpointManager, 'delete', killed)
  with pytest.raises(KeyboardInterrupt):
    _pretrain(tmp_path, **COOLDOWN)
  monkeypatch.undo()
  assert deletes == [es['cooldown_from'] + 2]
  # ... then one batch into the branch's second half.
  with pytest.raises(KeyboardInterrupt):
    _pretrain(tmp_path, KilledAfter(3), **COOLDOWN)
  record = json.loads((tmp_path / early_stopping.FILE).read_text())
  assert record['cooldown_history'] == es['cooldown_history'][:1]
  result = _pretrain(tmp_path, **COOLDOWN)
  assert result.early_stopping == es and result.step == straight.step
  chex.assert_trees_all_equal(result.params, straight.params)
  again = TwoBatches()   # finished: a re-run restores the kept step and trains nothing
  assert _pretrain(tmp_path, again, **COOLDOWN).early_stopping == es
  assert again.k == straight.step


def test_cooldown_on_stop_needs_wsd_and_early_stopping():
  config = _config(cooldown_on_stop=True, early_stopping_patience=2)
  with pytest.raises(errors.UserError, match='needs train.schedule=wsd'):
    checks.check_study_config(config)
  config.train.schedule = 'wsd'
  checks.check_study_config(config)
  config.train.early_stopping_patience = 0
  with pytest.raises(errors.UserError, match='early_stopping_patience > 0'):
    checks.check_study_config(config)
