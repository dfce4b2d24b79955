"""Controlled, synthetic degradation of documents at configurable rates.

Each kind draws from its own generator seeded by (seed, kind, source, doc id),
so a document's noise depends on nothing else in the corpus. Kinds and what
their rate p means:
- `word_shuffle`: each sentence (a run ending in . ! ? or a line end) of two or
  more words has its words shuffled with probability p; terminal punctuation
  stays at the end.
- `boilerplate`: each block gets a boilerplate line before it with probability
  p. Blocks are paragraphs (blank-line separated), or the lines of a document
  without blank lines (Bible chapters hold one verse per line). The lines are
  this module's own synthetic strings (`BOILERPLATE_LINES`).
- `markup`: each block is wrapped in an HTML-like template with probability p
  (`MARKUP_TEMPLATES`).
- `markup_open`: the same draws, but only the template's opening half goes
  before the block (no closing tags): the tags' local regularity without the
  long-range match from an opening tag to its closing one.
- `char_noise`: each non-space character gets a typo with probability p: a
  substitution, deletion, insertion (after it) or swap with the next character,
  equally likely. Whitespace is never touched, so lines and paragraphs stay.
`degrade` applies the kinds in `KINDS` order (content, then page furniture,
then typos over everything).
"""

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import functools
import re
import string

import numpy as np

from lm_data import utils
from lm_data.corpus.sources import Document

# Synthetic web-page furniture written for this project (not scraped text).
BOILERPLATE_LINES = (
    'We use cookies to improve your experience. By continuing to browse you '
    'accept our cookie policy.',
    'Home | About | Products | Blog | Contact',
    'Click here to subscribe to our newsletter!',
    'Share this page: Facebook Twitter Email Print',
    'Copyright (c) All rights reserved. Terms of Use | Privacy Policy',
    'Skip to main content',
    'Advertisement',
    'Read more >>',
    'Log in or sign up to post comments.',
    'Previous page | Next page | Back to top',
)
MARKUP_TEMPLATES = (
    '<p>{}</p>',
    '<div class="content">{}</div>',
    '<p><span style="font-size:12px">{}</span></p>',
    '<td valign="top"><font face="Arial">{}</font></td>',
    '<li><a href="#">{}</a></li>',
    '<blockquote>{}</blockquote>',
)
# Characters used by substitutions and insertions.
TYPO_ALPHABET = string.ascii_lowercase
TYPO_OPS = ('substitute', 'delete', 'insert', 'swap')
KINDS = ('word_shuffle', 'boilerplate', 'markup', 'markup_open', 'char_noise')

_SENTENCE_RE = re.compile(r'[^.!?\n]+[.!?]*')
_TERMINAL = '.!?'
_PARAGRAPH_SEP_RE = re.compile(r'(\n[ \t]*\n\s*)')
_LINE_SEP_RE = re.compile(r'(\n)')
_ALPHABET = np.frombuffer(TYPO_ALPHABET.encode('utf-32-le'), dtype=np.uint32)


# markup_open draws as markup does, so the two wrap the same blocks alike.
_RNG_STREAM = {'markup_open': 'markup'}


def _rng(seed: int, kind: str, doc: Document) -> np.random.Generator:
  return utils.rng(seed, _RNG_STREAM.get(kind, kind), doc.source, doc.doc_id)


def _shuffle_sentence(sentence: str, rng: np.random.Generator) -> str:
  body = sentence.rstrip(_TERMINAL)
  end = sentence[len(body):]
  tokens = body.split()
  order = rng.permutation(len(tokens))
  if np.array_equal(order, np.arange(len(tokens))):
    order = np.roll(order, 1)  # A shuffle that leaves the order is no shuffle.
  lead = body[:len(body) - len(body.lstrip())]
  trail = body[len(body.rstrip()):]
  return lead + ' '.join(tokens[i] for i in order) + trail + end


def word_shuffle(text: str, p: float, rng: np.random.Generator
                 ) -> tuple[str, dict[str, int]]:
  """Shuffles the words of each sentence with probability p."""
  pieces, last, units, changed, chars = [], 0, 0, 0, 0
  for m in _SENTENCE_RE.finditer(text):
    sentence = m.group(0)
    pieces.append(text[last:m.start()])
    last = m.end()
    if len(sentence.split()) >= 2:
      units += 1
      if rng.random() < p:
        new = _shuffle_sentence(sentence, rng)
        changed += new != sentence
        chars += len(sentence)
        sentence = new
    pieces.append(sentence)
  pieces.append(text[last:])
  return ''.join(pieces), {'units': units, 'changed_units': changed,
                           'chars_changed': chars}


def _blocks(text: str) -> list[str]:
  """Alternating [block, separator, block, ...] (see the module docstring)."""
  parts = _PARAGRAPH_SEP_RE.split(text)
  if sum(bool(p.strip()) for p in parts[::2]) > 1:
    return parts
  return _LINE_SEP_RE.split(text)


def boilerplate(text: str, p: float, rng: np.random.Generator
                ) -> tuple[str, dict[str, int]]:
  """Puts a synthetic boilerplate line before each block w.p. p."""
  parts = _blocks(text)
  units = changed = chars = 0
  for i in range(0, len(parts), 2):
    if not parts[i].strip():
      continue
    units += 1
    if rng.random() < p:
      line = BOILERPLATE_LINES[rng.integers(len(BOILERPLATE_LINES))]
      parts[i] = f'{line}\n{parts[i]}'
      changed += 1
      chars += len(line) + 1
  return ''.join(parts), {'units': units, 'changed_units': changed,
                          'chars_changed': chars}


