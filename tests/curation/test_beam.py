"""The Beam runner keeps what the in-process runner keeps (needs '.[beam]')."""

import json
import time

import pytest

beam = pytest.importorskip(
    'apache_beam', reason="apache-beam is an optional extra: pip install -e "
    "'.[beam]' to run the Beam curation tests")
# pylint: disable=wrong-import-position
from apache_beam.testing import util as beam_util  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from lm_data import curation  # noqa: E402
from lm_data.corpus import tfds_builder  # noqa: E402
from lm_data.curation import beam_main  # noqa: E402
from lm_data.curation import beam_pipeline  # noqa: E402
from lm_data.curation import dataset  # noqa: E402
from lm_data.input_pipeline import tokenizer as tokenizer_lib  # noqa: E402
from tests.curation import fixtures  # noqa: E402


def _in_process(docs, steps, context):
  kept, stats = curation.run_steps(docs, steps, context)
  counts = [{'step': s['step'],
             'details': curation.get(s['step']).counts(s['details']),
             'removed': s['removed']} for s in stats]
  return kept, counts


def _nonzero(stats):
  return [{'step': s['step'],
           'details': {k: v for k, v in
                       curation.registry.additive_counts(s['details']).items()
                       if v},
           'removed': s['removed']} for s in stats]


def test_every_step_on_synthetic_documents(tmp_path):
  docs = fixtures.docs()
  steps = list(curation.names())
  context = fixtures.context()
  # A real tokenizer is needed by pickling workers; the fake one stays here.
  context = curation.Context(**{**context.__dict__, '_tokenizer': None,
                                'tokenizer_path': None})
  steps.remove('compression')
  expected, expected_stats = _in_process(docs, steps, context)
  with beam.Pipeline() as pipeline:
    keyed = pipeline | beam.Create(
        [(beam_pipeline.order_key(0, d), d) for d in docs])
    kept = beam_pipeline.curate(keyed, steps, context)
    beam_util.assert_that(kept | beam.Values(),
                          beam_util.equal_to(expected))
  result = pipeline.result
  stats = beam_pipeline.collect_stats(result, steps)
  assert _nonzero(stats) == _nonzero(expected_stats)
  assert [s['removed'] for s in stats] == [s['removed']
                                           for s in expected_stats]


DOMAINS = ('news', 'technical')  # 294 + 703 train documents.


@pytest.fixture(scope='module')
def tokenizer_path(tmp_path_factory):
  texts = {d: [doc.text for doc in tfds_builder.load_split(d)] for d in DOMAINS}
  return tokenizer_lib.train_tokenizer(
      texts, tmp_path_factory.mktemp('tok') / 'spm.model', vocab_size=4000,
      process_index=0)


def test_beam_main_and_prepare_keep_the_same_documents(tmp_path,
                                                       tokenizer_path):
  """Acceptance: the CLI on two real embedded domains, every step, against
  the in-process runner: the same documents, the same counts per step."""
  docs = [d for domain in DOMAINS for d in tfds_builder.load_split(domain)]
  recipe = {'domains': list(DOMAINS), 'seed': 3,
            'quality': ['heuristic', 'dedup_exact', 'dedup_near',
                        'compression'],
            'decontaminate': True, 'degrade': {'char_noise': 0.01}}
  context = curation.Context(
      seed=3, degrade={'char_noise': 0.01},
      _tokenizer=tokenizer_lib.Tokenizer.load(tokenizer_path))
  # Evaluation texts: openings of three documents the quality steps keep.
  survivors, _ = curation.run_steps(docs, recipe['quality'], context)
  eval_texts = [' '.join(survivors[i].text.split()[:60]) for i in (3, 100, 250)]
  context.eval_texts = eval_texts
  (tmp_path / 'eval.json').write_text(json.dumps(eval_texts))
  start = time.perf_counter()
  out = tmp_path / 'out'
  assert beam_main.main([
      f'--recipe={json.dumps(recipe)}', f'--output_dir={out}',
      f'--tokenizer={tokenizer_path}', f'--eval_texts={tmp_path}/eval.json',
      '--num_shards=2', '--direct_num_workers=1']) == 0
  print(f'beam_main: {time.perf_counter() - start:.1f}s')

  steps = recipe['quality'] + ['decontaminate', 'degrade']
  expected, expected_stats = _in_process(docs, steps, context)
  assert all(sum(s['removed'].values()) for s in expected_stats[:-1]), [
      s['removed'] for s in expected_stats]

  folder = dataset.dataset_dir(str(out))
  stats = json.loads((out / 'lm_data_curated' / '1.0.0' /
                      dataset.STATS_FILE).read_text())
  assert _nonzero(stats['steps']) == _nonzero(expected_stats)
  builder = tfds.builder_from_directory(folder)
  written = []
  for domain in DOMAINS:
    source = builder.as_data_source(split=domain)
    assert builder.info.splits[domain].num_shards == 2
    written += [dataset.document(r) for r in source]
  key = lambda d: (d.domain, d.source, d.doc_id)  # noqa: E731
  assert sorted(written, key=key) == sorted(expected, key=key)
  # The corpus' validation documents, copied uncurated to the held-out splits.
  assert stats['held_out'] == {f'{d}_validation': d for d in DOMAINS}
  for domain in DOMAINS:
    source = builder.as_data_source(split=f'{domain}_validation')
    assert sorted((dataset.document(r) for r in source), key=key) == sorted(
        tfds_builder.load_split(domain, tfds_builder.VALIDATION), key=key)
