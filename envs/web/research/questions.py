"""Questions over the wiki: single-hop and 2-3 hop, answerable or not, split four ways.

Every entity anchors one single-hop question ("In which town was Ilvara Denn born?") and one
multi-hop question that follows entity links ("What is the population of the birthplace of the
founder of Corvane Works?"). A question whose final fact the corpus lacks is unanswerable: its
only right response is to abstain.

Splits: anchors are shuffled and partitioned 80/10/10 into ``train``/``val``/``test``, so the
three share no question (nor any anchor page). Questions that use a relation of
:data:`schema.UNSEEN_RELATIONS` in any hop belong to ``unseen`` only: ``train`` never asks
about those relations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from rlft.envs.web.research.corpus import DEFAULT_SIZE, Corpus, build_corpus
from rlft.envs.web.research.schema import BY_DOMAIN, BY_NAME, UNSEEN_RELATIONS

SPLITS = ("train", "val", "test", "unseen")


@dataclass(frozen=True)
class Question:
    """A question and its gold path through the wiki.

    Attributes:
        text: the question shown as the goal.
        answer: the canonical answer, or None when the corpus lacks the fact.
        aliases: other accepted answers.
        path: the hops ``(entity index, relation)``; hop ``i``'s fact leads to hop ``i+1``'s
            entity, the last hop's fact is the answer.
        split: the split the question belongs to.
    """

    text: str
    answer: str | None
    aliases: tuple[str, ...]
    path: tuple[tuple[int, str], ...]
    split: str

    @property
    def answerable(self) -> bool:
        """Whether the corpus states the answer."""
        return self.answer is not None

    @property
    def references(self) -> tuple[str, ...]:
        """Every accepted answer (empty for an unanswerable question)."""
        return () if self.answer is None else (self.answer, *self.aliases)

    @property
    def hops(self) -> int:
        """How many facts must be chained."""
        return len(self.path)


def _question(corpus: Corpus, path: list[tuple[int, str]], rng: random.Random,
              split: str) -> Question:
    subject = corpus.entities[path[0][0]].title
    for _, rel in path[:-1]:
        subject = BY_NAME[rel].phrase.format(x=subject)
    last, rel = path[-1]
    text = rng.choice(BY_NAME[rel].questions).format(x=subject)
    fact = corpus.entities[last].facts.get(rel)
    if fact is None:
        return Question(text, None, (), tuple(path), split)
    aliases = fact.aliases if fact.target is None else corpus.entities[fact.target].aliases
    return Question(text, fact.text, aliases, tuple(path), split)


def _multi_hop(corpus: Corpus, anchor: int, rng: random.Random) -> list[tuple[int, str]]:
    path, current = [], anchor
    for _ in range(rng.choice((1, 2))):
        links = [r for r in BY_DOMAIN[corpus.entities[current].kind] if not r.is_literal]
        if not links:
            break
        rel = rng.choice(links)
        path.append((current, rel.name))
        current = corpus.entities[current].facts[rel.name].target
    path.append((current, rng.choice(BY_DOMAIN[corpus.entities[current].kind]).name))
    return path


@lru_cache(maxsize=16)
def question_pool(split: str, size: int = DEFAULT_SIZE, seed: int = 0) -> tuple[Question, ...]:
    """All questions of ``split`` over ``build_corpus(size, seed)`` (cached per process)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    corpus = build_corpus(size, seed)
    anchors = list(range(len(corpus)))
    random.Random(f"rlft-research-splits-{seed}").shuffle(anchors)
    n = max(1, len(anchors) // 10)
    anchor_split = {a: "test" for a in anchors[:n]}
    anchor_split.update({a: "val" for a in anchors[n:2 * n]})
    anchor_split.update({a: "train" for a in anchors[2 * n:]})
    out = []
    for e in corpus.entities:
        rng = random.Random(f"rlft-research-question-{seed}-{e.index}")
        single = [(e.index, rng.choice(BY_DOMAIN[e.kind]).name)]
        paths = (single, _multi_hop(corpus, e.index, rng))
        for path in paths:  # always draw both texts, so a question never depends on `split`
            unseen = any(rel in UNSEEN_RELATIONS for _, rel in path)
            q = _question(corpus, path, rng, "unseen" if unseen else anchor_split[e.index])
            if q.split == split:
                out.append(q)
    if not out:
        raise ValueError(f"the {split!r} split is empty for a corpus of {size} entities")
    return tuple(out)
