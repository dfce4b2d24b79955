"""A deterministic fake tokenizer and tiny model config for fine-tuning tests."""

import zlib

from lm_data import models

VOCAB = 64
PIECE_CHARS = 3   # a word is cut into pieces of this many characters


class FakeTokenizer:
  """Whitespace words cut into PIECE_CHARS-character pieces; ids hashed."""
  pad_id, unk_id, cls_id, sep_id, mask_id = 0, 1, 2, 3, 4
  first_id = 5
  sha256 = 'fake'

  def piece_id(self, piece: str) -> int:
    return self.first_id + zlib.crc32(piece.encode()) % (VOCAB - self.first_id)

  def encode(self, text: str) -> list[int]:
    return [self.piece_id(w[i:i + PIECE_CHARS]) for w in text.split()
            for i in range(0, len(w), PIECE_CHARS)]

  def encode_batch(self, texts):
    return [self.encode(t) for t in texts]


def tiny_config(**overrides) -> models.BertConfig:
  kwargs = dict(vocab_size=VOCAB, hidden_size=32, num_layers=1, num_heads=2,
                intermediate_size=64, max_len=32)
  kwargs.update(overrides)
  return models.BertConfig(**kwargs)
