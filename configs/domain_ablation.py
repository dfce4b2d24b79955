r"""Domain ablation: single-domain arms, the balanced mixture, leave-one-out mixtures.

Question: does in-domain pretraining text help the tasks of that domain (Don't
Stop Pretraining), and what does each domain contribute to the mixture? Every
arm gets the same number of unique tokens (the smallest arm's, `equal_budget`)
and the same training steps, so arms differ only in where the text comes from.
Tasks aligned with a domain: licence category -> legal, dialogue reply
selection -> conversational (the report's transfer heat map shows all pairs).

Command:
  python main.py --config=configs/domain_ablation.py --workdir=runs/domain
Variants: :smoke, :arm=NAME, :loo (leave-one-out for every domain, not only
the task-aligned ones), :gpu (the size ablation's one-GPU model and training,
configs/common.py: gpu; 9 arms, so ~2.2x its unmeasured runtime), :tpu (one
TFDS corpus per arm is not meaningful: the at-scale domain study swaps
`data.tfds_name` per arm by hand).
Runtime (2-core CPU, archives cached; BUILD_NOTES.md, 'Session 5',
'Session 8' and 'Session 12'): 1200 steps per arm and lighter fine-tuning (configs/common.py:
nine_arms). 1 h 09 min 39 s whole, with the control results cached
(session 12; peak RSS 3.05 GB), over the 60-min budget: ~5 min of
pretraining per arm alone, ~7.7 min beside the previous arm's evaluation.
:smoke 2 min 20 s.
Expected (measured, 744k unique tokens per arm): every single-domain arm has
the lowest held-out loss at [MASK] on its own domain (by 0.08-0.87 nats over
the balanced mix); leaving legal out raises legal loss by 1.16 nats and
leaves the other domains within 0.02. At 1200 steps 5 of 9 arms are still on
the loss plateau (< 0.5 nats below their unigram), so the report holds back
their downstream verdicts (only_conversational at 3000 steps: 0.99 below;
`--config.train.num_train_steps=3000`; at 2400 WSD steps on its own
1.03M-token budget it is 0.13 below at the recipe's peak rate 2e-3 and 1.32
below at 1e-3: `python benchmarks/pretrain_sweep.py
--config=configs/domain_ablation.py --arm=only_conversational --workdir=W
--setting='lr1e-3:train.num_train_steps=2400;train.schedule=wsd;train.learning_rate=1e-3'`;
BUILD_NOTES.md, 'Session 13'). At >= 60 fine-tuning steps the
random-init control never leaves one label on dialog_reply, hedge,
licence_category and sms_spam; the report does not count wins over it, which
leaves the balanced mix beating random init on 2 of 8 tasks (POS and
dialog_reply, by probe). No in-domain downstream gain is significant.
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
