"""Count-model references for held-out MLM loss: has an encoder learned language?

An MLM loss means little alone: a model that only learned word frequencies, or
that copies the visible token where BERT left it unchanged, already scores.
These references are scored on exactly the held-out batches (same rows, same
masks) the encoder is scored on, estimated from the arm's own training tokens:

- unigram: -log p(y), add-one smoothed word frequencies; `majority` always
  predicts the most frequent token.
- freq_copy: the Bayes posterior of the unigram under BERT's corruption. At a
  [MASK] it is the unigram; where the model sees a token s, the label is s
  (kept, probability keep) or anything (a random replacement, r / A over the
  A allowed ids): p(y | s) ∝ p(y) (keep [y = s] + r / A).
- bigram: left and right neighbours as two experts,
  p(y | l, r) ∝ p(y | l) p(y | r) / p(y), each side interpolated with the
  unigram (BIGRAM_WEIGHT); a neighbour that is [MASK], special, padding or in
  another document gives no evidence. Combined with the corruption posterior
  at non-[MASK] positions, as freq_copy.

Each is reported at [MASK] positions ('mask'), at random/kept positions
('other') and over all predictions ('all'), like the encoder's held-out loss.
"""

from collections.abc import Iterable, Mapping

import numpy as np
import scipy.sparse

from lm_data.input_pipeline import masking

# Weight of the bigram relative frequency against the unigram in each
# neighbour's expert (fixed, not tuned on held-out data).
BIGRAM_WEIGHT = 0.8
# Predictions scored per dense [chunk, vocab] block.
CHUNK = 512
KINDS = ('mask', 'other', 'all')


class CountModel:
  """Unigram and bigram counts of packed training rows (special ids excluded)."""

  def __init__(self, tokens: np.ndarray, segment_ids: np.ndarray,
               cfg: masking.MaskConfig):
    tokens = np.asarray(tokens, np.int64)
    segment_ids = np.asarray(segment_ids)
    v = cfg.vocab_size
    self.cfg = cfg
    special = np.asarray(sorted(cfg.special_ids))
    self.ordinary = np.ones(v, bool)
    self.ordinary[special] = False
    real = (segment_ids > 0) & self.ordinary[tokens]
    counts = np.bincount(tokens[real], minlength=v).astype(np.float64)
    counts = np.where(self.ordinary, counts + 1.0, 0.0)  # add-one, specials never
    self.unigram = counts / counts.sum()
    # Bigrams of adjacent ordinary tokens within one document (segment).
    pair = (real[:, :-1] & real[:, 1:]
            & (segment_ids[:, :-1] == segment_ids[:, 1:]))
    left, right = tokens[:, :-1][pair], tokens[:, 1:][pair]
    self.pairs = scipy.sparse.csr_matrix(
        (np.ones(left.size), (left, right)), shape=(v, v))  # duplicates summed
    self.pairs_t = self.pairs.T.tocsr()
    self.row_total = np.asarray(self.pairs.sum(1)).ravel()
    self.col_total = np.asarray(self.pairs.sum(0)).ravel()

  def _expert(self, matrix, totals, context: np.ndarray) -> np.ndarray:
    """[n, V] p(y | neighbour): interpolated bigram, unigram without evidence."""
    has = (context >= 0) & (totals[np.maximum(context, 0)] > 0)
    out = np.broadcast_to(self.unigram, (context.size, self.unigram.size)).copy()
    if has.any():
      ids = context[has]
      rel = matrix[ids].toarray() / totals[ids][:, None]
      out[has] = BIGRAM_WEIGHT * rel + (1 - BIGRAM_WEIGHT) * self.unigram
    return out

  def score(self, labels, seen, left, right) -> dict[str, np.ndarray]:
    """Per-prediction loss and hit of each reference.

    Args:
      labels: [n] original tokens.
      seen: [n] the input at the position ([MASK], a random or the kept token).
      left, right: [n] visible neighbours, -1 where they give no evidence.
    """
    cfg = self.cfg
    keep = 1.0 - cfg.mask_prob - cfg.random_prob
    rand = cfg.random_prob / cfg.replacement_ids.size
    is_mask = seen == cfg.mask_id
    uni = self.unigram
    n = labels.size
    rows = np.arange(n)
    out = {'unigram_loss': -np.log(uni[labels]),
           'majority_hit': (labels == np.argmax(uni)).astype(np.float64)}
    # Corruption likelihood of the visible token: 1 at [MASK] (no information).
    corrupt = np.full((n, uni.size), rand)
    visible = ~is_mask & (seen >= 0) & (seen < uni.size)
    corrupt[rows[visible], seen[visible]] += keep
    corrupt[is_mask] = 1.0
    for name, prior in (('freq_copy', np.broadcast_to(uni, (n, uni.size))),
                        ('bigram', self._expert(self.pairs, self.row_total, left)
                         * self._expert(self.pairs_t, self.col_total, right) / uni.clip(1e-30))):
      post = prior * corrupt
      post = post / post.sum(1, keepdims=True)
      out[f'{name}_loss'] = -np.log(post[rows, labels].clip(1e-30))
      out[f'{name}_hit'] = (post[rows, labels] >= post.max(1)).astype(np.float64)
    return out


