r"""Fine-tuning convergence and seed spread; prints one JSON line per fit.

  python benchmarks/finetune_convergence.py \
      --checkpoint=runs/size/arms/size_1-1/checkpoints \
      --tasks=trec,sms_spam --steps=372 --seeds=2 --inits=pretrained,random

Each fit runs one linear schedule of at least `--steps` optimizer steps on
`--max_train` examples (the evaluation's caps and encoding, lm_data/finetune/
run.py), evaluates dev after every epoch with early stopping off, and prints
the dev history, the best epoch, the test main metric at the best dev epoch,
and wall / CPU seconds. Used to choose `min_train_steps` and the number of
seeds (BUILD_NOTES: 'Probes, fine-tuning steps and seeds').
"""

import json
import time

from absl import app
from absl import flags

from lm_data.finetune import run
from lm_data.finetune import tasks as tasks_lib
from lm_data.finetune import trainer
from lm_data.input_pipeline import tokenizer as tokenizer_lib
from lm_data.train import checkpoint

_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Pretraining checkpoint dir.')
_TASKS = flags.DEFINE_list('tasks', ['trec'], 'Local task names.')
_STEPS = flags.DEFINE_integer('steps', 372, 'Minimum optimizer steps of the schedule.')
_SEEDS = flags.DEFINE_integer('seeds', 2, 'Fine-tuning seeds per init.')
_INITS = flags.DEFINE_list('inits', ['pretrained', 'random'], 'pretrained and/or random.')
_MAX_TRAIN = flags.DEFINE_integer('max_train', 2000, 'Training examples (cap).')
_MAX_DEV = flags.DEFINE_integer('max_dev', 1000, 'Dev examples (cap).')
flags.mark_flag_as_required('checkpoint')


def main(argv):
  del argv
  pretrained = checkpoint.load_pretrained(_CHECKPOINT.value)
  tokenizer = tokenizer_lib.Tokenizer.load(pretrained.tokenizer_path)
  for name in _TASKS.value:
    task = tasks_lib.get_task(name)
    limits = run.Limits(_MAX_TRAIN.value, _MAX_DEV.value, 0, _STEPS.value)
    _, encoded = run.encode_splits(task, task.load(), tokenizer, task.recipe, limits)
    tuner = trainer.FineTuner(task.kind, pretrained.model_config, task.num_labels,
                              task.recipe, len(encoded['train']), min_steps=_STEPS.value)
    for init in _INITS.value:
      for seed in range(_SEEDS.value):
        start, cpu = time.time(), time.process_time()
        params = tuner.init_params(
            seed, pretrained.encoder_params if init == 'pretrained' else None)
        fit = tuner.fit(params, encoded['train'], encoded['dev'], seed=seed,
                        main_metric=task.main_metric, patience=0)
        test = tuner.evaluate(fit.params, encoded['test'])[task.main_metric]
        print(json.dumps({
            'task': name, 'init': init, 'seed': seed, 'steps': tuner.num_train_steps,
            'steps_per_epoch': tuner.steps_per_epoch,
            'dev': [round(v, 4) for v in fit.dev_history], 'best_epoch': fit.best_epoch,
            'test': round(test, 4), 'seconds': round(time.time() - start, 1),
            'cpu_seconds': round(time.process_time() - cpu, 1)}), flush=True)


if __name__ == '__main__':
  app.run(main)
