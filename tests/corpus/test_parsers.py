"""Tests for the format readers and markup strippers (tiny crafted inputs)."""

import bz2
import collections
import csv
import gzip
import random
import time

from lm_data.corpus import parsers
import pytest


# ----------------------------------------------------------------- decode ---


def test_decode_clean_text_strips_bom_and_crlf():
  stats = collections.Counter()
  assert parsers.decode(b'\xef\xbb\xbfone\r\ntwo\rthree', stats) == (
      'one\ntwo\nthree')
  assert not stats


def test_decode_repairs_invalid_utf8_lines_only():
  stats = collections.Counter()
  data = 'café\n'.encode() + b'bad \xff byte\n' + b'ok\n'
  assert parsers.decode(data, stats) == 'café\nbad \ufffd byte\nok\n'
  assert stats == {'repaired_invalid_utf8': 1}


def test_decode_uses_declared_fallback_encoding():
  stats = collections.Counter()
  data = b'na\xefve\n' + 'naïve\n'.encode()
  assert parsers.decode(data, stats, fallback_encoding='latin-1') == (
      'naïve\nnaïve\n')
  assert stats == {'repaired_invalid_utf8': 1}


def test_decode_removes_nul_and_skips_binary():
  stats = collections.Counter()
  assert parsers.decode(b'a\x00b' + b' text' * 20, stats) == 'ab' + ' text' * 20
  assert parsers.decode(bytes(range(256)) * 4, stats) is None
  assert stats == {'removed_nul': 1, 'skipped_binary': 1}
  assert not parsers.is_binary(b'')


# -------------------------------------------------------------- splitting ---


def test_split_text_prefers_paragraphs_then_lines_then_spaces():
  assert parsers.split_text('short', 10) == ['short']
  assert parsers.split_text('aaaa bbbb\n\ncccc dddd eeee', 10) == [
      'aaaa bbbb', 'cccc dddd', 'eeee']
  # A paragraph break too early (part < half full) loses to a later space.
  assert parsers.split_text('ab\n\ncdef ghij klm', 10) == [
      'ab\n\ncdef', 'ghij klm']
  assert parsers.split_text('x' * 25, 10) == ['x' * 10, 'x' * 10, 'x' * 5]


def test_split_text_keeps_every_word_and_bounds_parts():
  words = [f'w{i}' for i in range(500)]
  text = '\n\n'.join(' '.join(words[i:i + 7]) for i in range(0, 500, 7))
  parts = parsers.split_text(text, 100)
  assert all(0 < len(p) <= 100 for p in parts)
  assert ' '.join(parts).split() == words


def _split_text_reference(text, max_chars):
  """The former, quadratic split_text (it re-sliced the rest): the spec."""
  parts = []
  while len(text) > max_chars:
    end, rest = parsers.text._cut(text[:max_chars + 1], max_chars)
    part = text[:end].strip()
    if part:
      parts.append(part)
    text = text[rest:].lstrip()
  if text.strip():
    parts.append(text)
  return parts


def test_split_text_cuts_as_the_reference_does():
  rng = random.Random(0)
  pieces = ['ab', 'word', ' ', '  ', '\n', '\n\n', '\t', '\u3000', 'x' * 30]
  for _ in range(300):
    text = ''.join(rng.choice(pieces) for _ in range(rng.randrange(0, 60)))
    for max_chars in (1, 5, 17, 40):
      assert parsers.split_text(text, max_chars) == _split_text_reference(
          text, max_chars), (text, max_chars)


# 80 MB took 295 s when every cut copied the rest of the text.
LINEAR_CHARS = 80_000_000
LINEAR_LIMIT_S = 5.0


@pytest.mark.parametrize('unit', ['Some prose, of a kind. ' * 40 + '\n\n',
                                  'x'])  # Paragraphs; no boundary at all.
