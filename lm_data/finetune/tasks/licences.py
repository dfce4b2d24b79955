"""Licence category: which kind of licence a licence text is.

Provenance: PyPI wheel `licensedcode-data==32.1.0` (ScanCode licence database;
data CC-BY-4.0, code Apache-2.0), `licensedcode/data/licenses/*.LICENSE`:
YAML front matter between `---` lines (with a `category` field), then the
licence text. 2,310 files; deprecated entries, entries without a category or
with under MIN_TEXT_CHARS of text are skipped (160); 2,150 remain, split by
licence key into 1,716 train / 223 dev / 211 test. Labels: the 11 ScanCode
categories of LABELS, heavily imbalanced (Permissive about 40%), so the main
metric is macro-F1. Texts are long (median 2.2k characters): the recipe sees
their first max_len tokens. The same texts are the legal pretraining domain:
decontaminate.
"""

import pathlib

import yaml

from lm_data.finetune.tasks import base
from lm_data.corpus import fetch

ARCHIVE = fetch.Archive(
    registry='pypi', name='licensedcode-data', version='32.1.0',
    filename='licensedcode_data-32.1.0-py3-none-any.whl',
    sha256='18f60bde6dbabbc0a925d45ed80089cdbb7168156a2a1c118737198f9b743b96')
MEMBERS = 'licensedcode/data/licenses/*.LICENSE'
LABELS = ('CLA', 'Commercial', 'Copyleft', 'Copyleft Limited',
          'Free Restricted', 'Patent License', 'Permissive', 'Proprietary Free',
          'Public Domain', 'Source-available', 'Unstated License')
MIN_TEXT_CHARS = 20
FRONT_MATTER = '---'
SALT = 'licensedcode'

_INDEX = base.label_index(LABELS)


def parse_licence(name: str, data: bytes) -> base.Example | None:
  """The example of one `.LICENSE` file, or None to skip it."""
  text = data.decode('utf-8', errors='replace')
  parts = text.split(FRONT_MATTER, 2)
  if len(parts) != 3 or parts[0].strip():
    return None
  try:
    meta = yaml.safe_load(parts[1])
  except yaml.YAMLError:
    return None
  body = parts[2].strip()
  if (not isinstance(meta, dict) or meta.get('is_deprecated')
      or meta.get('category') not in _INDEX or len(body) < MIN_TEXT_CHARS):
    return None
  key = meta.get('key') or pathlib.PurePosixPath(name).stem
  return base.Example(text=body, label=_INDEX[meta['category']], group=str(key))


def read_licences(path: pathlib.Path) -> base.TaskData:
  examples, skipped = [], 0
  for name, data in fetch.iter_members(path, [MEMBERS]):
    example = parse_licence(name, data)
    if example is None:
      skipped += 1
    else:
      examples.append(example)
  if not examples:
    raise ValueError(f'{path} has no usable member matching {MEMBERS}')
  return base.TaskData(base.split_by_group(examples, SALT), skipped)


TASKS = (
    base.Task(name='licence_category', kind='classification',
              main_metric='macro_f1', label_names=LABELS,
              recipe=base.FinetuneSettings(learning_rate=1e-3, epochs=3, max_len=128),
              load=lambda: read_licences(fetch.fetch(ARCHIVE)),
              description=__doc__, domain='legal'),
)
