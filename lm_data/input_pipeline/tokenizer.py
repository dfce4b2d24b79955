"""Shared SentencePiece tokenizer with BERT special tokens at fixed ids.

Trained once per study on a fixed, domain-balanced sample (equal characters per
domain, at most `max_chars` in total, deterministic by seed; the idea of lm1b's
`max_corpus_chars`) and shared by every arm, so arms differ only in their data.
The model lives at `DIR/tokenizer/spm.model` with `sample_stats.json` beside it.
"""

from collections.abc import Iterable, Mapping, Sequence
import hashlib
import io
import json
import os
import re
import time

import sentencepiece as spm

from lm_data import errors
from lm_data import utils
# The ids the special pieces below are trained at (re-exported for callers).
from lm_data.utils import CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID

PAD, UNK, CLS, SEP, MASK = '[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'
MODEL_TYPES = ('unigram', 'bpe')
# Total characters of the training sample (lm1b's max_corpus_chars).
DEFAULT_MAX_CHARS = 10_000_000
SAMPLE_STATS_NAME = 'sample_stats.json'
# SentencePiece drops "sentences" longer than max_sentence_length bytes, so the
# sample is fed as lines cut to this many characters (UTF-8: <= 4 bytes each).
_MAX_LINE_CHARS = 2048
_MAX_LINE_BYTES = 4 * _MAX_LINE_CHARS
_CHARACTER_COVERAGE = 0.9995
# How long processes other than 0 wait for process 0's model, and how often
# they look.
DEFAULT_WAIT_TIMEOUT_S = 3600.0
_POLL_INTERVAL_S = 0.5
# Pseudo-domain for a plain iterable of texts.
_ALL = 'all'


_SURROGATES = re.compile('[\ud800-\udfff]')


def file_sha256(path: str | os.PathLike[str]) -> str:
  return hashlib.sha256(utils.path(path).read_bytes()).hexdigest()


def valid_unicode(text: str) -> str:
  """`text` without UTF-16 surrogates, which SentencePiece cannot take.

  A surrogate pair becomes its character and a lone surrogate U+FFFD, as
  invalid UTF-8 bytes become U+FFFD when sources are decoded. (Dedup hashes
  surrogates as they are, so it never fails on them either.)
  """
  if not _SURROGATES.search(text):
    return text
  return text.encode('utf-16-le', 'surrogatepass').decode('utf-16-le', 'replace')


class Tokenizer:
  """A loaded SentencePiece model whose first five ids are BERT's specials."""

  pad_id = PAD_ID
  unk_id = UNK_ID
  cls_id = CLS_ID
  sep_id = SEP_ID
  mask_id = MASK_ID
  special_ids = utils.SPECIAL_IDS

  def __init__(self, model_proto: bytes, path: utils.AnyPath | None = None,
               num_threads: int | None = None):
    self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
    self.path = path
    self.sha256 = hashlib.sha256(model_proto).hexdigest()
    self._num_threads = num_threads or os.cpu_count() or 1
    expected = {PAD: PAD_ID, UNK: UNK_ID, CLS: CLS_ID, SEP: SEP_ID,
                MASK: MASK_ID}
    actual = {p: self._sp.piece_to_id(p) for p in expected}
    if actual != expected:
      raise ValueError(
          f'tokenizer {path} has special ids {actual}, expected {expected}; '
          'retrain it with tokenizer.train_tokenizer')

  @classmethod
  def load(cls, path: str | os.PathLike[str],
           num_threads: int | None = None) -> 'Tokenizer':
    path = utils.path(path)
    return cls(path.read_bytes(), path, num_threads)

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without [CLS]/[SEP]; surrogates as `valid_unicode`."""
    try:
      return self._sp.encode(text, out_type=int)
    except RuntimeError:  # pybind's "Unable to cast": a lone surrogate.
      if valid_unicode(text) is text:
        raise
      return self._sp.encode(valid_unicode(text), out_type=int)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of many texts, encoded on all threads."""
    texts = list(texts)
    try:
      return self._sp.encode(texts, out_type=int, num_threads=self._num_threads)
    except TypeError:  # "List elements must be str or bytes": a lone surrogate.
      clean = [valid_unicode(t) if isinstance(t, str) else t for t in texts]
      if all(c is t for c, t in zip(clean, texts)):
        raise
      return self._sp.encode(clean, out_type=int, num_threads=self._num_threads)

  def decode(self, ids: Iterable[int]) -> str:
    return self._sp.decode([int(i) for i in ids])

  def id_to_piece(self, token_id: int) -> str:
    return self._sp.id_to_piece(int(token_id))


