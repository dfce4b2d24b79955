"""Curates a recipe's documents on Apache Beam and writes a TFDS dataset.

  python -m lm_data.curation.beam_main \\
      --recipe='{"domains": ["religious"], "quality": ["heuristic",
                 "dedup_exact", "dedup_near"], "decontaminate": true}' \\
      --output_dir=/tmp/curated [--tokenizer=PATH] [Beam pipeline options]

`--recipe` is a prepare Recipe as JSON (inline or a file): its domains (the
embedded corpus, or `tfds_name` for a prepared TFDS text dataset) and steps
(quality, decontaminate, degrade: `curation.recipe_steps`). Arguments this
program does not know are Beam pipeline options (`--runner=DataflowRunner
--project=... --region=... --temp_location=gs://...`, `--runner=FlinkRunner`,
...); without them the DirectRunner runs it here. Writes
`<output_dir>/lm_data_curated/1.0.0/` (array_record shards, one split per
domain, `curation_stats.json`); reading it: `lm_data.input_pipeline.stream`.
Needs `pip install -e '.[beam]'`.
"""

import argparse
import json
import os
import pathlib
import sys

from lm_data import errors

_NEEDS_BEAM = ("the Beam curation needs apache-beam; install the extra: "
               "pip install -e '.[beam]'")


_REQUIRED = object()
# (flag, default, help); the other arguments are Beam pipeline options.
_FLAGS = (
    ('recipe', _REQUIRED, 'prepare Recipe as JSON, or a JSON file'),
    ('output_dir', _REQUIRED,
     'where lm_data_curated/1.0.0/ is written (local or gs://)'),
    ('tokenizer', None, 'SentencePiece model (needed by the compression step)'),
    ('data_dir', None, 'TFDS data_dir of the corpus (default: the cache)'),
    ('num_shards', 1, 'array_record shards per domain (0: the runner decides)'),
    ('tasks', None, 'comma-separated evaluation tasks to decontaminate '
     'against (default: the local ones)'),
    ('eval_texts', None, 'JSON file of evaluation texts to decontaminate '
     'against (a list, or {task: texts}); instead of --tasks'),
)


def _recipe(text: str):
  from lm_data.input_pipeline import prepare  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(text)
  raw = path.read_text() if not text.lstrip().startswith('{') else text
  try:
    fields = json.loads(raw)
  except json.JSONDecodeError as e:
    raise errors.UserError(f'--recipe is not JSON ({e}); give a JSON object '
                           'or a file holding one') from e
  with errors.as_user_errors('--recipe'):
    return prepare.Recipe.from_config(fields)


def _inputs(recipe, data_dir):
  """One Input per domain of the recipe: the train splits, and the
  validation splits that exist (held out, copied uncurated)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from lm_data.corpus import tfds_builder  # pylint: disable=import-outside-toplevel
  from lm_data.curation import beam_pipeline  # pylint: disable=import-outside-toplevel
  if recipe.tfds_name is not None:
    builder = tfds.builder(recipe.tfds_name, data_dir=data_dir)
    corpus_data = False
    builders = [(recipe.tfds_name, builder)]
  else:
    corpus_data = True
    builders = [(d, tfds_builder.builder(d, data_dir=data_dir))
                for d in recipe.domains]
  def inputs(split):
    return [beam_pipeline.Input(
        domain=domain, path=os.fspath(builder.data_dir), split=split,
        corpus=corpus_data, num_records=builder.info.splits[split].num_examples)
            for domain, builder in builders if split in builder.info.splits]
  return inputs(tfds_builder.TRAIN), inputs(tfds_builder.VALIDATION)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  for flag, default, help_text in _FLAGS:
    parser.add_argument(f'--{flag}', required=default is _REQUIRED,
                        default=None if default is _REQUIRED else default,
                        type=type(default) if isinstance(default, int) else str,
                        help=help_text)
  args, beam_args = parser.parse_known_args(argv)
  try:
    import apache_beam  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    print(_NEEDS_BEAM, file=sys.stderr)
    return 1
  # pylint: disable=import-outside-toplevel
  from apache_beam.options.pipeline_options import PipelineOptions
  from lm_data import curation
  from lm_data.curation import beam_pipeline
  from lm_data.curation import dataset
  try:
    recipe = _recipe(args.recipe)
    steps = curation.recipe_steps(recipe)
    if 'compression' in steps and args.tokenizer is None:
      raise errors.UserError('the recipe has the compression step: pass '
                             '--tokenizer=PATH (the shared SentencePiece '
                             'model)')
    eval_texts = {}
    if recipe.decontaminate and args.eval_texts:
      try:
        eval_texts = json.loads(pathlib.Path(args.eval_texts).read_text())
      except (OSError, json.JSONDecodeError) as e:
        raise errors.UserError(f'--eval_texts: cannot read {e}') from e
    elif recipe.decontaminate:
      from lm_data.finetune import tasks as tasks_lib
      names = (args.tasks.split(',') if args.tasks
               else list(tasks_lib.LOCAL_TASKS))
      with errors.as_user_errors('--tasks'):
        eval_texts = {t: tasks_lib.eval_texts([t]) for t in names}
    context = curation.Context.from_recipe(
        recipe, eval_texts=eval_texts, tokenizer_path=args.tokenizer)
    inputs, held_out = _inputs(recipe, args.data_dir)
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  stats = beam_pipeline.run(
      inputs, steps, context, output_dir=args.output_dir,
      num_shards=args.num_shards, options=PipelineOptions(beam_args),
      metadata={'recipe': recipe.to_json()}, held_out=held_out)
  for step in stats['steps']:
    print(f"{step['step']}: removed {sum(step['removed'].values())} "
          f"({step['removed']})")
  print(f'wrote {dataset.dataset_dir(args.output_dir)}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
