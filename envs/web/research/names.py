"""Fictional names: pronounceable, unique across the whole wiki, drawn from a seeded generator.

The names are made of invented syllables so that no pretrained model has seen them; the wiki
is the only place their facts can be found.
"""

from __future__ import annotations

import random

_ONSETS = ("b", "br", "c", "d", "dr", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "st",
           "t", "th", "v", "w", "z", "")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ai", "ou", "y")
_CODAS = ("n", "r", "l", "s", "th", "nd", "rn", "m", "v", "x", "", "", "")
_PLACE_SUFFIXES = ("holm", "vale", "mouth", "stead", "wick", "bury", "ford", "mere", "gate",
                   "by", "ton", "fell")
_ORG_SUFFIXES = ("Works", "Guild", "Company", "Society", "Foundry", "Press", "Trading House",
                 "Institute", "Brothers", "Collective", "Mills", "Observatory")
_ADJECTIVES = ("Ashen", "Golden", "Lesser", "Greater", "Spotted", "Silver", "Crested",
               "Pale", "Dusky", "Striped", "Horned", "Tufted", "Banded", "Red", "Blue")
_HABITATS = ("Marsh", "Ridge", "River", "Fen", "Cliff", "Cave", "Forest", "Dune", "Meadow",
             "Reef", "Lake", "Moor")
_ANIMALS = ("Vole", "Heron", "Beetle", "Newt", "Moth", "Finch", "Toad", "Marten", "Crab",
            "Lizard", "Owl", "Trout", "Shrew", "Wren", "Snail", "Bat")
_DEVICES = ("Loom", "Engine", "Lamp", "Compass", "Press", "Pump", "Telescope", "Clock", "Kiln",
            "Sextant", "Valve", "Lathe", "Bellows", "Dynamo", "Barometer")
_EVENTS = ("Lantern Festival", "Trade Fair", "Regatta", "Treaty", "Great Fire", "Exhibition",
           "Congress", "Flood", "Harvest Games", "Eclipse Expedition", "Strike", "Accord")
_REGION_KINDS = ("Marches", "Coast", "Highlands", "Vale", "Reach", "Downs", "Lowlands", "Isles")


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def _root(rng: random.Random, parts: int = 2) -> str:
    word = "".join(_syllable(rng) for _ in range(parts))
    return word[:1].upper() + word[1:]


class NameMaker:
    """Makes names of each entity kind, never the same title twice.

    Args:
        rng: the corpus's generator (names depend only on the corpus seed).
    """

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.taken: set[str] = set()

    def _unique(self, make) -> str:
        for _ in range(1000):
            name = make()
            if 3 <= len(name) <= 60 and name.casefold() not in self.taken:
                self.taken.add(name.casefold())
                return name
        raise RuntimeError("name space exhausted; lower corpus_size")

    def region(self) -> str:
        """A region, e.g. ``"Vell Marches"``."""
        return self._unique(lambda: f"{_root(self.rng)} {self.rng.choice(_REGION_KINDS)}")

    def person(self) -> str:
        """A person, e.g. ``"Ilvara Denn"``."""
        return self._unique(lambda: f"{_root(self.rng, self.rng.choice((2, 3)))} "
                                    f"{_root(self.rng)}")

    def place(self) -> str:
        """A town, e.g. ``"Corvanemouth"``."""
        return self._unique(lambda: _root(self.rng, self.rng.choice((1, 2)))
                            + self.rng.choice(_PLACE_SUFFIXES))

    def organisation(self) -> str:
        """An organisation, e.g. ``"Corvane Works"``."""
        return self._unique(lambda: f"{_root(self.rng)} {self.rng.choice(_ORG_SUFFIXES)}")

    def species(self) -> tuple[str, str]:
        """A species: ``(common name, scientific name)``, e.g. ``("Ashen Marsh Vole",
        "Velia marsha")``."""
        common = self._unique(lambda: f"{self.rng.choice(_ADJECTIVES)} "
                                      f"{self.rng.choice(_HABITATS)} {self.rng.choice(_ANIMALS)}"
                                      if self.rng.random() < 0.5 else
                                      f"{_root(self.rng)} {self.rng.choice(_ANIMALS)}")
        latin = self._unique(lambda: f"{_root(self.rng)}us {_root(self.rng).lower()}ensis")
        return common, latin

    def invention(self) -> str:
        """An invention, e.g. ``"Orrin Loom"``."""
        return self._unique(lambda: f"{_root(self.rng)} {self.rng.choice(_DEVICES)}")

    def event(self) -> str:
        """An event, e.g. ``"Tarsel Lantern Festival"``."""
        return self._unique(lambda: f"{_root(self.rng)} {self.rng.choice(_EVENTS)}")
