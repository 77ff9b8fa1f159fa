"""BM25 search over the wiki's pages, with the ``bm25s`` library."""

from __future__ import annotations

import re
from functools import lru_cache

from rlft.envs.web.bm25 import BM25Index
from rlft.envs.web.research.corpus import DEFAULT_SIZE, Corpus, Entity, build_corpus

#: How many results a search shows (WebGPT's Bing results list).
MAX_RESULTS = 10
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=\.) ")


class WikiSearch(BM25Index):
    """Ranks the wiki's pages for a free-text query (a :class:`BM25Index` over title, aliases
    and prose).

    Args:
        corpus: the pages to index; results are indices into ``corpus.entities``.
        cache_size: how many distinct queries' rankings to keep.
    """

    def __init__(self, corpus: Corpus, cache_size: int = 8192):
        self.corpus = corpus
        super().__init__([e.search_text() for e in corpus.entities], MAX_RESULTS, cache_size)


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