def test_split_text_is_linear_in_the_text_length(unit):
  text = unit * (LINEAR_CHARS // len(unit))
  start = time.perf_counter()
  parts = parsers.split_text(text, 20_000)
  seconds = time.perf_counter() - start
  assert seconds < LINEAR_LIMIT_S, f'{len(text):,} characters took {seconds:.1f}s'
  assert all(len(p) <= 20_000 for p in parts)
  def visible(t):
    return len(t) - t.count(' ') - t.count('\n')
  assert sum(map(visible, parts)) == visible(text)  # Only whitespace is cut.


# ---------------------------------------------------------- plain markups ---


def test_strip_front_matter():
  assert parsers.strip_front_matter('---\nkey: mit\n---\n\nText.') == '\nText.'
  assert parsers.strip_front_matter('No header.\n---\n') == 'No header.\n---\n'
  assert parsers.strip_front_matter('---\nunterminated') == '---\nunterminated'


def test_strip_gutenberg():
  text = ('Project Gutenberg\'s Book\nTitle: Book\n'
          '*** START OF THIS PROJECT GUTENBERG EBOOK BOOK ***\n'
          'Produced by Someone\n\nCHAPTER I\nIt began.\n'
          "End of Project Gutenberg's Book\n*** END OF THIS ... ***\nLicence")
  assert parsers.strip_gutenberg(text) == 'CHAPTER I\nIt began.'
  assert parsers.strip_gutenberg('No boilerplate.') == 'No boilerplate.'


def test_strip_braced_footnotes():
  assert parsers.strip_braced('God{note {nested}} created.') == 'God created.'


# --------------------------------------------------------------- wikitext ---

WIKITEXT = """{{Infobox country
| name = Testland {{nested|x}}
}}
'''Testland''' ({{IPA|t}}; ''Terra'') is a [[country]] in \
[[Europe|western Europe]].<ref name="a">{{cite web|url=x}}</ref><ref name=b/> \
See [http://example.org the site].<!-- hidden -->
[[File:Flag.png|thumb|The [[flag]] of Testland]]
{| class="wikitable"
| cell || other
|}
== History ==
* First&nbsp;item
# Second <small>item</small><br/>
== References ==
{{reflist}}
* A citation.
=== Sub of references ===
Still dropped.
== Culture ==
Text.[[Category:Countries]] [[de:Testland]]
__NOTOC__"""


def test_wikitext_to_text():
  assert parsers.wikitext_to_text(WIKITEXT) == (
      'Testland (Terra) is a country in western Europe. See the site.\n\n'
      'History\n\nFirst\xa0item\nSecond item\n\nCulture\n\nText.')


# ------------------------------------------------------------------- reST ---

REST = """.. _sessions:

=======
Title
=======

.. module:: django.contrib.sessions
   :synopsis: Sessions.

Use :setting:`MIDDLEWARE` and :doc:`the cache
docs </topics/cache>` with ``literal`` and `a link <https://x.org>`_, see
:class:`~django.db.Model` and **bold**.

Example::

    code = 1

.. code-block:: python

    more = 2

.. note::

    A note body.

>>> 1 + 1
2

.. toctree::
   :maxdepth: 1

   intro
"""


def test_rest_to_text_drops_code_by_default():
  assert parsers.rest_to_text(REST) == (
      'Title\n\nUse MIDDLEWARE and the cache\ndocs with literal and a link, '
      'see\nModel and bold.\n\nExample:\n\nA note body.')


def test_rest_to_text_can_keep_code():
  text = parsers.rest_to_text(REST, keep_code=True)
  assert '    code = 1' in text and '    more = 2' in text
  assert '>>> 1 + 1\n2' in text and ':maxdepth:' not in text


# --------------------------------------------------------- member parsers ---


def _parse(parser, member, data, **kwargs):
  stats = collections.Counter()
  return list(parser(member, data, stats, **kwargs)), stats


def test_parse_licensedcode():
  data = b'---\nkey: mit\ncategory: Permissive\n---\n\nPermission is granted.\n'
  docs, stats = _parse(parsers.parse_licensedcode,
                       'licensedcode/data/licenses/mit.LICENSE', data)
  assert docs == [('licenses/mit.LICENSE', 'Permission is granted.')]
  assert not stats


def test_parse_lines_counts_blank_lines():
  docs, stats = _parse(parsers.parse_lines, 'x/lee.cor', b'one\n\n two \n')
  assert docs == [('lee.cor:0', 'one'), ('lee.cor:2', 'two')]
  assert stats == {'skipped_empty': 1}


def test_parse_lines_counts_an_empty_member():
  assert _parse(parsers.parse_lines, 'x/empty.cor', b'') == (
      [], {'skipped_empty': 1})


def test_parse_web_bible_groups_chapters():
  rows = ('field,field,field,field,field\n'
          '"01001001","1","1","1","In the beginning God{a ""note""} created."\n'
          '"01001002","1","1","2","The earth was empty."\n'
          '"01002001","1","2","1","The heavens were finished."\n'
          'garbage\n'
          '"02001001","2","1","1","Now these are the names."\n')
  docs, stats = _parse(parsers.parse_web_bible, 'web/t_web.csv.gz',
                       gzip.compress(rows.encode()))
  assert docs == [
      ('web/01/001', 'In the beginning God created. The earth was empty.'),
      ('web/01/002', 'The heavens were finished.'),
      ('web/02/001', 'Now these are the names.')]
  assert stats == {'skipped_malformed_row': 1}


def test_parse_mediawiki_dump():
  xml = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">
  <page><title>Alpha</title><ns>0</ns><revision>
    <text xml:space="preserve">'''Alpha''' is a [[letter]].{{stub}}</text>
  </revision></page>
  <page><title>AlphaRedirect</title><ns>0</ns><redirect title="Alpha" />
    <revision><text>#REDIRECT [[Alpha]]</text></revision></page>
  <page><title>Talk:Alpha</title><ns>1</ns>
    <revision><text>Chat.</text></revision></page>
</mediawiki>"""
  docs, stats = _parse(parsers.parse_mediawiki_dump, 'enwiki.xml.bz2',
                       bz2.compress(xml.encode()))
  assert docs == [('Alpha', 'Alpha\n\nAlpha is a letter.')]
  assert stats == {'skipped_redirect': 1, 'skipped_non_article': 1}


def test_parse_dialog_csv_groups_pairs():
  data = (b',statement,reply\n0,hi.,hello.\n1,"well, no",ok\n'
          b'2,bye,see you\n3,broken\n')
  docs, stats = _parse(parsers.parse_dialog_csv, 'd/moviedialog.csv', data,
                       pairs_per_doc=2)
  assert docs == [('moviedialog.csv:0-1', 'hi.\nhello.\n\nwell, no\nok'),
                  ('moviedialog.csv:2-2', 'bye\nsee you')]
  assert stats == {'skipped_malformed_row': 1}


def test_csv_field_over_the_limit_is_a_member_error():
  # sources.load_source skips and counts such a member (test_sources.py).
  data = b'statement,reply\n"' + b'a' * (csv.field_size_limit() + 1) + b'",b\n'
  with pytest.raises(csv.Error, match='field larger than field limit'):
    _parse(parsers.parse_dialog_csv, 'm.csv', data)


def test_parse_tweets_csv_reads_mojibake_as_latin1():
  data = (b'sentiment,confidence,text\r\nnegative,0.7,cars_\xd1_ no\r\n'
          b'positive,1,"yes,  great"\r\n')
  docs, stats = _parse(parsers.parse_tweets_csv, 'c/tweets.csv', data)
  assert docs == [('tweets.csv:0-1', 'cars_Ñ_ no\n\nyes, great')]
  assert stats == {'repaired_invalid_utf8': 1}


def test_csv_without_expected_columns_is_an_error():
  with pytest.raises(ValueError, match=r"lacks columns \['reply'"):
    _parse(parsers.parse_dialog_csv, 'x.csv', b'statement,answer\na,b\n')


def test_parse_fortunes_splits_items_and_strips_overstrike():
  data = b'B\x08Bold move.\n%\n\n%\nTwo\n  lines.\n%\n_\x08und_\x08e_\x08r\n%\n'
  docs, stats = _parse(parsers.parse_fortunes, 'usr/share/games/fortunes/art',
                       data, fortunes_per_doc=2)
  assert docs == [('art:0-1', 'Bold move.\n\nTwo\n  lines.'),
                  ('art:2-2', 'under')]
  assert stats == {'skipped_empty': 1}  # The item between '%\n\n%'; the final '%' ends one.
  assert _parse(parsers.parse_fortunes, 'fortunes/none', b'') == (
      [], {'skipped_empty': 1})
  docs, stats = _parse(parsers.parse_fortunes, 'fortunes/art.dat', b'\x00\x02')
  assert docs == [] and stats == {'skipped_index_file': 1}
