"""The one HTML -> text renderer of the web environments.

HTML is the source of truth for every page; this module turns it into the text observation in
WebShop's "text_rich" style, and extracts what an agent can do on the page:

    [button] Back to Search [button_]
    Page 1 (Total results: 50)
    [button] Next > [button_]
    [clicked button] large [clicked button_]

Rules (kept small so a real browser's DOM serialisation renders identically):

* ``<a>`` and ``<button>`` are clickables; their label is their whitespace-normalised text.
  One with ``aria-pressed="true"`` renders as ``[clicked button] ... [clicked button_]``.
  A ``<button type="submit">`` belongs to its form and is not a separate clickable.
* ``<input type="text">`` renders as ``[search box]`` and makes ``search[...]`` valid.
* Block elements start new lines; whitespace inside a line collapses; empty lines are dropped.
* ``<head>``, ``<script>``, ``<style>``, ``<template>`` and anything with ``hidden`` are skipped.

Both backends (the in-process text backend and the Chromium backend) call :func:`render_html`,
so their observations agree by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset(
    "address article aside blockquote body br dd div dl dt fieldset figcaption figure footer "
    "form h1 h2 h3 h4 h5 h6 header hr html li main nav ol p pre section table tbody td tfoot "
    "th thead tr ul".split()
)
_SKIP_TAGS = frozenset({"head", "script", "style", "template", "noscript", "title"})
_VOID_TAGS = frozenset({"br", "hr", "img", "input", "meta", "link", "source", "wbr", "area", "col"})
_WS = re.compile(r"\s+")


def normalize_label(text: str) -> str:
    """Collapse runs of whitespace and strip: the form in which labels are compared."""
    return _WS.sub(" ", text).strip()


@dataclass(frozen=True)
class Clickable:
    """An element an agent can click: its label, where it leads, and whether it is pressed."""

    label: str
    href: str | None
    pressed: bool = False
    element_id: str | None = None


@dataclass(frozen=True)
class SearchForm:
    """A text search form: submitting ``query`` requests ``action?name=query``."""

    action: str
    name: str


@dataclass(frozen=True)
class RenderedPage:
    """The text of a page plus what can be done on it."""

    text: str
    clickables: tuple[Clickable, ...] = field(default_factory=tuple)
    search: SearchForm | None = None

    def find(self, label: str) -> Clickable | None:
        """The first clickable whose label equals ``label`` case-insensitively, or None."""
        key = normalize_label(label).casefold()
        for c in self.clickables:
            if c.label.casefold() == key:
                return c
        return None


class _Renderer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skip_depth = 0
        self.skip_stack: list[str] = []
        self.click_stack: list[dict] = []
        self.clickables: list[Clickable] = []
        self.form_action: str | None = None
        self.search: SearchForm | None = None

    # -- line handling -------------------------------------------------------------------
    def _flush(self) -> None:
        line = normalize_label(" ".join(self.current))
        if line:
            self.lines.append(line)
        self.current = []

    # -- parser callbacks ----------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if self.skip_depth:
            if tag not in _VOID_TAGS:
                self.skip_depth += 1
            return
        if tag in _SKIP_TAGS or "hidden" in a:
            if tag not in _VOID_TAGS:
                self.skip_depth = 1
            return
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag == "form":
            self.form_action = a.get("action") or ""
        elif tag == "input" and (a.get("type") or "text") in ("text", "search"):
            self._flush()
            self.lines.append("[search box]")
            if self.form_action is not None and self.search is None:
                self.search = SearchForm(self.form_action, a.get("name") or "q")
        elif tag in ("a", "button"):
            self._flush()
            self.click_stack.append(
                {
                    "tag": tag,
                    "href": a.get("href") or a.get("data-href"),
                    "pressed": a.get("aria-pressed") == "true",
                    "submit": tag == "button" and a.get("type") == "submit",
                    "id": a.get("id"),
                    "text": [],
                }
            )

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skip_depth:
            if tag not in _VOID_TAGS:
                self.skip_depth -= 1
            return
        if tag in ("a", "button") and self.click_stack and self.click_stack[-1]["tag"] == tag:
            c = self.click_stack.pop()
            label = normalize_label(" ".join(c["text"]))
            if c["submit"] or not label:
                return
            mark = "clicked button" if c["pressed"] else "button"
            self.lines.append(f"[{mark}] {label} [{mark}_]")
            self.clickables.append(Clickable(label, c["href"], c["pressed"], c["id"]))
            return
        if tag == "form":
            self.form_action = None
        if tag in _BLOCK_TAGS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.click_stack:
            self.click_stack[-1]["text"].append(data)
        else:
            self.current.append(data)


def render_html(html: str) -> RenderedPage:
    """Render ``html`` to the text observation and extract its clickables and search form."""
    r = _Renderer()
    r.feed(html)
    r.close()
    r._flush()
    seen: set[str] = set()
    clickables = []
    for c in r.clickables:
        key = c.label.casefold()
        if key not in seen:
            seen.add(key)
            clickables.append(c)
    return RenderedPage("\n".join(r.lines), tuple(clickables), r.search)
