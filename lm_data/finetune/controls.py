"""Controls run in every evaluation, next to the pretrained encoder.

  pretrained  the arm's encoder params, a fresh head (per seed)
  random      the same model with a randomly initialised encoder: what
              fine-tuning alone reaches without pretraining (per seed)
  baseline    no model: the majority class (most frequent tag; most frequent
              answer span) or, for regression, the mean train target
"""

import collections

import numpy as np

from lm_data.finetune import encoding

INITS = ('pretrained', 'random', 'baseline')
# Inits that fine-tune a model (once per seed); the baseline runs once.
TRAINED_INITS = ('pretrained', 'random')


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
