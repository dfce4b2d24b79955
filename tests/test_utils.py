"""Tests for lm_data.utils: files, JSON, hashing/seeds, special ids."""

import json
import math

import ml_collections
import numpy as np
import pytest

from lm_data import utils
from lm_data.input_pipeline import masking
from lm_data.input_pipeline import tokenizer as tokenizer_lib


def test_splitmix64_matches_published_first_output():
  # First output of splitmix64 seeded with 0 (Vigna's reference code).
  state = np.array(0x9E3779B97F4A7C15, np.uint64)
  assert int(utils.mix64(state)) == 0xE220A8397B1DCDAF


def test_seed_values_are_those_of_the_previous_per_module_helpers():
  # Values printed by masking.derive_seed / sampling.domain_rng / dedup.mix64 /
  # masking.token_hashes before they moved here: prepared data, data order and
  # masks of existing caches and checkpoints depend on them.
  assert utils.derive_seed(0, 0x10AD) == 7614564864305732863
  assert utils.derive_seed(7, 0xE7A1) == 6879538619225703253
  assert utils.name_hash('wiki') == 15115862129191003154
  assert utils.rng(3, 'wiki', 'subset').integers(0, 2**62) == 1585937097905491746
  assert utils.mix64(np.arange(3, dtype=np.uint64)).tolist() == [
      0, 6238072747940578789, 15839785061582574730]
  assert masking.token_hashes(1, 2, np.array([5, 9]), 3).tolist() == [
      [2640385516208697469, 1374420369487647905, 14372375872053519319],
      [9354925771727121542, 8402306344212933411, 17389508175046284310]]


def test_rng_streams_differ_and_repeat():
  a = utils.rng(1, 'x').random(4)
  np.testing.assert_array_equal(a, utils.rng(1, 'x').random(4))
  assert not np.allclose(a, utils.rng(1, 'y').random(4))
  assert not np.allclose(a, utils.rng(2, 'x').random(4))
  # A numeric stream is used as is: [seed, n] seeds numpy directly.
  np.testing.assert_array_equal(utils.rng(5, 3).random(2),
                                np.random.default_rng([5, 3]).random(2))


def test_special_ids_are_one_definition():
  assert masking.DEFAULT_SPECIAL_IDS == tokenizer_lib.Tokenizer.special_ids == {0, 1, 2, 3, 4}
  assert masking.MASK_ID == tokenizer_lib.MASK_ID == utils.MASK_ID == 4


def test_json_safe_converts_numpy_configs_and_non_finite():
  config = ml_collections.ConfigDict({'arms': [ml_collections.ConfigDict({'n': 1})],
                                      't': (1, 2)})
  value = {'a': np.float32(0.5), 'b': np.int64(3), 'c': np.array([1.0, np.nan]),
           'd': np.bool_(True), 'e': float('inf'), 'f': np.array(2.5), 1: config}
  out = utils.json_safe(value)
  assert out == {'a': 0.5, 'b': 3, 'c': [1.0, None], 'd': True, 'e': None, 'f': 2.5,
                 '1': {'arms': [{'n': 1}], 't': [1, 2]}}
  assert type(out['b']) is int and type(out['d']) is bool
  json.dumps(out, allow_nan=False)
  kept = utils.json_safe([np.float64(np.nan)], finite=False)
  assert math.isnan(kept[0])


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
  path = tmp_path / 'sub' / 'x.json'
  utils.write_json(path, {'b': 1, 'a': [1, 2]}, sort_keys=True)
  assert json.loads(path.read_text()) == {'a': [1, 2], 'b': 1}
  assert path.read_text().startswith('{\n "a"')
  utils.atomic_write(path, b'new')
  assert path.read_bytes() == b'new'
  assert [p.name for p in path.parent.iterdir()] == ['x.json']


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
  path = tmp_path / 'x.txt'
  path.write_text('old')
  with pytest.raises(TypeError):
    utils.atomic_write(path, 42)
  assert path.read_text() == 'old'
  assert [p.name for p in tmp_path.iterdir()] == ['x.txt']
