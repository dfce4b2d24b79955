r"""Pretraining-recipe sweep: one arm, several settings, held-out loss vs baselines.

Each setting pretrains one arm of an ablation config (default: the size
ablation's full-data arm) in its own folder and prints one JSON line: held-out
loss and accuracy at [MASK] and at other positions, the count-model references
on the same predictions (lm_data/study/baselines.py), the margin below the
unigram at [MASK], tokens/s and wall time. No fine-tuning.

  python benchmarks/pretrain_sweep.py --workdir=/tmp/sweep \
      --setting='base:' \
      --setting='lr3e-3:train.learning_rate=3e-3' \
      --setting='seq64:seq_len=64;train.global_batch_size=64;mask.max_predictions=10'

A setting is NAME:FIELD=VALUE;...; values are Python literals. Settings that
share the tokenizer and data (vocab, seq_len, recipe) reuse the prepared cache.
"""

import ast
import json
import pathlib
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from lm_data.study import run as study_run

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # configs/

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/size_ablation.py',
                                          'ablation config')
_WORKDIR = flags.DEFINE_string('workdir', None, 'one folder per setting goes here',
                               required=True)
_ARM = flags.DEFINE_string('arm', 'size_1-1', 'the arm to pretrain')
_SETTINGS = flags.DEFINE_multi_string('setting', ['base:'], 'NAME:FIELD=VALUE;...')


def _apply(config, overrides: str):
  for part in filter(None, overrides.split(';')):
    key, _, value = part.partition('=')
    *path, leaf = key.strip().split('.')
    node = config
    for p in path:
      node = node[p]
    try:
      node[leaf] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      node[leaf] = value


def main(_):
  logging.set_verbosity(logging.WARNING)
  for setting in _SETTINGS.value:
    name, _, overrides = setting.partition(':')
    config = _CONFIG.value.copy_and_resolve_references()
    _apply(config, overrides)
    config.arm = _ARM.value
    workdir = pathlib.Path(_WORKDIR.value) / name
    arm = study_run.select_arms(config)[0]
    start = time.perf_counter()
    study = study_run.Study(config, workdir)
    budget = study.budgets([arm])[arm.name]
    t_train = time.perf_counter()
    record = study.pretrain_arm(arm, budget, 1, 1).to_dict()
    end = time.perf_counter()
    # Logged train steps only (the file also holds events and held-out scores).
    metrics = [m for m in map(json.loads, (workdir / 'arms' / arm.name / 'metrics.jsonl')
                              .read_text().splitlines()) if 'tokens_per_sec' in m]
    h, b = record['heldout']['all'], record['mlm_baselines']['all']
    out = {'setting': name, 'overrides': overrides, 'steps': record['steps'],
           'tokens_seen': record['tokens_seen'], 'unique_tokens': record['unique_tokens'],
           'loss_mask': h['loss_mask'], 'acc_mask': h['accuracy_mask'],
           'loss_other': h['loss_other'], 'acc_other': h['accuracy_other'],
           'loss': h['loss'], 'acc': h['accuracy'],
           'unigram_mask': b['mask']['unigram_loss'],
           'bigram_mask': b['mask']['bigram_loss'],
           'below_unigram_mask': b['mask']['unigram_loss'] - h['loss_mask'],
           'freq_copy_acc': b['all']['freq_copy_accuracy'],
           'bigram_acc_mask': b['mask']['bigram_accuracy'],
           'final_train_loss': metrics[-1].get('loss'),
           'tokens_per_sec': sorted(m['tokens_per_sec'] for m in metrics)[len(metrics) // 2],
           'prepare_s': round(t_train - start, 1), 'pretrain_s': round(end - t_train, 1)}
    print(json.dumps(out), flush=True)


if __name__ == '__main__':
  app.run(main)
