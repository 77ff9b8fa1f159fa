"""BM25 product search over the catalog, with the ``bm25s`` library."""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache

import bm25s
import numpy as np
from bm25s.tokenization import Tokenizer

from rlft.envs.web.shop.catalog import Catalog, build_catalog

#: How many results a search returns at most (WebShop returns 50: five pages of ten).
MAX_RESULTS = 50


class ProductSearch:
    """Ranks the catalog's products for a free-text query with BM25 (``bm25s``).

    Rankings are deterministic (ties broken by catalog order) and memoised per query.

    Args:
        catalog: the products to index.
        cache_size: how many distinct queries' rankings to keep.
    """

    def __init__(self, catalog: Catalog, cache_size: int = 8192):
        self.catalog = catalog
        self._tokenizer = Tokenizer(stopwords="en")
        corpus = [p.search_text() for p in catalog.products]
        tokens = self._tokenizer.tokenize(corpus, return_as="tuple", show_progress=False)
        self._bm25 = bm25s.BM25()
        self._bm25.index(tokens, show_progress=False)
        self._cache: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._cache_size = cache_size

    def search(self, query: str, k: int = MAX_RESULTS) -> tuple[int, ...]:
        """Indices into ``catalog.products`` of the best ``k`` matches, best first.

        Products with a zero score (no query term in common) are left out, so a query of
        unknown words returns no results.
        """
        key = " ".join(query.lower().split())
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit[:k]
        ids = self._tokenizer.tokenize([key], update_vocab=False, return_as="ids",
                                       show_progress=False)[0]
        if not ids:
            result: tuple[int, ...] = ()
        else:
            scores = self._bm25.get_scores(ids)
            n = min(MAX_RESULTS, len(scores))
            top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
            # Sort by score, then by catalog position, so ties are stable everywhere.
            order = np.lexsort((top, -scores[top]))
            result = tuple(int(top[i]) for i in order if scores[top[i]] > 0)
        self._cache[key] = result
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return result[:k]


@lru_cache(maxsize=4)
def build_search(num_products: int = 2000, seed: int = 0) -> ProductSearch:
    """The search engine over ``build_catalog(num_products, seed)`` (cached per process)."""
    return ProductSearch(build_catalog(num_products, seed))
