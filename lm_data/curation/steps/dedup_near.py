"""MinHash-LSH near dedup (dedup.near_dedup).

On Beam, signatures and LSH buckets are computed in parallel; the buckets
give the same candidate pairs as `dedup._band_edges` (the first member in input
order paired with each other member), verified pairs are joined into clusters
by `dedup._components` on one worker (over the verified pairs only, which are
few), and each cluster keeps its first document in input order, as in process.
"""

import numpy as np

from lm_data.curation import dedup
from lm_data.curation import registry

_NAMESPACE = 'lm_data.curation'
_NAME = 'dedup_near'
_NO_WORDS = np.iinfo(np.uint64).max  # Signature entry of a text without words.
_SIGN_BATCH = 512


def _run(docs, ctx):
  return dedup.near_dedup(docs, seed=ctx.seed)


def _count(name: str, value: int = 1) -> None:
  from apache_beam.metrics import Metrics  # pylint: disable=import-outside-toplevel
  Metrics.counter(_NAMESPACE, f'{_NAME}/{name}').inc(value)


def _signatures(batch, seed, bands, rows):
  """((band, bucket key), (order key, signature)) of each document."""
  sig = dedup.minhash_signatures([doc.text for _, doc in batch], seed=seed)
  keys = dedup.band_keys(sig, bands, rows)
  # Signed, for Beam's integer coder.
  for (okey, _), row, bucket in zip(batch, sig, keys.view(np.int64)):
    _count('input')
    if np.any(row != _NO_WORDS):
      for band in range(bands):
        yield (band, int(bucket[band])), (okey, row)


def _bucket_pairs(bucket):
  (_, members) = bucket
  members = sorted(members, key=lambda m: m[0])
  for other in members[1:]:
    yield (members[0][0], other[0]), (members[0][1], other[1])


def _verify(pair, threshold):
  (a, b), sigs = pair
  sig_a, sig_b = next(iter(sigs))
  _count('candidate_pairs')
  if dedup.estimate_jaccard(sig_a, sig_b) >= threshold:
    _count('verified_pairs')
    yield a, b


def _removed(edges, bands, rows):
  """Order keys of the documents whose cluster has an earlier member."""
  _count('bands', bands)
  _count('rows', rows)
  nodes = sorted({key for edge in edges for key in edge})
  index = {key: i for i, key in enumerate(nodes)}
  a = np.array([index[e[0]] for e in edges], dtype=np.int64)
  b = np.array([index[e[1]] for e in edges], dtype=np.int64)
  labels = dedup._components(len(nodes), a, b)  # pylint: disable=protected-access
  _count('clusters', len(np.unique(labels)))
  for i in np.flatnonzero(labels != np.arange(len(nodes))):
    key = nodes[i]
    _count('removed_near')
    _count(f'removed_near_by_domain/{key[1]}')
    yield key, True


def _keep(joined):
  key, parts = joined
  if not parts['removed']:
    for doc in parts['doc']:
      _count('kept')
      yield key, doc


def _beam_transform(ctx):
  """Keyed documents -> keyed kept documents (keys: (rank, domain, ...))."""
  # Optional extra '.[beam]'; only the Beam runner gets here.
  import apache_beam as beam  # pylint: disable=import-outside-toplevel
  bands, rows = dedup.lsh_params(dedup.JACCARD_THRESHOLD, dedup.NUM_PERM)

  @beam.ptransform_fn
  def near_dedup(keyed):
    edges = (
        keyed
        | 'Batch' >> beam.BatchElements(max_batch_size=_SIGN_BATCH)
        | 'Sign' >> beam.FlatMap(_signatures, ctx.seed, bands, rows)
        | 'Buckets' >> beam.GroupByKey()
        | 'Pairs' >> beam.FlatMap(_bucket_pairs)
        | 'DistinctPairs' >> beam.GroupByKey()
        | 'Verify' >> beam.FlatMap(_verify, dedup.JACCARD_THRESHOLD))
    removed = (
        edges
        | 'AllEdges' >> beam.combiners.ToList()
        | 'Clusters' >> beam.FlatMap(_removed, bands, rows))
    return ({'doc': keyed, 'removed': removed}
            | 'Join' >> beam.CoGroupByKey()
            | 'Keep' >> beam.FlatMap(_keep))

  return near_dedup()  # pylint: disable=no-value-for-parameter


registry.register(registry.Step(
    name=_NAME, run=_run, scope='custom', beam_transform=_beam_transform))
