"""The one BM25 ranker of the web sites (``bm25s``), shared by the store and the wiki."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import bm25s
import numpy as np
from bm25s.tokenization import Tokenizer


class BM25Index:
    """Ranks documents for a free-text query with BM25 (``bm25s``, English stopwords).

    Rankings are deterministic (ties broken by document order) and memoised per normalised
    query; documents sharing no query term are left out, so a query of unknown words returns
    nothing.

    Args:
        texts: the documents, one string each; results are indices into this sequence.
        max_results: the longest ranking kept per query.
        cache_size: how many distinct queries' rankings to keep.
    """

    def __init__(self, texts: Sequence[str], max_results: int, cache_size: int = 8192):
        self.max_results = max_results
        self._tokenizer = Tokenizer(stopwords="en")
        tokens = self._tokenizer.tokenize(list(texts), return_as="tuple", show_progress=False)
        self._bm25 = bm25s.BM25()
        self._bm25.index(tokens, show_progress=False)
        self._cache: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._cache_size = cache_size

    def search(self, query: str, k: int | None = None) -> tuple[int, ...]:
        """Indices of the best ``k`` (default ``max_results``) documents, best first."""
        k = self.max_results if k is None else k
        key = " ".join(query.lower().split())
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit[:k]
        ids = self._tokenizer.tokenize([key], update_vocab=False, return_as="ids",
                                       show_progress=False)[0]
        result: tuple[int, ...] = ()
        if ids:
            scores = self._bm25.get_scores(ids)
            n = min(self.max_results, len(scores))
            top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
            # Sort by score, then by document position, so ties are stable everywhere.
            order = np.lexsort((top, -scores[top]))
            result = tuple(int(top[i]) for i in order if scores[top[i]] > 0)
        self._cache[key] = result
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return result[:k]
