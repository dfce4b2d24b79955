"""TFDS builder of the embedded multi-domain corpus, and TFDS text readers.

One builder config per domain of `sources.ALL_DOMAINS` (the default ones and
optional ones such as 'social'); its documents come from
`sources.load_domain` (pinned registry archives, parsed). Stored as
array_record (random access, no TensorFlow) under `fetch.cache_root()/tfds`.

Splits. `validation` holds the documents whose stable hash of
`source/doc_id` falls below `VALIDATION_FRACTION` (at least
`MIN_VALIDATION_DOCS` per domain: the smallest hashes, never more than half of
a domain); `train` holds the rest. A document's split depends only on its own
id, so it stays put when the parsers or package versions change.

The parse counters of `load_domain` (items skipped or repaired) are kept in the
dataset's metadata (`metadata.json` beside the records); `parse_stats` reads
them back.
"""

from collections.abc import Iterator, Sequence
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from lm_data import utils
from lm_data.corpus import fetch
from lm_data.corpus import sources

TRAIN = 'train'
VALIDATION = 'validation'
SPLITS = (TRAIN, VALIDATION)
VALIDATION_FRACTION = 0.03
MIN_VALIDATION_DOCS = 4
# Records fetched per `__getitems__` call when reading a split.
READ_BATCH_SIZE = 1024
_FEATURES = ('text', 'domain', 'source', 'doc_id')
_HASH_RANGE = 2**64


def default_data_dir() -> pathlib.Path:
  return fetch.cache_root() / 'tfds'


def doc_key(doc: sources.Document) -> str:
  """The record key of a document: unique within a domain."""
  return f'{doc.source}/{doc.doc_id}'


def validation_mask(docs: Sequence[sources.Document]) -> np.ndarray:
  """Which documents are held out (see the module docstring)."""
  fractions = np.array([utils.name_hash(doc_key(d)) / _HASH_RANGE
                        for d in docs], dtype=np.float64)
  mask = fractions < VALIDATION_FRACTION
  wanted = min(MIN_VALIDATION_DOCS, len(docs) // 2)
  if mask.sum() < wanted:
    mask[np.argsort(fractions, kind='stable')[:wanted]] = True
  return mask


class LmDataCorpus(tfds.core.GeneratorBasedBuilder):
  """Documents of one domain (the config), with a held-out validation split."""

  name = 'lm_data_corpus'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Embedded registry sources, one config a domain.'}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=d, description=f'{d} text')
                     for d in sources.ALL_DOMAINS]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(
            {k: tfds.features.Text() for k in _FEATURES}),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Sources fetch their own pinned archives.
    docs, counters = sources.load_domain(self.builder_config.name)
    unique, seen, duplicates = [], set(), 0
    for doc in docs:
      key = doc_key(doc)
      if key in seen:
        duplicates += 1
        continue
      seen.add(key)
      unique.append(doc)
    held_out = validation_mask(unique)
    parse = {str(k): int(v) for k, v in counters.items()}
    if duplicates:
      parse['duplicate_doc_id'] = parse.get('duplicate_doc_id', 0) + duplicates
    self.info.metadata['parse_stats'] = parse
    return {
        TRAIN: self._generate_examples(
            [d for d, v in zip(unique, held_out) if not v]),
        VALIDATION: self._generate_examples(
            [d for d, v in zip(unique, held_out) if v]),
    }

  def _generate_examples(self, docs):
    for doc in docs:
      yield doc_key(doc), {'text': doc.text, 'domain': doc.domain,
                           'source': doc.source, 'doc_id': doc.doc_id}


def _known_domain(domain: str) -> str:
  if domain not in sources.ALL_DOMAINS:
    raise ValueError(f'unknown domain {domain!r}; known: '
                     f'{", ".join(sources.ALL_DOMAINS)}')
  return domain


def builder(domain: str, *, data_dir: str | os.PathLike[str] | None = None
            ) -> LmDataCorpus:
  """The prepared builder of `domain` (built on first use)."""
  corpus = LmDataCorpus(config=_known_domain(domain),
                        data_dir=str(data_dir or default_data_dir()),
                        file_format='array_record')
  corpus.download_and_prepare()
  return corpus


def _decode(record: dict) -> sources.Document:
  return sources.Document(**{k: (v.decode('utf-8') if isinstance(v, bytes)
                                 else v) for k, v in record.items()})


def _read(data_source, limit: int | None = None) -> Iterator[dict]:
  size = len(data_source) if limit is None else min(limit, len(data_source))
  for start in range(0, size, READ_BATCH_SIZE):
    yield from data_source.__getitems__(
        range(start, min(start + READ_BATCH_SIZE, size)))


def load_split(domain: str, split: str = TRAIN, *,
               data_dir: str | os.PathLike[str] | None = None
               ) -> list[sources.Document]:
  """Documents of one split of `domain`, sorted by (source, doc_id)."""
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; known: {", ".join(SPLITS)}')
  data_source = builder(domain, data_dir=data_dir).as_data_source(split=split)
  docs = [_decode(r) for r in _read(data_source)]
  docs.sort(key=lambda d: (d.source, d.doc_id))
  return docs


def parse_stats(domain: str, *,
                data_dir: str | os.PathLike[str] | None = None
                ) -> dict[str, int]:
  """Items the parsers of `domain` skipped or repaired, by reason."""
  return dict(builder(domain, data_dir=data_dir).info.metadata['parse_stats'])


def iter_tfds_documents(name: str, *, split: str = TRAIN,
                        data_dir: str | None = None, text_key: str = 'text',
                        max_documents: int | None = None
                        ) -> Iterator[sources.Document]:
  """Documents of any prepared TFDS text dataset (`c4/en`, `wikipedia/...`).

  For runs with internet: the dataset must be prepared in a random-access
  format (`tfds build NAME --file_format=array_record`, or a GCS `data_dir`
  holding one). domain and source are the dataset name, doc_id the record
  index within the split.
  """
  data_source = tfds.data_source(name, split=split, data_dir=data_dir,
                                 download=False)
  for index, record in enumerate(_read(data_source, max_documents)):
    text = record[text_key]
    yield sources.Document(
        text=text.decode('utf-8') if isinstance(text, bytes) else text,
        domain=name, source=name, doc_id=f'{split}/{index}')
