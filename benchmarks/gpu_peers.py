r"""GPU peer benchmark: lm_data's MLM train step vs HuggingFace BERT (issue 11).

  python benchmarks/gpu_peers.py                      # the H200 comparison, < 8 min
  python benchmarks/gpu_peers.py --model=tiny --batch=4 --seq=32 --vocab=512 \
      --dtype=f32 --steps=2 --warmup=1                # smoke run on a CPU

Peers, each in its own process (benchmarks/train_step.py's isolation), for
every shape of --preset (or the one shape given by --model/--batch/--seq):
  ours          lm_data, `benchmarks/train_step.py --impl=ours` (MLM head at
                the masked positions only, as google-research/bert);
  torch_eager   HF BertForMaskedLM in PyTorch: SDPA attention, bf16 autocast,
                fused AdamW with no decay on biases / LayerNorm, HF's
                full-vocabulary head, labels -100 off the masked positions;
  torch_compile the same under torch.compile (default mode);
  hf_flax       FlaxBertForMaskedLM with run_mlm_flax.py's step
                (`benchmarks/train_step.py --impl=hf`; needs transformers<5).
A peer whose package is missing is skipped with a note. Prints one JSON line
per run, then one 'ratios' line per shape (ours' tokens/s over each peer's).
MFU is against --peak_tflops (the H200's dense bf16 data-sheet peak) on each
implementation's own FLOP count: lm_data's counts the head at the masked
positions, the HF peers' at every position (what they compute). Runs stop
being started once --budget_s is spent (each is skipped with a note), so the
whole benchmark ends inside it.
"""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from absl import app
from absl import flags

REPO = Path(__file__).resolve().parents[1]
PRESETS = {  # name -> [(model, batch, seq)]
    'h200': [('base', 128, 128), ('base', 32, 512), ('large', 128, 128)],
}
PEERS = ('ours', 'torch_eager', 'torch_compile', 'hf_flax')
MASK_RATE = 0.15  # benchmarks/train_step.py's default --mask_rate: ceil(0.15 * seq) per row

_PRESET = flags.DEFINE_enum('preset', 'h200', list(PRESETS), 'Set of shapes to compare.')
_MODEL = flags.DEFINE_string('model', None, 'One shape instead of --preset: model preset.')
_BATCH = flags.DEFINE_integer('batch', None, 'One shape: rows per step.')
_SEQ = flags.DEFINE_integer('seq', None, 'One shape: sequence length.')
_VOCAB = flags.DEFINE_integer('vocab', 30522, 'Vocabulary size (BERT uncased).')
_DTYPE = flags.DEFINE_enum('dtype', 'bf16', ['f32', 'bf16'], 'Compute dtype.')
_DROPOUT = flags.DEFINE_float('dropout', 0.1, 'Dropout rate (all peers).')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps (median reported).')
_WARMUP = flags.DEFINE_integer('warmup', 3, 'Untimed steps after the first.')
_PEERS = flags.DEFINE_list('peers', list(PEERS), 'Subset of: ' + ', '.join(PEERS))
_PEAK = flags.DEFINE_float('peak_tflops', 989.0, 'MFU denominator (TFLOP/s).')
_BUDGET = flags.DEFINE_float('budget_s', 450.0, 'Start no run after this many seconds.')
_HF_FLAX_PATH = flags.DEFINE_string(
    'hf_flax_path', None,
    'A folder holding transformers<5 (pip --target), put first on the hf_flax '
    "peer's PYTHONPATH only: the torch peers keep the environment's transformers.")
_RUN = flags.DEFINE_enum('run', None, ['torch_eager', 'torch_compile'],
                         'Internal: time one torch peer in this process.')


def _predictions(seq: int) -> int:
  return math.ceil(MASK_RATE * seq)


def _model_config(model: str):
  from lm_data.models.presets import make_config
  return make_config(model, _VOCAB.value)


