"""Valid-action helpers for the web envs: concrete candidates, their page context, queries.

``info["valid_actions"]`` lists what can be done now; ``"search[...]"``
(:data:`~rlft.envs.web.actions.SEARCH_PLACEHOLDER`) stands for any query. Policies that choose
among candidates (the choice policy, constrained LM decoding) need a finite list of concrete
actions, so :func:`expand_valid_actions` replaces the placeholder by queries proposed from the
goal (:func:`propose_queries`). :func:`candidate_context` gives each ``click[label]`` the page
text right after its button (on a results page: the product's title and price), which is what
a model needs to tell ``click[B0...]`` buttons apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rlft.envs.web.actions import SEARCH_PLACEHOLDER

_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_LEAD = re.compile(
    r"^\s*(?:i am looking for|i'm looking for|i need|i want to buy|i want|find me|looking for|"
    r"could you get me|get me|buy me|please find)\s+", re.IGNORECASE)
_PRICE_TAIL = re.compile(
    r"(?:,?\s*and price\b|\s+that costs\b|,?\s*under\s+\$?\d|\s+with a price\b|\?\s*my budget\b|"
    r",?\s*price (?:lower|below|under)\b|,?\s*less than\s+\$?\d|,?\s*below\s+\$?\d).*$",
    re.IGNORECASE | re.DOTALL)
_STOP = frozenset(
    "a an the that which is are and or with for of to in on me my i it its be this".split())
_BUTTON = re.compile(r"^\[(?:clicked )?button\] (.*?) \[(?:clicked )?button_\]$")
_DOLLARS = re.compile(r"\$\s*([0-9]+(?:\.[0-9]+)?)")
_BUDGET = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*dollars", re.IGNORECASE)

#: Most queries :func:`propose_queries` returns.
MAX_QUERIES = 4


def content_words(text: str) -> list[str]:
    """Lower-case words of ``text`` without stop words, in order."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def propose_queries(goal: str, limit: int = MAX_QUERIES) -> list[str]:
    """Search queries proposed from an instruction, most specific first, without duplicates.

    The request phrase ("i need", "find me", ...) and the price clause are cut; then the
    content words of (1) what remains, (2) what remains before its last comma (usually the
    product and its attributes, without options), (3) the first clause only, and (4) the whole
    goal are offered. A policy scores them like any other candidate.
    """
    core = _PRICE_TAIL.sub("", _LEAD.sub("", goal.strip()))
    clauses = [c for c in re.split(r"[,;?]", core) if c.strip()]
    variants = [core, ",".join(clauses[:-1]) if len(clauses) > 1 else core,
                clauses[0] if clauses else core, goal]
    out: list[str] = []
    for v in variants:
        q = " ".join(content_words(v))
        if q and q not in out:
            out.append(q)
    return out[:limit] or ["item"]


_SPAN = re.compile(r"\b(?:[A-Z][\w'-]+(?: (?:of |the )?[A-Z][\w'-]+)*|\d[\d,.]*)")
_MARKER = re.compile(r"\[(?:clicked )?button_?\]|\[search box\]")


def propose_spans(page: str, goal: str, limit: int = 8) -> list[str]:
    """Short salient spans of ``page`` (capitalised phrases and numbers not in the goal), in
    page order: the candidates for free-text commands such as ``answer[...]``."""
    goal_low = goal.lower()
    out: list[str] = []
    for m in (m for line in _MARKER.sub(" ", page).splitlines() for m in _SPAN.finditer(line)):
        span = m.group(0).strip(" ,.")
        if span and span.lower() not in goal_low and span not in out:
            out.append(span)
            if len(out) == limit:
                break
    return out


_ENTITY = re.compile(r"\b[A-Z][\w'-]+(?: (?:of |the )?[A-Z][\w'-]+)*")
_QUESTION_WORDS = frozenset("What Who Whom Whose When Where Which Why How In On At Of The".split())
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")
_QUOTE_LINE = re.compile(r'^\[\d+\] ([^:]*): "(.*)"$')
_POSITION_LINE = re.compile(r"^-- lines \d+-\d+ of \d+")
_NAME_OR_NUMBER = re.compile(r"\b[A-Z][\w'-]+(?: (?:of |the )?[A-Z][\w'-]+)*|\d[\d,.]*")
_QUANTITY = re.compile(r"\b\d[\d,.]*\d? [a-z]+")
_FIELD_LINE = re.compile(r"^([A-Z][A-Za-z' -]{0,39}):(?:\s|$)")
#: letters two words must share at the start to count as one word ("founder" ~ "founded")
_STEM = 5


def propose_entities(text: str) -> list[str]:
    """Capitalised names in ``text`` ("Corvane Works", "Ilvara Denn"), without question words,
    in order and without duplicates: search queries for a wiki."""
    out: list[str] = []
    for m in _ENTITY.finditer(text):
        words = m.group(0).split()
        while words and words[0] in _QUESTION_WORDS:
            words = words[1:]
        name = " ".join(words)
        if name and name not in out:
            out.append(name)
    return out