def balanced_sample(texts_by_domain: Mapping[str, Iterable[str]], *,
                    max_chars: int, seed: int) -> tuple[list[str], dict]:
  """Equal characters per domain, drawn in a seeded order of documents.

  Each domain gets `max_chars // len(domains)` characters: whole documents in
  the order of a seeded permutation, the last one cut to fit. A domain with
  fewer characters contributes all it has (recorded in the stats).

  Returns:
    (texts, stats) with stats[domain] = documents/characters available and
    sampled.
  """
  if not texts_by_domain:
    raise ValueError('no domains to sample tokenizer training text from')
  quota = max_chars // len(texts_by_domain)
  sample, stats = [], {}
  for domain in sorted(texts_by_domain):
    texts = list(texts_by_domain[domain])
    order = utils.rng(seed, domain, 'tokenizer').permutation(
        len(texts))
    chars = docs = 0
    for i in order:
      if chars >= quota:
        break
      text = texts[i][:quota - chars]
      sample.append(text)
      chars += len(text)
      docs += 1
    stats[domain] = {
        'documents_available': len(texts),
        'characters_available': sum(len(t) for t in texts),
        'documents_sampled': docs,
        'characters_sampled': chars,
    }
  return sample, stats


def _lines(texts: Iterable[str]) -> Iterable[str]:
  """Non-empty lines, cut so SentencePiece never drops one as too long."""
  for text in texts:
    for line in valid_unicode(text).splitlines():
      line = line.strip()
      for start in range(0, len(line), _MAX_LINE_CHARS):
        yield line[start:start + _MAX_LINE_CHARS]


def _check_existing(path: utils.AnyPath, vocab_size: int) -> utils.AnyPath:
  found = Tokenizer.load(path).vocab_size
  if found != vocab_size:
    raise errors.UserError(
        f'{path} holds a tokenizer with vocab size {found}, not {vocab_size}; '
        'delete it or use another workdir')
  return path


def train_tokenizer(texts: Iterable[str] | Mapping[str, Iterable[str]],
                    out_path: str | os.PathLike[str], *, vocab_size: int,
                    model_type: str = 'unigram',
                    max_chars: int = DEFAULT_MAX_CHARS, seed: int = 0,
                    process_index: int | None = None,
                    wait_timeout_s: float = DEFAULT_WAIT_TIMEOUT_S
                    ) -> utils.AnyPath:
  """Trains the shared tokenizer once; returns the model path.

  Process 0 trains and writes through a temporary file and a rename, so a
  model at `out_path` is always complete; other processes wait for it. An
  existing model is reused (its vocab size must match).

  Args:
    texts: domain -> texts (sampled with equal characters per domain), or a
      plain iterable (sampled as one domain). Only process 0
      consumes it.
    out_path: model file, e.g. DIR/tokenizer/spm.model; `sample_stats.json`
      is written beside it.
    vocab_size: pieces including the five special tokens.
    model_type: 'unigram' or 'bpe'.
    max_chars: characters in the training sample.
    seed: sample order and SentencePiece's own randomness.
    process_index: this process; None asks jax.process_index().
    wait_timeout_s: how long processes other than 0 wait.

  Raises:
    ValueError: on an unknown model type or a mismatching existing model.
    TimeoutError: if process 0's model does not appear in time.
  """
  if model_type not in MODEL_TYPES:
    raise ValueError(f'unknown tokenizer model_type {model_type!r}; known: '
                     f'{", ".join(MODEL_TYPES)}')
  out_path = utils.path(out_path)
  if out_path.exists():
    return _check_existing(out_path, vocab_size)
  if process_index is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index()
  if process_index != 0:
    deadline = time.monotonic() + wait_timeout_s
    while not out_path.exists():
      if time.monotonic() > deadline:
        raise TimeoutError(
            f'process {process_index} waited {wait_timeout_s:.0f}s for the '
            f'tokenizer {out_path} that process 0 trains; check process 0 '
            'for an error or raise wait_timeout_s')
      time.sleep(_POLL_INTERVAL_S)
    return _check_existing(out_path, vocab_size)

  if not isinstance(texts, Mapping):
    texts = {_ALL: texts}
  sample, sample_stats = balanced_sample(texts, max_chars=max_chars, seed=seed)
  model = io.BytesIO()
  spm.set_random_generator_seed(seed)
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(_lines(sample)),
      model_writer=model,
      vocab_size=vocab_size,
      model_type=model_type,
      pad_id=PAD_ID, pad_piece=PAD,
      unk_id=UNK_ID, unk_piece=UNK,
      bos_id=-1, eos_id=-1,
      control_symbols=[CLS, SEP, MASK],
      character_coverage=_CHARACTER_COVERAGE,
      max_sentence_length=_MAX_LINE_BYTES,
      input_sentence_size=0,
      shuffle_input_sentence=False,
      split_digits=True,
      num_threads=os.cpu_count() or 1,
      minloglevel=2,
  )
  proto = model.getvalue()
  out_path.parent.mkdir(parents=True, exist_ok=True)
  stats = {
      'vocab_size': vocab_size,
      'model_type': model_type,
      'max_chars': max_chars,
      'seed': seed,
      'model_sha256': hashlib.sha256(proto).hexdigest(),
      'domains': sample_stats,
  }
  utils.atomic_write(out_path.parent / SAMPLE_STATS_NAME,
                json.dumps(stats, indent=2, sort_keys=True).encode())
  # The model goes last: its existence tells waiting processes all is written.
  utils.atomic_write(out_path, proto)
  return out_path
