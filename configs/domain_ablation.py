r"""Domain ablation: single-domain arms, the balanced mixture, leave-one-out mixtures.

Question: does in-domain pretraining text help the tasks of that domain (Don't
Stop Pretraining), and what does each domain contribute to the mixture? Every
arm gets the same number of unique tokens (the smallest arm's, `equal_budget`)
and the same training steps, so arms differ only in where the text comes from.
Tasks aligned with a domain: licence category -> legal, dialogue reply
selection -> conversational (the report's transfer heat map shows all pairs).

Command:
  python main.py --config=configs/domain_ablation.py --workdir=runs/domain
Default arms (5): only_legal, only_conversational, mix_balanced (all six
domains) and the mixture without each of the two; 1.03M unique tokens each.
Variants: :smoke, :arm=NAME, :all_domains (every domain alone, the full
transfer heat map: 9 arms at the smallest domain's budget, 0.74M tokens in
session 12; ~2x the time), :loo (leave-one-out for every domain, not only the
task-aligned ones), :gpu (the size ablation's one-GPU model and training,
configs/common.py: gpu; RUNTIME UNMEASURED), :tpu (one TFDS corpus per arm is
not meaningful: the at-scale domain study swaps `data.tfds_name` per arm by
hand).
Recipe: configs/common.py: cpu_recipe (wsd; fine-tuning on 500 examples for
>= 120 steps) at peak rate 1e-3 for 2000 steps without early stopping: single
domains of ~1M tokens stay on the loss plateau at 2e-3 (BUILD_NOTES.md,
'Session 13').
Runtime (2-core CPU, archives cached; BUILD_NOTES.md, 'Session 14'): 27 min
05 s whole on the first run, the random-init controls computed (peak RSS 3.3
GB), on a box that pretrained at 19.2k tokens/s. Scaled by that speed: ~42
min on session 13's box (12.3k), ~68 min on session 12's (7.7k).
:smoke 2 min 42 s (session 14, its controls computed).
Expected (measured, 'Session 14'): every arm learned (own-rows loss at [MASK]
0.50-1.81 nats below its unigram: only_legal 1.81, only_conversational 1.00,
mix_balanced 0.84, mix_without_legal 0.503, just past the 0.5 gate). Each
single-domain arm is lowest on its own domain (legal 1.10, conversational
0.83 nats below mix_balanced); leaving a domain out raises its loss by 1.35
(legal) and 0.86 (conversational) nats. Pretrained beats random init on 1-4
of 8 tasks per arm (only_legal 4). In-domain text helps licence_category only
before correction (only_legal - only_conversational +0.071 macro-F1 [+0.013,
+0.129]; not after Holm across 8 tasks): Don't Stop Pretraining's downstream
verdict is inconclusive, its held-out-loss verdict agrees.
"""

import ml_collections

from configs import common

DOMAINS = ('legal', 'literature', 'religious', 'technical', 'encyclopedic',
           'conversational')
# Domains with an aligned downstream task: their leave-one-out arm is always run.
TASK_DOMAINS = ('legal', 'conversational')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = common.parse_arg(arg, smoke=False, arm='', loo=False, all_domains=False, gpu=False)
  c = common.base_config()
  c.name = 'domain_ablation'
  c.equal_budget = True
  pool = ('legal', 'conversational', 'religious') if a.smoke else DOMAINS
  # Single-domain arms: the task-aligned domains by default, every domain with
  # :all_domains (the full transfer heat map; a smaller shared budget).
  singles = pool if (a.all_domains or a.smoke) else TASK_DOMAINS
  arms = [dict(name=f'only_{d}', data=common.data_recipe(domains=[d])) for d in singles]
  arms.append(dict(name='mix_balanced', data=common.data_recipe(
      domains=list(pool), weights={d: 1.0 for d in pool})))
  for left_out in (pool if a.loo else TASK_DOMAINS):
    rest = [d for d in pool if d != left_out]
    arms.append(dict(name=f'mix_without_{left_out}', data=common.data_recipe(
        domains=rest, weights={d: 1.0 for d in rest})))
  c.arms = [ml_collections.ConfigDict({**arm, 'epochs': 0}) for arm in arms]
  common.cpu_recipe(c)
  # Single domains of ~1M tokens stay on the loss plateau at the recipe's peak
  # rate 2e-3 and leave it by step ~1600 at 1e-3 (BUILD_NOTES.md, 'Session 13').
  # Their scores barely move on the plateau, so early stopping stays off: a
  # stop there would keep a model that has not learned.
  c.train.num_train_steps = 2000
  c.train.learning_rate = 1e-3
  c.train.early_stopping_patience = 0
  c.train.cooldown_on_stop = False
  return common.apply_variants(c, a)
