"""Recipe -> packed training rows and held-out rows, cached by content hash.

Pipeline for one recipe:
  train split of each domain (corpus builder, or a TFDS dataset by name)
  -> quality steps in recipe order -> decontamination against the evaluation
  texts (before degradation, which could hide a shared n-gram) -> degradation
  -> tokenize -> nested budget / mixture (sampling)
  -> shuffle documents -> pack -> `<cache>/<key>/train/`.
Held-out rows: the validation split of each held-out domain, tokenized and
packed *raw* (no quality step, degradation or budget), so every arm of a study
is measured on the same text -> `<cache>/<key>/held_out/<domain>/`.

The key hashes the recipe, the tokenizer file, seq_len, the held-out domains,
the evaluation texts by task and the decontamination policy (when
decontaminating) and `PREPARE_VERSION`; a folder is written under a temporary
name and renamed, so a finished folder is complete and a second call loads it.
"""

from collections.abc import Iterator, Sequence
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any

import numpy as np
from absl import logging

from lm_data import curation
from lm_data import utils
from lm_data.corpus import fetch
from lm_data.corpus import sources
from lm_data.corpus import tfds_builder
from lm_data.curation import decontaminate as decontaminate_lib
from lm_data.curation import degrade as degrade_lib
from lm_data.input_pipeline import packing
from lm_data.input_pipeline import sampling
from lm_data.input_pipeline import tokenizer as tokenizer_lib

# Bump when the output of `prepare` changes for the same inputs.
# 2: decontamination by 13-gram coverage (decontaminate.py), stats by task.
PREPARE_VERSION = 2
STATS_FILE = 'stats.json'
TRAIN_DIR = 'train'
HELD_OUT_DIR = 'held_out'
PREPARED_DIR = 'prepared'
# Hex digits of the sha256 key naming a cache folder.
_KEY_CHARS = 24
# Documents per tokenizer call.
_ENCODE_BATCH = 4096
# Token ids of a vocabulary up to this size fit the stored uint16 arrays.
_UINT16_LIMIT = 1 << 16
# Streamed TFDS datasets are read until they hold this many characters per
# budget token (about 4 for English; the rest is room for quality filters).
TFDS_CHARS_PER_BUDGET_TOKEN = 6
QUALITY_STEPS = ('heuristic', 'dedup_exact', 'dedup_near', 'compression')


