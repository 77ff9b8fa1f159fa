"""Gymnasium spaces shared by the rlft environments."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.spaces import Space
from gymnasium.vector.utils.shared_memory import (
    create_shared_memory,
    read_from_shared_memory,
    write_to_shared_memory,
)

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


# -- shared memory for AsyncVectorEnv --------------------------------------------------------
# Each string is stored as its length followed by UTF-32 code points, so
# `gym.make_vec(..., vectorization_mode="async")` works with the default shared_memory=True.
@create_shared_memory.register(UnicodeText)
def _create_unicode_shared_memory(space: UnicodeText, n: int = 1, ctx: Any = mp) -> Any:
    return ctx.Array(np.dtype(np.int32).char, n * (space.max_length + 1))


class SharedStrings(Sequence):
    """A live view of the strings an AsyncVectorEnv's workers write to shared memory.

    Gymnasium keeps one view and reads it after every step (arrays see writes through the
    buffer); this view decodes on access for the same effect. ``copy.deepcopy`` (what
    ``AsyncVectorEnv(copy=True)``, the default, returns) gives a plain tuple of ``str``.
    """

    def __init__(self, data: np.ndarray):
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(len(self))))
        row = self._data[i]
        return row[1 : 1 + row[0]].tobytes().decode("utf-32-le", "surrogatepass")

    def __deepcopy__(self, memo: dict) -> tuple[str, ...]:
        return tuple(self)

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, Sequence) else other)

    def __repr__(self) -> str:
        return f"SharedStrings({tuple(self)!r})"


@read_from_shared_memory.register(UnicodeText)
def _read_unicode_from_shared_memory(space: UnicodeText, shared_memory: Any,
                                     n: int = 1) -> SharedStrings:
    data = np.frombuffer(shared_memory.get_obj(), dtype=np.int32).reshape(n, space.max_length + 1)
    return SharedStrings(data)


@write_to_shared_memory.register(UnicodeText)
def _write_unicode_to_shared_memory(space: UnicodeText, index: int, value: str,
                                    shared_memory: Any) -> None:
    size = space.max_length + 1
    codes = np.frombuffer(value.encode("utf-32-le", "surrogatepass"), dtype=np.int32)
    if len(codes) > space.max_length:
        raise ValueError(f"string of length {len(codes)} exceeds {space!r}")
    dest = np.frombuffer(shared_memory.get_obj(), dtype=np.int32)
    dest[index * size] = len(codes)
    dest[index * size + 1 : index * size + 1 + len(codes)] = codes
