"""rlft.wrappers."""