def _flops(model: str, batch: int, seq: int, predictions: int) -> float:
  from lm_data.train import flops
  return flops.train_flops_per_step(_model_config(model), batch_size=batch, seq_len=seq,
                                    predictions=predictions)


def _missing(peer: str) -> str | None:
  """Why `peer` cannot run here, or None."""
  import importlib.util
  if peer.startswith('torch'):
    for pkg in ('torch', 'transformers'):
      if importlib.util.find_spec(pkg) is None:
        return f'{pkg} not importable'
  if peer == 'hf_flax':
    from importlib import metadata
    where = {'path': [_HF_FLAX_PATH.value]} if _HF_FLAX_PATH.value else {}
    found = next(iter(metadata.distributions(name='transformers', **where)), None)
    if found is None or int(found.version.split('.')[0]) >= 5:
      place = f' in {_HF_FLAX_PATH.value}' if where else ''
      return f'transformers<5 (HF Flax models) not installed{place}'
  return None


def _child_env(peer: str) -> dict:
  env = dict(os.environ)
  if peer == 'hf_flax' and _HF_FLAX_PATH.value:
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (_HF_FLAX_PATH.value, env.get('PYTHONPATH')) if p)
  return env


def run_torch(compiled: bool, model: str, batch: int, seq: int) -> dict:
  """One torch peer: (compile_s, s_per_step) of BertForMaskedLM's full step."""
  import statistics
  import numpy as np
  import torch
  from transformers import BertConfig, BertForMaskedLM

  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  ours = _model_config(model)
  config = BertConfig(vocab_size=_VOCAB.value, hidden_size=ours.hidden_size,
                      num_hidden_layers=ours.num_layers, num_attention_heads=ours.num_heads,
                      intermediate_size=ours.intermediate_size, hidden_act='gelu_new',
                      hidden_dropout_prob=_DROPOUT.value,
                      attention_probs_dropout_prob=_DROPOUT.value, max_position_embeddings=512,
                      attn_implementation='sdpa')
  torch.manual_seed(0)
  net = BertForMaskedLM(config).to(device).train()
  no_decay = [p for n, p in net.named_parameters() if n.endswith('bias') or 'LayerNorm' in n]
  decay = [p for n, p in net.named_parameters() if not (n.endswith('bias') or 'LayerNorm' in n)]
  opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.01},
                           {'params': no_decay, 'weight_decay': 0.0}],
                          lr=1e-4, betas=(0.9, 0.98), eps=1e-6, fused=device == 'cuda')
  forward = torch.compile(net) if compiled else net
  rng = np.random.default_rng(0)
  ids = rng.integers(5, _VOCAB.value, (batch, seq))
  positions = np.sort(np.stack([rng.choice(seq - 1, _predictions(seq), replace=False) + 1
                                for _ in range(batch)]), axis=1)
  labels = np.full_like(ids, -100)
  np.put_along_axis(labels, positions, np.take_along_axis(ids, positions, 1), 1)
  ids, labels = (torch.as_tensor(x, device=device) for x in (ids, labels))
  mask = torch.ones_like(ids)
  autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=_DTYPE.value == 'bf16')

  def step():
    with autocast:
      loss = forward(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss

  def sync(x):
    x.item() if device == 'cpu' else torch.cuda.synchronize()

  start = time.perf_counter()
  sync(step())
  compile_s = time.perf_counter() - start
  for _ in range(_WARMUP.value):
    loss = step()
  sync(loss)
  times = []
  for _ in range(_STEPS.value):
    start = time.perf_counter()
    sync(step())
    times.append(time.perf_counter() - start)
  return {'compile_s': compile_s, 's_per_step': statistics.median(times),
          'device': torch.cuda.get_device_name() if device == 'cuda' else 'cpu',
          'torch': torch.__version__}


def _child(peer: str, model: str, batch: int, seq: int, timeout: float) -> dict:
  """Runs one peer in a fresh process; returns its record (or a note)."""
  common = [f'--model={model}', f'--batch={batch}', f'--seq={seq}', f'--vocab={_VOCAB.value}',
            f'--dtype={_DTYPE.value}', f'--dropout={_DROPOUT.value}',
            f'--steps={_STEPS.value}', f'--warmup={_WARMUP.value}']
  if peer in ('ours', 'hf_flax'):
    impl = 'ours' if peer == 'ours' else 'hf'
    cmd = [sys.executable, str(REPO / 'benchmarks' / 'train_step.py'), f'--impl={impl}', *common]
  else:
    cmd = [sys.executable, __file__, f'--run={peer}', *common]
  try:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                         env=_child_env(peer))
  except subprocess.TimeoutExpired:
    return {'note': f'{peer} {model} b{batch} s{seq}: stopped after {timeout:.0f} s (budget)'}
  if out.returncode:
    return {'note': f'{peer} {model} b{batch} s{seq} failed: '
                    f'{out.stderr.strip().splitlines()[-1:] or out.returncode}'}
  return json.loads(out.stdout.strip().splitlines()[-1])


