"""The analytic FLOP count against a hand count."""

from lm_data.models.presets import make_config
from lm_data.train import flops


def test_train_flops_hand_count():
  cfg = make_config('tiny', 100, num_layers=1, hidden_size=4, num_heads=1,
                    intermediate_size=8)
  # One row, S=3, P=2:  per token: 2*(4*16 + 2*4*8) = 256 MACs*2; attention 4*3*4 = 48
  encoder = 3 * (256 + 48)
  head = 2 * 2 * (16 + 4 * 100)
  got = flops.train_flops_per_step(cfg, batch_size=5, seq_len=3, predictions=2)
  assert got == 3 * 5 * (encoder + head)


def test_cpu_peak_keeps_the_best_measurement(tmp_path, monkeypatch):
  """One measurement per process and key; the cache keeps the maximum seen."""
  import json
  monkeypatch.setattr(flops, '_MEASURED', {})
  readings = iter([5e9, 3e9])
  measure = lambda dtype: next(readings)
  first, source = flops.peak_flops_per_device(cache_dir=tmp_path, measure=measure)
  again, _ = flops.peak_flops_per_device(cache_dir=tmp_path, measure=measure)
  assert (first, again) == (5e9, 5e9) and source.startswith('measured:')
  # A new process on a loaded machine measures 3e9: the cached 5e9 stays.
  monkeypatch.setattr(flops, '_MEASURED', {})
  later, _ = flops.peak_flops_per_device(cache_dir=tmp_path, measure=measure)
  assert later == 5e9
  assert list(json.loads((tmp_path / 'peak_flops.json').read_text()).values()) == [5e9]


def test_peak_measures_under_the_trainers_mesh():
  """The trainer asks for the peak inside its data-parallel mesh context."""
  import jax
  import numpy as np
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  with jax.set_mesh(mesh):
    assert flops.measure_peak_flops(size=64) > 0
