"""What every format shares: binary detection, decoding, decompression, splitting.

Member parsers (the other modules of this package, one per format) share one
signature, `parse(member, data, stats)`: they turn the bytes of one archive
member into (doc_id, text) pairs and count every repair or skip in `stats` (a
`collections.Counter`), so that no input is lost silently. Splitting giant
documents and dropping empty ones happens once, in `sources.load_source`.
"""

import bz2
import collections
from collections.abc import Iterator
import gzip
import posixpath
import re

Stats = collections.Counter
DocPairs = Iterator[tuple[str, str]]

# Binary detection on a member's first bytes: text has few control bytes (NUL
# included), and few bytes that are invalid UTF-8 even in a legacy encoding.
BINARY_SNIFF_BYTES = 8192
BINARY_CONTROL_FRACTION = 0.1
BINARY_SUSPICIOUS_FRACTION = 0.3
_TEXT_CONTROLS = frozenset(b'\t\n\r\f\v\b\x1b')


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


def tidy_whitespace(text: str) -> str:
  """Strips line ends and collapses runs of blank lines to one."""
  lines = [line.rstrip() for line in text.split('\n')]
  return re.sub(r'\n{3,}', '\n\n', '\n'.join(lines)).strip()


def grouped(member: str, records: Iterator[str], size: int) -> DocPairs:
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
