"""The generated wiki: fictional entities, their facts, and pages of prose that state them.

:func:`build_corpus` makes ``size`` entities (people, places, organisations, species,
inventions, events) from a seed. Every entity gets facts (:mod:`schema` relations; about one
literal fact in eight is left out of the corpus entirely, which is what makes questions
unanswerable), an infobox, several paragraphs of prose stating its facts in varied wordings
mixed with filler, sentences about the entities that point to it, and links. The corpus is
built once per process per ``(size, seed)`` and is identical in every process.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache

from rlft.envs.web.research.names import NameMaker
from rlft.envs.web.research.schema import BY_DOMAIN, BY_NAME, KINDS, literal_value

#: Share of each kind in the corpus.
KIND_SHARES = {"person": 0.36, "place": 0.18, "organisation": 0.14, "species": 0.12,
               "invention": 0.10, "event": 0.10}
#: Probability that a literal fact of an entity is absent from the corpus.
MISSING_P = 0.12
#: At most this many sentences about other entities pointing to a page.
MAX_REVERSE = 8
#: Default number of entities (one page each).
DEFAULT_SIZE = 5000

_INTROS = {
    "person": "{t} is a person of note in the chronicles of the northern towns.",
    "place": "{t} is a town.",
    "organisation": "{t} is an organisation.",
    "species": "{t}, known to science as {latin}, is an animal species.",
    "invention": "{t} is an invention.",
    "event": "{t} is a historical event.",
}
_FILLERS = {
    "person": ("{t} kept detailed notebooks throughout a long life.",
               "Several letters written by {t} survive in private collections.",
               "Contemporaries described {t} as patient and exacting.",
               "A portrait of {t} hangs in a small provincial gallery.",
               "{t} travelled widely as a young adult.",
               "Later biographers disagree about the early years of {t}."),
    "place": ("The old market square of {t} is lined with narrow houses.",
              "{t} is known for its stone bridges.",
              "A weekly fair has been held in {t} for generations.",
              "The climate around {t} is mild and damp.",
              "Visitors to {t} often remark on its quiet streets.",
              "The parish records of {t} are kept in the town hall."),
    "organisation": ("{t} publishes an annual report for its members.",
                     "The archives of {t} were partly lost in a fire.",
                     "{t} has been reorganised several times.",
                     "The emblem of {t} shows a lantern and a key.",
                     "{t} is governed by a small board.",
                     "Critics accused {t} of moving too slowly."),
    "species": ("{t} is active mostly at dawn and dusk.",
                "Little is known about the courtship of {t}.",
                "{t} is rarely seen by casual observers.",
                "Local names for {t} vary from valley to valley.",
                "The population of {t} is thought to be stable.",
                "Museum collections hold only a few specimens of {t}."),
    "invention": ("Early versions of {t} were unreliable.",
                  "{t} was improved by many later craftsmen.",
                  "A working example of {t} is kept in a regional museum.",
                  "The design of {t} was widely copied.",
                  "Critics at first dismissed {t} as a curiosity.",
                  "Patents covering {t} were disputed for years."),
    "event": ("Accounts of {t} differ in their details.",
              "{t} drew visitors from several regions.",
              "Newspapers of the time reported on {t} at length.",
              "{t} is commemorated by a small plaque.",
              "Many of those present at {t} later wrote memoirs.",
              "The causes of {t} are still debated."),
}


@dataclass(frozen=True)
class Fact:
    """One fact of an entity: the object as written, its page (if any) and aliases.

    Attributes:
        relation: the relation name.
        text: the object as written on the page (a title or a literal value).
        target: index of the object's page for entity relations, else None.
        aliases: other accepted forms of a literal ``text`` (a page's aliases are the
            entity's own).
        sentence: the prose sentence of the subject's page that states the fact.
    """

    relation: str
    text: str
    target: int | None
    aliases: tuple[str, ...]
    sentence: str


@dataclass
class Entity:
    """A page of the wiki: a fictional thing with facts and prose."""

    index: int
    kind: str
    title: str
    slug: str
    aliases: tuple[str, ...] = ()
    latin: str | None = None
    facts: dict[str, Fact] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    paragraphs: tuple[str, ...] = ()
    mentions: tuple[int, ...] = ()

    def search_text(self) -> str:
        """What the search engine indexes: the title (weighted), aliases and prose."""
        return " ".join([self.title] * 3 + list(self.aliases) + list(self.paragraphs))


@dataclass(frozen=True)
class Corpus:
    """The whole wiki: entities in index order plus lookups by slug and title."""

    entities: tuple[Entity, ...]
    regions: tuple[str, ...]
    seed: int
    by_slug: dict[str, int]

    def __len__(self) -> int:
        return len(self.entities)

    def get(self, slug: str) -> Entity | None:
        """The entity whose page is ``/wiki/<slug>``, or None."""
        i = self.by_slug.get(slug)
        return None if i is None else self.entities[i]


def _article(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _slug(title: str) -> str:
    return title.replace(" ", "_")


def _counts(size: int) -> dict[str, int]:
    counts = {k: max(1, int(size * KIND_SHARES[k])) for k in KINDS}
    counts["person"] += size - sum(counts.values())
    return counts


def _make_entities(size: int, rng: random.Random, names: NameMaker) -> list[Entity]:
    entities: list[Entity] = []
    for kind, n in _counts(size).items():
        for _ in range(n):
            latin, aliases = None, ()
            if kind == "species":
                title, latin = names.species()
                aliases = (latin,)
            else:
                title = getattr(names, kind)()
            if kind == "person":
                first, last = title.rsplit(" ", 1)
                aliases = (f"{last}, {first}",)
            entities.append(Entity(len(entities), kind, title, _slug(title), aliases, latin))
    return entities


def _make_facts(entities: list[Entity], rng: random.Random, regions: tuple[str, ...]) -> None:
    of_kind = {k: [e.index for e in entities if e.kind == k] for k in KINDS}
    for e in entities:
        facts, missing = {}, []
        for rel in BY_DOMAIN[e.kind]:
            if rel.is_literal:
                text, aliases = literal_value(rel.name, rng, regions)
                if rng.random() < MISSING_P:
                    missing.append(rel.name)
                    continue
                target = None
            else:
                target = rng.choice(of_kind[rel.range])
                if target == e.index and len(of_kind[rel.range]) > 1:
                    target = of_kind[rel.range][(of_kind[rel.range].index(target) + 1)
                                                % len(of_kind[rel.range])]
                text, aliases = entities[target].title, ()
            sentence = rng.choice(rel.sentences).format(s=e.title, o=text, ao=_article(text))
            facts[rel.name] = Fact(rel.name, text, target, aliases, sentence)
        e.facts, e.missing = facts, tuple(missing)
    for e in entities:  # places get their region as an alias ("Corvane, Vell Marches")
        region = e.facts.get("region")
        if region is not None:
            e.aliases = (f"{e.title}, {region.text}",)


def _write_prose(entities: list[Entity], rng: random.Random) -> None:
    reverse: list[list[tuple[int, str]]] = [[] for _ in entities]
    for e in entities:
        for fact in e.facts.values():
            if fact.target is not None and len(reverse[fact.target]) < MAX_REVERSE:
                reverse[fact.target].append((e.index, fact.relation))
    for e in entities:
        intro = _INTROS[e.kind].format(t=e.title, latin=e.latin)
        facts = [f.sentence for f in e.facts.values()]
        rng.shuffle(facts)
        fillers = [s.format(t=e.title) for s in rng.sample(_FILLERS[e.kind], rng.randint(3, 5))]
        rest = facts[2:] + fillers
        rng.shuffle(rest)
        paragraphs = [" ".join([intro] + facts[:2])]
        while rest:
            k = rng.randint(2, 3)
            paragraphs.append(" ".join(rest[:k]))
            rest = rest[k:]
        about = [rng.choice(BY_NAME[rel].reverse).format(s=entities[s].title, o=e.title)
                 for s, rel in reverse[e.index]]
        if about:
            paragraphs.append(" ".join(about))
        e.paragraphs = tuple(paragraphs)
        seen: dict[int, None] = {}
        for f in e.facts.values():
            if f.target is not None:
                seen[f.target] = None
        for s, _ in reverse[e.index]:
            seen[s] = None
        e.mentions = tuple(i for i in seen if i != e.index)


@lru_cache(maxsize=4)
def build_corpus(size: int = DEFAULT_SIZE, seed: int = 0) -> Corpus:
    """The wiki of ``size`` entities generated from ``seed`` (cached per process)."""
    if not isinstance(size, int) or not 50 <= size <= 50_000:
        raise ValueError(f"corpus size must be an int in [50, 50000]; got {size!r}")
    rng = random.Random(f"rlft-research-corpus-{seed}")
    names = NameMaker(rng)
    regions = tuple(names.region() for _ in range(24))
    entities = _make_entities(size, rng, names)
    _make_facts(entities, rng, regions)
    _write_prose(entities, rng)
    return Corpus(tuple(entities), regions, seed, {e.slug: e.index for e in entities})
