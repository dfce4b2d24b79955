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
