r"""Size ablation: nested subsets of the default corpus at fixed training compute.

Question: how does the amount of unique pretraining text change held-out MLM
loss and each downstream task? Arms take nested token budgets on a log grid
(1/64, 1/8, 1 of the default seven-domain corpus, same seed so every subset is
inside the next) and all train up to the same number of steps, so small arms
repeat their data (epochs are reported). Each arm keeps the checkpoint with
the lowest held-out loss (scored every 250 steps; it stops 2 scores after it):
a small arm that overfits its repeated data is compared at its best, as
MiniBERTas chose checkpoints by held-out perplexity, not at an overfitted end.
An arm stopped while the wsd rate is still held then trains the decay from
its kept step (a branched cool-down, `train.cooldown_on_stop`) and keeps the
lowest of that branch, so every arm's model has had a decay.
`fixed_epochs` trains every arm for the same number of epochs instead (compute
grows with data).

Command:
  python main.py --config=configs/size_ablation.py --workdir=runs/size
Variants (comma-separated, big_vision style):
  :smoke          minutes-long end-to-end run on real data (2 arms, tiny steps)
  :arm=size_1-8   one arm only (job arrays)
  :grid4          the x4 grid 1/64, 1/16, 1/4, 1 (one more 3000-step arm)
  :fixed_epochs   equal epochs instead of equal steps
  :vs_random      pretrained vs random init with the power to see it: the
                  full-data arm alone at 4x the steps (12000), 3 fine-tuning
                  seeds, 10 for the random-init control. 38 min 54 s whole,
                  its controls computed (20.0k tokens/s box); 3.06 nats below
                  the unigram, beats random init on 5 of 8 tasks (3 after
                  Holm; BUILD_NOTES.md, 'Session 15')
  :tpu            C4 + BERT-base + bf16 on TPU VMs, x4 grid (see docs/tpu.md)
  :gpu            one GPU: medium preset, bf16, batch 256, 1200 steps (19.7M
                  tokens per arm, 3.2x the default), the default's arms and
                  data; sized for <= 10 min on one H200 with fine-tuning and
                  report by arithmetic (configs/common.py: gpu), RUNTIME UNMEASURED:
    python main.py --config=configs/size_ablation.py:gpu --workdir=runs/size_gpu
                  Without network there: main.py --prepare_only and bundle.py
                  export on a machine with it, bundle.py import (docs/gpu.md).
Runtime (2-core CPU, archives, prepared data and control results cached;
BUILD_NOTES.md, 'Session 13'): 31 min 13 s whole, peak RSS 3.3 GB — 3 arms x
up to 3000 steps (seq 64, batch 32; 6.1M tokens each; ~0.17-0.18 s per step
alone on that box), arm k's probes and fine-tuning (500 examples, >= 120
steps) running while arm k+1 pretrains (`overlap_downstream`). The first
run, which also computes the random-init controls: 36 min 58 s (peak RSS 3.1
GB). The x4 grid took 53 min 24 s on session 7's slower box (the reason for
three arms). :smoke about 1.5-2.5 min.
Fewer steps (sessions 9-10): 2000 linear steps left the full arm on the
plateau (0.70 nats below the unigram); 2000 WSD steps inverted the size
ranking. Masking 25% instead of 40% ran at 14.0k tokens/s against 12.3k
(same day) but leaves the full arm on the plateau at 3000 steps (0.60
below; 'Session 13').
Expected (measured, BUILD_NOTES.md 'Session 13'): held-out loss at [MASK]
0.57 / 1.55 / 1.64 nats below the unigram for the 1/64, 1/8, 1 arms (the
1/64 arm stops at step 1750, best at 1250, and its branched decay 1250 ->
1850 brings it from 0.49 to 0.57); accuracy 0.18-0.23 vs frequency+copy 0.13;
on the same positions the 1/64 and 1/8 arms are 1.17 and 0.12 nats above
the full arm. Every arm's encoder beats random init on 2 of 8 tasks (POS by
probe and fine-tuning, licences by fine-tuning) and is worse on
vader_sentiment fine-tuning at the shared rate (with each encoder's rate
chosen on dev, --config.finetune.learning_rates="(1e-3, 3e-3)": 1 of 8, and
vader_sentiment n.s.; 'Session 12'). Data size: POS probing gains with data
(1/64 -0.076, 1/8 -0.012 vs the full arm, paired); no task slope survives
Holm across the 8 tasks.
"""

import ml_collections

from configs import common

# The CPU default spans 1/64 ... 1 in three arms (x8 apart) to fit the 45-min
# budget; the x4 grid's two middle arms learned alike (1.55 / 1.56 nats below
# their unigram; BUILD_NOTES.md, 'Session 13'). :grid4 and :tpu use the x4
# grid; :gpu keeps the default's arms so one prepared bundle serves both.
FRACTIONS = ((1, 64), (1, 8), (1, 1))
FRACTIONS_GRID4 = ((1, 64), (1, 16), (1, 4), (1, 1))
SMOKE_FRACTIONS = ((1, 64), (1, 4))
FIXED_EPOCHS = 4
# :vs_random. At the default 3000 steps the encoder beats random init on 2 of 8
# tasks; at 12000 steps, with 3 fine-tuning seeds and 10 random-init ones, on 5
# (this arm) and 6 (the quality pool's unfiltered arm; 'Session 15'). One
# fine-tuning seed borrows the control's seed variance, which the random-init
# encoder's failed sms_spam runs inflate.
VS_RANDOM_STEPS_FACTOR = 4
VS_RANDOM_SEEDS, VS_RANDOM_CONTROL_SEEDS = 3, 10


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = common.parse_arg(arg, smoke=False, arm='', fixed_epochs=False, tpu=False,
                       gpu=False, grid4=False, vs_random=False)
  c = common.base_config()
  c.name = 'size_ablation'
  clash = [v for v in ('grid4', 'tpu', 'gpu', 'fixed_epochs') if a.vs_random and a[v]]
  if clash:
    raise ValueError(f'vs_random is the CPU recipe\'s full arm at 4x the steps; '
                     f'drop {", ".join(clash)} (or vs_random)')
  if a.smoke:
    fractions = SMOKE_FRACTIONS
  elif a.grid4 or a.tpu:
    fractions = FRACTIONS_GRID4
  elif a.vs_random:
    fractions = ((1, 1),)
  else:
    fractions = FRACTIONS
  common.cpu_recipe(c)
  c.arms = [ml_collections.ConfigDict(dict(
      name=f'size_{num}-{den}',
      data=common.data_recipe(budget_fraction=num / den),
      epochs=FIXED_EPOCHS if a.fixed_epochs else 0,
  )) for num, den in fractions]
  if a.vs_random:
    c.train.num_train_steps *= VS_RANDOM_STEPS_FACTOR
    c.finetune.seeds = VS_RANDOM_SEEDS
    c.finetune.random_seeds = VS_RANDOM_CONTROL_SEEDS
  return common.apply_variants(c, a)
