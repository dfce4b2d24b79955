"""The per-arm study record (`DIR/arms/ARM/arm_result.json`, `results.json` arms).

`ArmRecord` and `TaskScore` are what `study.run` builds; `to_dict` gives the
JSON schema that `report`, `analysis` and `plots` read (and that older runs'
files already hold), `from_dict` reads it back.
"""

from collections.abc import Sequence
import dataclasses
import math
from typing import Any

# TaskScore fields written only when set (fine-tuning writes `files`, and
# `chosen_learning_rates` over a rate grid; probes also `layers` and `chosen_layers`).
_OPTIONAL_SCORE_FIELDS = ('files', 'layers', 'chosen_layers', 'chosen_learning_rates')
CONTROL_NAMES = ('random_init', 'random_init_probe', 'lexical', 'baseline')
# Record evaluation or control key -> init name of its fine-tuning result files.
INIT_OF = {'tasks': 'pretrained', 'probes': 'probe', 'random_init': 'random',
           'random_init_probe': 'random_probe', 'lexical': 'lexical',
           'baseline': 'baseline'}
# The keys every arm handed to the report must have; the others default.
REQUIRED_ARM_KEYS = ('arm', 'recipe', 'unique_tokens', 'heldout', 'tasks')
POOLED = 'all'  # the held-out set pooled over domains


def _set_fields(obj) -> dict:
  """A flat record's fields without the unset (None) ones (older runs lack
  them), in sorted order as arm_result.json holds them, so what the report
  copies into results.json keeps its bytes."""
  return {k: v for k, v in sorted(dataclasses.asdict(obj).items()) if v is not None}


@dataclasses.dataclass(kw_only=True)
class HeldoutMetrics:
  """Held-out MLM metrics of one set (train/metrics.reduce_sums).

  `_mask`: at positions whose input is [MASK]; `_other`: random or kept
  tokens. `loss_sd*`: the per-position SD of the loss. Loss and accuracy are
  unset when the set has no prediction; the split metrics and the SDs are
  unset in runs before they were measured.
  """
  predictions: float
  loss: float | None = None
  accuracy: float | None = None
  loss_mask: float | None = None
  accuracy_mask: float | None = None
  predictions_mask: float | None = None
  loss_other: float | None = None
  accuracy_other: float | None = None
  predictions_other: float | None = None
  loss_sd: float | None = None
  loss_sd_mask: float | None = None
  loss_sd_other: float | None = None

  to_dict = _set_fields

  @classmethod
  def from_dict(cls, d: dict) -> 'HeldoutMetrics':
    return cls(**d)


@dataclasses.dataclass(kw_only=True)
class CountReferences:
  """Count-model references on the same predictions (study/baselines.summarise);
  all but `predictions` are unset when there are none."""
  predictions: int
  unigram_loss: float | None = None
  majority_accuracy: float | None = None
  freq_copy_loss: float | None = None
  freq_copy_accuracy: float | None = None
  bigram_loss: float | None = None
  bigram_accuracy: float | None = None

  to_dict = _set_fields

  @classmethod
  def from_dict(cls, d: dict) -> 'CountReferences':
    return cls(**d)


@dataclasses.dataclass(kw_only=True)
class TaskScore:
  """One task's main test metric for one encoder (or control), over seeds.

  Attributes:
    main_metric: the task's main metric (accuracy, mcc, ...).
    domain: pretraining domain the task shares text with, or None.
    kind: classification, regression, token_classification or qa.
    scores: the per-seed test values.
    mean, std, ci95: over `scores` (ci95 is None for a single seed).
    files: the per-seed result files, relative to the arm's eval/<task>/.
    layers: probes only: {layer: mean/std/ci95 of the metric}.
    chosen_layers: probes only: the layer dev chose, per seed.
    chosen_learning_rates: fine-tuning over a rate grid (finetune.learning_rates)
      only: the rate dev chose, per seed.
  The study writes every field but the optional four; a hand-made score
  (tests, a control without seeds) may hold only main_metric and mean.
  """
  main_metric: str
  mean: float | None
  domain: str | None = None
  kind: str | None = None
  scores: list[float] | None = None
  std: float | None = None
  ci95: list[float] | None = None
  files: list[str] | None = None
  layers: dict[str, Any] | None = None
  chosen_layers: list[Any] | None = None
  chosen_learning_rates: list[float] | None = None

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    return {k: v for k, v in d.items() if v is not None or k not in _OPTIONAL_SCORE_FIELDS}

  @classmethod
  def from_dict(cls, d: dict) -> 'TaskScore':
    return cls(**d)


