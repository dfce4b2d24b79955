"""Streaming MLM batches from a curated TFDS dataset (array_record), per host.

For corpora that do not fit one host (the Beam curation output of
`lm_data.curation.beam_main`): nothing here holds the corpus. Per process:

  each split (domain) of the dataset, as a grain `MapDataset` over the
  array_record data source (random access, read on demand)
  -> this process's records only (`[process_index::process_count]`)
  -> with a token budget, the first documents of a seeded permutation that
     hold this process's share of the budget (`budget * share / processes`
     tokens of each split), cycled: a smaller budget is a subset of a larger
  -> shuffled, re-shuffled every epoch (`shuffle().repeat()`)
  -> mixed by sampling weights (`MapDataset.mix`). The recipe's mixture is
     over tokens (`data.weights`; natural = each split's share of the
     tokens), so a split's weight per document is its token share divided
     by its mean tokens per document (measured on the budget's documents,
     else on the first `TOKEN_SAMPLE_DOCS` of the permutation): the emitted
     tokens follow the mixture, not the document counts
  -> chunks of `DOCS_PER_CHUNK` documents tokenized with the shared
     SentencePiece model and packed by `packing.pack` (segment ids, [CLS]/
     [SEP] per segment)
  -> rows batched and masked on the fly (`masking.mask_batch`, keyed by step
     and global row position as the in-memory loader).

The state is small and exact: grain's position of the document stream at the
start of the current chunk plus the rows of that chunk already used; a
restored iterator re-packs that chunk and yields the batches it would have
yielded. It is JSON, checkpointed with Orbax by the trainer like the
in-memory loader's. Unlike `loader`, the stream depends on the process count
(each process packs its own documents), as with any per-host sharded input.
"""

from collections.abc import Iterator, Mapping, Sequence
import functools
import itertools
import json
import operator
import os
from typing import Any

from etils import epath
import grain
import numpy as np
import tensorflow_datasets as tfds

from lm_data import errors
from lm_data import utils
from lm_data.curation import dataset
from lm_data.input_pipeline import loader
from lm_data.input_pipeline import masking
from lm_data.input_pipeline import packing
from lm_data.input_pipeline import tokenizer as tokenizer_lib

# Documents tokenized and packed together (the last row of a chunk may be
# padded: ~1 row in a chunk's worth).
DOCS_PER_CHUNK = 256
# Documents per split tokenized to measure its mean tokens per document when
# there is no budget (the budget's documents are all measured).
TOKEN_SAMPLE_DOCS = 256
_STATE_VERSION = 2  # 2: token-weighted mixture and token budgets
_SHUFFLE_PURPOSE = 0x5354
_SELECT_PURPOSE = 0x534C
_MASK_PURPOSE = 0x4D41  # As loader: the same masks for the same rows.
_GRAIN_SEED_MODULUS = 2**32


def dataset_folder(path: str | os.PathLike[str]) -> epath.Path:
  """The version folder of a curated dataset: `path` itself or the one
  `beam_main --output_dir=path` wrote."""
  path = epath.Path(path)
  for candidate in (path, epath.Path(dataset.dataset_dir(path))):
    if (candidate / 'dataset_info.json').exists():
      return candidate
  raise errors.UserError(
      f'no TFDS dataset at {path} (no dataset_info.json there or under '
      'lm_data_curated/1.0.0); write one with python -m '
      'lm_data.curation.beam_main')


def split_domains(folder: epath.Path) -> dict[str, str]:
  """{split: domain} of a curated dataset (its splits, when not recorded)."""
  stats = folder / dataset.STATS_FILE
  if stats.exists():
    return dict(json.loads(stats.read_text())['splits'])
  builder = tfds.builder_from_directory(os.fspath(folder))
  return {s: s for s in builder.info.splits}


def held_out_domains(folder: epath.Path) -> dict[str, str]:
  """{held-out split: domain} of a curated dataset; {} when it has none."""
  stats = folder / dataset.STATS_FILE
  if not stats.exists():
    return {}
  return dict(json.loads(stats.read_text()).get('held_out') or {})


def held_out_rows(path: str | os.PathLike[str], tokenizer, *, seq_len: int
                  ) -> dict[str, packing.PackedArrays]:
  """{domain: packed rows} of the curated dataset's held-out splits.

  The documents sorted by (source, doc_id) and packed as `prepare` packs its
  held-out rows, so the same documents give the same rows. Held-out splits
  are small (a validation share); they are read whole.
  """
  folder = dataset_folder(path)
  builder = tfds.builder_from_directory(os.fspath(folder))
  rows = {}
  for split, domain in held_out_domains(folder).items():
    source = builder.as_data_source(split=split)
    records = source.__getitems__(range(len(source))) if len(source) else []
    docs = sorted((dataset.document(r) for r in records),
                  key=lambda d: (d.source, d.doc_id))
    arrays = [np.asarray(ids, np.int32) for ids in
              tokenizer.encode_batch([d.text for d in docs])]
    rows[domain] = packing.PackedArrays(*packing.pack(
        arrays, seq_len, cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id))
  return rows


