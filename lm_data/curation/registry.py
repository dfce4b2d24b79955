"""The registry of curation steps, and the in-process runner.

A step maps documents to (kept or rewritten documents, details). It declares
how a distributed runner may split its input and still reach the in-process
decision (`Step.scope`):
- 'document': each document is decided alone (any batching is exact);
- 'group': documents are decided within groups of equal `Step.group_key`;
  every group keeps the in-process input order;
- 'custom': the step brings its own Beam transform (`Step.beam_transform`).

Adding a step: one module under `lm_data/curation/steps/` that calls
`register(Step(...))`, and its test. Modules there are imported on first use.
"""

from collections.abc import Callable, Hashable, Sequence
import collections
import dataclasses
import functools
import importlib
import pkgutil
import time
from typing import Any, Literal

from absl import logging

from lm_data.corpus.sources import Document
from lm_data.curation import decontaminate as decontaminate_lib
from lm_data.input_pipeline import tokenizer as tokenizer_lib

Docs = list[Document]
Details = dict[str, Any]


@dataclasses.dataclass
class Context:
  """What steps read besides the documents (one recipe's settings).

  The tokenizer is given loaded or as a path (a Beam worker loads it once).
  """
  seed: int = 0
  degrade: dict[str, float] = dataclasses.field(default_factory=dict)
  eval_texts: decontaminate_lib.EvalTexts = ()
  decontaminate_coverage: float = decontaminate_lib.COVERAGE_THRESHOLD
  tokenizer_path: str | None = None
  _tokenizer: tokenizer_lib.Tokenizer | None = None

  @classmethod
  def from_recipe(cls, recipe: Any, *, eval_texts=(), tokenizer=None,
                  tokenizer_path=None) -> 'Context':
    return cls(seed=recipe.seed, degrade=dict(recipe.degrade),
               eval_texts=eval_texts,
               decontaminate_coverage=recipe.decontaminate_coverage,
               tokenizer_path=None if tokenizer_path is None
               else str(tokenizer_path), _tokenizer=tokenizer)

  @property
  def tokenizer(self) -> tokenizer_lib.Tokenizer:
    if self._tokenizer is None:
      if self.tokenizer_path is None:
        raise ValueError('this recipe needs a tokenizer (compression step); '
                         'pass one to the curation Context')
      self._tokenizer = tokenizer_lib.Tokenizer.load(self.tokenizer_path)
    return self._tokenizer

  def __getstate__(self):  # Beam pickles the context; workers reload.
    state = dict(self.__dict__)
    if state['tokenizer_path'] is not None or state['_tokenizer'] is None:
      state['_tokenizer'] = None
    else:
      raise ValueError('a Context sent to other processes needs '
                       'tokenizer_path, not only a loaded tokenizer')
    return state


def additive_counts(details: Details) -> dict[str, int]:
  """Integer leaves of `details`, flattened to 'a/b/c' keys (default
  `Step.counts`: what a distributed runner sums over its parts)."""
  flat = {}
  for key, value in details.items():
    if isinstance(value, dict):
      flat.update({f'{key}/{k}': v for k, v in additive_counts(value).items()})
    elif isinstance(value, int) and not isinstance(value, bool):
      flat[str(key)] = value
  return flat


@dataclasses.dataclass(frozen=True)
class Step:
  """One curation step (see the module docstring).

  Attributes:
    name: the name a recipe lists.
    run: (documents in input order, context) -> (documents, details).
    scope: 'document', 'group' or 'custom'.
    group_key: for scope 'group', the key whose groups decide alone.
    counts: the additive integer counts of `details` (summed over parts by a
      distributed runner); default every integer leaf.
    beam_transform: for scope 'custom', (context) -> a Beam PTransform from
      keyed documents to keyed kept documents (lm_data.curation.beam_pipeline).
  """
  name: str
  run: Callable[[Docs, Context], tuple[Docs, Details]]
  scope: Literal['document', 'group', 'custom'] = 'document'
  group_key: Callable[[Document], Hashable] | None = None
  counts: Callable[[Details], dict[str, int]] = additive_counts
  beam_transform: Callable[[Context], Any] | None = None

  def __post_init__(self):
    if (self.scope == 'group') != (self.group_key is not None):
      raise ValueError(f'step {self.name}: give group_key exactly when '
                       'scope is "group"')
    if (self.scope == 'custom') != (self.beam_transform is not None):
      raise ValueError(f'step {self.name}: give beam_transform exactly when '
                       'scope is "custom"')


_STEPS: dict[str, Step] = {}


def register(step: Step) -> Step:
  if step.name in _STEPS:
    raise ValueError(f'curation step {step.name!r} is registered twice')
  _STEPS[step.name] = step
  return step


@functools.cache
def _load_step_modules() -> None:
  from lm_data.curation import steps  # pylint: disable=import-outside-toplevel
  for module in pkgutil.iter_modules(steps.__path__):
    importlib.import_module(f'{steps.__name__}.{module.name}')


def names() -> tuple[str, ...]:
  _load_step_modules()
  return tuple(sorted(_STEPS))


def get(name: str) -> Step:
  _load_step_modules()
  if name not in _STEPS:
    raise ValueError(f'unknown curation step {name!r}; known: '
                     f'{", ".join(names())}')
  return _STEPS[name]


# Steps a recipe turns on with their own fields, not by listing them.
FIELD_STEPS = ('decontaminate', 'degrade')


def quality_steps() -> tuple[str, ...]:
  """The names a recipe may list in `quality`."""
  return tuple(n for n in names() if n not in FIELD_STEPS)


def recipe_steps(recipe: Any) -> list[str]:
  """Step names of a prepare Recipe, in the order they run: quality steps,
  then decontamination (of the original text: degradation could hide an
  evaluation n-gram the model still learns), then degradation."""
  steps = list(recipe.quality)
  if recipe.decontaminate:
    steps.append('decontaminate')
  if any(recipe.degrade.values()):
    steps.append('degrade')
  return steps


def by_domain(docs: Sequence[Document]) -> dict[str, int]:
  return dict(collections.Counter(d.domain for d in docs))


def run_steps(docs: Sequence[Document], step_names: Sequence[str],
              context: Context) -> tuple[Docs, list[dict]]:
  """Runs the steps in order; returns the documents and per step
  {'step', 'details', 'removed': {domain: documents removed}}."""
  docs = list(docs)
  step_stats = []
  for name in step_names:
    step = get(name)
    before = by_domain(docs)
    start = time.perf_counter()
    docs, details = step.run(docs, context)
    after = by_domain(docs)
    logging.info('curation: %s kept %d of %d documents (%.1fs)', name,
                 len(docs), sum(before.values()), time.perf_counter() - start)
    step_stats.append({
        'step': name, 'details': details,
        'removed': {d: n - after.get(d, 0) for d, n in before.items()}})
  return docs, step_stats
