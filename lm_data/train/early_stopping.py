"""Early stopping on held-out MLM loss: the record of evaluations and the decision.

An arm that repeats a small corpus for many epochs overfits: its held-out loss
turns up long before the configured number of steps. With
`train.early_stopping_patience = p > 0` the trainer scores the loss at [MASK]
on a fixed subset of the held-out rows (every SELECTION_STRIDE-th batch of each
domain) at every checkpoint step, stops after p evaluations without a new lowest loss,
and keeps the checkpoint with the lowest one (MiniBERTas chose each
pretraining run's checkpoint by held-out perplexity). Its later checkpoints
are deleted, so the arm's latest checkpoint is the chosen model for every
downstream reader.

With a wsd schedule the kept step may come from the held peak rate, before
any decay: `train.cooldown_on_stop` then branches the decay from it (Hägele
et al. 2024: a cool-down can start from any point of the stable phase). The
run goes back to the kept step (its later checkpoints are deleted), trains
the wsd decay's length with the rate falling linearly to 0, is scored at every
checkpoint on the branch, and keeps the lowest score of the kept step and
the branch.

The record (`arm_dir/early_stopping.json`) lets a killed run resume to the
same decision: evaluations after the restored step are dropped and redone.
"""

import dataclasses
import json

from lm_data import utils

FILE = 'early_stopping.json'
# Every n-th held-out batch of each domain is scored for the decision: a
# quarter of the rows costs ~1/4 of a full held-out evaluation, and losses of
# successive checkpoints on the same fixed masks differ by far more than the
# noise of that subset.
SELECTION_STRIDE = 4
# The score: held-out loss at [MASK] positions, the main pretraining metric. The
# loss over all predicted positions also counts the random and kept tokens,
# where copying the visible token keeps improving while [MASK] prediction
# overfits (a 1/64 arm's pooled loss still fell at 1500 steps).
SCORE = 'loss_mask'
# Checkpoint metric (Orbax keeps the step with the lowest, `checkpoint.make_manager`).
METRIC = 'selection_loss'


def selection_sets(eval_sets: dict[str, list], domains=None) -> dict[str, list]:
  """The fixed subset of each domain's held-out batches that decides when to stop
  (of `domains` only, if given: an arm trained on some domains is scored on them,
  since its loss on the others rises as it specialises)."""
  unknown = sorted(set(domains or ()) - set(eval_sets))
  if unknown:
    raise ValueError(f'early stopping domains {unknown} have no held-out rows; '
                     f'held-out: {sorted(eval_sets)}')
  return {name: list(batches)[::SELECTION_STRIDE] for name, batches in eval_sets.items()
          if not domains or name in domains}


@dataclasses.dataclass
class EarlyStopping:
  """Held-out losses at checkpoint steps, and when `patience` of them brought no new best."""
  patience: int
  history: list[tuple[int, float]] = dataclasses.field(default_factory=list)
  stopped_at: int | None = None   # the evaluation step that ended training
  domains: list[str] | None = None  # the held-out domains scored (None: all)
  # The branched cool-down: from the kept step `cooldown_from` to `cooldown_end`,
  # and its evaluations (steps after cooldown_from, on the branch).
  cooldown_from: int | None = None
  cooldown_end: int | None = None
  cooldown_history: list[tuple[int, float]] = dataclasses.field(default_factory=list)

  @staticmethod
  def _lowest(history) -> int | None:
    """Step of the lowest loss (ties: the later step, as Orbax's BestN keeps)."""
    return min(history, key=lambda h: (h[1], -h[0]))[0] if history else None

  @property
  def best_step(self) -> int | None:
    """The kept step: the lowest loss, on the cool-down branch once there is one
    (the branch replaces the steps after `cooldown_from`)."""
    if self.cooldown_from is None:
      return self._lowest(self.history)
    return self._lowest([h for h in self.history if h[0] <= self.cooldown_from]
                        + self.cooldown_history)

  def exhausted(self) -> bool:
    """True when the last `patience` evaluations all came after the best one."""
    best = self._lowest(self.history)
    return best is not None and sum(s > best for s, _ in self.history) >= self.patience

  @property
  def cooled_down(self) -> bool:
    """True once the cool-down branch has been trained and scored to its end."""
    return (self.cooldown_end is not None
            and any(s == self.cooldown_end for s, _ in self.cooldown_history))

  def begin_cooldown(self, steps: int) -> None:
    """Branches a cool-down of `steps` steps from the kept step."""
    self.cooldown_from = self.best_step
    self.cooldown_end = self.cooldown_from + steps
    self.cooldown_history = []

  def update(self, step: int, loss: float) -> bool:
    """Records the evaluation at `step`; True if training should stop now.

    On the cool-down branch it stops only at the branch's end."""
    if self.cooldown_from is not None:
      self.cooldown_history.append((int(step), float(loss)))
      return self.cooled_down
    self.history.append((int(step), float(loss)))
    if self.exhausted():
      self.stopped_at = int(step)
    return self.stopped_at is not None

  def steps_trained(self) -> int | None:
    """Optimizer steps spent: the main run's, plus the cool-down branch's."""
    if self.stopped_at is None:
      return None
    return self.stopped_at + (0 if self.cooldown_from is None
                              else self.cooldown_end - self.cooldown_from)

  def to_dict(self) -> dict:
    out = {'patience': self.patience, 'metric': 'held-out MLM loss at [MASK] on every '
           f'{SELECTION_STRIDE}th held-out batch of each scored domain',
           'domains': self.domains or 'all',
           'history': [list(h) for h in self.history], 'best_step': self.best_step,
           'stopped_at': self.stopped_at}
    if self.cooldown_from is not None:
      out.update(cooldown_from=self.cooldown_from, cooldown_end=self.cooldown_end,
                 cooldown_history=[list(h) for h in self.cooldown_history],
                 steps_trained=self.steps_trained())
    return out

  def save(self, path: utils.AnyPath) -> None:
    utils.write_json(path, self.to_dict())

  @classmethod
  def resume(cls, path: utils.AnyPath, patience: int, restored_step: int,
             domains: list[str] | None = None) -> 'EarlyStopping':
    """The record as of `restored_step` (the step training continues from).

    A run that already stopped and kept its best step (restored_step == best)
    stays stopped; otherwise evaluations after `restored_step` are dropped, to
    be redone on the same batches. Once a cool-down has branched, every
    checkpoint after `cooldown_from` is the branch's (the main run's were
    deleted first), so only the branch's evaluations are dropped.
    """
    try:
      saved = json.loads(path.read_text())
    except FileNotFoundError:
      return cls(patience, domains=domains)
    history = [(int(s), float(v)) for s, v in saved['history']]
    done = cls(patience, history, saved.get('stopped_at'), domains,
               saved.get('cooldown_from'), saved.get('cooldown_end'),
               [(int(s), float(v)) for s, v in saved.get('cooldown_history', ())])
    if done.cooldown_from is not None and restored_step >= done.cooldown_from:
      if not (done.cooled_down and done.best_step == restored_step):
        done.cooldown_history = [h for h in done.cooldown_history if h[0] <= restored_step]
      return done
    if done.stopped_at is not None and done.best_step == restored_step:
      return done
    kept = cls(patience, [h for h in history if h[0] <= restored_step], domains=domains)
    if kept.exhausted():  # stopped, killed before its later checkpoints were deleted
      kept.stopped_at = kept.history[-1][0]
    return kept
