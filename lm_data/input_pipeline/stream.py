"""Streaming MLM batches from a curated TFDS dataset (array_record), per host.

For corpora that do not fit one host (the Beam curation output of
`lm_data.curation.beam_main`): nothing here holds the corpus. Per process:

  each split (domain) of the dataset, as a grain `MapDataset` over the
  array_record data source (random access, read on demand)
  -> this process's records only (`[process_index::process_count]`)
  -> shuffled, re-shuffled every epoch (`shuffle().repeat()`)
  -> mixed by sampling weights (`MapDataset.mix`: the domain proportions of
     the recipe's token mixture; natural = proportional to the records)
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
import itertools
import json
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
_STATE_VERSION = 1
_SHUFFLE_PURPOSE = 0x5354
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


class StreamIterator(Iterator[loader.Batch]):
  """Endless iterator of host-local masked batches streamed from a dataset."""

  def __init__(self, path: str | os.PathLike[str],
               tokenizer: tokenizer_lib.Tokenizer, *, seq_len: int,
               global_batch_size: int, seed: int,
               mask_cfg: masking.MaskConfig,
               weights: Mapping[str, float] | None = None,
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
    shuffle_seed = utils.derive_seed(seed, _SHUFFLE_PURPOSE)
    per_split, proportions = [], []
    for k, split in enumerate(splits):
      records = grain.MapDataset.source(builder.as_data_source(split=split))
      mine = records[process_index::process_count]
      if not len(mine):  # pylint: disable=g-explicit-length-test
        raise ValueError(f'split {split} has {len(records)} records, fewer '
                         f'than the {process_count} processes')
      per_split.append(
          mine.shuffle(seed=(shuffle_seed + k) % _GRAIN_SEED_MODULUS)
          .repeat().map(_text))
      proportions.append(weights[domains[split]] if weights is not None
                         else len(records))
    self._splits = splits
    self._global_batch_size = global_batch_size
    self._seq_len = seq_len
    self._seed = seed
    self._mask_seed = utils.derive_seed(seed, _MASK_PURPOSE)
    self._mask_cfg = mask_cfg
    self._row_offset = process_index * self._local_size
    self._process_count = process_count
    self._step = 0
    dataset = _Pack(
        grain.MapDataset.mix(per_split, proportions).to_iter_dataset(
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
                         process_index: int = 0, process_count: int = 1,
                         start_state: Mapping[str, Any] | None = None,
                         docs_per_chunk: int = DOCS_PER_CHUNK
                         ) -> StreamIterator:
  """A `StreamIterator` (see the module docstring), resumed from
  `start_state` if given."""
  iterator = StreamIterator(
      path, tokenizer, seq_len=seq_len, global_batch_size=global_batch_size,
      seed=seed, mask_cfg=mask_cfg, weights=weights,
      process_index=process_index, process_count=process_count,
      docs_per_chunk=docs_per_chunk)
  if start_state is not None:
    iterator.set_state(start_state)
  return iterator


__all__: Sequence[str] = ('StreamIterator', 'make_stream_iterator',
                          'dataset_folder', 'DOCS_PER_CHUNK')
