"""rlft.training."""