Scores = dict[str, TaskScore]


def scores_to_dict(scores: Scores) -> dict:
  return {name: score.to_dict() for name, score in scores.items()}


def scores_from_dict(d: dict | None) -> Scores:
  return {name: TaskScore.from_dict(score) for name, score in (d or {}).items()}


def controls_from_dict(d: dict | None) -> dict[str, Scores]:
  """{control name: {task: score}} from its JSON."""
  return {name: scores_from_dict(c) for name, c in (d or {}).items()}


def _weighted_mean(values: Sequence[float | None], weights: Sequence[float | None]
                   ) -> float | None:
  """Mean of `values` weighted by `weights` (prediction counts); None when a
  set with predictions lacks the value, or there are no predictions."""
  pairs = [(v, w) for v, w in zip(values, weights) if w]
  if not pairs or any(v is None or w is None for v, w in pairs):
    return None
  total = sum(w for _, w in pairs)
  return sum(v * w for v, w in pairs) / total


def _pooled_sd(sds, means, counts, pooled_mean) -> float | None:
  """SD of the union of sets from their SDs, means and counts (n - 1)."""
  pairs = [(s, m, n) for s, m, n in zip(sds, means, counts) if n]
  if not pairs or any(s is None or m is None for s, m, _ in pairs) or pooled_mean is None:
    return None
  total = sum(n for _, _, n in pairs)
  if total <= 1:
    return None
  squares = sum((n - 1) * s * s + n * (m - pooled_mean) ** 2 for s, m, n in pairs)
  return math.sqrt(squares / (total - 1))


def pool_heldout(sets: Sequence[HeldoutMetrics]) -> HeldoutMetrics:
  """Several sets' held-out metrics as one set, as trainer.evaluate forms the
  pooled set ('all') from per-set sums: means weighted by their predictions
  (at [MASK] by `predictions_mask`, at other positions by `predictions_other`)."""
  fields = {}
  for suffix in ('', '_mask', '_other'):
    counts = [getattr(h, f'predictions{suffix}') for h in sets]
    if any(n is None for n in counts):
      continue   # a run before the split was measured
    fields[f'predictions{suffix}'] = sum(counts)
    for name in ('loss', 'accuracy'):
      fields[f'{name}{suffix}'] = _weighted_mean(
          [getattr(h, f'{name}{suffix}') for h in sets], counts)
    fields[f'loss_sd{suffix}'] = _pooled_sd(
        [getattr(h, f'loss_sd{suffix}') for h in sets],
        [getattr(h, f'loss{suffix}') for h in sets], counts, fields[f'loss{suffix}'])
  fields.setdefault('predictions', 0)
  return HeldoutMetrics(**fields)


def pool_references(sets: Sequence[CountReferences]) -> CountReferences:
  """Several sets' count references (one kind) as one set, weighted by their
  predictions, as baselines.heldout_baselines pools every set into 'all'."""
  counts = [r.predictions for r in sets]
  fields = {f.name: _weighted_mean([getattr(r, f.name) for r in sets], counts)
            for f in dataclasses.fields(CountReferences) if f.name != 'predictions'}
  return CountReferences(predictions=sum(counts), **fields)


def own_domains(trained: Sequence[str], measured: Sequence[str]) -> list[str] | None:
  """The held-out domains an arm is judged on (early stopping, learning gate).

  An arm trained on a strict subset of the held-out domains is judged on the
  rows of its own domains (in held-out order): the other rows are text it was
  never meant to model. None: it is judged on every domain, pooled.
  """
  mine = set(trained)
  own = [d for d in measured if d in mine]
  return own if 0 < len(own) < len(set(measured)) else None


def heldout_from_dict(d: dict | None) -> dict[str, HeldoutMetrics]:
  """{set: metrics} from its JSON (or `PretrainResult.heldout`)."""
  return {name: HeldoutMetrics.from_dict(h) for name, h in (d or {}).items()}


