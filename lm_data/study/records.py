"""The per-arm study record (`DIR/arms/ARM/arm_result.json`, `results.json` arms).

`ArmRecord` and `TaskScore` are what `study.run` builds; `to_dict` gives the
JSON schema that `report`, `analysis` and `plots` read (and that older runs'
files already hold), `from_dict` reads it back.
"""

import dataclasses
from typing import Any

# TaskScore fields written only when set (fine-tuning writes `files`; probes
# also `layers` and `chosen_layers`).
_OPTIONAL_SCORE_FIELDS = ('files', 'layers', 'chosen_layers')
CONTROL_NAMES = ('random_init', 'random_init_probe', 'lexical', 'baseline')
# Record evaluation or control key -> init name of its fine-tuning result files.
INIT_OF = {'tasks': 'pretrained', 'probes': 'probe', 'random_init': 'random',
           'random_init_probe': 'random_probe', 'lexical': 'lexical',
           'baseline': 'baseline'}


@dataclasses.dataclass
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
  """
  main_metric: str
  domain: str | None
  kind: str | None
  scores: list[float] | None
  mean: float
  std: float
  ci95: list[float] | None
  files: list[str] | None = None
  layers: dict[str, Any] | None = None
  chosen_layers: list[Any] | None = None

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    return {k: v for k, v in d.items() if v is not None or k not in _OPTIONAL_SCORE_FIELDS}

  @classmethod
  def from_dict(cls, d: dict) -> 'TaskScore':
    return cls(**d)


def _scores_to_dict(scores: dict[str, TaskScore]) -> dict:
  return {name: score.to_dict() for name, score in scores.items()}


def _scores_from_dict(d: dict) -> dict[str, TaskScore]:
  return {name: TaskScore.from_dict(score) for name, score in d.items()}


@dataclasses.dataclass
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
    heldout: {domain or 'all': held-out MLM loss/accuracy, also at [MASK]
      and at other positions}.
    mlm_baselines: the count-model references on the same predictions.
    tasks: fine-tuned pretrained encoder per task.
    probes: linear probe of the pretrained encoder per task.
    controls: {control name: {task: score}}; the same for every arm.
  """
  arm: str
  recipe: dict[str, Any]
  budget: int | None
  unique_tokens: int
  tokens_seen: int
  epochs: float
  steps: int
  train_flops: float
  data_stats: dict[str, Any]
  heldout: dict[str, dict[str, Any]]
  mlm_baselines: dict[str, Any]
  tasks: dict[str, TaskScore] = dataclasses.field(default_factory=dict)
  probes: dict[str, TaskScore] = dataclasses.field(default_factory=dict)
  controls: dict[str, dict[str, TaskScore]] = dataclasses.field(default_factory=dict)

  def to_dict(self) -> dict:
    d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    d['tasks'] = _scores_to_dict(self.tasks)
    d['probes'] = _scores_to_dict(self.probes)
    d['controls'] = {name: _scores_to_dict(c) for name, c in self.controls.items()}
    return d

  @classmethod
  def from_dict(cls, d: dict) -> 'ArmRecord':
    fields = dict(d)
    fields['tasks'] = _scores_from_dict(d.get('tasks', {}))
    fields['probes'] = _scores_from_dict(d.get('probes', {}))
    fields['controls'] = {name: _scores_from_dict(c)
                          for name, c in d.get('controls', {}).items()}
    return cls(**fields)
