r"""Train-step benchmark: lm_data's jitted MLM step vs HuggingFace FlaxBertForMaskedLM.

  python benchmarks/train_step.py --model=mini --vocab=8192 --batch=32 --seq=128 [--dtype=bf16]

Prints one JSON line per measurement: tokens/s, s/step (median of --steps
steps after warm-up), compile s, MFU (analytic FLOPs over the matmul peak
measured in the same run) and peak RSS. Each implementation runs in its own
subprocess (clean RSS, no shared compilation cache), alternating
`--repeats` times so both see the same machine load; the last line gives the
ratio of medians. HF runs when `transformers<5` (with Flax) is importable; its
step is run_mlm_flax.py's: AdamW with the decay mask, loss over all positions'
logits with a label mask, jitted (one device, so pmap is equivalent).
"""

import json
import resource
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

_MODEL = flags.DEFINE_string('model', 'mini', 'Preset: tiny, mini, small, medium, base, large.')
_VOCAB = flags.DEFINE_integer('vocab', 8192, 'Vocabulary size.')
_BATCH = flags.DEFINE_integer('batch', 32, 'Global batch (rows).')
_SEQ = flags.DEFINE_integer('seq', 128, 'Sequence length.')
_DTYPE = flags.DEFINE_enum('dtype', 'f32', ['f32', 'bf16'], 'Compute dtype.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps (median reported).')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.')
_REPEATS = flags.DEFINE_integer('repeats', 1, 'Alternating runs of each implementation.')
_IMPL = flags.DEFINE_enum('impl', 'both', ['both', 'ours', 'hf'], 'What to time.')
_ATTENTION = flags.DEFINE_enum('attention', 'dense', ['dense', 'blocked'], 'lm_data attention.')
_DROPOUT = flags.DEFINE_float('dropout', 0.1, 'Dropout rate (both implementations).')
_MASK_RATE = flags.DEFINE_float(
    'mask_rate', 0.15, 'Predicted share of positions (BERT 0.15; the CPU study trains at 0.4, '
    'where the vocabulary projection is over half the tiny step).')
_ACTIVATION = flags.DEFINE_enum(
    'activation', 'gelu', ['gelu', 'gelu_exact', 'relu'],
    'gelu = tanh form (google-research/bert; HF "gelu_new"), gelu_exact = erf '
    '(HF "gelu"). Both implementations use the same function.')
# lm_data-only levers (issue 11), each A/B-able alone; defaults = the library's.
_FUSED_QKV = flags.DEFINE_bool('fused_qkv', False, 'One fused head-major QKV projection.')
_F32_ACT = flags.DEFINE_bool('f32_activations', False,
                             'Store activations in f32 under bf16 compute (pre-session-4).')
_DROPOUT_MASK = flags.DEFINE_enum('dropout_mask', 'hash', ['hash', 'bits'],
                                  'Dropout masks: counter hash or jax.random.bits.')
_PRNG = flags.DEFINE_enum('prng_impl', None, ['threefry2x32', 'rbg', 'unsafe_rbg'],
                          "jax_default_prng_impl (the 'bits' masks' generator); default JAX's.")
_SPLITS = flags.DEFINE_integer('batch_splits', 0,
                               'Attention and train-step batch slices; 0 = automatic '
                               '(2 on CPU, 1 on accelerators).')
HF_ACTIVATION = {'gelu': 'gelu_new', 'gelu_exact': 'gelu', 'relu': 'relu'}


def _batch(rng, vocab, batch, seq, preds):
  import numpy as np
  ids = rng.integers(5, vocab, (batch, seq), dtype=np.int32)
  positions = np.sort(np.stack([rng.choice(seq - 1, preds, replace=False) + 1
                                for _ in range(batch)]), axis=1).astype(np.int32)
  return ids, positions


def _time_steps(step, state, batch):
  import jax
  start = time.perf_counter()
  state, m = step(state, batch)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - start
  for _ in range(_WARMUP.value):
    state, m = step(state, batch)
  jax.block_until_ready(m)
  times = []
  for _ in range(_STEPS.value):
    start = time.perf_counter()
    state, m = step(state, batch)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - start)
  return compile_s, statistics.median(times)