@dataclasses.dataclass(frozen=True)
class Recipe:
  """What data an arm pretrains on (fields as in docs/design.md)."""
  domains: tuple[str, ...]
  weights: dict[str, float] | None = None
  token_budget: int | None = None
  seed: int = 0
  quality: tuple[str, ...] = ()
  degrade: dict[str, float] = dataclasses.field(default_factory=dict)
  decontaminate: bool = False
  # A document holding this fraction of an evaluation text's 13-grams
  # contains it and is removed (decontaminate.py).
  decontaminate_coverage: float = decontaminate_lib.COVERAGE_THRESHOLD
  tfds_name: str | None = None

  @classmethod
  def from_config(cls, config: Any) -> 'Recipe':
    """A validated Recipe from a Recipe, dict or ConfigDict."""
    if isinstance(config, Recipe):
      fields = dataclasses.asdict(config)
    else:
      fields = dict(config.to_dict() if hasattr(config, 'to_dict') else config)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(fields) - set(known))
    if unknown:
      raise ValueError(f'unknown recipe field(s) {unknown}; known: '
                       f'{", ".join(known)}')
    if 'domains' not in fields:
      raise ValueError('recipe has no domains; set data.domains, e.g. '
                       f'[{sources.DOMAINS[0]!r}]')
    weights = fields.get('weights')
    budget = fields.get('token_budget')
    if budget is not None:
      if float(budget) != int(budget):
        raise ValueError(f'token_budget must be a whole number of tokens, '
                         f'got {budget}')
      budget = int(budget)
    recipe = cls(
        domains=tuple(fields['domains']),
        weights=None if weights is None else {
            str(k): float(v) for k, v in dict(weights).items()},
        token_budget=budget,
        seed=int(fields.get('seed', 0)),
        quality=tuple(fields.get('quality') or ()),
        degrade={str(k): float(v)
                 for k, v in dict(fields.get('degrade') or {}).items()},
        decontaminate=bool(fields.get('decontaminate', False)),
        decontaminate_coverage=float(fields.get(
            'decontaminate_coverage', decontaminate_lib.COVERAGE_THRESHOLD)),
        tfds_name=fields.get('tfds_name'))
    recipe.validate()
    return recipe

  @classmethod
  def for_arm(cls, data: Any, token_budget: int | None) -> 'Recipe':
    """The recipe of a study arm's `data` config (configs/common.py data_recipe).

    The config's `token_budget` / `budget_fraction` are the study's to resolve
    (`study.run.Study.budgets`); `token_budget` is what it resolved them to.
    `curated_dir` is the loader's (`Study.train_iterator`), not the recipe's.
    """
    fields = dict(data.to_dict() if hasattr(data, 'to_dict') else data)
    fields.pop('budget_fraction', None)
    fields.pop('curated_dir', None)
    fields.update(token_budget=token_budget, tfds_name=fields.get('tfds_name') or None)
    return cls.from_config(fields)

  def validate(self) -> None:
    """Raises ValueError saying what to change in a bad recipe."""
    if self.tfds_name is not None:
      if self.domains not in ((), (self.tfds_name,)):
        raise ValueError(
            f'recipe reads TFDS {self.tfds_name!r}, whose documents form one '
            f'domain of that name; set domains to [] or [{self.tfds_name!r}], '
            f'not {list(self.domains)}')
      if self.token_budget is None:
        raise ValueError(f'recipe reads TFDS {self.tfds_name!r}: set '
                         'token_budget (the stream is read only that far)')
      if self.weights is not None:
        raise ValueError('a TFDS recipe has one domain; set weights to None')
    else:
      if not self.domains:
        raise ValueError('recipe has no domains; known: '
                         f'{", ".join(sources.DOMAINS)}')
      for domain in self.domains:
        if domain not in sources.ALL_DOMAINS:
          raise ValueError(f'unknown domain {domain!r}; known: '
                           f'{", ".join(sources.ALL_DOMAINS)}')
      if len(set(self.domains)) != len(self.domains):
        raise ValueError(f'recipe domains repeat: {list(self.domains)}')
    if self.weights is not None:
      if set(self.weights) != set(self.domains):
        raise ValueError(
            f'recipe weights name {sorted(self.weights)} but its domains are '
            f'{sorted(self.domains)}; give one weight per domain (or None '
            'for natural proportions)')
      if any(w < 0 for w in self.weights.values()) or not any(
          self.weights.values()):
        raise ValueError(f'recipe weights must be >= 0 and not all 0; got '
                         f'{self.weights}')
    if self.token_budget is not None and self.token_budget <= 0:
      raise ValueError(f'token_budget must be a positive number of tokens or '
                       f'None (everything); got {self.token_budget}')
    # The registry's steps, the original four first.
    known = QUALITY_STEPS + tuple(s for s in curation.quality_steps()
                                  if s not in QUALITY_STEPS)
    for step in self.quality:
      if step not in known:
        raise ValueError(f'unknown quality step {step!r}; known: '
                         f'{", ".join(known)}')
    if len(set(self.quality)) != len(self.quality):
      raise ValueError(f'quality steps repeat: {list(self.quality)}')
    if not 0.0 < self.decontaminate_coverage <= 1.0:
      raise ValueError(f'decontaminate_coverage must be in (0, 1], got '
                       f'{self.decontaminate_coverage}')
    for kind, rate in self.degrade.items():
      if kind not in degrade_lib.KINDS:
        raise ValueError(f'unknown degradation {kind!r}; known: '
                         f'{", ".join(degrade_lib.KINDS)}')
      if not 0.0 <= rate <= 1.0:
        raise ValueError(f'degradation rate {kind}={rate} must be in [0, 1]')

  @property
  def train_domains(self) -> tuple[str, ...]:
    return (self.tfds_name,) if self.tfds_name is not None else self.domains

  def to_json(self) -> dict[str, Any]:
    fields = dataclasses.asdict(self)
    fields['domains'] = list(self.domains)
    fields['quality'] = list(self.quality)
    return fields


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A prepared recipe: packed rows on disk (memory-mapped) and statistics.

  Attributes:
    path: the cache folder.
    stats: what `stats.json` holds (the arm's data_stats.json).
    train: training rows (tokens and segment ids [N, S]; uint16 when the
      vocabulary fits, cast to int32 by the loader).
    held_out: domain -> held-out rows.
  """
  path: utils.AnyPath
  stats: dict[str, Any]
  train: packing.PackedArrays
  held_out: dict[str, packing.PackedArrays]


def default_cache(cache_dir: str | None = None) -> utils.AnyPath:
  """Where prepared data live: `prepared/` under `fetch.cache_root(cache_dir)`."""
  return fetch.cache_root(cache_dir) / PREPARED_DIR


def cache_key(recipe: Recipe, tokenizer_sha256: str, *, seq_len: int,
              held_out_domains: Sequence[str],
              eval_texts: decontaminate_lib.EvalTexts = ()) -> str:
  """Hex digest naming the cache folder of these inputs."""
  decontamination = None
  if recipe.decontaminate:
    decontamination = {
        'eval_texts_sha256': decontaminate_lib.fingerprint(eval_texts),
        **decontaminate_lib.policy(coverage=recipe.decontaminate_coverage)}
  payload = json.dumps({
      'recipe': recipe.to_json(), 'tokenizer_sha256': tokenizer_sha256,
      'seq_len': seq_len, 'held_out_domains': sorted(held_out_domains),
      'decontamination': decontamination, 'version': PREPARE_VERSION,
  }, sort_keys=True)
  return hashlib.sha256(payload.encode()).hexdigest()[:_KEY_CHARS]


def load_prepared(path: str | os.PathLike[str]) -> Prepared:
  """Reads a finished cache folder (arrays memory-mapped when local)."""
  path = utils.path(path)
  stats = json.loads((path / STATS_FILE).read_text())
  return Prepared(
      path=path, stats=stats,
      train=packing.load_packed(path / TRAIN_DIR),
      held_out={d: packing.load_packed(path / HELD_OUT_DIR / d)
                for d in stats['held_out']})


def _apply_steps(docs: list[sources.Document], recipe: Recipe,
                 tokenizer: tokenizer_lib.Tokenizer,
                 eval_texts: decontaminate_lib.EvalTexts
                 ) -> tuple[list, list[dict]]:
  """The recipe's curation steps (lm_data.curation), with what each removed."""
  context = curation.Context.from_recipe(recipe, eval_texts=eval_texts,
                                         tokenizer=tokenizer)
  return curation.run_steps(docs, curation.recipe_steps(recipe), context)


def _encode(tokenizer: tokenizer_lib.Tokenizer, texts: Sequence[str],
            dtype: np.dtype) -> list[np.ndarray]:
  arrays = []
  for start in range(0, len(texts), _ENCODE_BATCH):
    arrays += [np.asarray(ids, dtype) for ids in
               tokenizer.encode_batch(texts[start:start + _ENCODE_BATCH])]
  return arrays


def _token_types(arrays: Sequence[np.ndarray]) -> int:
  return int(np.unique(np.concatenate(arrays)).size) if arrays else 0


def _save(folder: pathlib.Path, tokens: np.ndarray, segment_ids: np.ndarray,
          dtype: np.dtype) -> dict[str, Any]:
  folder.mkdir(parents=True)
  np.save(folder / packing.TOKENS_FILE, tokens.astype(dtype))
  np.save(folder / packing.SEGMENT_IDS_FILE, segment_ids.astype(dtype))
  slots = segment_ids.size
  return {'rows': int(tokens.shape[0]),
          'padding_fraction': float((segment_ids == 0).sum() / slots)
                              if slots else 0.0}


def _pack(tokenizer: tokenizer_lib.Tokenizer, arrays: Sequence[np.ndarray],
          seq_len: int) -> tuple[np.ndarray, np.ndarray]:
  return packing.pack(arrays, seq_len, cls_id=tokenizer.cls_id,
                      sep_id=tokenizer.sep_id)


def _load_train(recipe: Recipe, data_dir
                ) -> tuple[list[sources.Document], list, dict]:
  """(train documents, held-out documents of a TFDS recipe, parse stats)."""
  if recipe.tfds_name is None:
    docs = []
    for domain in recipe.domains:
      docs += tfds_builder.load_split(domain, tfds_builder.TRAIN, data_dir=data_dir)
    parse = {d: tfds_builder.parse_stats(d, data_dir=data_dir)
             for d in recipe.domains}
    return docs, [], parse
  wanted = recipe.token_budget * TFDS_CHARS_PER_BUDGET_TOKEN
  docs, chars = [], 0
  for doc in tfds_builder.iter_tfds_documents(recipe.tfds_name):
    if chars >= wanted:
      break
    docs.append(doc)
    chars += len(doc.text)
  held_out = tfds_builder.validation_mask(docs)
  return ([d for d, h in zip(docs, held_out) if not h],
          [d for d, h in zip(docs, held_out) if h], {})


def _select_and_pack(docs: Sequence[sources.Document], recipe: Recipe,
                     tokenizer: tokenizer_lib.Tokenizer, *, seq_len: int,
                     folder: pathlib.Path, dtype: type) -> dict[str, Any]:
  """Tokenizes, takes the budget / mixture, packs and saves the train rows.

  Returns stats: 'corpus' (per domain, before the budget) and 'train'.
  """
  domains = recipe.train_domains
  texts = {d: [doc.text for doc in docs if doc.domain == d] for d in domains}
  arrays = {d: _encode(tokenizer, texts[d], dtype) for d in domains}
  counts = {d: np.array([a.size for a in arrays[d]], np.int64)
            for d in domains}
  available = {d: int(c.sum()) for d, c in counts.items()}
  corpus_stats = {d: {'documents': len(texts[d]),
                      'characters': sum(len(t) for t in texts[d]),
                      'tokens': available[d]} for d in domains}
  total = sum(available.values())
  if recipe.token_budget is not None and recipe.token_budget > total:
    raise ValueError(
        f'token_budget {recipe.token_budget:,} exceeds the corpus: domains '
        f'{list(domains)} hold {total:,} tokens after the recipe\'s steps '
        f'({available}); lower token_budget to at most {total:,}')
  if recipe.tfds_name is not None:
    subsets = {recipe.tfds_name: sampling.nested_subset(
        counts[recipe.tfds_name], recipe.token_budget, seed=recipe.seed,
        domain=recipe.tfds_name, shuffle=False)}
  else:
    subsets = sampling.mixture_subsets(counts, recipe.weights,
                                       recipe.token_budget, seed=recipe.seed)

  chosen, per_domain = [], {}
  for d in domains:
    subset = subsets[d]
    taken = [arrays[d][i][:n] for i, n in zip(subset.indices, subset.lengths)]
    characters = sum(len(texts[d][i]) for i in subset.indices[:-1])
    if taken:
      last = int(subset.indices[-1])
      characters += (len(texts[d][last]) if taken[-1].size == counts[d][last]
                     else len(tokenizer.decode(taken[-1])))
    per_domain[d] = {'documents': len(taken), 'characters': characters,
                     'tokens': subset.num_tokens,
                     'token_types': _token_types(taken)}
    chosen += taken
  order = utils.rng(recipe.seed, 'pack').permutation(len(chosen))
  tokens, segment_ids = _pack(tokenizer, [chosen[i] for i in order], seq_len)
  train_stats = {
      'domains': per_domain,
      'documents': len(chosen),
      'tokens': sum(s['tokens'] for s in per_domain.values()),
      'token_types': _token_types(chosen),
      **_save(folder, tokens, segment_ids, dtype)}
  return {'corpus': corpus_stats, 'train': train_stats}


def _pack_held_out(docs: Sequence[sources.Document],
                   tokenizer: tokenizer_lib.Tokenizer, *, seq_len: int,
                   folder: pathlib.Path, dtype: type) -> dict[str, Any]:
  """Packs and saves held-out documents as they are; returns their stats."""
  arrays = _encode(tokenizer, [doc.text for doc in docs], dtype)
  tokens, segment_ids = _pack(tokenizer, arrays, seq_len)
  return {'documents': len(docs),
          'characters': sum(len(doc.text) for doc in docs),
          'tokens': int(sum(a.size for a in arrays)),
          **_save(folder, tokens, segment_ids, dtype)}


def _build(folder: pathlib.Path, recipe: Recipe,
           tokenizer: tokenizer_lib.Tokenizer, *, seq_len: int,
           eval_texts: decontaminate_lib.EvalTexts,
           held_out_domains: Sequence[str],
           data_dir, key: str) -> None:
  """Runs the pipeline, writing arrays and stats.json into `folder`."""
  dtype = np.uint16 if tokenizer.vocab_size <= _UINT16_LIMIT else np.int32
  logging.info('prepare %s: loading %s', key, ', '.join(recipe.train_domains))
  docs, tfds_held_out, parse = _load_train(recipe, data_dir)
  stats: dict[str, Any] = {
      'key': key, 'recipe': recipe.to_json(), 'seq_len': seq_len,
      'tokenizer_sha256': tokenizer.sha256, 'version': PREPARE_VERSION,
      'parse': parse, 'loaded': {'documents': curation.registry.by_domain(docs)}}

  docs, stats['steps'] = _apply_steps(docs, recipe, tokenizer, eval_texts)

  logging.info('prepare %s: tokenizing and packing %d documents', key, len(docs))
  stats.update(_select_and_pack(docs, recipe, tokenizer, seq_len=seq_len,
                                folder=folder / TRAIN_DIR, dtype=dtype))
  stats['held_out'] = {
      d: _pack_held_out(tfds_held_out if d == recipe.tfds_name else
                        tfds_builder.load_split(d, tfds_builder.VALIDATION,
                                          data_dir=data_dir),
                        tokenizer, seq_len=seq_len,
                        folder=folder / HELD_OUT_DIR / d, dtype=dtype)
      for d in held_out_domains}
  (folder / STATS_FILE).write_text(json.dumps(stats, indent=2,
                                              sort_keys=True))


def _train_texts(domain: str, max_chars: int, data_dir) -> Iterator[str]:
  """Train-split texts of a corpus domain, or the start of a TFDS stream."""
  if domain in sources.ALL_DOMAINS:
    for doc in tfds_builder.load_split(domain, tfds_builder.TRAIN, data_dir=data_dir):
      yield doc.text
    return
  chars = 0
  for doc in tfds_builder.iter_tfds_documents(domain):
    if chars >= max_chars:
      return
    chars += len(doc.text)
    yield doc.text


def train_shared_tokenizer(
    domains: Sequence[str], out_path: str | os.PathLike[str], *,
    vocab_size: int, model_type: str = 'unigram',
    max_chars: int = tokenizer_lib.DEFAULT_MAX_CHARS, seed: int = 0,
    process_index: int | None = None,
    wait_timeout_s: float = tokenizer_lib.DEFAULT_WAIT_TIMEOUT_S,
    data_dir: str | os.PathLike[str] | None = None) -> utils.AnyPath:
  """Trains the study's tokenizer on the train splits of `domains`.

  Equal characters per domain (`tokenizer.balanced_sample`); the validation
  documents of corpus domains are never seen. A name outside
  `sources.ALL_DOMAINS` is read as a TFDS dataset, as far as its share of
  `max_chars`. Only process 0 reads.
  """
  share = max_chars // max(len(domains), 1)
  if not utils.path(out_path).exists():
    logging.info('tokenizer: training %d pieces on up to %d characters of %s',
                 vocab_size, max_chars, ', '.join(domains))
  texts = {d: _train_texts(d, share, data_dir) for d in domains}
  return tokenizer_lib.train_tokenizer(
      texts, out_path, vocab_size=vocab_size, model_type=model_type,
      max_chars=max_chars, seed=seed, process_index=process_index,
      wait_timeout_s=wait_timeout_s)


def _upload(local: pathlib.Path, folder: utils.AnyPath) -> None:
  """Copies a built cache folder to an object store, `stats.json` last (it
  marks the folder finished, as the rename does locally)."""
  files = sorted((p for p in local.rglob('*') if p.is_file()),
                 key=lambda p: p.name == STATS_FILE)
  for src in files:
    dst = folder / src.relative_to(local).as_posix()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())


