"""rlft.agents."""
