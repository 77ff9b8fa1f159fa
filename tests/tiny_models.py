"""Tiny models for fast tests (the builders live in rlft.agents.tiny_models)."""

from rlft.agents.tiny_models import make_tiny_bert, make_tiny_llama, shop_corpus

__all__ = ["make_tiny_bert", "make_tiny_llama", "shop_corpus"]
