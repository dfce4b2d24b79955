"""The corpus: where the study's text comes from.

`sources` (the registry of pinned archives and which members each domain
reads), `fetch` (downloading and caching the archives), `parsers` (one module
per format: plain text, CSV, reST, MediaWiki), and `tfds_builder` (the
embedded corpus as a TFDS dataset with a held-out split, and readers of other
TFDS text datasets). Curation of this text is `lm_data.curation`; turning it
into training rows is `lm_data.input_pipeline`.
"""
