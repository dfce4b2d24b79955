"""What an evaluation runs: the pretrained encoder and its controls.

  pretrained    the arm's encoder params, a fresh head, fine-tuned (per seed)
  probe         a linear probe on the arm's frozen encoder (deterministic:
                one fit; `probe.py`)
  random        the same model with a randomly initialised encoder: what
                fine-tuning alone reaches without pretraining (per seed)
  random_probe  a linear probe on that random encoder (per seed: seed k
                probes the encoder random fine-tuning seed k starts from)
  lexical       no encoder: naive Bayes / ridge on bag-of-words, most
                frequent tag per word (`lexical.py`)
  baseline      no model: the majority class (most frequent tag; most frequent
                answer span) or, for regression, the mean train target
Controls (every init but pretrained and probe) do not depend on the arm.
"""

import collections

import numpy as np

from lm_data.finetune import encoding

INITS = ('pretrained', 'probe', 'random', 'random_probe', 'lexical', 'baseline')
# Inits that fine-tune a model (once per seed).
TRAINED_INITS = ('pretrained', 'random')
# Inits that probe a frozen encoder.
PROBE_INITS = ('probe', 'random_probe')
# Inits fitted once (no seed).
SINGLE_INITS = ('probe', 'lexical', 'baseline')
# Inits that do not depend on the arm's encoder (copied between arms).
CONTROL_INITS = ('random', 'random_probe', 'lexical', 'baseline')


def _majority(values: np.ndarray) -> int:
  """Most frequent value; ties go to the smallest."""
  labels, counts = np.unique(values, return_counts=True)
  return int(labels[np.argmax(counts)])


def baseline_predictions(kind: str, train: encoding.Encoded,
                         data: encoding.Encoded):
  """Predictions for `data` that use only the train labels."""
  n = len(data)
  if kind == 'regression':
    return np.full(n, float(np.mean(train.targets['labels'])))
  if kind == 'token_classification':
    tags = train.targets['labels'][train.targets['label_weights'] > 0]
    return np.full(data.targets['labels'].shape, _majority(tags))
  if kind == 'qa':
    spans = zip(train.targets['start_positions'].tolist(),
                train.targets['end_positions'].tolist())
    start, end = collections.Counter(spans).most_common(1)[0][0]
    return np.full(n, start), np.full(n, end)
  return np.full(n, _majority(train.targets['labels']))
