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

  @property
  def best_step(self) -> int | None:
    """Step of the lowest loss (ties: the later step, as Orbax's BestN keeps)."""
    if not self.history:
      return None
    return min(self.history, key=lambda h: (h[1], -h[0]))[0]

  def exhausted(self) -> bool:
    """True when the last `patience` evaluations all came after the best one."""
    best = self.best_step
    return best is not None and sum(s > best for s, _ in self.history) >= self.patience

  def update(self, step: int, loss: float) -> bool:
    """Records the evaluation at `step`; True if training should stop now."""
    self.history.append((int(step), float(loss)))
    if self.exhausted():
      self.stopped_at = int(step)
    return self.stopped_at is not None

  def to_dict(self) -> dict:
    return {'patience': self.patience, 'metric': 'held-out MLM loss at [MASK] on every '
            f'{SELECTION_STRIDE}th held-out batch of each scored domain',
            'domains': self.domains or 'all',
            'history': [list(h) for h in self.history], 'best_step': self.best_step,
            'stopped_at': self.stopped_at}

  def save(self, path: utils.AnyPath) -> None:
    utils.write_json(path, self.to_dict())

  @classmethod
  def resume(cls, path: utils.AnyPath, patience: int, restored_step: int,
             domains: list[str] | None = None) -> 'EarlyStopping':
    """The record as of `restored_step` (the step training continues from).

    A run that already stopped and kept its best step (restored_step == best)
    stays stopped; otherwise evaluations after `restored_step` are dropped, to
    be redone on the same batches.
    """
    try:
      saved = json.loads(path.read_text())
    except FileNotFoundError:
      return cls(patience, domains=domains)
    history = [(int(s), float(v)) for s, v in saved['history']]
    done = cls(patience, history, saved.get('stopped_at'), domains)
    if done.stopped_at is not None and done.best_step == restored_step:
      return done
    kept = cls(patience, [h for h in history if h[0] <= restored_step], domains=domains)
    if kept.exhausted():  # stopped, killed before its later checkpoints were deleted
      kept.stopped_at = kept.history[-1][0]
    return kept
