"""The curated corpus as a TFDS dataset: layout, record format and metadata.

`<output_dir>/lm_data_curated/1.0.0/`: one split per domain (split name = the
domain, characters TFDS does not allow replaced by '_'), and optionally one
held-out split per domain (`<split>_validation`: the corpus' validation
documents, uncurated as prepare's held-out rows), array_record shards
`lm_data_curated-<split>.array_record-SSSSS-of-NNNNN`, features as the corpus
builder's (text, domain, source, doc_id), `curation_stats.json` (the steps'
counts, 'splits' {split: domain}, 'held_out' {split: domain}). Written by the Beam runner (`beam_pipeline`) or in
process (`write_documents`); read with `tfds.builder_from_directory` or
`lm_data.input_pipeline.stream`. No Beam needed here.
"""

from collections.abc import Iterable, Mapping, Sequence
import json
import os
import re
from typing import Any

from array_record.python import array_record_module
from etils import epath
import tensorflow_datasets as tfds

from lm_data.corpus.sources import Document

DATASET_NAME = 'lm_data_curated'
VERSION = '1.0.0'
STATS_FILE = 'curation_stats.json'
FEATURE_NAMES = ('text', 'domain', 'source', 'doc_id')
HELD_OUT_SUFFIX = '_validation'
_SPLIT_CHARS = re.compile(r'\W')
# One record per group: random access to every document.
_WRITER_OPTIONS = 'group_size:1'


def features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict(
      {k: tfds.features.Text() for k in FEATURE_NAMES})


def split_name(domain: str) -> str:
  return _SPLIT_CHARS.sub('_', domain)


def held_out_split_name(domain: str) -> str:
  return f'{split_name(domain)}{HELD_OUT_SUFFIX}'


def decode_text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else value


def document(record: Mapping[str, Any]) -> Document:
  """The Document of a record of the corpus builder or of this dataset."""
  return Document(**{k: decode_text(record[k]) for k in FEATURE_NAMES})


def serialize(doc: Document) -> bytes:
  return features().serialize_example(
      {k: getattr(doc, k) for k in FEATURE_NAMES})


def dataset_dir(output_dir: str | os.PathLike[str]) -> str:
  return os.path.join(os.fspath(output_dir), DATASET_NAME, VERSION)


def shard_prefix(output_dir, domain: str, *, held_out: bool = False) -> str:
  """Shard path without the '-SSSSS-of-NNNNN' suffix."""
  split = held_out_split_name(domain) if held_out else split_name(domain)
  return os.path.join(dataset_dir(output_dir),
                      f'{DATASET_NAME}-{split}.array_record')


def write_metadata(output_dir, domains: Sequence[str],
                   stats: dict[str, Any],
                   held_out_domains: Sequence[str] = ()) -> str:
  """dataset_info.json, features.json and STATS_FILE for the written shards;
  returns the dataset folder (readable by `tfds.builder_from_directory`)."""
  folder = epath.Path(dataset_dir(output_dir))
  split_infos = []
  splits = ([split_name(d) for d in domains]
            + [held_out_split_name(d) for d in held_out_domains])
  for split in splits:
    shards = sorted(folder.glob(f'{DATASET_NAME}-{split}.array_record-*'))
    split_infos.append(tfds.core.SplitInfo(
        name=split,
        shard_lengths=[array_record_module.ArrayRecordReader(
            os.fspath(p)).num_records() for p in shards],
        num_bytes=sum(p.stat().length for p in shards)))
  stats = {**stats, 'splits': {split_name(d): d for d in domains},
           'held_out': {held_out_split_name(d): d for d in held_out_domains}}
  tfds.folder_dataset.write_metadata(
      data_dir=folder, features=features(), split_infos=split_infos,
      check_data=False, version=VERSION,
      description='lm_data curated corpus (lm_data.curation)',
      metadata=tfds.core.MetadataDict(stats))
  (folder / STATS_FILE).write_text(json.dumps(stats, indent=2,
                                              sort_keys=True))
  return os.fspath(folder)


def _write_split(output_dir, docs: Iterable[Document], domains: Sequence[str],
                 num_shards: int, held_out: bool) -> None:
  """Round-robin over the shards of each document's domain."""
  writers = {d: [array_record_module.ArrayRecordWriter(
      f'{shard_prefix(output_dir, d, held_out=held_out)}-{k:05d}-of-'
      f'{num_shards:05d}', _WRITER_OPTIONS) for k in range(num_shards)]
             for d in domains}
  counts = dict.fromkeys(domains, 0)
  try:
    for doc in docs:
      if doc.domain not in writers:
        raise ValueError(f'document of domain {doc.domain!r}, not one of '
                         f'{list(domains)}')
      writers[doc.domain][counts[doc.domain] % num_shards].write(
          serialize(doc))
      counts[doc.domain] += 1
  finally:
    for shard_writers in writers.values():
      for writer in shard_writers:
        writer.close()


def write_documents(output_dir, docs: Iterable[Document], *,
                    domains: Sequence[str], stats: dict[str, Any] | None = None,
                    num_shards: int = 1,
                    held_out: Iterable[Document] = (),
                    held_out_domains: Sequence[str] = ()) -> str:
  """Writes documents in process with the same layout as the Beam runner
  (`held_out`: documents of the held-out splits of `held_out_domains`);
  returns the folder."""
  epath.Path(dataset_dir(output_dir)).mkdir(parents=True, exist_ok=True)
  _write_split(output_dir, docs, domains, num_shards, held_out=False)
  _write_split(output_dir, held_out, held_out_domains, num_shards,
               held_out=True)
  return write_metadata(output_dir, domains, stats or {}, held_out_domains)
