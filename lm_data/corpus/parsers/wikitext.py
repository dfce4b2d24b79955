"""MediaWiki: XML dumps (bz2/gz allowed) and the wikitext markup of their pages."""

import html
import html.parser
import io
import re
import xml.etree.ElementTree as ET

from lm_data.corpus.parsers.text import decompress
from lm_data.corpus.parsers.text import DocPairs
from lm_data.corpus.parsers.text import is_binary
from lm_data.corpus.parsers.text import Stats
from lm_data.corpus.parsers.text import tidy_whitespace

# Tags whose content is not prose (citations, formulas, galleries, ...).
_WIKI_DROP_TAGS = frozenset({
    'ref', 'references', 'math', 'chem', 'gallery', 'timeline', 'score',
    'syntaxhighlight', 'source', 'pre', 'code', 'imagemap', 'graph', 'hiero',
    'templatedata', 'mapframe', 'table', 'noinclude', 'includeonly'})
_WIKI_VOID_TAGS = frozenset({'br', 'hr', 'wbr'})
# Link namespaces that hold no prose for the reader.
_WIKI_DROP_LINKS = frozenset({'file', 'image', 'media', 'category'})
_INTERWIKI = re.compile(r'^:?[a-z]{2,3}(-[a-z]+)?$|^simple$')
# Trailing sections made of citations and link lists.
_WIKI_DROP_SECTIONS = frozenset({
    'references', 'external links', 'see also', 'further reading', 'notes',
    'footnotes', 'bibliography', 'sources', 'citations'})
_WIKI_HEADING = re.compile(r'^(={1,6})\s*(.*?)\s*\1\s*$')
_WIKI_EXTERNAL_LINK = re.compile(r'\[(?:https?:|ftp:)?//[^\s\]]*\s*([^\]]*)\]')
_WIKI_QUOTES = re.compile(r"'{2,5}")
_WIKI_MAGIC_WORD = re.compile(r'__[A-Z]+__')
_WIKI_LIST_MARKER = re.compile(r'^[*#:;]+\s*')
# Punctuation orphaned by a removed template, e.g. 'Angola ({{IPA}}; ...)'.
_WIKI_ORPHANS = (
    (re.compile(r'\(\s*[;,]?\s*\)'), ''),
    (re.compile(r'\(\s*[;,]\s*'), '('),
    (re.compile(r'[ \t]+([,.;:!?])'), r'\1'),
)


def _strip_wiki_comments(markup: str) -> str:
  out, pos = [], 0
  while (start := markup.find('<!--', pos)) != -1:
    out.append(markup[pos:start])
    end = markup.find('-->', start + 4)
    pos = len(markup) if end == -1 else end + 3
  out.append(markup[pos:])
  return ''.join(out)


def _at_line_start(markup: str, i: int) -> bool:
  j = i - 1
  while j >= 0 and markup[j] in ' \t':
    j -= 1
  return j < 0 or markup[j] == '\n'


def _strip_wiki_blocks(markup: str) -> str:
  """Drops templates `{{...}}` and tables `{|...|}`, both nestable."""
  out, stack, i, n = [], [], 0, len(markup)
  while i < n:
    pair = markup[i:i + 2]
    if pair == '{{':
      stack.append('}}')
      i += 2
    elif pair == '{|' and _at_line_start(markup, i):
      stack.append('|}')
      i += 2
    elif stack and pair == stack[-1] and (
        pair == '}}' or _at_line_start(markup, i)):
      stack.pop()
      i += 2
    else:
      if not stack:
        out.append(markup[i])
      i += 1
  return ''.join(out)


class _WikiTagStripper(html.parser.HTMLParser):
  """Keeps the text of inline HTML, drops non-prose elements entirely."""

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.pieces: list[str] = []
    self._dropping: list[str] = []

  def handle_starttag(self, tag, attrs):
    if self.get_starttag_text().endswith('/>'):
      # `<ref name=a/>`: the parser reads 'a/' as the value, not a closed tag.
      self.handle_startendtag(tag, attrs)
    elif tag in _WIKI_DROP_TAGS:
      self._dropping.append(tag)
    elif tag in _WIKI_VOID_TAGS and not self._dropping:
      self.pieces.append('\n')

  def handle_startendtag(self, tag, attrs):
    if tag in _WIKI_VOID_TAGS and not self._dropping:
      self.pieces.append('\n')

  def handle_endtag(self, tag):
    if tag in self._dropping:
      while self._dropping.pop() != tag:
        pass

  def handle_data(self, data):
    if not self._dropping:
      self.pieces.append(data)