class _PackIterator(grain.DatasetIterator):
  """Texts -> packed (tokens, segment_ids) rows, chunk by chunk."""

  def __init__(self, parent, tokenizer: tokenizer_lib.Tokenizer, seq_len: int,
               docs_per_chunk: int):
    super().__init__(parent)
    self._tokenizer = tokenizer
    self._seq_len = seq_len
    self._docs_per_chunk = docs_per_chunk
    self._chunk_state = parent.get_state()
    self._rows: tuple[np.ndarray, np.ndarray] | None = None
    self._next_row = 0

  def _load_chunk(self) -> None:
    self._chunk_state = self._parent.get_state()
    texts = list(itertools.islice(self._parent, self._docs_per_chunk))
    if not texts:
      raise StopIteration
    self._rows = packing.pack(
        self._tokenizer.encode_batch(texts), self._seq_len,
        cls_id=self._tokenizer.cls_id, sep_id=self._tokenizer.sep_id)
    self._next_row = 0

  def __next__(self) -> tuple[np.ndarray, np.ndarray]:
    while self._rows is None or self._next_row >= len(self._rows[0]):
      self._load_chunk()
    row = self._next_row
    self._next_row += 1
    return self._rows[0][row], self._rows[1][row]

  def get_state(self) -> dict[str, Any]:
    return {'chunk': self._chunk_state, 'row': self._next_row}

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(state['chunk'])
    self._rows = None
    if state['row']:
      self._load_chunk()
      self._next_row = int(state['row'])


class _Pack(grain.IterDataset):

  def __init__(self, parent, **kwargs):
    super().__init__(parent)
    self._kwargs = kwargs

  def __iter__(self):
    return _PackIterator(self._parent.__iter__(), **self._kwargs)


def _text(record) -> str:
  text = record['text']
  return text.decode('utf-8') if isinstance(text, bytes) else text


def _token_counts(tokenizer, texts: Sequence[str]) -> np.ndarray:
  return np.array([len(ids) for ids in tokenizer.encode_batch(list(texts))],
                  np.int64)


def _budget_prefix(order: grain.MapDataset, tokenizer, target: float,
                   split: str) -> tuple[int, int]:
  """(documents, tokens) of the shortest prefix of `order` with >= `target`
  tokens; reads only that far."""
  tokens = 0
  for start in range(0, len(order), DOCS_PER_CHUNK):
    counts = _token_counts(tokenizer, [
        _text(order[i]) for i in range(start, min(start + DOCS_PER_CHUNK,
                                                   len(order)))])
    reached = np.flatnonzero(tokens + np.cumsum(counts) >= target)
    if reached.size:
      return start + int(reached[0]) + 1, tokens + int(
          counts[:reached[0] + 1].sum())
    tokens += int(counts.sum())
  raise ValueError(f'token budget: split {split} holds {tokens:,} tokens on '
                   f'this process, fewer than its share {target:,.0f}; lower '
                   'token_budget or curate more documents')


def mixed_texts(builder, domains: Mapping[str, str], splits: Sequence[str],
                tokenizer, *, seed: int,
                weights: Mapping[str, float] | None = None,
                token_budget: int | None = None, process_index: int = 0,
                process_count: int = 1
                ) -> tuple[grain.MapDataset, dict[str, dict[str, Any]]]:
  """This process's endless document texts, mixed so that their tokens follow
  `weights` (see the module docstring); and per split what was measured
  ('documents' in use or None for all, 'mean_tokens', 'token_share',
  'document_weight')."""
  shuffle_seed = utils.derive_seed(seed, _SHUFFLE_PURPOSE)
  select_seed = utils.derive_seed(seed, _SELECT_PURPOSE)
  mine, orders, means, records = {}, {}, {}, {}
  for k, split in enumerate(splits):
    source = grain.MapDataset.source(builder.as_data_source(split=split))
    mine[split] = source[process_index::process_count]
    if not len(mine[split]):  # pylint: disable=g-explicit-length-test
      raise ValueError(f'split {split} has {len(source)} records, fewer '
                       f'than the {process_count} processes')
    records[split] = len(source)
    orders[split] = mine[split].shuffle(
        seed=(select_seed + k) % _GRAIN_SEED_MODULUS)
    sample = orders[split][:TOKEN_SAMPLE_DOCS]
    means[split] = float(np.mean(_token_counts(
        tokenizer, [_text(sample[i]) for i in range(len(sample))])))
  if weights is not None:
    raw = {s: float(weights[domains[s]]) for s in splits}
  else:  # Natural mixture: each split's (estimated) share of the tokens.
    raw = {s: records[s] * means[s] for s in splits}
  total = sum(raw.values())
  info, per_split, proportions = {}, [], []
  for k, split in enumerate(splits):
    share = raw[split] / total
    used, texts = None, mine[split]
    if token_budget is not None:
      used, tokens = _budget_prefix(orders[split], tokenizer,
                                    token_budget * share / process_count, split)
      means[split] = tokens / used
      # Not `orders[split][:used]`: a slice of a shuffled MapDataset does
      # not wrap its indices, so repeat() would read past it.
      texts = grain.MapDataset.range(used).map(
          functools.partial(operator.getitem, orders[split]))
    per_split.append(texts.shuffle(seed=(shuffle_seed + k) % _GRAIN_SEED_MODULUS)
                     .repeat().map(_text))
    proportions.append(share / max(means[split], 1e-9))
    info[split] = {'documents': used, 'mean_tokens': means[split],
                   'token_share': share}
  for split, proportion in zip(splits, proportions):
    info[split]['document_weight'] = proportion / sum(proportions)
  return grain.MapDataset.mix(per_split, proportions), info


