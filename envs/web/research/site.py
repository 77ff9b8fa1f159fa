"""The wiki's website: every page is HTML generated from its URL.

URLs (all state lives in the URL, so pages cache and the browser backend can serve them):

    /                  home page: search box and a few featured articles
    /search?q=QUERY    the ten best pages for QUERY: titles (links) and snippets
    /wiki/SLUG         an article: title, infobox, paragraphs, "See also" links

Every page starts with the same header: a ``Wiki home`` link and the search form.
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qsl, urlsplit

from rlft.envs.web.research.corpus import Corpus, Entity
from rlft.envs.web.research.schema import BY_NAME
from rlft.envs.web.research.search import MAX_RESULTS, WikiSearch, snippet
from rlft.envs.web.site import PageNotFound, Site, page_html

HOME_LABEL = "Wiki home"
_FEATURED = 8


def _link(label: str, href: str) -> str:
    return f'<a href="{escape(href)}">{escape(label)}</a>'


def article_url(entity: Entity) -> str:
    """The URL of ``entity``'s article."""
    return f"/wiki/{entity.slug}"


class WikiSite(Site):
    """The offline wiki over a corpus and its search engine."""

    def __init__(self, corpus: Corpus, engine: WikiSearch, cache_size: int = 8192):
        super().__init__(cache_size)
        self.corpus = corpus
        self.engine = engine

    def get(self, url: str) -> str:
        """The HTML of the page at ``url``."""
        parts = urlsplit(url)
        segs = [s for s in parts.path.split("/") if s]
        if not segs:
            return self._home()
        if segs == ["search"]:
            return self._results(dict(parse_qsl(parts.query, keep_blank_values=True))
                                 .get("q", ""))
        if len(segs) == 2 and segs[0] == "wiki":
            entity = self.corpus.get(segs[1])
            if entity is None:
                raise PageNotFound(f"no article {segs[1]!r}")
            return self._article(entity)
        raise PageNotFound(f"no page at {url!r}")

    def entity_at(self, url: str) -> Entity | None:
        """The entity whose article is at ``url``, or None for any other page."""
        segs = [s for s in urlsplit(url).path.split("/") if s]
        return self.corpus.get(segs[1]) if len(segs) == 2 and segs[0] == "wiki" else None

    # -- pages ---------------------------------------------------------------------------
    def _header(self, query: str = "") -> str:
        return (f"<header>{_link(HOME_LABEL, '/')}"
                '<form id="search-form" action="/search" method="get">'
                f'<input id="search-input" type="text" name="q" value="{escape(query)}" '
                'placeholder="Search the wiki"><button type="submit">Search</button></form>'
                "</header>")

    def _home(self) -> str:
        n = len(self.corpus)
        featured = [self.corpus.entities[(i * 7919) % n] for i in range(_FEATURED)]
        items = "".join(f"<li>{_link(e.title, article_url(e))}</li>" for e in featured)
        return page_html("rlft wiki", f"{self._header()}<h1>rlft wiki</h1>"
                                      f"<p>An encyclopedia of {n:,} articles.</p>"
                                      f"<h2>Featured articles</h2><ul>{items}</ul>")

    def _results(self, query: str) -> str:
        hits = self.engine.search(query, MAX_RESULTS)
        body = [self._header(query), f"<h1>Search results for {escape(query)}</h1>"]
        if not hits:
            body.append("<p>No results.</p>")
        for i in hits:
            e = self.corpus.entities[i]
            body.append(f'<div class="result">{_link(e.title, article_url(e))}'
                        f"<p>{escape(snippet(e, query))}</p></div>")
        return page_html(f"Search: {query}", "".join(body))

    def _article(self, e: Entity) -> str:
        rows = []
        if e.latin:
            rows.append(f"<li>Scientific name: <i>{escape(e.latin)}</i></li>")
        for fact in e.facts.values():
            label = escape(BY_NAME[fact.relation].label)
            if fact.target is None:
                rows.append(f"<li>{label}: {escape(fact.text)}</li>")
            else:
                target = self.corpus.entities[fact.target]
                rows.append(f"<li>{label}: {_link(target.title, article_url(target))}</li>")
        paragraphs = "".join(f"<p>{escape(p)}</p>" for p in e.paragraphs)
        see_also = "".join(f"<li>{_link(self.corpus.entities[i].title, article_url(self.corpus.entities[i]))}</li>"
                           for i in e.mentions)
        body = (f"{self._header()}<h1>{escape(e.title)}</h1>"
                f'<ul class="infobox">{"".join(rows)}</ul>{paragraphs}')
        if see_also:
            body += f"<h2>See also</h2><ul>{see_also}</ul>"
        return page_html(e.title, body)
