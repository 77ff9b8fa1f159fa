"""Simulated websites and the in-process text backend that browses them.

A :class:`Site` is a pure function from URL to HTML (its pages are real HTML with real links and
forms). A backend browses it: :class:`TextBackend` follows links and submits forms in-process,
rendering each page with :func:`rlft.envs.web.render.render_html`; the browser backend does the
same in Chromium. Actions are therefore defined by the HTML alone, never by calling a site's
handlers behind the page's back.
"""

from __future__ import annotations

import html as html_lib
from abc import ABC, abstractmethod
from collections import OrderedDict
from urllib.parse import urlencode, urljoin

from rlft.envs.web.actions import ActionError
from rlft.envs.web.render import RenderedPage, render_html


class PageNotFound(LookupError):
    """The site has no page at this URL."""


class BackendError(RuntimeError):
    """The backend itself failed (browser crashed, page load timed out); the env truncates the
    episode with ``info["error"]`` and the next ``reset`` recovers."""


class Site(ABC):
    """A website simulated in Python. Subclasses implement :meth:`get`.

    Pages are pure functions of their URL, so rendered pages are cached per site (sites are
    shared by every env of a process).

    Args:
        cache_size: how many rendered pages to keep.
    """

    #: The origin URLs are relative to; the browser backend serves the site under it.
    origin = "http://rlft.test"
    #: Where an episode starts.
    home_url = "/"

    def __init__(self, cache_size: int = 8192):
        self._pages: OrderedDict[str, tuple[str, RenderedPage]] = OrderedDict()
        self._cache_size = cache_size

    @abstractmethod
    def get(self, url: str) -> str:
        """The HTML of the page at ``url`` (path plus query); raise :class:`PageNotFound`."""

    def page(self, url: str) -> tuple[str, RenderedPage]:
        """``(html, rendered page)`` at ``url``, memoised."""
        hit = self._pages.get(url)
        if hit is not None:
            self._pages.move_to_end(url)
            return hit
        html = self.get(url)
        hit = (html, render_html(html))
        self._pages[url] = hit
        if len(self._pages) > self._cache_size:
            self._pages.popitem(last=False)
        return hit


def page_html(title: str, body: str) -> str:
    """Wrap ``body`` in a minimal HTML document with a stylesheet suited to screenshots."""
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
        f"<title>{html_lib.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>"
    )


_CSS = (
    "body{font-family:sans-serif;margin:16px;font-size:14px}"
    "button,a.btn{margin:2px;padding:3px 8px;border:1px solid #888;border-radius:4px;"
    "background:#f4f4f4;color:#000;text-decoration:none;display:inline-block;cursor:pointer}"
    "button[aria-pressed=true]{background:#2a6;color:#fff}"
    ".result,.section{border-bottom:1px solid #ddd;padding:4px 0}"
)


class TextBackend:
    """The fast in-process backend: follows a page's links and forms by reading its HTML."""

    def __init__(self, site: Site):
        self.site = site
        self.url = site.home_url
        self.html, self.page = site.page(self.url)

    def goto(self, url: str) -> None:
        """Load ``url``; raise :class:`PageNotFound` if the site has no such page."""
        self.html, self.page = self.site.page(url)
        self.url = url

    def click(self, label: str) -> None:
        """Follow the clickable labelled ``label`` (case-insensitive)."""
        target = self.page.find(label)
        if target is None:
            raise ActionError(f"no clickable {label!r} on this page")
        if not target.href:
            raise ActionError(f"{label!r} cannot be clicked here")
        self.goto(urljoin(self.url, target.href))

    def search(self, query: str) -> None:
        """Type ``query`` into the page's search box and submit it."""
        form = self.page.search
        if form is None:
            raise ActionError("there is no search box on this page")
        self.goto(f"{urljoin(self.url, form.action)}?{urlencode({form.name: query})}")

    def close(self) -> None:
        """Nothing to release for the text backend."""