def _record(peer, model, batch, seq, raw) -> dict:
  predictions = _predictions(seq) if peer == 'ours' else seq  # HF's head: every position
  step_flops = _flops(model, batch, seq, predictions)
  s = raw['s_per_step']
  keep = {k: raw[k] for k in ('device', 'torch', 'peak_rss_mb') if k in raw}
  return {'peer': peer, 'model': model, 'batch': batch, 'seq': seq, 'vocab': _VOCAB.value,
          'dtype': _DTYPE.value, 'dropout': _DROPOUT.value,
          'tokens_per_s': batch * seq / s, 's_per_step': s, 'compile_s': raw['compile_s'],
          'step_tflops': step_flops / 1e12, 'achieved_tflops_per_s': step_flops / s / 1e12,
          'mfu': step_flops / s / (_PEAK.value * 1e12), **keep}


def main(argv):
  del argv
  if _RUN.value:
    raw = run_torch(_RUN.value == 'torch_compile', _MODEL.value, _BATCH.value, _SEQ.value)
    print(json.dumps(raw), flush=True)
    return
  unknown = set(_PEERS.value) - set(PEERS)
  if unknown:
    raise app.UsageError(f'unknown peers {sorted(unknown)}; known: {", ".join(PEERS)}')
  one = (_MODEL.value, _BATCH.value, _SEQ.value)
  if any(one) and not all(one):
    raise app.UsageError('--model, --batch and --seq go together')
  shapes = [one] if all(one) else PRESETS[_PRESET.value]
  peers = []
  for peer in [p for p in PEERS if p in _PEERS.value]:
    why = _missing(peer)
    if why:
      print(json.dumps({'note': f'{peer} skipped: {why}'}), flush=True)
    else:
      peers.append(peer)
  began = time.perf_counter()
  for model, batch, seq in shapes:
    tokens = {}
    for peer in peers:
      left = _BUDGET.value - (time.perf_counter() - began)
      if left <= 0:
        print(json.dumps({'note': f'{peer} {model} b{batch} s{seq}: skipped, budget spent'}))
        continue
      raw = _child(peer, model, batch, seq, left)
      record = _record(peer, model, batch, seq, raw) if 's_per_step' in raw else raw
      print(json.dumps(record), flush=True)
      if 'tokens_per_s' in record:
        tokens[peer] = record['tokens_per_s']
    if 'ours' in tokens and len(tokens) > 1:
      print(json.dumps({'ratios': {f'ours_over_{p}': tokens['ours'] / t
                                   for p, t in tokens.items() if p != 'ours'},
                        'model': model, 'batch': batch, 'seq': seq, 'dtype': _DTYPE.value}),
            flush=True)
  print(json.dumps({'wall_s': time.perf_counter() - began}), flush=True)


if __name__ == '__main__':
  sys.path.insert(0, str(REPO))
  app.run(main)