def _neighbours(batch: Mapping[str, np.ndarray], mask_id: int,
                ordinary: np.ndarray):
  """Flat labels, seen tokens and visible neighbours of a batch's predictions."""
  ids = np.asarray(batch['input_ids'])
  seg = np.asarray(batch['segment_ids'])
  pos = np.asarray(batch['mlm_positions'])
  valid = np.asarray(batch['mlm_weights']) > 0
  rows = np.broadcast_to(np.arange(ids.shape[0])[:, None], pos.shape)[valid]
  pos = pos[valid]
  seq_len = ids.shape[1]

  def side(offset):
    p = pos + offset
    inside = (p >= 0) & (p < seq_len)
    p = np.clip(p, 0, seq_len - 1)
    tok = ids[rows, p]
    usable = inside & (seg[rows, p] == seg[rows, pos]) & ordinary[tok] & (tok != mask_id)
    return np.where(usable, tok, -1)

  labels = np.asarray(batch['mlm_ids'])[valid]
  return labels, ids[rows, pos], side(-1), side(1)


def score_batches(model: CountModel, batches: Iterable[Mapping[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
  """Per-prediction scores of every reference over `batches`, plus 'is_mask'."""
  parts = [_neighbours(b, model.cfg.mask_id, model.ordinary) for b in batches]
  if not parts:
    return {}
  labels, seen, left, right = (np.concatenate(x) for x in zip(*parts))
  scores: dict[str, list] = {}
  for start in range(0, labels.size, CHUNK):
    s = slice(start, start + CHUNK)
    for k, v in model.score(labels[s], seen[s], left[s], right[s]).items():
      scores.setdefault(k, []).append(v)
  out = {k: np.concatenate(v) for k, v in scores.items()}
  out['is_mask'] = seen == model.cfg.mask_id
  return out


def summarise(scores: Mapping[str, np.ndarray]) -> dict[str, dict]:
  """Per-prediction scores -> {'mask'|'other'|'all': mean loss / accuracy}."""
  if not scores:
    return {}
  is_mask = scores['is_mask']
  out = {}
  for kind, sel in (('mask', is_mask), ('other', ~is_mask),
                    ('all', np.ones_like(is_mask))):
    n = int(sel.sum())
    row = {'predictions': n}
    if n:
      row.update(
          unigram_loss=float(scores['unigram_loss'][sel].mean()),
          majority_accuracy=float(scores['majority_hit'][sel].mean()),
          freq_copy_loss=float(scores['freq_copy_loss'][sel].mean()),
          freq_copy_accuracy=float(scores['freq_copy_hit'][sel].mean()),
          bigram_loss=float(scores['bigram_loss'][sel].mean()),
          bigram_accuracy=float(scores['bigram_hit'][sel].mean()))
    out[kind] = row
  return out


def heldout_baselines(model: CountModel,
                      eval_sets: Mapping[str, Iterable[Mapping[str, np.ndarray]]]
                      ) -> dict[str, dict]:
  """{set name and 'all': summarise(...)}, pooled over sets by prediction."""
  per_set = {name: score_batches(model, batches) for name, batches in eval_sets.items()}
  per_set = {k: v for k, v in per_set.items() if v}
  out = {name: summarise(s) for name, s in per_set.items()}
  if per_set:
    keys = next(iter(per_set.values())).keys()
    out['all'] = summarise({k: np.concatenate([s[k] for s in per_set.values()])
                            for k in keys})
  return out
