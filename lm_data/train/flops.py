"""Analytic FLOP counts (MaxText style) and the peak they are compared with.

A multiply-add is 2 FLOPs; a training step costs 3x the forward pass (forward,
and backward w.r.t. activations and weights). Embedding lookups, LayerNorm,
softmax and the optimizer are not counted. The MLM head is counted only at the
P gathered prediction slots per row, which is all the model computes there.
"""

import json
import os
import time

import jax
import jax.numpy as jnp

from lm_data import utils

TRAIN_FORWARD_MULTIPLIER = 3

# Dense peak TFLOP/s per chip from the vendors' data sheets (bf16).
KNOWN_PEAK_TFLOPS_BF16 = {
    'TPU v4': 275.0, 'TPU v5 lite': 197.0, 'TPU v5e': 197.0, 'TPU v5p': 459.0,
    'TPU v6 lite': 918.0, 'TPU v6e': 918.0, 'NVIDIA H100': 989.0,
    'NVIDIA H200': 989.0, 'NVIDIA A100': 312.0,
}
PEAK_MATMUL_SIZE = 2048
PEAK_REPEATS = 5


def forward_flops_per_row(*, num_layers: int, hidden: int, intermediate: int,
                          seq_len: int, vocab_size: int, predictions: int) -> float:
  """Forward FLOPs of BertForMLM for one packed row."""
  h, f, s = hidden, intermediate, seq_len
  per_token_layer = 2 * (4 * h * h + 2 * h * f)   # QKV + output projection + FFN
  attention = 2 * 2 * s * h                        # QK^T and AV, per token
  encoder = num_layers * s * (per_token_layer + attention)
  mlm_head = predictions * 2 * (h * h + h * vocab_size)  # transform + tied decoder
  return float(encoder + mlm_head)


def train_flops_per_step(model_config, *, batch_size: int, seq_len: int,
                         predictions: int) -> float:
  """Training FLOPs of one optimizer step over a global batch."""
  return TRAIN_FORWARD_MULTIPLIER * batch_size * forward_flops_per_row(
      num_layers=model_config.num_layers, hidden=model_config.hidden_size,
      intermediate=model_config.intermediate_size, seq_len=seq_len,
      vocab_size=model_config.vocab_size, predictions=predictions)


def measure_peak_flops(dtype=jnp.float32, size: int = PEAK_MATMUL_SIZE,
                       device=None) -> float:
  """Best-of-N FLOP/s of a square jitted matmul (f32 accumulation) on one device."""
  # One device, outside any context mesh (the trainer measures under its mesh,
  # which would refuse an argument placed on one device).
  with jax.set_mesh(None):
    return _measure_peak_flops(dtype, size, device or jax.devices()[0])


def _measure_peak_flops(dtype, size: int, device) -> float:
  a = jax.device_put(jnp.ones((size, size), dtype), device)
  matmul = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
  matmul(a, a).block_until_ready()
  best = float('inf')
  for _ in range(PEAK_REPEATS):
    start = time.perf_counter()
    matmul(a, a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best


_MEASURED: dict[str, float] = {}  # this process's measurement per key


def peak_flops_per_device(dtype=jnp.float32, *, override_tflops: float = 0.0,
                          cache_dir: utils.AnyPath | None = None,
                          measure=measure_peak_flops) -> tuple[float, str]:
  """(peak FLOP/s per device, where the number came from).

  An explicit override wins; then the data-sheet table for accelerators. On CPU
  the matmul peak is measured once per process and key (device kind, dtype,
  cores), so every arm of a study shares one denominator; the cache keeps the
  best value any process has seen, because a measurement on a loaded machine
  only reads low.
  """
  if override_tflops > 0:
    return override_tflops * 1e12, 'config'
  kind = jax.devices()[0].device_kind
  for name, tflops in KNOWN_PEAK_TFLOPS_BF16.items():
    if kind.startswith(name):
      return tflops * 1e12, f'datasheet:{name}'
  key = f'{kind}|{jnp.dtype(dtype).name}|{os.cpu_count()}'
  path = cache_dir / 'peak_flops.json' if cache_dir else None
  cached = json.loads(path.read_text()) if path and path.exists() else {}
  if key not in _MEASURED:
    _MEASURED[key] = max(measure(dtype), cached.get(key, 0.0))
    if path and _MEASURED[key] != cached.get(key):
      utils.write_json(path, {**cached, key: _MEASURED[key]})
  return _MEASURED[key], f'measured:{key}'
