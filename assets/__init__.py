"""rlft.assets."""