def _strip_wiki_tags(markup: str) -> str:
  stripper = _WikiTagStripper()
  stripper.feed(markup)
  stripper.close()
  return ''.join(stripper.pieces)


def _wiki_link_text(inner: str) -> str:
  target, _, label = inner.partition('|')
  prefix, colon, _ = target.partition(':')
  prefix = prefix.strip().lower()
  if colon and (prefix.lstrip(':') in _WIKI_DROP_LINKS
                or _INTERWIKI.match(prefix)):
    return ''
  if label:
    return label.rsplit('|', 1)[-1]
  return target.lstrip(':').split('#')[0] or target


def _strip_wiki_links(markup: str) -> str:
  """Replaces `[[target|label]]` by its label; drops file/category links."""
  out, i, n = [[]], 0, len(markup)  # One list of pieces per open link.
  while i < n:
    pair = markup[i:i + 2]
    if pair == '[[':
      out.append([])
      i += 2
    elif pair == ']]' and len(out) > 1:
      inner = ''.join(out.pop())
      out[-1].append(_wiki_link_text(inner))
      i += 2
    else:
      out[-1].append(markup[i])
      i += 1
  while len(out) > 1:  # Unclosed links: keep their text as written.
    inner = ''.join(out.pop())
    out[-1].append('[[' + inner)
  return ''.join(out[0])


def wikitext_to_text(markup: str) -> str:
  """Plain prose from MediaWiki markup.

  Drops comments, templates, tables, references and other non-prose tags,
  file/category/interlanguage links and citation sections; keeps link labels,
  headings (as their own paragraphs) and list items.
  """
  text = _strip_wiki_comments(markup)
  text = _strip_wiki_blocks(text)
  text = _strip_wiki_tags(text)
  text = _strip_wiki_links(text)
  text = _WIKI_EXTERNAL_LINK.sub(r'\1', text)
  text = _WIKI_QUOTES.sub('', text)
  text = _WIKI_MAGIC_WORD.sub('', text)
  lines, dropping_level = [], 0
  for line in text.split('\n'):
    heading = _WIKI_HEADING.match(line)
    if heading:
      level = len(heading.group(1))
      if dropping_level and level > dropping_level:
        continue
      title = heading.group(2)
      dropping_level = level if title.lower() in _WIKI_DROP_SECTIONS else 0
      if not dropping_level:
        lines += ['', title, '']
      continue
    if dropping_level or line.lstrip().startswith(('|', '!')):
      continue  # Citation section, or the row of a table left unclosed.
    lines.append(_WIKI_LIST_MARKER.sub('', line))
  text = html.unescape('\n'.join(lines))
  for pattern, replacement in _WIKI_ORPHANS:
    text = pattern.sub(replacement, text)
  return tidy_whitespace(text)


def _local_name(tag: str) -> str:
  return tag.rsplit('}', 1)[-1]


def parse_mediawiki_dump(member: str, data: bytes, stats: Stats) -> DocPairs:
  """Articles of a MediaWiki XML export (bz2/gz allowed), markup stripped.

  Redirects and pages outside the article namespace are skipped and counted.
  """
  raw = decompress(member, data)
  if is_binary(raw):
    stats['skipped_binary'] += 1
    return
  for _, element in ET.iterparse(io.BytesIO(raw), events=('end',)):
    if _local_name(element.tag) != 'page':
      continue
    fields = {_local_name(e.tag): e for e in element.iter()}
    title = fields['title'].text or ''
    markup = (fields['text'].text or '') if 'text' in fields else ''
    if 'redirect' in fields or markup.lstrip().upper().startswith('#REDIRECT'):
      stats['skipped_redirect'] += 1
    elif (fields['ns'].text or '0') != '0':
      stats['skipped_non_article'] += 1
    else:
      text = wikitext_to_text(markup)
      yield title, f'{title}\n\n{text}' if text else ''
    element.clear()
