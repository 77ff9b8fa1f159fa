"""The wiki's ontology: entity kinds and the relations (facts) between them.

Each :class:`Relation` says how a fact is shown in an infobox, stated in prose (several
wordings), asked about in a question, and nested inside a multi-hop question ("the founder of
{x}"). Literal-valued relations draw their values from :func:`literal_value`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Entity kinds and how a page introduces one.
KINDS = ("person", "place", "organisation", "species", "invention", "event")
#: The value type of a literal (non-entity) relation.
LITERAL = "literal"


@dataclass(frozen=True)
class Relation:
    """A fact type ``subject --name--> object``.

    Attributes:
        name: identifier, e.g. ``"birthplace"``.
        domain: kind of the subject.
        range: kind of the object, or ``"literal"``.
        label: infobox label.
        phrase: noun phrase nesting a subject ``{x}`` in a longer question ("the founder of {x}").
        questions: question templates over ``{x}``.
        sentences: prose templates over ``{s}`` (subject) and ``{o}`` (object).
        reverse: prose templates for the object's page (entity relations only).
    """

    name: str
    domain: str
    range: str
    label: str
    phrase: str
    questions: tuple[str, ...]
    sentences: tuple[str, ...]
    reverse: tuple[str, ...] = ()

    @property
    def is_literal(self) -> bool:
        """Whether the object is a value rather than another page."""
        return self.range == LITERAL


def _r(name, domain, rng_, label, phrase, questions, sentences, reverse=()) -> Relation:
    return Relation(name, domain, rng_, label, phrase, tuple(questions), tuple(sentences),
                    tuple(reverse))


RELATIONS: tuple[Relation, ...] = (
    # -- person --------------------------------------------------------------------------
    _r("birthplace", "person", "place", "Born in", "the birthplace of {x}",
       ["In which town was {x} born?", "Where was {x} born?"],
       ["{s} was born in {o}.", "The birthplace of {s} is {o}.",
        "Records show that {s} was born in the town of {o}."],
       ["{s} was born in {o}.", "{o} is the birthplace of {s}."]),
    _r("birth_year", "person", LITERAL, "Born", "the birth year of {x}",
       ["In what year was {x} born?", "When was {x} born?"],
       ["{s} was born in {o}.", "The year of birth of {s} is recorded as {o}.",
        "{s} came into the world in {o}."]),
    _r("occupation", "person", LITERAL, "Occupation", "the occupation of {x}",
       ["What was the occupation of {x}?", "What did {x} do for a living?"],
       ["{s} worked as {ao}.", "By profession, {s} was {ao}.",
        "{s} is best remembered as {ao}."]),
    _r("employer", "person", "organisation", "Employer", "the employer of {x}",
       ["Which organisation employed {x}?", "For which organisation did {x} work?"],
       ["{s} worked for {o}.", "For most of a long career, {s} was employed by {o}.",
        "{o} employed {s}."],
       ["{s} was employed by {o}.", "Among the staff of {o} was {s}."]),
    # -- place ---------------------------------------------------------------------------
    _r("population", "place", LITERAL, "Population", "the population of {x}",
       ["What is the population of {x}?", "How many people live in {x}?"],
       ["{s} has a population of {o}.", "About {o} people live in {s}.",
        "The last census counted {o} inhabitants in {s}."]),
    _r("region", "place", LITERAL, "Region", "the region of {x}",
       ["In which region is {x}?", "Which region is {x} part of?"],
       ["{s} lies in {o}.", "{s} is a town in the region of {o}.",
        "Administratively, {s} belongs to {o}."]),
    _r("settled_year", "place", LITERAL, "Settled", "the year {x} was settled",
       ["In what year was {x} first settled?", "When was {x} settled?"],
       ["{s} was first settled in {o}.", "The first settlers arrived at {s} in {o}.",
        "Settlement of {s} began in {o}."]),
    _r("mayor", "place", "person", "Mayor", "the mayor of {x}",
       ["Who is the mayor of {x}?", "Who serves as mayor of {x}?"],
       ["The mayor of {s} is {o}.", "{o} serves as mayor of {s}.",
        "{s} is governed by its mayor, {o}."],
       ["{o} is the mayor of {s}.", "{o} serves as mayor of {s}."]),
    _r("elevation", "place", LITERAL, "Elevation", "the elevation of {x}",
       ["What is the elevation of {x}?", "How high above sea level is {x}?"],
       ["{s} sits at an elevation of {o}.", "{s} lies {o} above sea level.",
        "The town centre of {s} is {o} above the sea."]),
    # -- organisation ----------------------------------------------------------------------
    _r("founder", "organisation", "person", "Founder", "the founder of {x}",
       ["Who founded {x}?", "Who was the founder of {x}?"],
       ["{s} was founded by {o}.", "{o} founded {s}.",
        "The founder of {s} was {o}."],
       ["{o} founded {s}.", "{o} is known as the founder of {s}."]),
    _r("headquarters", "organisation", "place", "Headquarters", "the headquarters town of {x}",
       ["Where is {x} headquartered?", "In which town does {x} have its headquarters?"],
       ["{s} is headquartered in {o}.", "The headquarters of {s} are in {o}.",
        "{s} has its main offices in {o}."],
       ["{s} is headquartered in {o}.", "{o} is home to the headquarters of {s}."]),
    _r("founded_year", "organisation", LITERAL, "Founded", "the founding year of {x}",
       ["In what year was {x} founded?", "When was {x} established?"],
       ["{s} was founded in {o}.", "{s} was established in {o}.",
        "The history of {s} begins in {o}, the year of its founding."]),
    _r("industry", "organisation", LITERAL, "Industry", "the industry of {x}",
       ["In which industry does {x} operate?", "What industry is {x} in?"],
       ["{s} operates in the {o} industry.", "{s} is {ao} concern.",
        "The main business of {s} is {o}."]),
    # -- species -------------------------------------------------------------------------
    _r("discoverer", "species", "person", "Described by", "the discoverer of {x}",
       ["Who first described {x}?", "Who discovered {x}?"],
       ["{s} was first described by {o}.", "{o} discovered {s}.",
        "The first scientific description of {s} was written by {o}."],
       ["{o} first described {s}.", "{o} is credited with the discovery of {s}."]),
    _r("habitat", "species", "place", "Found near", "the place where {x} was first found",
       ["Where was {x} first found?", "Near which town was {x} first recorded?"],
       ["{s} was first found near {o}.", "The first known specimens of {s} came from {o}.",
        "{s} was first recorded in the hills around {o}."],
       ["{s} was first found near {o}.", "The surroundings of {o} are where {s} was first recorded."]),
    _r("lifespan", "species", LITERAL, "Lifespan", "the lifespan of {x}",
       ["What is the lifespan of {x}?", "How long does {x} live?"],
       ["{s} lives for about {o}.", "A typical {s} has a lifespan of {o}.",
        "In the wild, {s} reaches an age of {o}."]),
    _r("diet", "species", LITERAL, "Diet", "the diet of {x}",
       ["What does {x} eat?", "What is the diet of {x}?"],
       ["{s} feeds mainly on {o}.", "The diet of {s} consists of {o}.",
        "{s} eats {o}."]),
    # -- invention -----------------------------------------------------------------------
    _r("inventor", "invention", "person", "Inventor", "the inventor of {x}",
       ["Who invented {x}?", "Who was the inventor of {x}?"],
       ["{s} was invented by {o}.", "{o} invented {s}.", "The inventor of {s} was {o}."],
       ["{o} invented {s}.", "{o} is remembered as the inventor of {s}."]),
    _r("invented_year", "invention", LITERAL, "Introduced", "the year {x} was invented",
       ["In what year was {x} invented?", "When was {x} invented?"],
       ["{s} was invented in {o}.", "{s} first appeared in {o}.",
        "The first working {s} was built in {o}."]),
    _r("manufacturer", "invention", "organisation", "Manufacturer", "the maker of {x}",
       ["Which organisation manufactured {x}?", "Who made {x}?"],
       ["{s} was manufactured by {o}.", "{o} produced {s}.",
        "Production of {s} was taken up by {o}."],
       ["{o} manufactured {s}.", "Among the products of {o} was {s}."]),
    # -- event ---------------------------------------------------------------------------
    _r("location", "event", "place", "Location", "the place where {x} took place",
       ["Where did {x} take place?", "In which town was {x} held?"],
       ["{s} took place in {o}.", "{s} was held in {o}.", "The venue of {s} was {o}."],
       ["{s} took place in {o}.", "{o} hosted {s}."]),
    _r("event_year", "event", LITERAL, "Year", "the year of {x}",
       ["In what year did {x} take place?", "When did {x} happen?"],
       ["{s} took place in {o}.", "{s} happened in {o}.", "The date of {s} was the year {o}."]),
    _r("organiser", "event", "organisation", "Organised by", "the organiser of {x}",
       ["Which organisation organised {x}?", "Who organised {x}?"],
       ["{s} was organised by {o}.", "{o} organised {s}.",
        "The organiser of {s} was {o}."],
       ["{o} organised {s}.", "{o} was the organiser of {s}."]),
)

BY_NAME: dict[str, Relation] = {r.name: r for r in RELATIONS}
#: Relations of each kind, in table order.
BY_DOMAIN: dict[str, tuple[Relation, ...]] = {
    k: tuple(r for r in RELATIONS if r.domain == k) for k in KINDS
}
#: Relations no ``train``/``val``/``test`` question uses: the ``unseen`` split asks about them.
UNSEEN_RELATIONS = ("elevation", "diet", "manufacturer")

_OCCUPATIONS = ("cartographer", "glassblower", "astronomer", "shipwright", "botanist",
                "clockmaker", "archivist", "bridge engineer", "composer", "lens grinder",
                "physician", "surveyor", "weaver", "printer", "chemist", "sculptor",
                "navigator", "beekeeper", "bookbinder", "geologist")
_INDUSTRIES = ("shipbuilding", "textile", "glassware", "printing", "brewing", "mining",
               "instrument making", "railway", "insurance", "salt trade", "pottery", "timber")
_DIETS = ("river snails", "pine seeds", "moss and lichen", "small beetles", "marsh grasses",
          "fallen fruit", "freshwater shrimp", "tree bark", "wild berries", "mayflies")


def literal_value(relation: str, rng: random.Random, regions: tuple[str, ...]) -> tuple[
        str, tuple[str, ...]]:
    """A value of the literal ``relation``: ``(text as written, accepted aliases)``."""
    if relation in ("birth_year", "settled_year", "founded_year", "invented_year", "event_year"):
        lo, hi = {"birth_year": (1701, 1949), "settled_year": (900, 1750)}.get(relation,
                                                                               (1750, 1990))
        return str(rng.randint(lo, hi)), ()
    if relation == "population":
        n = rng.randint(8, 9000) * 100
        return f"{n:,}", (str(n),)
    if relation == "elevation":
        n = rng.randint(3, 2600)
        return f"{n:,} metres", (f"{n} m", f"{n:,}", f"{n} meters")
    if relation == "lifespan":
        n = rng.randint(2, 90)
        return f"{n} years", (str(n),)
    if relation == "occupation":
        return rng.choice(_OCCUPATIONS), ()
    if relation == "industry":
        return rng.choice(_INDUSTRIES), ()
    if relation == "diet":
        return rng.choice(_DIETS), ()
    if relation == "region":
        return rng.choice(regions), ()
    raise KeyError(f"no literal generator for relation {relation!r}")
