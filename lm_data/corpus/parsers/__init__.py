"""Format readers and markup strippers for the raw sources, one module per format.

`text` holds what every format shares (decoding, binary detection, splitting)
and the member-parser signature; `plain`, `csv_rows`, `rest` and `wikitext`
hold the parsers of their format. The names below are the ones
`corpus.sources` and the tests use.
"""

from lm_data.corpus.parsers.csv_rows import DIALOG_PAIRS_PER_DOC
from lm_data.corpus.parsers.csv_rows import parse_dialog_csv
from lm_data.corpus.parsers.csv_rows import parse_tweets_csv
from lm_data.corpus.parsers.csv_rows import parse_web_bible
from lm_data.corpus.parsers.csv_rows import strip_braced
from lm_data.corpus.parsers.csv_rows import TWEETS_PER_DOC
from lm_data.corpus.parsers.plain import FORTUNES_PER_DOC
from lm_data.corpus.parsers.plain import parse_fortunes
from lm_data.corpus.parsers.plain import parse_gutenberg
from lm_data.corpus.parsers.plain import parse_licensedcode
from lm_data.corpus.parsers.plain import parse_lines
from lm_data.corpus.parsers.plain import strip_front_matter
from lm_data.corpus.parsers.plain import strip_gutenberg
from lm_data.corpus.parsers.rest import parse_rest_docs
from lm_data.corpus.parsers.rest import rest_to_text
from lm_data.corpus.parsers.text import decode
from lm_data.corpus.parsers.text import decompress
from lm_data.corpus.parsers.text import DocPairs
from lm_data.corpus.parsers.text import is_binary
from lm_data.corpus.parsers.text import split_text
from lm_data.corpus.parsers.text import Stats
from lm_data.corpus.parsers.text import tidy_whitespace
from lm_data.corpus.parsers.wikitext import parse_mediawiki_dump
from lm_data.corpus.parsers.wikitext import wikitext_to_text
