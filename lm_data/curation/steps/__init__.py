"""One module per curation step; each registers itself (registry.register)."""
