"""reStructuredText documentation pages (Django, SentencePiece docs)."""

from collections.abc import Sequence
import re

from lm_data.corpus.parsers.text import decode
from lm_data.corpus.parsers.text import DocPairs
from lm_data.corpus.parsers.text import Stats
from lm_data.corpus.parsers.text import tidy_whitespace

# Directives whose whole block is not prose.
_REST_CODE_DIRECTIVES = frozenset({
    'code-block', 'code', 'sourcecode', 'console', 'doctest', 'testcode',
    'testoutput', 'literalinclude', 'parsed-literal', 'productionlist'})
_REST_DROP_DIRECTIVES = frozenset({
    'toctree', 'image', 'figure', 'raw', 'include', 'highlight', 'index',
    'graphviz', 'math', 'list-table', 'csv-table', 'table', 'only',
    'autosummary', 'contents', 'literalinclude', 'templatetag', 'fieldlookup'})
_REST_DIRECTIVE = re.compile(r'^(\s*)\.\.\s+(\|[^|]+\|\s+)?([\w:.-]+)::(.*)$')
_REST_COMMENT = re.compile(r'^(\s*)\.\.(\s|$)')
_REST_ADORNMENT = re.compile(r'^\s*([=\-`:\'"~^_*+#<>.])\1{2,}\s*$')
_REST_GRID_BORDER = re.compile(r'^\s*\+[-=+]+\+\s*$')
_REST_OPTION = re.compile(r'^\s*:[\w-]+:')
# Inline markup, applied in this order.
_REST_INLINE = (
    # :role:`label <target>` and :role:`~mod.Class` (Sphinx shows 'Class').
    (re.compile(r':[\w:.-]+:`([^`<]*?)\s*<[^`>]*>`'), r'\1'),
    (re.compile(r':[\w:.-]+:`~(?:[\w.]*\.)?([^`]*)`'), r'\1'),
    (re.compile(r':[\w:.-]+:`!?([^`]*)`'), r'\1'),
    (re.compile(r'``([^`]+)``'), r'\1'),
    (re.compile(r'`([^`<]*?)\s*<[^`>]*>`_{1,2}'), r'\1'),
    (re.compile(r'`([^`]*)`_{0,2}'), r'\1'),
    (re.compile(r'\s?\[(?:#|\*|\d+|#\w+)\]_'), ''),
    (re.compile(r'\|([\w -]+)\|_{0,2}'), r'\1'),
    (re.compile(r'\*\*([^*]+)\*\*'), r'\1'),
    (re.compile(r'(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])'), r'\1'),
    (re.compile(r'\b(\w+)__?(?=[\s.,;:)]|$)'), r'\1'),
)


def _indent(line: str) -> int:
  return len(line) - len(line.lstrip())


def _block_end(lines: Sequence[str], start: int, indent: int) -> int:
  """First index >= `start` of a non-blank line indented at most `indent`."""
  i = start
  while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
    i += 1
  return i


def _rest_inline(line: str) -> str:
  for pattern, replacement in _REST_INLINE:
    line = pattern.sub(replacement, line)
  return line


def rest_to_text(markup: str, *, keep_code: bool = False) -> str:
  """Plain prose from reStructuredText (with Sphinx/Django extensions).

  Keeps paragraphs, titles, list items and the bodies of admonitions and API
  directives; drops comments, targets, directive options, tables of contents,
  images and (unless `keep_code`) code and literal blocks. Inline roles and
  references become their visible text.
  """
  lines = markup.split('\n')
  out, paragraph, i = [], [], 0

  def flush():  # Inline markup may span lines, so it is applied per paragraph.
    if paragraph:
      out.append(_rest_inline('\n'.join(paragraph)))
      paragraph.clear()

  while i < len(lines):
    line = lines[i]
    indent, stripped = _indent(line), line.strip()
    directive = _REST_DIRECTIVE.match(line)
    if not stripped:
      flush()
      out.append('')
      i += 1
    elif directive:
      flush()
      name = directive.group(3).lower()
      body_end = _block_end(lines, i + 1, indent)
      if name in _REST_CODE_DIRECTIVES or name in _REST_DROP_DIRECTIVES:
        if keep_code and name in _REST_CODE_DIRECTIVES:
          out += [l for l in lines[i + 1:body_end]
                  if not _REST_OPTION.match(l)]
        i = body_end
        continue
      i += 1  # Keep the body of admonitions and API directives; skip options.
      while i < body_end and _REST_OPTION.match(lines[i]):
        i += 1
    elif _REST_COMMENT.match(line):  # Comments, targets, substitutions.
      flush()
      i = _block_end(lines, i + 1, indent)
    elif _REST_ADORNMENT.match(line) or _REST_GRID_BORDER.match(line):
      flush()
      i += 1
    elif stripped.startswith('>>>'):  # Doctest block: up to a blank line.
      flush()
      while i < len(lines) and lines[i].strip():
        if keep_code:
          out.append(lines[i])
        i += 1
    elif stripped.endswith('::'):  # The next indented block is literal text.
      prose = stripped[:-2].rstrip()
      if prose:
        paragraph.append(prose + ':')
      flush()
      body_end = _block_end(lines, i + 1, indent)
      if keep_code:
        out += lines[i + 1:body_end]
      i = body_end
    else:
      if stripped.startswith('|') and stripped.endswith('|'):
        stripped = stripped.strip('|').replace(' | ', '  ')  # Grid table row.
      paragraph.append(stripped)
      i += 1
  flush()
  return tidy_whitespace('\n'.join(out))


def parse_rest_docs(member: str, data: bytes, stats: Stats, *,
                    keep_code: bool = False) -> DocPairs:
  """One reST documentation page (doc id: the path below 'docs/')."""
  text = decode(data, stats)
  if text is not None:
    yield member.split('/docs/', 1)[-1], rest_to_text(text,
                                                      keep_code=keep_code)