def strip_names(text: str) -> str:
    """``text`` without its capitalised names and numbers: what is said about them ("The last
    census counted 732,600 inhabitants in Zaelgate." -> "The last census counted
    inhabitants in ."), which is what tells a fact's relation apart."""
    return " ".join(_NAME_OR_NUMBER.sub(" ", text).split())


def page_quotes(page: str) -> list[str]:
    """The quotes an agent has collected, as a research page lists them under ``Quotes:``."""
    return [text for _, text in page_quote_sources(page)]


def page_quote_sources(page: str) -> list[tuple[str, str]]:
    """The collected quotes as ``(source page title, quoted text)`` pairs, oldest first."""
    return [(m.group(1), m.group(2)) for line in page.splitlines()
            if (m := _QUOTE_LINE.match(line.strip()))]


def names_and_numbers(text: str) -> set[str]:
    """The capitalised names and the numbers of ``text``, case-folded ("Records show that Ilvara
    Denn was born in Corvane." -> {"ilvara denn", "corvane"}). A single capitalised word that
    opens the text is left out: it is as likely a sentence's first word as a name."""
    out = set()
    for m in _NAME_OR_NUMBER.finditer(text):
        span = m.group(0).strip(" ,.")
        if m.start() == 0 and " " not in span and not span[:1].isdigit():
            continue
        if span:
            out.add(span.casefold())
    return out


def _lines_in_view(page: str) -> list[str]:
    """The lines of a paged page above its position line ("-- lines 1-12 of 22 ..."): what is
    in view, without the collected quotes listed below it. Empty without a position line."""
    lines = page.splitlines()
    end = next((i for i, line in enumerate(lines) if _POSITION_LINE.match(line)), None)
    return [] if end is None else lines[:end]


def page_fields(page: str) -> list[str]:
    """The labels of the key-value fields in view on a paged page, as an infobox shows them
    ("Population: 732,600", or "Mayor:" above its link -> ``["Population", "Mayor"]``): lines
    before the position line only, so the collected quotes below it are left out. Empty for a
    page without a position line."""
    out = [m.group(1).strip() for line in _lines_in_view(page)
           if (m := _FIELD_LINE.match(line.strip()))]
    return list(dict.fromkeys(f for f in out if f != "Error"))


def unresolved_relation(goal: str, quotes: Sequence[str]) -> str:
    """What ``goal`` asks that the collected ``quotes`` do not already state: the goal without
    names and numbers (:func:`strip_names`), less its words that a quote also uses, compared by
    their first five letters ("founder" meets "founded"). For "How many people live in the
    birthplace of the mayor of Mugate?" with the mayor and the birthplace quoted: "how many
    people live", the relation still to find. Stop words are left out; the question word
    stays ("when" asks what "where" does not)."""
    said = {w[:_STEM] for q in quotes for w in content_words(strip_names(q))}
    first = goal.split(" ", 1)[0]
    if first in _QUESTION_WORDS:  # "When was ..." asks something "Where was ..." does not
        goal = first.lower() + goal[len(first):]
    return " ".join(w for w in content_words(strip_names(goal)) if w[:_STEM] not in said)


def viewport_sentences(page: str) -> list[str]:
    """The sentences (and sentence fragments at the edges) of the text in view on a paged page:
    the lines before the position line, links and the search box left out; wrapped lines are
    joined with single spaces, as ``quote`` reads them. Empty for a page without a position
    line."""
    prose = [line.strip() for line in _lines_in_view(page)
             if line.strip() and not _BUTTON.match(line.strip())
             and not line.startswith(("[search box]", "Error:"))]
    text = " ".join(prose)
    return list(dict.fromkeys(s.strip() for s in _SENTENCE_END.split(text) if s.strip()))


def propose_answers(page: str, goal: str, limit: int = 10) -> list[str]:
    """Short answers proposed from the evidence: from each quote (newest first) its names and
    numbers and its closing words (the last, the one before it and both: "... worked as a
    bridge engineer." -> "engineer", "bridge", "bridge engineer"; "... lives for about 40
    years." -> "40 years"; a number with its unit: "1,577 metres"), then the salient spans of the page (:func:`propose_spans`)."""
    goal_low = goal.lower()
    out: list[str] = []
    for quote in reversed(page_quotes(page)):
        spans = [m.group(0).strip(" ,.") for m in _SPAN.finditer(quote)]
        tail = [w for w in _WORD.findall(quote.lower()) if w not in _STOP]
        spans += tail[-1:] + tail[-2:-1] + [" ".join(tail[i:j]) for i, j in
                                            ((-2, None), (-3, -1)) if len(tail) >= -i]
        spans += [m.group(0) for m in _QUANTITY.finditer(quote)]
        raw = _WORD.findall(quote.lower())
        if len(raw) >= 3 and raw[-2] in ("and", "of", "or"):  # "moss and lichen"
            spans.append(" ".join(raw[-3:]))
        for span in spans:
            if span and span.lower() not in goal_low and span not in out:
                out.append(span)
    out += [s for s in propose_spans(page, goal) if s not in out]
    return out[:limit]


