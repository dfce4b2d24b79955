"""The curation steps on Apache Beam, writing a TFDS dataset (`dataset`).

Needs the optional extra: `pip install -e '.[beam]'`.

Every document carries an order key (rank of its domain in the recipe,
domain, source, id within the source): the in-process input order, so a step
that keeps "the first document in input order" keeps the same one here
(registry docstring: how each step's scope is distributed). Steps call the
registry's implementations; their integer stats become Beam counters
(namespace `NAMESPACE`, name `<step>/<stat>`) and, after the run, the stats
JSON (`collect_stats`, same layout as prepare's `stats.json` 'steps').

Output: the layout of `dataset` (one split per domain, array_record).
"""

from collections.abc import Iterable, Sequence
import dataclasses
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from array_record.beam import arrayrecordio
import tensorflow_datasets as tfds

from lm_data.corpus.sources import Document
from lm_data.curation import dataset
from lm_data.curation import registry

NAMESPACE = 'lm_data.curation'
# Documents per call of a step (per-document scope) or groups per call.
STEP_BATCH = 1024
# Records read per element of the read stage.
READ_RANGE = 4096
# Per-step counters of documents in and out, by domain.
_INPUT, _KEPT = '_input', '_kept'


@dataclasses.dataclass(frozen=True)
class Input:
  """One source of documents: a split of a prepared TFDS dataset folder.

  Attributes:
    domain: the domain its documents belong to.
    path: the dataset's version folder (e.g. `.../lm_data_corpus/legal/1.0.0`).
    split: the split to read.
    corpus: True for the embedded corpus (records carry domain, source and
      doc_id); False for a TFDS text dataset (domain = source = its name,
      doc_id = f'{split}/{index}', as `corpus.iter_tfds_documents`).
    num_records: records in the split.
  """
  domain: str
  path: str
  split: str
  corpus: bool
  num_records: int


def _read_range(element, inputs: Sequence[Input]):
  """(order key, document) of records [start, stop) of one input."""
  rank, start, stop = element
  source = inputs[rank]
  data = tfds.builder_from_directory(source.path).as_data_source(
      split=source.split)
  for index, record in zip(range(start, stop),
                           data.__getitems__(range(start, stop))):
    if source.corpus:
      doc = dataset.document(record)
      yield order_key(rank, doc), doc
    else:
      # In record order, as corpus.iter_tfds_documents reads them.
      doc = Document(text=dataset.decode_text(record['text']),
                     domain=source.domain,
                     source=source.domain, doc_id=f'{source.split}/{index}')
      yield (rank, doc.domain, doc.source, index), doc


def _counter(name: str):
  return Metrics.counter(NAMESPACE, name)


def _count_domains(keyed, step: str, which: str):
  _counter(f'{step}/{which}/{keyed[0][1]}').inc()


def _apply(batch: list, step_name: str, context: registry.Context):
  """Runs a step on a batch of keyed documents (sorted into input order)."""
  step = registry.get(step_name)
  batch = sorted(batch, key=lambda kv: kv[0])
  keys = {(doc.source, doc.doc_id): key for key, doc in batch}
  kept, details = step.run([doc for _, doc in batch], context)
  for name, value in step.counts(details).items():
    _counter(f'{step_name}/{name}').inc(value)
  for doc in kept:
    yield keys[(doc.source, doc.doc_id)], doc


def _flatten(groups: Iterable[list]) -> list:
  return [kv for group in groups for kv in group]


class CurationStep(beam.PTransform):
  """Keyed documents -> keyed documents kept (or rewritten) by one step."""

  def __init__(self, step_name: str, context: registry.Context):
    super().__init__()
    self._name = step_name
    self._context = context

  def expand(self, keyed):
    step = registry.get(self._name)
    _ = keyed | 'CountIn' >> beam.Map(_count_domains, self._name, _INPUT)
    if step.scope == 'document':
      out = (keyed
             | 'Batch' >> beam.BatchElements(max_batch_size=STEP_BATCH)
             | 'Run' >> beam.FlatMap(_apply, self._name, self._context))
    elif step.scope == 'group':
      out = (keyed
             | 'Key' >> beam.Map(lambda kv, f: (f(kv[1]), kv),
                                 step.group_key)
             | 'Group' >> beam.GroupByKey()
             | 'Members' >> beam.MapTuple(lambda _, members: list(members))
             | 'Batch' >> beam.BatchElements(max_batch_size=STEP_BATCH)
             | 'Flatten' >> beam.Map(_flatten)
             | 'Run' >> beam.FlatMap(_apply, self._name, self._context))
    else:
      out = keyed | 'Run' >> step.beam_transform(self._context)
    _ = out | 'CountOut' >> beam.Map(_count_domains, self._name, _KEPT)
    return out


