"""Gymnasium spaces shared by the rlft environments."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.spaces import Space

# Characters `UnicodeText.sample` draws from: printable ASCII plus a few non-ASCII letters and
# symbols, so samples exercise the Unicode paths without producing unprintable junk.
_SAMPLE_ALPHABET = tuple(
    [chr(c) for c in range(32, 127)] + list("éüßçñøåЖж中文字€→✓")
)


class UnicodeText(Space[str]):
    """A space of Python strings of any Unicode characters, up to ``max_length`` long.

    Gymnasium's own ``Text`` space only admits a fixed character set, which rejects most
    real web pages and natural-language goals. ``UnicodeText`` admits every ``str`` whose
    length is within ``[min_length, max_length]``.

    Args:
        max_length: the longest string in the space.
        min_length: the shortest string in the space.
        seed: seed for :meth:`sample`.
    """

    def __init__(self, max_length: int, *, min_length: int = 0, seed: int | None = None):
        if not 0 <= min_length <= max_length:
            raise ValueError(f"need 0 <= min_length <= max_length, got {min_length}, {max_length}")
        self.min_length = int(min_length)
        self.max_length = int(max_length)
        super().__init__(dtype=str, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        """Strings cannot be flattened into a numeric array."""
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string of printable characters (at most 64 long, to stay cheap)."""
        hi = min(self.max_length, 64)
        length = int(self.np_random.integers(self.min_length, max(hi, self.min_length) + 1))
        idx = self.np_random.integers(0, len(_SAMPLE_ALPHABET), size=length)
        return "".join(_SAMPLE_ALPHABET[i] for i in idx)

    def contains(self, x: Any) -> bool:
        """True for a ``str`` whose length is within the space's bounds."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, UnicodeText)
            and other.min_length == self.min_length
            and other.max_length == self.max_length
        )

    def to_jsonable(self, sample_n: Any) -> list[str]:
        """Strings are already JSON-able."""
        return list(sample_n)

    def from_jsonable(self, sample_n: list[str]) -> list[str]:
        """Strings come back unchanged."""
        return list(sample_n)


