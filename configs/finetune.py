r"""Fine-tuning and evaluation of pretrained checkpoints on downstream tasks.

Command:
  python finetune.py --config=configs/finetune.py \
      --config.checkpoint=runs/size --workdir=runs/size
`checkpoint` is one pretraining checkpoint dir (WORKDIR/arms/ARM/checkpoints)
or a study workdir holding arms/*/checkpoints; results land in
WORKDIR/arms/<arm>/eval/ (see lm_data/finetune/run.py).
Variants (comma-separated):
  :smoke  two small tasks, one seed, 256 train examples, one epoch
  :tfds   GLUE SST-2/MNLI/QQP/STS-B via TFDS (needs the data or internet)
Runtime: all local tasks x 3 seeds x (pretrained + random-init) for the `tiny`
preset on a 2-core CPU: see BUILD_NOTES.md, 'Fine-tuning'.
Expected: the pretrained encoder beats the random-init control on most local
tasks; both beat the majority / mean baseline.
"""

import ml_collections

SMOKE_TASKS = ('trec', 'sms_spam')
TFDS_TASKS = ('glue/sst2', 'glue/mnli', 'glue/qqp', 'glue/stsb')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants = set(filter(None, (arg or '').split(',')))
  unknown = variants - {'smoke', 'tfds'}
  if unknown:
    raise ValueError(f'unknown variant(s) {", ".join(sorted(unknown))}; '
                     'known: smoke, tfds')
  c = ml_collections.ConfigDict()
  # A checkpoint dir, or a study workdir holding arms/*/checkpoints.
  # Sequences are tuples so they can be set on the command line:
  # --config.tasks="('trec', 'hedge')".
  c.checkpoint = ''
  c.arms = ()              # with a workdir: only these arms (() = all)
  c.arm = ''               # a single checkpoint's arm ('' = its run folder)
  c.step = ml_collections.FieldReference(None, field_type=int)  # None: latest
  c.tasks = ()             # names in lm_data/finetune/tasks; () = all local
  c.seeds = 3              # fine-tuning seeds 0..seeds-1 per task and init
  c.controls = True        # also random-init encoder + majority/mean baseline
  c.max_train_examples = 1000  # deterministic cap on train examples (<= 0: all)
  c.max_eval_examples = 500    # cap on each dev/test split (<= 0: all)
  c.patience = 2           # stop after this many epochs without dev gain
  # {task or '*': {Recipe field or max_train/eval_examples: value}}
  c.overrides = {}
  if 'smoke' in variants:
    c.tasks = SMOKE_TASKS
    c.seeds = 1
    c.overrides = {'*': {'max_train_examples': 256, 'epochs': 1}}
  if 'tfds' in variants:
    c.tasks = TFDS_TASKS
    c.max_train_examples = 0
    c.max_eval_examples = 0
  return c
