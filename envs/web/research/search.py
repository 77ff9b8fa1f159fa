"""BM25 search over the wiki's pages, with the ``bm25s`` library."""

from __future__ import annotations

import re
from collections import OrderedDict
from functools import lru_cache

import bm25s
import numpy as np
from bm25s.tokenization import Tokenizer

from rlft.envs.web.research.corpus import DEFAULT_SIZE, Corpus, Entity, build_corpus

#: How many results a search shows (WebGPT's Bing results list).
MAX_RESULTS = 10
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=\.) ")


class WikiSearch:
    """Ranks the wiki's pages for a free-text query with BM25 (``bm25s``).

    Rankings are deterministic (ties broken by page order) and memoised per query.

    Args:
        corpus: the pages to index (title, aliases and prose).
        cache_size: how many distinct queries' rankings to keep.
    """

    def __init__(self, corpus: Corpus, cache_size: int = 8192):
        self.corpus = corpus
        self._tokenizer = Tokenizer(stopwords="en")
        tokens = self._tokenizer.tokenize([e.search_text() for e in corpus.entities],
                                          return_as="tuple", show_progress=False)
        self._bm25 = bm25s.BM25()
        self._bm25.index(tokens, show_progress=False)
        self._cache: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._cache_size = cache_size

    def search(self, query: str, k: int = MAX_RESULTS) -> tuple[int, ...]:
        """Indices of the best ``k`` pages for ``query``, best first; pages sharing no query
        term are left out."""
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
            n = min(MAX_RESULTS, len(scores))
            top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
            order = np.lexsort((top, -scores[top]))
            result = tuple(int(top[i]) for i in order if scores[top[i]] > 0)
        self._cache[key] = result
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return result[:k]


def snippet(entity: Entity, query: str, limit: int = 160) -> str:
    """The sentence of ``entity``'s prose sharing most words with ``query`` (first on ties),
    cut to ``limit`` characters."""
    words = set(_WORD.findall(query.lower()))
    best, best_n = "", -1
    for paragraph in entity.paragraphs:
        for sentence in _SENTENCE_END.split(paragraph):
            n = len(words & set(_WORD.findall(sentence.lower())))
            if n > best_n:
                best, best_n = sentence, n
    return best if len(best) <= limit else best[: limit - 3].rstrip() + "..."


@lru_cache(maxsize=4)
def build_search(size: int = DEFAULT_SIZE, seed: int = 0) -> WikiSearch:
    """The search engine over ``build_corpus(size, seed)`` (cached per process)."""
    return WikiSearch(build_corpus(size, seed))
