"""A fixed-height window onto a rendered page, as in WebGPT's text browser.

The rendered text (from :func:`rlft.envs.web.render.render_html`, the same for every backend)
is wrapped to :data:`WIDTH` columns; the agent sees :data:`HEIGHT` lines from its cursor.
Link lines (``[button] label [button_]``) are never wrapped, so which links are in view is
read straight off the visible lines. ``find`` and ``quote`` search the text with line breaks
read as single spaces, so a phrase split by wrapping is still found.
"""

from __future__ import annotations

import bisect
import re
import textwrap
from dataclasses import dataclass
from functools import lru_cache

WIDTH = 100
HEIGHT = 12
#: Lines ``scroll`` moves by: a screen less two lines of overlap (as a browser's page-down), so
#: a sentence of up to three lines is wholly in view at some scroll position.
SCROLL = HEIGHT - 2
_LINK = re.compile(r"\[(clicked button|button)\] (.*) \[\1_\]")


@dataclass(frozen=True)
class Layout:
    """A page laid out in lines.

    Attributes:
        lines: the wrapped lines.
        joined: the lines joined by single spaces (what find/quote search).
        starts: the offset in ``joined`` where each line starts.
    """

    lines: tuple[str, ...]
    joined: str
    starts: tuple[int, ...]

    def line_of(self, offset: int) -> int:
        """The line containing character ``offset`` of ``joined``."""
        return bisect.bisect_right(self.starts, offset) - 1

    def search(self, text: str, start_line: int = 0) -> re.Match | None:
        """The first case-insensitive match of ``text`` (whitespace-normalised) starting at or
        after line ``start_line``, or None."""
        pattern = re.compile(re.escape(" ".join(text.split())), re.IGNORECASE)
        start = self.starts[start_line] if start_line < len(self.starts) else len(self.joined)
        return pattern.search(self.joined, start)

    def links(self, first: int, last: int) -> list[str]:
        """Labels of the link lines among lines ``first`` to ``last`` (exclusive)."""
        return [m.group(2) for line in self.lines[first:last] if (m := _LINK.fullmatch(line))]


@lru_cache(maxsize=8192)
def layout(text: str) -> Layout:
    """Wrap a rendered page's ``text`` into lines (memoised: pages repeat)."""
    lines: list[str] = []
    for line in text.split("\n"):
        if len(line) <= WIDTH or _LINK.fullmatch(line):
            lines.append(line)
        else:
            lines.extend(textwrap.wrap(line, WIDTH, break_long_words=False,
                                       break_on_hyphens=False))
    starts, offset = [], 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    return Layout(tuple(lines), " ".join(lines), tuple(starts))
