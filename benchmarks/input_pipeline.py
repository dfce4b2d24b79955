r"""Input-pipeline throughput; prints one JSON line per measurement.

  python benchmarks/input_pipeline.py --seq_len=128 --batch=32

1. `documents_to_batches`: stored documents -> tokenize -> pack -> mask ->
   batches. Documents come from the first default source whose archive is
   already in the fetch cache (no network), else from a synthetic corpus of
   random words; the JSON names which (`corpus`).
2. `loader`: packed arrays on disk (memory-mapped) -> shuffled, masked,
   prefetched batches through `loader.make_train_iterator`; the number to put
   next to the train step's tokens/s.

Tokens/s count batch slots (rows x seq_len, as the train step consumes them);
`content_tokens_per_s` counts document tokens only.
"""

import json
import pathlib
import statistics
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

from lm_data.input_pipeline import fetch
from lm_data.input_pipeline import loader
from lm_data.input_pipeline import masking
from lm_data.input_pipeline import packing
from lm_data.input_pipeline import sources
from lm_data.input_pipeline import tokenizer as tokenizer_lib

_SEQ_LEN = flags.DEFINE_integer('seq_len', 128, 'Row length S.')
_BATCH = flags.DEFINE_integer('batch', 32, 'Global batch size (rows).')
_VOCAB = flags.DEFINE_integer('vocab', 8192, 'Tokenizer vocabulary size.')
_MAX_CHARS = flags.DEFINE_integer(
    'max_chars', 5_000_000, 'Characters of documents to push through.')
_TOKENIZER = flags.DEFINE_string(
    'tokenizer', None, 'SentencePiece model to use; None trains one on the '
    'documents (not timed).')
_STEPS = flags.DEFINE_integer('steps', 300, 'Loader batches timed.')
_WARMUP = flags.DEFINE_integer('warmup', 10, 'Loader batches not timed.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed loader runs (median).')
_PREFETCH = flags.DEFINE_integer('prefetch', loader.DEFAULT_PREFETCH,
                                 'Loader prefetch depth.')
_TRAIN_TOKENS_PER_S = flags.DEFINE_float(
    'train_tokens_per_s', None, 'Tokens/s of the train step to compare with '
    '(benchmarks/train_step.py); adds `ratio_to_train_step`.')
_SEED = flags.DEFINE_integer('seed', 0, 'Corpus, shuffle and mask seed.')

_SYNTHETIC_WORDS = 20_000
_WORD_LETTERS = (2, 10)
_DOC_WORDS = (20, 2000)
_ZIPF_EXPONENT = 1.1
_TOKENIZER_SAMPLE_CHARS = 2_000_000


def _synthetic_documents(max_chars: int, seed: int) -> list[str]:
  """Documents of Zipf-distributed random 'words'."""
  rng = np.random.default_rng(seed)
  letters = np.array(list('abcdefghijklmnopqrstuvwxyz'))
  words = [''.join(rng.choice(letters, size=rng.integers(*_WORD_LETTERS)))
           for _ in range(_SYNTHETIC_WORDS)]
  weights = 1.0 / np.arange(1, _SYNTHETIC_WORDS + 1) ** _ZIPF_EXPONENT
  weights /= weights.sum()
  documents, chars = [], 0
  while chars < max_chars:
    ids = rng.choice(_SYNTHETIC_WORDS, size=rng.integers(*_DOC_WORDS),
                     p=weights)
    documents.append(' '.join(words[i] for i in ids))
    chars += len(documents[-1])
  return documents


def _stored_documents(max_chars: int, seed: int) -> tuple[list[str], str]:
  """(texts, description): a cached default source, else synthetic text."""
  for name, source in sources.SOURCES.items():
    if source.default and fetch.archive_path(source.archive).exists():
      documents, _ = sources.load_source(name)
      texts, chars = [], 0
      for document in documents:
        if chars >= max_chars:
          break
        texts.append(document.text)
        chars += len(document.text)
      return texts, f'source {name} (cached archive)'
  return _synthetic_documents(max_chars, seed), 'synthetic random words'