def expand_valid_actions(goal: str, valid_actions: Sequence[str],
                         queries: Sequence[str] | None = None, page: str = "") -> list[str]:
    """``valid_actions`` made concrete: the search placeholder becomes ``search[q]`` for the
    ``queries`` (default :func:`propose_queries` of ``goal``) and the names in the goal and in
    the collected quotes (:func:`propose_entities`); ``quote[...]`` becomes one candidate per
    sentence in view (:func:`viewport_sentences`); ``answer[...]`` the answers proposed from
    the quotes and the page (:func:`propose_answers`); another ``cmd[...]`` placeholder
    (``find``, ...) ``cmd[x]`` for the two best queries and the salient spans of ``page``
    (:func:`propose_spans`)."""
    queries = list(queries or propose_queries(goal))
    spans: list[str] | None = None
    out: list[str] = []
    for a in valid_actions:
        if a == SEARCH_PLACEHOLDER:
            names = propose_entities(goal) + [n for q in page_quotes(page)
                                              for n in propose_entities(q)]
            out.extend(f"search[{q}]" for q in dict.fromkeys(queries + names))
        elif a == "quote[...]" and (sentences := viewport_sentences(page)):
            out.extend(f"quote[{x}]" for x in sentences)
        elif a == "answer[...]":
            out.extend(f"answer[{x}]" for x in dict.fromkeys(queries[:2] + propose_answers(
                page, goal)))
        elif a.endswith("[...]"):
            if spans is None:
                spans = propose_spans(page, goal)
            cmd = a[: -len("[...]")]
            out.extend(f"{cmd}[{x}]" for x in dict.fromkeys(queries[:2] + spans))
        else:
            out.append(a)
    return out


def page_buttons(page: str) -> dict[str, tuple[str, bool]]:
    """Map each button label (case-folded) on a text_rich page to (context, pressed).

    The context is the text lines right after the button up to the next button (at most two),
    e.g. a product's title and price after its ASIN button on a results page.
    """
    lines = page.splitlines()
    out: dict[str, tuple[str, bool]] = {}
    for i, line in enumerate(lines):
        m = _BUTTON.match(line.strip())
        if not m:
            continue
        ctx = []
        for nxt in lines[i + 1 : i + 3]:
            if _BUTTON.match(nxt.strip()) or nxt.startswith("[search box]"):
                break
            ctx.append(nxt.strip())
        key = m.group(1).casefold()
        if key not in out:
            out[key] = (" ".join(ctx), line.lstrip().startswith("[clicked button]"))
    return out


def action_label(action: str) -> str:
    """The argument of ``command[argument]`` (the whole string when it has no brackets)."""
    m = re.fullmatch(r"\s*[A-Za-z_]+\s*\[(.*)\]\s*", action, re.DOTALL)
    return m.group(1).strip() if m else action.strip()


def candidate_context(page: str, action: str,
                      buttons: dict[str, tuple[str, bool]] | None = None) -> tuple[str, bool]:
    """``(context, pressed)`` of ``action`` on ``page`` (empty and False for searches)."""
    if not action.lstrip().lower().startswith("click"):
        return "", False
    buttons = page_buttons(page) if buttons is None else buttons
    return buttons.get(action_label(action).casefold(), ("", False))


def price_fits(context: str, goal: str) -> float:
    """+1 when a dollar amount in ``context`` is within the goal's "N dollars" budget, -1 when
    above it, 0 when either is missing."""
    have, budget = _DOLLARS.search(context), _BUDGET.search(goal)
    if not have or not budget:
        return 0.0
    return 1.0 if float(have.group(1)) <= float(budget.group(1)) else -1.0


def match_candidate(candidates: Sequence[str], action: str) -> int:
    """Index of the candidate that stands for a demonstrated ``action``: the same string
    (case-insensitive), else for a search the proposed query sharing most words with it. A
    ValueError when none does."""
    low = action.strip().casefold()
    for k, c in enumerate(candidates):
        if c.casefold() == low:
            return k
    if low.startswith("search["):
        want = set(content_words(action_label(action)))
        best, best_k = -1.0, -1
        for k, c in enumerate(candidates):
            if c.startswith("search["):
                have = set(content_words(action_label(c)))
                sim = len(want & have) / max(1, len(want | have))
                if sim > best:
                    best, best_k = sim, k
        if best_k >= 0:
            return best_k
    raise ValueError(f"demonstrated action {action!r} is not among the candidates "
                     f"{list(candidates[:5])}...; were the demos recorded on another env?")
