r"""Input-pipeline throughput; prints one JSON line per measurement.

  python benchmarks/input_pipeline.py --seq_len=128 --batch=32

1. `documents_to_batches`: stored documents -> tokenize -> pack -> mask ->
   batches. Documents come from the first default source whose archive is
   already in the fetch cache (no network), else from a synthetic corpus of
   random words; the JSON names which (`corpus`).
2. `loader`: packed arrays on disk (memory-mapped) -> shuffled, masked,
   prefetched batches through `loader.make_train_iterator`; the number to put
   next to the train step's tokens/s.

3. `--mode=stream`: the streaming loader (`lm_data.input_pipeline.stream`) over
   a curated TFDS dataset (array_record) of the documents (1x) and of 10x as
   many (each document repeated under a new id), each read by a fresh process
   for the same number of batches: `peak_rss_mib` of that process (flat when
   nothing holds the corpus; `rss_ratio` in the summary line) and
   `tokens_per_cpu_s` (tokens per second of process CPU time, i.e. per core).

Tokens/s count batch slots (rows x seq_len, as the train step consumes them);
`content_tokens_per_s` counts document tokens only.
"""

import json
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

from lm_data.corpus import fetch
from lm_data.corpus import sources
from lm_data.curation import dataset as dataset_lib
from lm_data.input_pipeline import loader
from lm_data.input_pipeline import masking
from lm_data.input_pipeline import packing
from lm_data.input_pipeline import stream
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
_MODE = flags.DEFINE_enum('mode', 'arrays', ['arrays', 'stream'],
                          'arrays: measurements 1-2; stream: 3.')
_SCALE = flags.DEFINE_integer('scale', 10, 'stream: the larger corpus is '
                              'this many times the documents.')
_STREAM_DATASET = flags.DEFINE_string(
    'stream_dataset', None, 'Internal: measure the stream over this dataset '
    'in this process and print one JSON line.')

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


def _stream_measurement(folder: str, model: str) -> None:
  """Runs in a fresh process: streams batches, prints RSS and throughput."""
  tokenizer = tokenizer_lib.Tokenizer.load(model, num_threads=1)
  cfg = masking.MaskConfig(vocab_size=tokenizer.vocab_size,
                           special_ids=tokenizer.special_ids,
                           mask_id=tokenizer.mask_id)
  iterator = stream.make_stream_iterator(
      folder, tokenizer, seq_len=_SEQ_LEN.value,
      global_batch_size=_BATCH.value, seed=_SEED.value, mask_cfg=cfg)
  for _ in range(_WARMUP.value):
    next(iterator)
  rss_start = _rss_mib()
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(_STEPS.value):
    next(iterator)
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  tokens = _STEPS.value * _BATCH.value * _SEQ_LEN.value
  _print({'tokens': tokens, 'seconds': wall, 'cpu_seconds': cpu,
          'tokens_per_s': tokens / wall, 'tokens_per_cpu_s': tokens / cpu,
          # Linux reports ru_maxrss in KiB.
          'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                          / 1024,
          'rss_after_warmup_mib': rss_start, 'rss_end_mib': _rss_mib()})


def _rss_mib() -> float:
  """Resident set size now (Linux /proc)."""
  for line in pathlib.Path('/proc/self/status').read_text().splitlines():
    if line.startswith('VmRSS:'):
      return int(line.split()[1]) / 1024
  return float('nan')


def _copies(texts, scale: int):
  for k in range(scale):
    for i, text in enumerate(texts):
      yield sources.Document(text, 'bench', 'bench', f'{k}/{i}')


def _stream_benchmark(texts, corpus, model, tmp: pathlib.Path) -> None:
  """Streams 1x and `--scale`x the documents, each in a fresh process."""
  rss = {}
  for scale in (1, _SCALE.value):
    folder = dataset_lib.write_documents(
        tmp / f'x{scale}', _copies(texts, scale), domains=['bench'],
        num_shards=4)
    out = subprocess.run(
        [sys.executable, __file__, f'--stream_dataset={folder}',
         f'--tokenizer={model}', f'--seq_len={_SEQ_LEN.value}',
         f'--batch={_BATCH.value}', f'--steps={_STEPS.value}',
         f'--warmup={_WARMUP.value}', f'--seed={_SEED.value}'],
        check=True, capture_output=True, text=True).stdout
    record = json.loads(out.strip().splitlines()[-1])
    rss[scale] = record['peak_rss_mib']
    _print({'measurement': 'stream', 'corpus': corpus, 'scale': scale,
            'documents': scale * len(texts),
            'characters': scale * sum(len(t) for t in texts),
            'seq_len': _SEQ_LEN.value, 'batch': _BATCH.value,
            'steps': _STEPS.value, **record})
  _print({'measurement': 'stream_memory', 'scale': _SCALE.value,
          'rss_ratio': rss[_SCALE.value] / rss[1],
          'flat': abs(rss[_SCALE.value] / rss[1] - 1) <= 0.1})


def main(argv):
  del argv
  if _STREAM_DATASET.value:
    _stream_measurement(_STREAM_DATASET.value, _TOKENIZER.value)
    return
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
    if _MODE.value == 'stream':
      _stream_benchmark(texts, corpus, model, tmp)
      return
    tokenizer = tokenizer_lib.Tokenizer.load(model)
    packed, cfg = _documents_to_batches(texts, tokenizer, corpus)
    _loader_throughput(packed, cfg, tmp / 'packed')


if __name__ == '__main__':
  app.run(main)
