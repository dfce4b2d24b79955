"""gs:// workdirs through etils.epath, on an in-memory stand-in for GCS.

`fake_gcs` (conftest) serves gs:// from memory through epath's own gs://
code path (fsspec). Each test writes the same files to a local folder and to
gs:// and compares them, so the remote branch must reproduce the local one.
Orbax checkpoints are not covered: Orbax writes gs:// arrays through
TensorStore's own GCS driver, which no fake here reaches.
"""

import json
import os
import pathlib

import numpy as np
import pytest

from lm_data import checks
from lm_data import utils
from lm_data.input_pipeline import packing
from lm_data.study import report
from lm_data.train import metrics as metrics_lib
from tests.study import fixtures

BUCKET = 'gs://bucket/run'


@pytest.fixture(autouse=True)
def no_local_gs_folder(tmp_path, monkeypatch):
  """A gs:// path that fell through to the local disk would make ./gs:/..."""
  monkeypatch.chdir(tmp_path)
  yield
  assert not (tmp_path / 'gs:').exists()


def test_paths_are_epath_for_uris_and_pathlib_for_local(fake_gcs):
  del fake_gcs
  remote = checks.check_dir(BUCKET, '--workdir')
  assert os.fspath(remote) == BUCKET and utils.is_remote(remote)
  assert os.fspath(remote / 'arms' / 'a') == f'{BUCKET}/arms/a'
  assert isinstance(utils.path('/tmp/x'), pathlib.Path)
  assert not utils.is_remote('/tmp/x') and not utils.is_remote(pathlib.Path('x'))


def test_relative_tokenizer_path_round_trips_on_gcs():
  tokenizer = f'{BUCKET}/tokenizer/spm.model'
  ckpt = f'{BUCKET}/arms/size_1-64/checkpoints'
  relative = utils.relative_path(tokenizer, ckpt)
  assert relative == '../../../tokenizer/spm.model'
  assert os.fspath(utils.resolve_path(ckpt, relative)) == tokenizer
  assert utils.relative_path('/w/tokenizer/spm.model', '/w/arms/a/checkpoints') == relative
  assert utils.resolve_path('/w/arms/a/checkpoints', relative) == pathlib.Path(
      '/w/tokenizer/spm.model')
  with pytest.raises(ValueError, match='different file systems'):
    utils.relative_path('s3://b/x', ckpt)


def test_json_and_metrics_match_local_and_resume(fake_gcs, tmp_path):
  records = [(10, {'loss': 7.5, 'lr': 1e-4}), (20, {'loss': float('nan')}),
             (30, {'loss': 6.0, 'eval/loss': 6.2})]
  texts = {}
  for root in (tmp_path / 'local', utils.path(BUCKET)):
    utils.write_json(root / 'config.json', {'seed': 0, 'arms': ['a']}, sort_keys=True)
    path = root / 'arms' / 'a' / 'metrics.jsonl'
    writer = metrics_lib.MetricWriter(path)
    for step, values in records[:2]:
      writer.write(step, values)
    writer.close()
    resumed = metrics_lib.MetricWriter(path)  # a restarted run appends
    resumed.write(*records[2])
    resumed.close()
    texts[root] = ((root / 'config.json').read_text(), path.read_text())
  local, remote = texts.values()
  assert remote == local
  assert [json.loads(line)['step'] for line in remote[1].splitlines()] == [10, 20, 30]
  assert 'bucket/run/arms/a/metrics.jsonl' in fake_gcs


def test_report_writes_the_same_files_to_gcs(fake_gcs, tmp_path):
  outputs = {}
  for root in (tmp_path / 'local', utils.path(BUCKET)):
    results = report.write_report(root, {'name': 'size_ablation'},
                                  fixtures.size_arms(), fixtures.controls())
    out = root / report.REPORT_DIR
    outputs[root] = (results, json.loads((out / report.RESULTS_FILE).read_text()),
                     (out / report.REPORT_FILE).read_text(),
                     {n: (out / n).read_bytes()[:8] for n in results['plots'].values()})
  local, remote = outputs.values()
  assert remote[:3] == local[:3]
  assert remote[1] == remote[0]
  assert remote[3] == local[3] and set(remote[3].values()) == {b'\x89PNG\r\n\x1a\n'}
  assert f'bucket/run/report/{report.RESULTS_FILE}' in fake_gcs


def test_packed_rows_read_back_from_gcs(fake_gcs):
  del fake_gcs
  rng = np.random.default_rng(0)
  packed = packing.PackedArrays(rng.integers(0, 500, (6, 16)),
                                rng.integers(0, 3, (6, 16)))
  folder = utils.path(BUCKET) / 'prepared' / 'key' / 'train'
  packing.save_packed(folder, packed)
  loaded = packing.load_packed(folder)
  np.testing.assert_array_equal(loaded.tokens, packed.tokens)
  np.testing.assert_array_equal(loaded.segment_ids, packed.segment_ids)
  with pytest.raises(FileNotFoundError, match='holds no packed arrays'):
    packing.load_packed(utils.path(BUCKET) / 'prepared' / 'other')
