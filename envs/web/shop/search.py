"""BM25 product search over the catalog, with the ``bm25s`` library."""

from __future__ import annotations

from functools import lru_cache

from rlft.envs.web.bm25 import BM25Index
from rlft.envs.web.shop.catalog import Catalog, build_catalog

#: How many results a search returns at most (WebShop returns 50: five pages of ten).
MAX_RESULTS = 50


class ProductSearch(BM25Index):
    """Ranks the catalog's products for a free-text query (a :class:`BM25Index` over each
    product's title, type, category path, attributes, features and option values).

    Args:
        catalog: the products to index; results are indices into ``catalog.products``.
        cache_size: how many distinct queries' rankings to keep.
    """

    def __init__(self, catalog: Catalog, cache_size: int = 8192):
        self.catalog = catalog
        super().__init__([p.search_text() for p in catalog.products], MAX_RESULTS, cache_size)


@lru_cache(maxsize=4)
def build_search(num_products: int = 2000, seed: int = 0, difficulty: str = "easy"
                 ) -> ProductSearch:
    """The search engine over ``build_catalog(num_products, seed, difficulty)`` (cached per
    process)."""
    return ProductSearch(build_catalog(num_products, seed, difficulty))
