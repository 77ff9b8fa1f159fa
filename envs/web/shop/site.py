"""The store's website: every page is HTML generated from its URL.

URLs (all state lives in the URL, so pages cache and the browser backend can serve them):

    /                                     search page
    /search?q=QUERY&page=N                results, ten per page
    /item/ASIN?q=..&page=..&o_TYPE=VALUE  item page with the chosen options
    /item/ASIN/VIEW?...                   description | features | reviews | attributes
    /buy/ASIN?o_TYPE=VALUE                order confirmation (ends the episode)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from urllib.parse import parse_qsl, urlencode, urlsplit

from rlft.envs.web.shop.catalog import Catalog, Product
from rlft.envs.web.shop.search import MAX_RESULTS, ProductSearch
from rlft.envs.web.site import PageNotFound, Site, page_html

RESULTS_PER_PAGE = 10
VIEWS = ("description", "features", "reviews", "attributes")
_OPT = "o_"


@dataclass(frozen=True)
class Purchase:
    """What was bought: the product and the options selected when Buy Now was clicked."""

    asin: str
    options: dict[str, str]


def _a(label: str, href: str, *, pressed: bool | None = None, cls: str = "btn") -> str:
    aria = "" if pressed is None else f' aria-pressed="{"true" if pressed else "false"}"'
    return f'<a class="{cls}" href="{escape(href)}"{aria}>{escape(label)}</a>'


def _url(path: str, params: list[tuple[str, str]]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


class ShopSite(Site):
    """The WebShop-style store over a catalog and its search engine."""

    def __init__(self, catalog: Catalog, search: ProductSearch, cache_size: int = 8192):
        super().__init__(cache_size)
        self.catalog = catalog
        self.engine = search

    # -- routing -------------------------------------------------------------------------
    def get(self, url: str) -> str:
        """The HTML of the page at ``url``."""
        parts = urlsplit(url)
        params = parse_qsl(parts.query, keep_blank_values=True)
        query = dict(params)
        segs = [s for s in parts.path.split("/") if s]
        if not segs:
            return self._home()
        if segs[0] == "search" and len(segs) == 1:
            return self._results(query.get("q", ""), _int(query.get("page"), 1))
        if segs[0] in ("item", "buy") and len(segs) in (2, 3):
            product = self.catalog.get(segs[1])
            if product is None:
                raise PageNotFound(f"no product {segs[1]!r}")
            options = {k[len(_OPT):]: v for k, v in params if k.startswith(_OPT)}
            if segs[0] == "buy" and len(segs) == 2:
                return self._bought(product, options)
            view = segs[2] if len(segs) == 3 else None
            if segs[0] == "item" and (view is None or view in VIEWS):
                return self._item(product, query.get("q", ""), _int(query.get("page"), 1),
                                  options, view)
        raise PageNotFound(f"no page at {url!r}")

    def parse_purchase(self, url: str) -> Purchase | None:
        """The purchase a ``/buy/...`` URL records, or None for any other URL."""
        parts = urlsplit(url)
        segs = [s for s in parts.path.split("/") if s]
        if len(segs) != 2 or segs[0] != "buy":
            return None
        opts = {k[len(_OPT):]: v for k, v in parse_qsl(parts.query) if k.startswith(_OPT)}
        return Purchase(segs[1].upper(), opts)

    # -- pages ---------------------------------------------------------------------------
    def _home(self) -> str:
        return page_html(
            "rlft shop",
            '<h1>rlft shop</h1><form id="search-form" action="/search" method="get">'
            '<input id="search-input" type="text" name="q" placeholder="Search for products">'
            '<button type="submit">Search</button></form>',
        )

    def _results(self, q: str, page: int) -> str:
        hits = self.engine.search(q, MAX_RESULTS)
        pages = max(1, math.ceil(len(hits) / RESULTS_PER_PAGE))
        page = min(max(page, 1), pages)
        body = [_a("Back to Search", "/"), f"<p>Page {page} (Total results: {len(hits)})</p>"]
        nav = []
        if page > 1:
            nav.append(_a("< Prev", _url("/search", [("q", q), ("page", str(page - 1))])))
        if page < pages:
            nav.append(_a("Next >", _url("/search", [("q", q), ("page", str(page + 1))])))
        body.append(f"<div>{''.join(nav)}</div>")
        for i in hits[(page - 1) * RESULTS_PER_PAGE : page * RESULTS_PER_PAGE]:
            p = self.catalog.products[i]
            href = _url(f"/item/{p.asin}", [("q", q), ("page", str(page))])
            body.append(
                f'<div class="result">{_a(p.asin, href, cls="btn product-link")}'
                f"<p>{escape(p.title)}</p><p>${p.price:.2f}</p></div>"
            )
        return page_html(f"Results for {q}", "".join(body))

    def _item(self, p: Product, q: str, page: int, options: dict[str, str],
              view: str | None) -> str:
        ctx = [("q", q), ("page", str(page))]
        chosen = [(_OPT + k, v) for k, v in options.items()]
        item_url = _url(f"/item/{p.asin}", ctx + chosen)
        back = _url("/search", ctx) if q else "/"
        body = [_a("Back to Search", "/"), _a("< Prev", item_url if view else back)]
        if view is not None:
            body.append(f"<h2>{view.capitalize()}</h2>{self._view(p, view)}")
            return page_html(f"{p.title} - {view}", "".join(body))
        for name, values in p.options.items():
            buttons = []
            for v in values:
                sel = {**options, name: v}
                href = _url(f"/item/{p.asin}", ctx + [(_OPT + k, x) for k, x in sel.items()])
                buttons.append(_a(v, href, pressed=options.get(name) == v))
            body.append(f'<div class="options"><h4>{escape(name)}</h4>{"".join(buttons)}</div>')
        body.append(
            f"<h2>{escape(p.title)}</h2><p>Price: ${p.price:.2f}</p><p>Rating: {p.rating}</p>"
        )
        views = [
            _a(v.capitalize(), _url(f"/item/{p.asin}/{v}", ctx + chosen)) for v in VIEWS
        ]
        body.append(f"<div>{''.join(views)}</div>")
        body.append(_a("Buy Now", _url(f"/buy/{p.asin}", chosen)))
        return page_html(p.title, "".join(body))

    @staticmethod
    def _view(p: Product, view: str) -> str:
        if view == "description":
            return f"<p>{escape(p.description)}</p>"
        if view == "features":
            return "<ul>" + "".join(f"<li>{escape(f)}</li>" for f in p.features) + "</ul>"
        if view == "reviews":
            return "".join(
                f'<div class="section"><p>{r.rating} out of 5 stars</p><p>{escape(r.text)}</p></div>'
                for r in p.reviews
            )
        return "<ul>" + "".join(f"<li>{escape(a)}</li>" for a in p.attributes) + "</ul>"

    def _bought(self, p: Product, options: dict[str, str]) -> str:
        chosen = "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in options.items())
        return page_html(
            "Thank you",
            f"<h1>Thank you for shopping with rlft shop!</h1><p>Your order: {escape(p.title)}</p>"
            f"<p>Price: ${p.price:.2f}</p><ul>{chosen}</ul>",
        )


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default