def order_key(rank: int, doc: Document) -> tuple:
  """Sorts documents as the in-process path reads them (corpus domains)."""
  return rank, doc.domain, doc.source, doc.doc_id


def curate(keyed, step_names: Sequence[str], context: registry.Context):
  """(order key, document) -> the same for the documents the steps keep."""
  for name in step_names:
    keyed = keyed | name >> CurationStep(name, context)
  return keyed


def _read(pipeline: beam.Pipeline, inputs: Sequence[Input], label: str = ''):
  ranges = [(rank, start, min(start + READ_RANGE, source.num_records))
            for rank, source in enumerate(inputs)
            for start in range(0, source.num_records, READ_RANGE)]
  return (pipeline
          | f'{label}Ranges' >> beam.Create(ranges)
          | f'{label}Spread' >> beam.Reshuffle()
          | f'{label}Read' >> beam.FlatMap(_read_range, list(inputs)))


def _write(keyed, domains: Sequence[str], output_dir: str, num_shards: int,
           held_out: bool = False) -> None:
  label = 'HeldOut' if held_out else ''
  parts = keyed | f'{label}ByDomain' >> beam.Partition(
      lambda kv, _: domains.index(kv[1].domain), len(domains))
  for domain, part in zip(domains, parts):
    _ = (part
         | f'{label}Serialize_{domain}' >> beam.MapTuple(
             lambda _, doc: dataset.serialize(doc))
         | f'{label}Write_{domain}' >> arrayrecordio.WriteToArrayRecord(
             dataset.shard_prefix(output_dir, domain, held_out=held_out),
             num_shards=num_shards, shard_name_template='-SSSSS-of-NNNNN'))


def build(pipeline: beam.Pipeline, inputs: Sequence[Input],
          step_names: Sequence[str], context: registry.Context, *,
          output_dir: str, num_shards: int = 1,
          held_out: Sequence[Input] = ()) -> None:
  """Adds read -> steps -> write to `pipeline`; the `held_out` inputs are
  copied uncurated to the held-out splits (as prepare's held-out rows)."""
  keyed = curate(_read(pipeline, inputs), step_names, context)
  _write(keyed, [source.domain for source in inputs], output_dir, num_shards)
  if held_out:
    _write(_read(pipeline, held_out, 'HeldOut'),
           [source.domain for source in held_out], output_dir, num_shards,
           held_out=True)


def _unflatten(flat: dict[str, int]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for key, value in sorted(flat.items()):
    *path, leaf = key.split('/')
    node = tree
    for part in path:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree


def collect_stats(result, step_names: Sequence[str]) -> list[dict]:
  """Per step {'step', 'details' (the additive counts), 'removed'} from the
  run's counters (committed where the runner reports them)."""
  by_step: dict[str, dict[str, int]] = {name: {} for name in step_names}
  query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
  for counter in query['counters']:
    value = counter.committed if counter.committed is not None else (
        counter.attempted)
    step, name = counter.key.metric.name.split('/', 1)
    if step in by_step:
      by_step[step][name] = by_step[step].get(name, 0) + int(value)
  stats = []
  for name in step_names:
    flat = by_step[name]
    seen = {k[len(_INPUT) + 1:]: v for k, v in flat.items()
            if k.startswith(_INPUT + '/')}
    kept = {k[len(_KEPT) + 1:]: v for k, v in flat.items()
            if k.startswith(_KEPT + '/')}
    details = {k: v for k, v in flat.items()
               if not k.startswith((_INPUT + '/', _KEPT + '/'))}
    stats.append({'step': name, 'details': _unflatten(details),
                  'removed': {d: n - kept.get(d, 0) for d, n in seen.items()}})
  return stats


def run(inputs: Sequence[Input], step_names: Sequence[str],
        context: registry.Context, *, output_dir: str, num_shards: int = 1,
        options: beam.options.pipeline_options.PipelineOptions | None = None,
        metadata: dict[str, Any] | None = None,
        held_out: Sequence[Input] = ()) -> dict[str, Any]:
  """Runs the curation and writes the dataset and its stats; returns them."""
  for name in step_names:
    registry.get(name)  # Unknown names fail before the pipeline starts.
  pipeline = beam.Pipeline(options=options)
  build(pipeline, inputs, step_names, context, output_dir=output_dir,
        num_shards=num_shards, held_out=held_out)
  result = pipeline.run()
  result.wait_until_finish()
  stats = {'steps': collect_stats(result, step_names),
           'inputs': [dataclasses.asdict(i) for i in inputs],
           **(metadata or {})}
  dataset.write_metadata(output_dir, [i.domain for i in inputs], stats,
                         [i.domain for i in held_out])
  return stats
