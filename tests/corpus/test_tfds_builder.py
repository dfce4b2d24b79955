"""Tests for the TFDS builder of the embedded corpus (no network)."""

import collections
import sys

import pytest

from lm_data.corpus import sources
from lm_data.corpus import tfds_builder

DOMAIN = sources.DOMAINS[0]
NUM_DOCS = 200


def _docs(domain=DOMAIN, n=NUM_DOCS):
  return [sources.Document(text=f'text of document {i} é', domain=domain,
                           source='synthetic', doc_id=f'doc{i:03d}')
          for i in range(n)]


@pytest.fixture
def fake_sources(monkeypatch):
  calls = []

  def load_domain(domain):
    calls.append(domain)
    docs = _docs(domain)
    return docs + docs[:2], collections.Counter(skipped_binary=3,
                                                repaired_invalid_utf8=1)

  monkeypatch.setattr(sources, 'load_domain', load_domain)
  return calls


def test_builds_and_reads_back_without_tensorflow(tmp_path, fake_sources):
  train = tfds_builder.load_split(DOMAIN, tfds_builder.TRAIN, data_dir=tmp_path)
  validation = tfds_builder.load_split(DOMAIN, tfds_builder.VALIDATION, data_dir=tmp_path)
  assert fake_sources == [DOMAIN]
  assert 'tensorflow' not in sys.modules
  # Every document exactly once (the two repeated ids are dropped, counted).
  assert sorted(train + validation, key=lambda d: d.doc_id) == _docs()
  assert train == sorted(train, key=lambda d: (d.source, d.doc_id))
  assert {d.domain for d in train} == {DOMAIN}
  assert train[0].text.endswith('é')
  assert tfds_builder.parse_stats(DOMAIN, data_dir=tmp_path) == {
      'skipped_binary': 3, 'repaired_invalid_utf8': 1, 'duplicate_doc_id': 2}
  # A second read reuses the prepared files instead of loading sources.
  assert tfds_builder.load_split(DOMAIN, data_dir=tmp_path) == train
  assert fake_sources == [DOMAIN]


def test_validation_is_disjoint_small_and_stable(tmp_path, fake_sources):
  del fake_sources
  train = {d.doc_id for d in tfds_builder.load_split(DOMAIN, data_dir=tmp_path)}
  validation = {d.doc_id for d in tfds_builder.load_split(
      DOMAIN, tfds_builder.VALIDATION, data_dir=tmp_path)}
  assert not train & validation
  assert tfds_builder.MIN_VALIDATION_DOCS <= len(validation) <= 0.1 * NUM_DOCS
  # A document's split depends on its own id only: dropping half of the
  # other documents keeps every remaining validation document held out.
  docs = _docs()
  subset = [d for d in docs if d.doc_id in validation] + docs[:NUM_DOCS // 2]
  mask = tfds_builder.validation_mask(subset)
  held_out = {d.doc_id for d, m in zip(subset, mask) if m}
  assert validation <= held_out


def test_tiny_domain_still_gets_validation_documents():
  mask = tfds_builder.validation_mask(_docs(n=10))
  assert mask.sum() == tfds_builder.MIN_VALIDATION_DOCS
  assert tfds_builder.validation_mask(_docs(n=1)).sum() == 0


def test_unknown_domain_lists_known_ones(tmp_path):
  with pytest.raises(ValueError, match="unknown domain 'lgeal'; known: "):
    tfds_builder.load_split('lgeal', data_dir=tmp_path)


def test_unknown_split_is_rejected(tmp_path):
  with pytest.raises(ValueError, match="unknown split 'test'"):
    tfds_builder.load_split(DOMAIN, 'test', data_dir=tmp_path)