def _print(record: dict) -> None:
  print(json.dumps(record), flush=True)


def _documents_to_batches(texts, tokenizer, corpus):
  """Times tokenize -> pack -> mask over all documents; returns packed."""
  cfg = masking.MaskConfig(vocab_size=tokenizer.vocab_size,
                           special_ids=tokenizer.special_ids,
                           mask_id=tokenizer.mask_id)
  start = time.perf_counter()
  token_lists = tokenizer.encode_batch(texts)
  tokenized = time.perf_counter()
  tokens, segment_ids = packing.pack(token_lists, _SEQ_LEN.value,
                                     cls_id=tokenizer.cls_id,
                                     sep_id=tokenizer.sep_id)
  packed = time.perf_counter()
  batch = _BATCH.value
  for step, first in enumerate(range(0, tokens.shape[0], batch)):
    masking.mask_batch(tokens[first:first + batch],
                       segment_ids[first:first + batch], seed=_SEED.value,
                       step=step, row_offset=0, cfg=cfg)
  masked = time.perf_counter()
  seconds = masked - start
  content = sum(len(t) for t in token_lists)
  _print({
      'measurement': 'documents_to_batches', 'corpus': corpus,
      'documents': len(texts), 'characters': sum(len(t) for t in texts),
      'content_tokens': content, 'rows': int(tokens.shape[0]),
      'seq_len': _SEQ_LEN.value, 'batch': batch,
      'padding_fraction': float((segment_ids == 0).mean()),
      'seconds': seconds, 'tokenize_s': tokenized - start,
      'pack_s': packed - tokenized, 'mask_s': masked - packed,
      'tokens_per_s': tokens.size / seconds,
      'content_tokens_per_s': content / seconds,
  })
  return packing.PackedArrays(tokens, segment_ids), cfg


def _loader_throughput(packed, cfg, folder: pathlib.Path) -> None:
  """Times the train iterator over memory-mapped packed arrays."""
  packing.save_packed(folder, packed)
  rates = []
  for repeat in range(_REPEATS.value):
    iterator = loader.make_train_iterator(
        folder, global_batch_size=_BATCH.value, seed=_SEED.value + repeat,
        mask_cfg=cfg, prefetch=_PREFETCH.value)
    for _ in range(_WARMUP.value):
      next(iterator)
    start = time.perf_counter()
    for _ in range(_STEPS.value):
      next(iterator)
    rates.append(_STEPS.value * _BATCH.value * packed.seq_len
                 / (time.perf_counter() - start))
    epochs = iterator.epochs_seen
    iterator.close()
  record = {
      'measurement': 'loader', 'rows': packed.num_rows,
      'seq_len': packed.seq_len, 'batch': _BATCH.value,
      'steps': _STEPS.value, 'prefetch': _PREFETCH.value,
      'epochs_seen': epochs, 'tokens_per_s': statistics.median(rates),
      'tokens_per_s_runs': rates,
  }
  if _TRAIN_TOKENS_PER_S.value:
    record['train_step_tokens_per_s'] = _TRAIN_TOKENS_PER_S.value
    record['ratio_to_train_step'] = (record['tokens_per_s']
                                     / _TRAIN_TOKENS_PER_S.value)
  _print(record)


def main(argv):
  del argv
  texts, corpus = _stored_documents(_MAX_CHARS.value, _SEED.value)
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    model = _TOKENIZER.value
    if model is None:
      start = time.perf_counter()
      model = tokenizer_lib.train_tokenizer(
          texts, tmp / 'spm.model', vocab_size=_VOCAB.value,
          max_chars=_TOKENIZER_SAMPLE_CHARS, seed=_SEED.value,
          process_index=0)
      _print({'measurement': 'tokenizer_training', 'corpus': corpus,
              'vocab': _VOCAB.value, 'seconds': time.perf_counter() - start})
    tokenizer = tokenizer_lib.Tokenizer.load(model)
    packed, cfg = _documents_to_batches(texts, tokenizer, corpus)
    _loader_throughput(packed, cfg, tmp / 'packed')


if __name__ == '__main__':
  app.run(main)
