"""Single/pair rows, truncation, word-label alignment and QA span mapping."""

import numpy as np
import pytest

from lm_data.finetune import encoding
from lm_data.finetune.tasks import base
from tests.finetune import fakes

TOK = fakes.FakeTokenizer()
CLS, SEP, PAD = TOK.cls_id, TOK.sep_id, TOK.pad_id


def ids(*pieces):
  return [TOK.piece_id(p) for p in pieces]


def test_single_row_layout():
  features, truncated = encoding.encode_texts(TOK, ['ab cd'], None, 6)
  np.testing.assert_array_equal(features['input_ids'][0],
                                [CLS, *ids('ab', 'cd'), SEP, PAD, PAD])
  np.testing.assert_array_equal(features['type_ids'][0], [0] * 6)
  np.testing.assert_array_equal(features['segment_ids'][0], [1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(features['position_ids'][0], [0, 1, 2, 3, 0, 0])
  assert truncated == 0
  assert all(v.dtype == np.int32 for v in features.values())


def test_pair_row_layout_and_type_ids():
  features, _ = encoding.encode_texts(TOK, ['ab'], ['cd ef'], 8)
  np.testing.assert_array_equal(features['input_ids'][0],
                                [CLS, *ids('ab'), SEP, *ids('cd', 'ef'), SEP, PAD, PAD])
  np.testing.assert_array_equal(features['type_ids'][0], [0, 0, 0, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(features['segment_ids'][0], [1] * 6 + [0] * 2)


@pytest.mark.parametrize('la, lb, budget, expected', [
    (5, 5, 7, (4, 3)),     # tie: b loses first, then alternate
    (10, 2, 6, (4, 2)),    # only the longer side is cut
    (6, 4, 6, (3, 3)),     # cut the longer to equal, then both
    (3, 2, 10, (3, 2)),    # fits: unchanged
])
def test_truncate_pair_longer_side_first(la, lb, budget, expected):
  a, b = encoding.truncate_pair(list(range(la)), list(range(100, 100 + lb)), budget)
  assert (len(a), len(b)) == expected
  assert a == list(range(expected[0])) and b == list(range(100, 100 + expected[1]))


def test_pair_truncation_keeps_short_side():
  features, truncated = encoding.encode_texts(TOK, ['aa bb cc dd ee'], ['ff'], 7)
  np.testing.assert_array_equal(features['input_ids'][0],
                                [CLS, *ids('aa', 'bb', 'cc'), SEP, *ids('ff'), SEP])
  assert truncated == 1


def test_word_labels_on_first_sub_token():
  # pieces: abc def g | hi | jkl m
  out = encoding.encode_words(TOK, [('abcdefg', 'hi', 'jklm')], [(5, 6, 7)], 10)
  np.testing.assert_array_equal(
      out.features['input_ids'][0],
      [CLS, *ids('abc', 'def', 'g', 'hi', 'jkl', 'm'), SEP, PAD, PAD])
  np.testing.assert_array_equal(out.targets['labels'][0],
                                [0, 5, 0, 0, 6, 7, 0, 0, 0, 0])
  np.testing.assert_array_equal(out.targets['label_weights'][0],
                                [0, 1, 0, 0, 1, 1, 0, 0, 0, 0])
  assert out.truncated == 0


def test_word_truncation_drops_whole_words():
  # room for 4 sub-tokens: 'abcdefg' (3) fits, 'hi' (1) fits, 'jklm' (2) not.
  out = encoding.encode_words(TOK, [('abcdefg', 'hi', 'jklm')], [(5, 6, 7)], 6)
  np.testing.assert_array_equal(out.features['input_ids'][0],
                                [CLS, *ids('abc', 'def', 'g', 'hi'), SEP])
  assert out.targets['label_weights'][0].sum() == 2
  assert out.truncated == 1


def test_qa_span_mapping():
  context = 'the cat sat on mat.'
  examples = [
      base.Example(text='who is it', text_b=context, answer_start=8,
                   answer_text='sat on'),
      # the answer is inside the word 'mat.' (pieces 'mat', '.')
      base.Example(text='who is it', text_b=context, answer_start=15,
                   answer_text='mat'),
  ]
  out = encoding.encode_qa(TOK, examples, 12)
  # 0 CLS, 1-3 who is it, 4 SEP, 5 the, 6 cat, 7 sat, 8 on, 9 mat, 10 '.', 11 SEP
  np.testing.assert_array_equal(
      out.features['input_ids'][0],
      [CLS, *ids('who', 'is', 'it'), SEP,
       *ids('the', 'cat', 'sat', 'on', 'mat', '.'), SEP])
  np.testing.assert_array_equal(out.features['type_ids'][0], [0] * 5 + [1] * 7)
  np.testing.assert_array_equal(out.targets['start_positions'], [7, 9])
  np.testing.assert_array_equal(out.targets['end_positions'], [8, 10])


def test_qa_answer_outside_window_is_dropped():
  examples = [base.Example(text='q', text_b='a b c d e f', answer_start=10,
                           answer_text='f'),
              base.Example(text='q', text_b='a b c d e f', answer_start=0,
                           answer_text='a')]
  out = encoding.encode_qa(TOK, examples, 8)   # room for 4 context words
  np.testing.assert_array_equal(out.kept, [1])
  assert out.truncated == 1
  np.testing.assert_array_equal(out.targets['start_positions'], [3])


def test_encode_dispatch_labels():
  examples = [base.Example(text='ab', label=1.5), base.Example(text='cd', label=-2.0)]
  out = encoding.encode(TOK, 'regression', examples, 8)
  assert out.targets['labels'].dtype == np.float32
  np.testing.assert_array_equal(out.targets['labels'], [1.5, -2.0])
  pairs = [base.Example(text='ab', text_b='cd', label=1)]
  out = encoding.encode(TOK, 'pair_classification', pairs, 8)
  assert out.features['type_ids'][0, 3] == 1
  with pytest.raises(ValueError, match='unknown task kind'):
    encoding.encode(TOK, 'parsing', examples, 8)


def test_length_batches_sort_rows_and_cut_to_buckets():
  lengths = np.array([3, 20, 5, 33, 17, 1, 64, 12])
  segment_ids = (np.arange(64)[None, :] < lengths[:, None]).astype(np.int32)
  assert encoding.row_lengths({'segment_ids': segment_ids}).tolist() == lengths.tolist()
  batches = encoding.length_batches({'segment_ids': segment_ids}, 3, bucket=16)
  assert [b.tolist() for b, _ in batches] == [[5, 0, 2], [7, 4, 1], [3, 6]]
  assert [w for _, w in batches] == [16, 32, 64]
  assert encoding.length_batches({'segment_ids': segment_ids}, 8, bucket=0)[0][1] == 64
  assert encoding.bucket_width(33, 48, 16) == 48 and encoding.bucket_width(0, 48, 16) == 16