def markup(text: str, p: float, rng: np.random.Generator, *, closed: bool = True
           ) -> tuple[str, dict[str, int]]:
  """Wraps each block in an HTML-like template w.p. p (`closed=False`: only
  its opening half, before the block)."""
  parts = _blocks(text)
  units = changed = chars = 0
  for i in range(0, len(parts), 2):
    if not parts[i].strip():
      continue
    units += 1
    if rng.random() < p:
      template = MARKUP_TEMPLATES[rng.integers(len(MARKUP_TEMPLATES))]
      if not closed:
        template = template[:template.index('{}') + 2]
      new = template.format(parts[i])
      chars += len(new) - len(parts[i])
      parts[i] = new
      changed += 1
  return ''.join(parts), {'units': units, 'changed_units': changed,
                          'chars_changed': chars}


def char_noise(text: str, p: float, rng: np.random.Generator
               ) -> tuple[str, dict[str, int]]:
  """Typos at rate p per non-space character (see the module docstring)."""
  codes = np.frombuffer(text.encode('utf-32-le', 'surrogatepass'),
                        dtype=np.uint32).copy()
  distinct = np.unique(codes)
  spaces = distinct[[chr(c).isspace() for c in distinct]]
  is_space = np.isin(codes, spaces)
  candidates = np.flatnonzero(~is_space)
  hit = candidates[rng.random(len(candidates)) < p]
  op = rng.integers(len(TYPO_OPS), size=len(hit))
  letters = _ALPHABET[rng.integers(len(_ALPHABET), size=len(hit))]
  # A swap needs a next character that is not a space, not edited itself and
  # different from this one; otherwise it becomes a substitution, so every
  # drawn edit changes the text and edits touch distinct characters.
  is_hit = np.zeros(len(codes) + 1, dtype=bool)
  is_hit[hit] = True
  partner = np.minimum(hit + 1, len(codes) - 1)
  can_swap = ((hit + 1 < len(codes)) & ~is_space[partner] & ~is_hit[hit + 1] &
              (codes[partner] != codes[hit]))
  op[(op == 3) & ~can_swap] = 0
  swap = hit[op == 3]
  codes[swap], codes[swap + 1] = codes[swap + 1].copy(), codes[swap].copy()
  sub, sub_letters = hit[op == 0], letters[op == 0]
  same = codes[sub] == sub_letters
  # A letter that would replace itself becomes the next letter instead.
  sub_letters[same] = _ALPHABET[
      (np.searchsorted(_ALPHABET, sub_letters[same]) + 1) % len(_ALPHABET)]
  codes[sub] = sub_letters
  keep = np.ones(len(codes), dtype=bool)
  keep[hit[op == 1]] = False
  ins = hit[op == 2]
  # Inserted letters go right after their character.
  positions = np.concatenate([np.flatnonzero(keep), ins])
  values = np.concatenate([codes[keep], letters[op == 2]])
  after = np.concatenate([np.zeros(int(keep.sum()), dtype=bool),
                          np.ones(len(ins), dtype=bool)])
  out = values[np.lexsort((after, positions))].tobytes().decode(
      'utf-32-le', 'surrogatepass')
  counts = {f'{name}s': int(np.sum(op == k)) for k, name in enumerate(TYPO_OPS)}
  return out, {'units': len(candidates), 'changed_units': len(hit),
               'chars_changed': len(hit), **counts}


_KIND_FNS: dict[str, Callable[[str, float, np.random.Generator],
                              tuple[str, dict[str, int]]]] = {
    'word_shuffle': word_shuffle,
    'boilerplate': boilerplate,
    'markup': markup,
    'markup_open': functools.partial(markup, closed=False),
    'char_noise': char_noise,
}


def _check_rates(rates: Mapping[str, float]) -> None:
  unknown = sorted(set(rates) - set(KINDS))
  if unknown:
    raise ValueError(f'unknown degradation {", ".join(map(repr, unknown))}; '
                     f'known: {", ".join(KINDS)}')
  for kind, p in rates.items():
    if not 0.0 <= p <= 1.0:
      raise ValueError(f'degradation rate {kind}={p} must be in [0, 1]')


def degrade(docs: Sequence[Document], rates: Mapping[str, float],
            seed: int) -> tuple[list[Document], dict]:
  """Applies every kind with a positive rate, in `KINDS` order.

  Stats per kind: `documents_changed`, `chars_changed`, `units` (sentences,
  paragraphs or non-space characters it could touch), `changed_units` and
  the realised `rate` = changed_units / units.
  """
  _check_rates(rates)
  docs = list(docs)
  stats = {}
  for kind in KINDS:
    p = rates.get(kind, 0.0)
    if p <= 0.0:
      continue
    fn = _KIND_FNS[kind]
    totals = {'documents_changed': 0}
    for i, doc in enumerate(docs):
      text, counts = fn(doc.text, p, _rng(seed, kind, doc))
      for key, value in counts.items():
        totals[key] = totals.get(key, 0) + value
      if text != doc.text:
        totals['documents_changed'] += 1
        docs[i] = dataclasses.replace(doc, text=text)
    totals['rate'] = totals.get('changed_units', 0) / max(
        totals.get('units', 0), 1)
    stats[kind] = totals
  return docs, stats