class StreamIterator(Iterator[loader.Batch]):
  """Endless iterator of host-local masked batches streamed from a dataset."""

  def __init__(self, path: str | os.PathLike[str],
               tokenizer: tokenizer_lib.Tokenizer, *, seq_len: int,
               global_batch_size: int, seed: int,
               mask_cfg: masking.MaskConfig,
               weights: Mapping[str, float] | None = None,
               token_budget: int | None = None,
               process_index: int = 0, process_count: int = 1,
               docs_per_chunk: int = DOCS_PER_CHUNK):
    self._local_size = loader._check_split(  # pylint: disable=protected-access
        global_batch_size, process_index, process_count)
    folder = dataset_folder(path)
    builder = tfds.builder_from_directory(os.fspath(folder))
    domains = split_domains(folder)
    splits = [s for s in domains if builder.info.splits[s].num_examples]
    if weights is not None:
      unknown = sorted(set(weights) - set(domains.values()))
      if unknown:
        raise ValueError(f'weights name {unknown}, not domains of {folder} '
                         f'({sorted(domains.values())})')
      splits = [s for s in splits if weights.get(domains[s], 0) > 0]
    if not splits:
      raise ValueError(f'no documents to train on in {folder}')
    texts, self.mixture = mixed_texts(
        builder, domains, splits, tokenizer, seed=seed, weights=weights,
        token_budget=token_budget, process_index=process_index,
        process_count=process_count)
    self._splits = splits
    self._token_budget = token_budget
    self._global_batch_size = global_batch_size
    self._seq_len = seq_len
    self._seed = seed
    self._mask_seed = utils.derive_seed(seed, _MASK_PURPOSE)
    self._mask_cfg = mask_cfg
    self._row_offset = process_index * self._local_size
    self._process_count = process_count
    self._step = 0
    dataset = _Pack(
        texts.to_iter_dataset(
            grain.ReadOptions(num_threads=1, prefetch_buffer_size=
                              2 * docs_per_chunk)),
        tokenizer=tokenizer, seq_len=seq_len, docs_per_chunk=docs_per_chunk
    ).batch(self._local_size)
    self._iterator = iter(dataset)

  def __next__(self) -> loader.Batch:
    tokens, segment_ids = next(self._iterator)
    batch = masking.mask_batch(
        tokens, segment_ids, seed=self._mask_seed, step=self._step,
        row_offset=self._row_offset, cfg=self._mask_cfg)
    self._step += 1
    return batch

  step = property(lambda self: self._step, doc='Batches yielded so far.')

  def _settings(self) -> dict[str, Any]:
    return {'version': _STATE_VERSION, 'splits': self._splits,
            'token_budget': self._token_budget,
            'global_batch_size': self._global_batch_size,
            'seq_len': self._seq_len, 'seed': self._seed,
            'process_count': self._process_count}

  def get_state(self) -> dict[str, Any]:
    return {**self._settings(), 'step': self._step,
            'grain': self._iterator.get_state()}

  def set_state(self, state: Mapping[str, Any]) -> None:
    loader.check_saved_settings(state, self._settings())
    self._iterator.set_state(state['grain'])
    self._step = int(state['step'])

  def close(self) -> None:
    pass


def make_stream_iterator(path, tokenizer, *, seq_len: int,
                         global_batch_size: int, seed: int,
                         mask_cfg: masking.MaskConfig,
                         weights: Mapping[str, float] | None = None,
                         token_budget: int | None = None,
                         process_index: int = 0, process_count: int = 1,
                         start_state: Mapping[str, Any] | None = None,
                         docs_per_chunk: int = DOCS_PER_CHUNK
                         ) -> StreamIterator:
  """A `StreamIterator` (see the module docstring), resumed from
  `start_state` if given."""
  iterator = StreamIterator(
      path, tokenizer, seq_len=seq_len, global_batch_size=global_batch_size,
      seed=seed, mask_cfg=mask_cfg, weights=weights, token_budget=token_budget,
      process_index=process_index, process_count=process_count,
      docs_per_chunk=docs_per_chunk)
  if start_state is not None:
    iterator.set_state(start_state)
  return iterator


__all__: Sequence[str] = ('StreamIterator', 'make_stream_iterator',
                          'dataset_folder', 'held_out_rows', 'mixed_texts',
                          'DOCS_PER_CHUNK')