def run_ours():
  import jax
  import jax.numpy as jnp
  import numpy as np
  from lm_data.models.bert import BertForMLM
  from lm_data.models.presets import make_config
  from lm_data.train import flops, steps
  from configs import common

  if _PRNG.value:
    jax.config.update('jax_default_prng_impl', _PRNG.value)
  dtype = jnp.bfloat16 if _DTYPE.value == 'bf16' else jnp.float32
  preds = int(np.ceil(_MASK_RATE.value * _SEQ.value))
  config = make_config(_MODEL.value, _VOCAB.value, dtype=dtype, attention=_ATTENTION.value,
                       dropout_rate=_DROPOUT.value, attention_dropout_rate=_DROPOUT.value,
                       activation=_ACTIVATION.value, fused_qkv=_FUSED_QKV.value,
                       f32_activations=_F32_ACT.value, dropout_mask=_DROPOUT_MASK.value,
                       attention_batch_splits=_SPLITS.value)
  model = BertForMLM(config)
  train_cfg = common.base_config().train
  from lm_data.train import optimizer as optim
  tx = optim.make_optimizer(train_cfg)
  schedule = optim.train_schedule(train_cfg)
  mesh = steps.make_mesh(jax.devices()[:1])
  state = steps.create_train_state(model, tx, seq_len=_SEQ.value, max_predictions=preds, seed=0)
  ids, positions = _batch(np.random.default_rng(0), _VOCAB.value, _BATCH.value, _SEQ.value, preds)
  batch = dict(input_ids=ids, type_ids=np.zeros_like(ids),
               position_ids=np.broadcast_to(np.arange(_SEQ.value, dtype=np.int32), ids.shape).copy(),
               segment_ids=np.ones_like(ids), mlm_positions=positions,
               mlm_ids=np.take_along_axis(ids, positions, 1),
               mlm_weights=np.ones(positions.shape, np.float32))
  batch = jax.device_put(batch, steps.batch_sharding(mesh))
  step = steps.make_jit_train_step(model, tx, schedule, mesh,
                                   batch_splits=_SPLITS.value or None)
  compile_s, step_s = _time_steps(step, state, batch)
  model_flops = flops.train_flops_per_step(config, batch_size=_BATCH.value,
                                           seq_len=_SEQ.value, predictions=preds)
  return compile_s, step_s, model_flops, flops.measure_peak_flops(dtype)


def run_hf():
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from flax import traverse_util
  from flax.training import train_state
  from transformers import BertConfig, FlaxBertForMaskedLM
  from lm_data.models.presets import make_config
  from lm_data.train import flops

  dtype = jnp.bfloat16 if _DTYPE.value == 'bf16' else jnp.float32
  ours = make_config(_MODEL.value, _VOCAB.value)
  hf_config = BertConfig(vocab_size=_VOCAB.value, hidden_size=ours.hidden_size,
                         num_hidden_layers=ours.num_layers, num_attention_heads=ours.num_heads,
                         intermediate_size=ours.intermediate_size, hidden_dropout_prob=_DROPOUT.value,
                         hidden_act=HF_ACTIVATION[_ACTIVATION.value],
                         attention_probs_dropout_prob=_DROPOUT.value)
  model = FlaxBertForMaskedLM(hf_config, seed=0, dtype=dtype)
  preds = int(np.ceil(_MASK_RATE.value * _SEQ.value))

  def decay_mask_fn(params):  # as in run_mlm_flax.py
    flat = traverse_util.flatten_dict(params)
    layer_norm_candidates = ['layernorm', 'layer_norm', 'ln']
    layer_norm_named_params = {
        layer[-2:] for layer_norm_name in layer_norm_candidates for layer in flat
        if layer_norm_name in ''.join(layer).lower()}
    flat_mask = {path: (path[-1] != 'bias' and path[-2:] not in layer_norm_named_params)
                 for path in flat}
    return traverse_util.unflatten_dict(flat_mask)

  tx = optax.adamw(learning_rate=optax.linear_schedule(1e-3, 0.0, 1000), b1=0.9, b2=0.98,
                   eps=1e-6, weight_decay=0.01, mask=decay_mask_fn)
  state = train_state.TrainState.create(apply_fn=model.__call__, params=model.params, tx=tx)

  def train_step(state, batch, dropout_rng):
    dropout_rng, new_dropout_rng = jax.random.split(dropout_rng)

    def loss_fn(params):
      labels = batch['labels']
      logits = state.apply_fn(batch['input_ids'], batch['attention_mask'], params=params,
                              dropout_rng=dropout_rng, train=True)[0]
      label_mask = jnp.where(labels > 0, 1.0, 0.0)
      loss = optax.softmax_cross_entropy(
          logits, jax.nn.one_hot(labels, logits.shape[-1])) * label_mask
      return loss.sum(), label_mask.sum()

    (loss, num_labels), grad = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grad = jax.tree.map(lambda x: x / num_labels, grad)
    return state.apply_gradients(grads=grad), (loss / num_labels, new_dropout_rng)

  jitted = jax.jit(train_step, donate_argnums=(0,))
  ids, positions = _batch(np.random.default_rng(0), _VOCAB.value, _BATCH.value, _SEQ.value, preds)
  labels = np.zeros_like(ids)
  np.put_along_axis(labels, positions, np.take_along_axis(ids, positions, 1), 1)
  batch = {'input_ids': ids, 'attention_mask': np.ones_like(ids), 'labels': labels}
  rng = jax.random.PRNGKey(0)

  def step(state, batch):
    new_state, (loss, _) = jitted(state, batch, rng)
    return new_state, loss

  compile_s, step_s = _time_steps(step, state, batch)
  # HF projects every position onto the vocabulary: count what it computes.
  real_flops = flops.train_flops_per_step(ours, batch_size=_BATCH.value, seq_len=_SEQ.value,
                                          predictions=_SEQ.value)
  return compile_s, step_s, real_flops, flops.measure_peak_flops(dtype)


