"""What a downstream task is: examples, splits, labels, recipe, provenance."""

import collections
from collections.abc import Callable, Iterable, Sequence
import dataclasses
import hashlib

KINDS = ('classification', 'regression', 'pair_classification',
         'token_classification', 'qa')
SPLITS = ('train', 'dev', 'test')
# Fractions of groups (documents) sent to dev and test; the rest is train.
DEV_FRACTION = 0.1
TEST_FRACTION = 0.1
# Precision of the hash bucket that assigns a group to a split.
HASH_BUCKETS = 10_000


@dataclasses.dataclass(frozen=True)
class Example:
  """One labelled example of any task kind.

  text:   sentence A; the question for QA
  text_b: sentence B of a pair; the context for QA
  label:  class index, or the target of a regression
  words, tags: a token-classification sentence and one tag index per word
  answer_start, answer_text: QA answer as a character offset into `text_b`
  group:  the document the example comes from; splits never cut a group
  """
  text: str = ''
  text_b: str | None = None
  label: int | float = 0
  words: tuple[str, ...] = ()
  tags: tuple[int, ...] = ()
  answer_start: int = -1
  answer_text: str = ''
  group: str = ''

  def texts(self) -> list[str]:
    """The raw texts of this example (for decontamination)."""
    first = ' '.join(self.words) if self.words else self.text
    return [t for t in (first, self.text_b) if t]


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
  """A task's fine-tuning hyper-parameters (`Task.recipe`), fixed across arms."""
  learning_rate: float = 1e-3
  epochs: int = 3
  batch_size: int = 32
  max_len: int = 64


Splits = dict[str, list[Example]]


@dataclasses.dataclass(frozen=True)
class TaskData:
  """The splits of a task and how many source records were skipped (malformed,
  empty, or duplicates with conflicting labels)."""
  splits: Splits
  skipped: int = 0


@dataclasses.dataclass(frozen=True)
class Task:
  """A registered task.

  load() returns TaskData whose splits are 'train', 'dev', 'test' plus any
  extra test sets (names starting with 'test_'), deterministically.
  """
  name: str
  kind: str
  main_metric: str
  label_names: tuple[str, ...]   # empty for regression and QA
  recipe: FinetuneSettings
  load: Callable[[], TaskData]
  description: str               # provenance, licence, sizes
  domain: str | None = None      # pretraining domain whose text it shares (domain ablation)

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(
          f'unknown task kind {self.kind!r}; known: {", ".join(KINDS)}')

  @property
  def num_labels(self) -> int:
    return len(self.label_names)


def bucket(key: str) -> float:
  """A stable pseudo-random number in [0, 1) for `key` (not Python's hash)."""
  digest = hashlib.sha256(key.encode('utf-8')).digest()
  return int.from_bytes(digest[:8], 'big') % HASH_BUCKETS / HASH_BUCKETS


def split_by_group(examples: Iterable[Example], salt: str) -> Splits:
  """Train/dev/test by a hash of each example's group: stable and order-free.

  All examples of a group (document) land in the same split, and adding or
  removing other groups never moves a group to another split.
  """
  splits = {name: [] for name in SPLITS}
  for example in examples:
    u = bucket(f'{salt}/{example.group}')
    name = ('test' if u < TEST_FRACTION else
            'dev' if u < TEST_FRACTION + DEV_FRACTION else 'train')
    splits[name].append(example)
  return splits


def dedupe(items: Iterable[tuple[str, int]]
           ) -> tuple[list[tuple[str, int]], int]:
  """Keeps the first copy of each text; drops texts seen with different labels.

  Returns the kept (text, label) pairs in first-seen order and the number of
  lines dropped.
  """
  labels = collections.defaultdict(set)
  order, total = [], 0
  for text, label in items:
    total += 1
    if text not in labels:
      order.append(text)
    labels[text].add(label)
  kept = [(t, next(iter(labels[t]))) for t in order if len(labels[t]) == 1]
  return kept, total - len(kept)


def label_index(label_names: Sequence[str]) -> dict[str, int]:
  return {name: i for i, name in enumerate(label_names)}