def references_from_dict(d: dict | None) -> dict[str, dict[str, CountReferences]]:
  """{set: {kind: references}} from its JSON (or `baselines.heldout_baselines`)."""
  return {name: {kind: CountReferences.from_dict(r) for kind, r in refs.items()}
          for name, refs in (d or {}).items()}


@dataclasses.dataclass(kw_only=True)
class ArmRecord:
  """What one arm of a study measured.

  Attributes:
    arm: the arm's name.
    recipe: the arm's `data` config, as set.
    budget: the unique training tokens the study resolved (None: everything).
    unique_tokens: unique training tokens of the prepared data.
    tokens_seen: steps x global batch x seq_len.
    epochs: tokens_seen / unique_tokens.
    steps: optimizer steps.
    train_flops: analytic training FLOPs (train/flops.py).
    data_stats: the prepared data's stats (prepare.py) plus epochs, path.
    heldout: {domain or 'all': held-out MLM metrics}.
    mlm_baselines: {domain or 'all': {'mask'|'other'|'all': count references}}.
    tasks: fine-tuned pretrained encoder per task.
    probes: linear probe of the pretrained encoder per task.
    controls: {control name: {task: score}}; the same for every arm.
  The study sets every field; records made elsewhere (tests, older runs)
  need only REQUIRED_ARM_KEYS.
  """
  arm: str
  recipe: dict[str, Any]
  budget: int | None = None
  unique_tokens: int
  tokens_seen: int | None = None
  epochs: float | None = None
  steps: int | None = None
  train_flops: float | None = None
  data_stats: dict[str, Any] = dataclasses.field(default_factory=dict)
  heldout: dict[str, HeldoutMetrics]
  mlm_baselines: dict[str, dict[str, CountReferences]] = dataclasses.field(
      default_factory=dict)
  tasks: Scores = dataclasses.field(default_factory=dict)
  probes: Scores = dataclasses.field(default_factory=dict)
  controls: dict[str, Scores] = dataclasses.field(default_factory=dict)

  def pooled(self) -> HeldoutMetrics | None:
    """Held-out metrics pooled over every domain."""
    return self.heldout.get(POOLED)

  def references(self, kind: str) -> CountReferences | None:
    """The pooled count references at 'mask', 'other' or 'all' predictions."""
    return self.mlm_baselines.get(POOLED, {}).get(kind)

  def heldout_domains(self) -> list[str]:
    """The held-out sets measured one by one (every key but the pooled one)."""
    return [d for d in self.heldout if d != POOLED]

  def heldout_over(self, domains: Sequence[str]) -> HeldoutMetrics | None:
    """Held-out metrics pooled over `domains` (None if one was not measured)."""
    if not domains or any(d not in self.heldout for d in domains):
      return None
    return pool_heldout([self.heldout[d] for d in domains])

  def references_over(self, domains: Sequence[str], kind: str
                      ) -> CountReferences | None:
    """Count references at `kind` pooled over `domains` (None if one lacks them)."""
    refs = [self.mlm_baselines.get(d, {}).get(kind) for d in domains]
    if not refs or any(r is None for r in refs):
      return None
    return pool_references(refs)

  def to_dict(self) -> dict:
    d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    d['heldout'] = {name: h.to_dict() for name, h in self.heldout.items()}
    d['mlm_baselines'] = {name: {kind: r.to_dict() for kind, r in refs.items()}
                          for name, refs in self.mlm_baselines.items()}
    d['tasks'] = scores_to_dict(self.tasks)
    d['probes'] = scores_to_dict(self.probes)
    d['controls'] = {name: scores_to_dict(c) for name, c in self.controls.items()}
    return d

  @classmethod
  def from_dict(cls, d: dict) -> 'ArmRecord':
    """From arm_result.json or a results.json arm; keys it does not hold
    (the report's `derived`, older runs' extras) are left out."""
    names = {f.name for f in dataclasses.fields(cls)}
    fields = {k: v for k, v in d.items() if k in names}
    fields['heldout'] = heldout_from_dict(d.get('heldout'))
    fields['mlm_baselines'] = references_from_dict(d.get('mlm_baselines'))
    fields['tasks'] = scores_from_dict(d.get('tasks'))
    fields['probes'] = scores_from_dict(d.get('probes'))
    fields['controls'] = controls_from_dict(d.get('controls'))
    return cls(**fields)
