"""At-scale tasks by TFDS name, for machines with internet or prepared data.

Read with `tfds.data_source` (array_record, no TensorFlow). GLUE hides its test
labels, so the GLUE validation split is the test set here and dev is a hashed
DEV_FRACTION of train (by example index; for SQuAD by article title).

  glue/sst2  sentence sentiment (negative, positive), 67k train
  glue/mnli  entailment pairs, 393k train; test = validation_matched, extra
             test_mismatched = validation_mismatched
  glue/qqp   duplicate question pairs, 364k train
  glue/stsb  similarity regression 0..5, 5.7k train
  squad      SQuAD v1.1 extractive QA (first gold answer), 88k train
Licences: see the TFDS catalogue pages of each dataset.
"""

from collections.abc import Iterator
import dataclasses

import tensorflow_datasets as tfds

from lm_data.finetune.tasks import base

READ_BATCH = 1024


@dataclasses.dataclass(frozen=True)
class _Glue:
  kind: str
  fields: tuple[str, str | None]
  labels: tuple[str, ...]
  main_metric: str
  tests: dict[str, str]       # our split name -> TFDS split
  recipe: base.FinetuneSettings


_GLUE = {
    'glue/sst2': _Glue('classification', ('sentence', None),
                       ('negative', 'positive'), 'accuracy',
                       {'test': 'validation'}, base.FinetuneSettings(2e-5, 3, 32, 128)),
    'glue/mnli': _Glue('pair_classification', ('premise', 'hypothesis'),
                       ('entailment', 'neutral', 'contradiction'), 'accuracy',
                       {'test': 'validation_matched',
                        'test_mismatched': 'validation_mismatched'},
                       base.FinetuneSettings(2e-5, 3, 32, 128)),
    'glue/qqp': _Glue('pair_classification', ('question1', 'question2'),
                      ('not_duplicate', 'duplicate'), 'accuracy',
                      {'test': 'validation'}, base.FinetuneSettings(2e-5, 3, 32, 128)),
    'glue/stsb': _Glue('regression', ('sentence1', 'sentence2'), (), 'pearson',
                       {'test': 'validation'}, base.FinetuneSettings(2e-5, 5, 32, 128)),
}
SQUAD_RECIPE = base.FinetuneSettings(3e-5, 2, 32, 384)


def _records(name: str, split: str) -> Iterator[dict]:
  source = tfds.data_source(name, split=split)
  for start in range(0, len(source), READ_BATCH):
    stop = min(start + READ_BATCH, len(source))
    yield from source.__getitems__(range(start, stop))


def _str(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def _dev_from_train(examples: list[base.Example], salt: str) -> base.Splits:
  dev = [base.bucket(f'{salt}/{e.group}') < base.DEV_FRACTION for e in examples]
  return {'train': [e for e, d in zip(examples, dev) if not d],
          'dev': [e for e, d in zip(examples, dev) if d]}


def load_glue(name: str) -> base.TaskData:
  spec = _GLUE[name]
  first, second = spec.fields

  label_type = float if spec.kind == 'regression' else int

  def read(split):
    return [base.Example(
        text=_str(r[first]), text_b=_str(r[second]) if second else None,
        label=label_type(r['label']), group=str(i))
            for i, r in enumerate(_records(name, split))]

  splits = _dev_from_train(read('train'), name)
  for ours, theirs in spec.tests.items():
    splits[ours] = read(theirs)
  return base.TaskData(splits)


def load_squad() -> base.TaskData:
  def read(split):
    out = []
    for r in _records('squad', split):
      answers = r['answers']
      out.append(base.Example(
          text=_str(r['question']), text_b=_str(r['context']),
          answer_start=int(answers['answer_start'][0]),
          answer_text=_str(answers['text'][0]), group=_str(r['title'])))
    return out

  splits = _dev_from_train(read('train'), 'squad')
  splits['test'] = read('validation')
  return base.TaskData(splits)


TASKS = tuple(
    base.Task(name=name, kind=spec.kind, main_metric=spec.main_metric,
              label_names=spec.labels, recipe=spec.recipe,
              load=lambda name=name: load_glue(name), description=__doc__)
    for name, spec in _GLUE.items()) + (
        base.Task(name='squad', kind='qa', main_metric='span_f1',
                  label_names=(), recipe=SQUAD_RECIPE, load=load_squad,
                  description=__doc__),)
