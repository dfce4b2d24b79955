"""Plain-text formats: licence files, Gutenberg books, one-per-line corpora, fortunes."""

import posixpath
import re

from lm_data.corpus.parsers.text import decode
from lm_data.corpus.parsers.text import DocPairs
from lm_data.corpus.parsers.text import grouped
from lm_data.corpus.parsers.text import Stats
from lm_data.corpus.parsers.text import tidy_whitespace

# Consecutive fortunes grouped into one document.
FORTUNES_PER_DOC = 32

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
  yield from grouped(member, iter(kept), fortunes_per_doc)