def prepare(recipe: Any, tokenizer: tokenizer_lib.Tokenizer, *, seq_len: int,
            eval_texts: decontaminate_lib.EvalTexts = (),
            cache: str | os.PathLike[str] | None = None,
            held_out_domains: Sequence[str] | None = None,
            data_dir: str | os.PathLike[str] | None = None) -> Prepared:
  """Prepares (or loads from the cache) the rows of one recipe.

  Args:
    recipe: a Recipe, dict or ConfigDict (config.arms[i].data).
    tokenizer: the shared tokenizer.
    seq_len: row length.
    eval_texts: downstream evaluation texts to decontaminate against (used
      when recipe.decontaminate): {task: texts}, so the stats report the
      contamination of each task, or a plain sequence (one task).
    cache: root of the cache folders; default `fetch.cache_root()/prepared`.
    held_out_domains: domains whose validation rows to pack; default the
      recipe's. Give every domain of a study so all arms share them.
    data_dir: TFDS data_dir of the corpus builder; default under the cache.

  Raises:
    ValueError: on a bad recipe (before any work) or a budget the data cannot
      meet (saying how many tokens there are).
  """
  recipe = Recipe.from_config(recipe)
  held_out_domains = tuple(held_out_domains or recipe.train_domains)
  for d in held_out_domains:
    if d not in sources.ALL_DOMAINS and d != recipe.tfds_name:
      raise ValueError(f'unknown held-out domain {d!r}; known: '
                       f'{", ".join(sources.ALL_DOMAINS)}')
  if seq_len < packing.MIN_SEGMENT_LEN:
    raise ValueError(f'seq_len={seq_len} is too short; use seq_len >= '
                     f'{packing.MIN_SEGMENT_LEN}')
  key = cache_key(recipe, tokenizer.sha256, seq_len=seq_len,
                  held_out_domains=held_out_domains, eval_texts=eval_texts)
  root = utils.path(cache) if cache is not None else default_cache()
  folder = root / key
  if (folder / STATS_FILE).exists():
    return load_prepared(folder)
  remote = utils.is_remote(root)
  if not remote:
    root.mkdir(parents=True, exist_ok=True)
  # A gs:// cache is built in a local temp folder, then uploaded.
  tmp = pathlib.Path(tempfile.mkdtemp(dir=None if remote else root, prefix=f'.{key}.'))
  try:
    _build(tmp, recipe, tokenizer, seq_len=seq_len, eval_texts=eval_texts,
           held_out_domains=held_out_domains, data_dir=data_dir, key=key)
    if remote:
      _upload(tmp, folder)
    else:
      try:
        os.rename(tmp, folder)
      except OSError:
        if not (folder / STATS_FILE).exists():
          raise
        # Another process finished the same folder first; theirs is identical.
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return load_prepared(folder)