def _record(impl, compile_s, step_s, step_flops, peak):
  tokens = _BATCH.value * _SEQ.value
  return {'impl': impl, 'model': _MODEL.value, 'vocab': _VOCAB.value, 'batch': _BATCH.value,
          'seq': _SEQ.value, 'dtype': _DTYPE.value, 'attention': _ATTENTION.value,
          'activation': _ACTIVATION.value,
          'dropout': _DROPOUT.value, 'mask_rate': _MASK_RATE.value, **_levers(impl), 'tokens_per_s': tokens / step_s, 's_per_step': step_s,
          'compile_s': compile_s, 'step_tflops': step_flops / 1e12,
          'achieved_tflops_per_s': step_flops / step_s / 1e12, 'peak_tflops_per_s': peak / 1e12,
          'mfu': step_flops / step_s / peak,
          'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _levers(impl):
  """lm_data's lever settings (recorded for 'ours' only: HF ignores them)."""
  if impl != 'ours':
    return {}
  import jax
  # A record must not fail over a config name another JAX version may lack.
  default_prng = getattr(jax.config, 'jax_default_prng_impl', 'default')
  return {'fused_qkv': _FUSED_QKV.value, 'f32_activations': _F32_ACT.value,
          'dropout_mask': _DROPOUT_MASK.value,
          'prng_impl': _PRNG.value or default_prng,
          'batch_splits': _SPLITS.value, 'backend': jax.default_backend()}


def _hf_available() -> bool:
  try:
    import transformers  # noqa: F401
    from transformers import FlaxBertForMaskedLM  # noqa: F401
    return int(transformers.__version__.split('.')[0]) < 5
  except ImportError:
    return False


def main(argv):
  del argv
  if _IMPL.value != 'both':
    run = run_ours if _IMPL.value == 'ours' else run_hf
    print(json.dumps(_record(_IMPL.value, *run())), flush=True)
    return
  impls = ['ours'] + (['hf'] if _hf_available() else [])
  if len(impls) == 1:
    print(json.dumps({'note': 'transformers<5 with Flax not importable: HF not timed'}))
  results = {impl: [] for impl in impls}
  passthrough = [a for a in sys.argv[1:] if not a.startswith('--impl')]
  for _ in range(_REPEATS.value):
    for impl in impls:
      out = subprocess.run([sys.executable, __file__, f'--impl={impl}', *passthrough],
                           capture_output=True, text=True, check=True)
      line = out.stdout.strip().splitlines()[-1]
      print(line, flush=True)
      results[impl].append(json.loads(line)['tokens_per_s'])
  if 'hf' in results:
    ours, hf = statistics.median(results['ours']), statistics.median(results['hf'])
    print(json.dumps({'ratio_tokens_per_s_ours_over_hf': ours / hf, 'ours_tokens_per_s': ours,
                      'hf_tokens_per_s': hf, 'model': _MODEL.value, 'dtype': _DTYPE.value}))


if __name__ == '__main__':
  sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[1]))
  app.run(main)
