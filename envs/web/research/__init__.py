"""``rlft/Research-v0``: answer questions by browsing an offline wiki of fictional facts."""
