r"""Fine-tuning and evaluation of pretrained checkpoints on downstream tasks.

Command:
  python finetune.py --config=configs/finetune.py \
      --config.checkpoint=runs/size --workdir=runs/size
`checkpoint` is one pretraining checkpoint dir (WORKDIR/arms/ARM/checkpoints)
or a study workdir holding arms/*/checkpoints; results land in
WORKDIR/arms/<arm>/eval/ (see lm_data/finetune/run.py).
A rate grid, each encoder keeping its best rate on dev (2x the fine-tuning
time; BUILD_NOTES.md, 'Session 12'): --config.learning_rates="(1e-3, 3e-3)"
(in a study: --config.finetune.learning_rates=...).
Variants (comma-separated):
  :smoke  two small tasks, one seed, 256 train examples, one epoch
  :tfds   GLUE SST-2/MNLI/QQP/STS-B via TFDS (needs the data or internet)
Per task and encoder: a linear probe on frozen features of every layer
(lm_data/finetune/probe.py) and full fine-tuning for >= min_train_steps
optimizer steps; controls: the random-init encoder (probed and fine-tuned),
a lexical baseline (lm_data/finetune/lexical.py) and the majority class. Test
splits are evaluated whole; per-item predictions are stored for paired
comparisons (lm_data/study/paired.py).
Runtime and the choice of seeds, steps and caps: BUILD_NOTES.md, 'Probes,
fine-tuning steps and seeds'.
Expected (BUILD_NOTES.md, 'Session 15'): the pretrained encoder beats the
random-init control on 2 of 8 local tasks after the CPU recipe's 3000 steps,
on 5 after 12000, and on 5-6 with 3 fine-tuning seeds and 10 random-init ones
(one seed borrows the control's variance, which its failed sms_spam runs
inflate; size_ablation.py:vs_random); lexical baselines are strong on the
keyword-driven tasks (sms_spam, trec, licences).
"""

import ml_collections

from configs import args

SMOKE_TASKS = ('trec', 'sms_spam')
TFDS_TASKS = ('glue/sst2', 'glue/mnli', 'glue/qqp', 'glue/stsb')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants = args.parse_arg(arg, smoke=False, tfds=False)
  c = ml_collections.ConfigDict()
  # A checkpoint dir, or a study workdir holding arms/*/checkpoints.
  # Sequences are tuples so they can be set on the command line:
  # --config.tasks="('trec', 'hedge')".
  c.checkpoint = ''
  c.arms = ()              # with a workdir: only these arms (() = all)
  c.arm = ''               # a single checkpoint's arm ('' = its run folder)
  c.step = ml_collections.FieldReference(None, field_type=int)  # None: latest
  c.tasks = ()             # names in lm_data/finetune/tasks; () = all local
  c.seeds = 1              # fine-tuning seeds of each arm's encoder (BUILD_NOTES: 'Probes, fine-tuning steps and seeds')
  c.random_seeds = 3       # fine-tuning seeds of the random-init control (once per ablation; 0 = seeds)
  c.probe_seeds = 3        # random-init encoders probed (the pretrained probe is one deterministic fit)
  c.controls = True        # random-init encoder (fine-tuned and probed), lexical and majority baselines
  c.probes = True          # linear probes on frozen features of every layer
  c.max_train_examples = 2000  # deterministic cap on train examples (<= 0: all)
  c.max_dev_examples = 1000    # cap on dev, which only selects (epoch, probe layer/l2)
  c.max_test_examples = 0      # test splits are evaluated whole (<= 0: all)
  c.min_train_steps = 240      # fine-tuning runs at least this many optimizer steps (4 epochs of 2000)
  c.patience = 2           # stop after this many epochs without dev gain (0: never)
  # Fine-tune at each of these peak rates and keep the one with the best dev
  # main metric, per encoder, seed and task: the two inits prefer different
  # rates (BUILD_NOTES.md, 'Session 12'). () = each task's recipe rate only.
  c.learning_rates = ()
  # Control results (random init, lexical, majority) depend only on the task
  # settings, tokenizer and model config: keep them in CACHE/controls and reuse
  # them in later runs (a study run sets cache_dir to its own cache_dir).
  c.controls_cache = True
  c.cache_dir = ''         # '' = $LM_DATA_CACHE or ~/.cache/lm_data
  # {task or '*': {FinetuneSettings field or max_train/dev/test_examples, min_train_steps: value}}
  c.overrides = {}
  if variants.smoke:
    c.tasks = SMOKE_TASKS
    c.seeds = 1
    c.random_seeds = 1
    c.probe_seeds = 1
    c.min_train_steps = 0
    c.overrides = {'*': {'max_train_examples': 256, 'max_dev_examples': 256,
                         'epochs': 1}}
  if variants.tfds:
    c.tasks = TFDS_TASKS
    c.max_train_examples = 0
    c.max_dev_examples = 0
  return c
