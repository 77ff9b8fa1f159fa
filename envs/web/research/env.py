"""``rlft/Research-v0``: answer a question by browsing an offline wiki, with WebGPT's commands."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from rlft.envs.graders import build_grader
from rlft.envs.web.actions import SEARCH_PLACEHOLDER, ActionError, ParsedAction
from rlft.envs.web.env import REWARD_MODES, WebEnv, check_choice, option_index
from rlft.envs.web.research.corpus import DEFAULT_SIZE, build_corpus
from rlft.envs.web.research.grader import Grader, check_evidence_reward, check_rewards, grade
from rlft.envs.web.research.questions import SPLITS, Question, question_pool
from rlft.envs.web.research.search import build_search
from rlft.envs.web.research.site import WikiSite
from rlft.envs.web.research.viewport import HEIGHT, SCROLL, Layout, layout

#: Entries of ``info["valid_actions"]`` that stand for a command with any free-text argument.
FIND_PLACEHOLDER = "find[...]"
QUOTE_PLACEHOLDER = "quote[...]"
ANSWER_PLACEHOLDER = "answer[...]"
#: Most quotes an episode may collect.
MAX_QUOTES = 20


@lru_cache(maxsize=4)
def build_site(size: int = DEFAULT_SIZE, seed: int = 0) -> WikiSite:
    """The wiki over corpus ``(size, seed)``, shared by every env of the process."""
    return WikiSite(build_corpus(size, seed), build_search(size, seed))


class ResearchEnv(WebEnv):
    """Answer a question about fictional facts by searching, reading and quoting a wiki.

    The agent starts on the wiki's home page with a question such as *"What is the population
    of the birthplace of the founder of Corvane Works?"*. The facts are invented, so the answer
    must be found by browsing: search (BM25), open articles, move the viewport, quote evidence,
    then answer, or abstain when the wiki lacks the fact.

    ## Action Space
    A string (``UnicodeText(512)``), one of WebGPT's commands: ``search[query]``,
    ``click[link text]`` (a link in view), ``find[text]`` (move the view to the next
    occurrence), ``scroll[down]``, ``scroll[up]`` (by the viewport's height less two lines),
    ``top``, ``back``, ``quote[text]`` (save an exact span of the current page),
    ``answer[text]``, ``abstain``.
    ``info["valid_actions"]`` lists the links in view and the commands that apply; free-text
    arguments appear as the placeholders ``search[...]``, ``find[...]``, ``quote[...]`` and
    ``answer[...]``.

    ## Observation Space
    ``Dict(goal=UnicodeText, page=UnicodeText)``: the question, and a 12-line viewport of the
    current page (text_rich link markers), a position line, and the quotes so far
    (``observation_mode="text"``), or the page's raw HTML (``"html"``).

    ## Rewards
    Only at the end (``answer`` or ``abstain``), from the abstention table ``rewards``
    (default ``{"correct": 1.0, "abstain": 0.0, "wrong": -1.0}``). ``sparse``: ``correct`` if
    the normalised answer matches the answer or an alias, else ``wrong``. ``shaped``:
    ``wrong + F1 * (correct - wrong)`` with token F1 as partial credit. Abstaining pays
    ``abstain``, or ``correct`` when the wiki lacks the fact (then any answer is ``wrong``).
    A ``grader`` replaces exact match / F1: its output, clipped to [0, 1], is the score, and
    ``>= 0.5`` is correct (``shaped`` pays ``wrong + score * (correct - wrong)``).
    ``evidence_reward`` (default 0) adds process credit for training: quoting a sentence that
    states a fact on the question's gold path pays ``evidence_reward / hops`` the first time
    (at most ``evidence_reward`` per episode). It is paid whatever the ending, so it does not
    change whether answering or abstaining is worth more at the end.

    ## Episode End
    Terminates on ``answer`` or ``abstain``; truncated after ``max_episode_steps`` (30 by
    default) with reward 0.

    ## Arguments
    * ``reward_mode``: ``"sparse"`` (default) | ``"shaped"``.
    * ``split``: ``"train"`` | ``"val"`` | ``"test"`` (disjoint questions and anchor pages) |
      ``"unseen"`` (relations ``train`` never asks about).
    * ``rewards``: the abstention table (partial dicts are filled from the default).
    * ``evidence_reward``: process credit for quoting the gold evidence (a finite number >= 0;
      default 0, the task's own reward).
    * ``grader``: a grader config, a dict or its JSON string in the public grader format
      (``string_check``, ``text_similarity``, ``python``, ``score_model``, ``multi``; see
      ``rlft.envs.graders``), which grades sample ``{"output_text": answer}`` against item
      ``{"question", "answer", "references"}``, e.g.
      ``{"type": "string_check", "input": "{{sample.output_text}}",``
      ``"reference": "{{item.answer}}", "operation": "ilike"}``; or a callable
      ``(question, answer, references) -> float`` such as a model judge. Pass it to
      ``gym.make``; it is not part of the registered spec.
    * ``corpus_size``: number of articles (default 5,000; built once per process).
    * ``corpus_seed``: seed of the generated wiki and questions (default 0).
    * ``answerable``: keep only the split's answerable (``True``) or unanswerable (``False``)
      questions (default ``None``: all). Unanswerable questions are about 7% of a split (63 of
      the test split's 900), so ``answerable=False`` is how to measure hallucination on more
      than a handful of them.
    * ``unanswerable_share``: draw an unanswerable question with this probability at each reset
      (a number in [0, 1]; default ``None``: the split's own mix, about 7%). A training
      curriculum: abstention is learnt from the questions where the wiki lacks the fact, and
      the natural mix has few of them. Not with ``answerable``, nor with a split that lacks
      either kind.
    * ``observation_mode``: ``"text"`` | ``"html"``; ``backend``: ``"text"``;
      ``render_mode``: ``"ansi"`` | ``"human"``.

    ``reset(options={"question_index": i})`` picks question ``i`` of the split. ``info`` has
    ``question_index``, ``answered``, ``abstained``, ``answerable`` (the wiki states the fact)
    ``quotes`` (how many were collected) and ``evidence`` (how many of the gold path's fact
    sentences were quoted); :meth:`episode_metrics` turns the last infos of
    many episodes into the rates evaluation reports.
    """

    commands = frozenset({"search", "click", "find", "scroll", "back", "top", "quote", "answer",
                          "abstain"})

    def __init__(self, *, reward_mode: str = "sparse", split: str = "train",
                 rewards: dict[str, float] | None = None, evidence_reward: float = 0.0,
                 grader: Grader | Mapping[str, Any] | str | None = None,
                 corpus_size: int = DEFAULT_SIZE, corpus_seed: int = 0,
                 answerable: bool | None = None, unanswerable_share: float | None = None,
                 observation_mode: str = "text", backend: str = "text",
                 render_mode: str | None = None, backend_options: dict[str, Any] | None = None):
        self.reward_mode = check_choice("reward_mode", reward_mode, REWARD_MODES)
        self.split = check_choice("split", split, SPLITS)
        self.rewards = check_rewards(rewards)
        self.evidence_reward = check_evidence_reward(evidence_reward)
        # A config (dict or JSON) is built here; a callable is kept as it is. A bad config
        # raises GraderConfigError (a ValueError) naming the field.
        self.grader: Grader | None = (
            grader if grader is None or callable(grader) else build_grader(grader))
        self.questions: tuple[Question, ...] = question_pool(split, corpus_size, corpus_seed)
        if answerable is not None:
            if not isinstance(answerable, bool):
                raise ValueError(f"answerable must be True, False or None (all questions); got "
                                 f"{answerable!r}")
            self.questions = tuple(q for q in self.questions if q.answerable == answerable)
            if not self.questions:
                raise ValueError(f"split {split!r} has no {'' if answerable else 'un'}answerable "
                                 f"questions (corpus_size={corpus_size}, "
                                 f"corpus_seed={corpus_seed})")
        # (indices of the answerable questions, of the unanswerable ones) with unanswerable_share
        self._pools: tuple[list[int], list[int]] | None = None
        self.unanswerable_share = unanswerable_share
        if unanswerable_share is not None:
            self._pools = self._share_pools(unanswerable_share, answerable)
        self.wiki: WikiSite = build_site(corpus_size, corpus_seed)
        super().__init__(self.wiki, observation_mode=observation_mode, render_mode=render_mode,
                         backend=backend, backend_options=backend_options)
        self.question: Question = self.questions[0]
        self.question_index = 0
        self.cursor = 0
        self.history: list[tuple[str, int]] = []
        self.quotes: list[tuple[str, str]] = []
        self.evidence: set[str] = set()
        self.answered = self.abstained = False

    def _share_pools(self, share: Any, answerable: bool | None) -> tuple[list[int], list[int]]:
        """The split's answerable and unanswerable question indices, ``unanswerable_share``
        checked: a ValueError for a share outside [0, 1], beside ``answerable``, or on a split
        that lacks a kind the share asks for."""
        import numbers

        if isinstance(share, bool) or not isinstance(share, numbers.Real) \
                or not 0.0 <= float(share) <= 1.0:
            raise ValueError(f"unanswerable_share must be a number in [0, 1] (the chance of an "
                             f"unanswerable question at each reset); got {share!r}")
        if answerable is not None:
            raise ValueError("unanswerable_share mixes answerable and unanswerable questions; "
                             "answerable keeps one kind: give one of them")
        pools: tuple[list[int], list[int]] = ([], [])
        for i, q in enumerate(self.questions):
            pools[not q.answerable].append(i)
        for kind, pool, needed in (("answerable", pools[0], float(share) < 1),
                                   ("unanswerable", pools[1], float(share) > 0)):
            if needed and not pool:
                raise ValueError(f"unanswerable_share={share}: split {self.split!r} has no "
                                 f"{kind} questions")
        return pools

    # -- episode -------------------------------------------------------------------------
    def _new_episode(self, options: dict[str, Any]) -> str:
        index = option_index(options, "question_index", len(self.questions), self.split)
        if index is None and self._pools is not None:
            pool = self._pools[bool(self.np_random.random() < self.unanswerable_share)]
            index = pool[int(self.np_random.integers(len(pool)))]
        elif index is None:
            index = int(self.np_random.integers(len(self.questions)))
        self.question_index, self.question = index, self.questions[index]
        self.cursor, self.history, self.quotes, self.evidence = 0, [], [], set()
        self.answered = self.abstained = False
        return self.question.text

    @property
    def layout(self) -> Layout:
        """The current page laid out in lines."""
        return layout(self._backend.page.text)

    def visible_links(self) -> list[str]:
        """Labels of the links in the viewport."""
        return self.layout.links(self.cursor, self.cursor + HEIGHT)

    def visible_text(self) -> str:
        """The viewport's lines joined by spaces."""
        return " ".join(self.layout.lines[self.cursor:self.cursor + HEIGHT])

    # -- commands ------------------------------------------------------------------------
    def _execute(self, action: ParsedAction) -> tuple[float, bool]:
        cmd, arg = action.command, action.argument
        if cmd in ("back", "top", "abstain"):
            if arg:
                raise ActionError(f"{cmd} takes no argument; send just '{cmd}'")
        elif arg is None or not arg:
            raise ActionError(f"{cmd} needs an argument, e.g. {cmd}[...]")
        return getattr(self, f"_do_{cmd}")(arg)

    def _goto(self, navigate) -> tuple[float, bool]:
        previous = (self._backend.url, self.cursor)
        navigate()
        self.history.append(previous)
        self.cursor = 0
        return 0.0, False

    def _do_search(self, query: str) -> tuple[float, bool]:
        return self._goto(lambda: self._backend.search(query))

    def _do_click(self, label: str) -> tuple[float, bool]:
        key = " ".join(label.split()).casefold()
        if key not in {v.casefold() for v in self.visible_links()}:
            if self._backend.page.find(label) is not None:
                raise ActionError(f"link {label!r} is not in view; scroll or find[{label}] "
                                  f"to bring it into view")
            raise ActionError(f"no link {label!r} on this page")
        return self._goto(lambda: self._backend.click(label))

    def _do_find(self, text: str) -> tuple[float, bool]:
        lay = self.layout
        match = lay.search(text, self.cursor + 1) or lay.search(text, 0)
        if match is None:
            raise ActionError(f"{text!r} does not occur on this page")
        self.cursor = lay.line_of(match.start())
        return 0.0, False

    def _do_scroll(self, direction: str) -> tuple[float, bool]:
        direction = direction.strip().lower()
        n = len(self.layout.lines)
        if direction == "down":
            if self.cursor + HEIGHT >= n:
                raise ActionError("already at the end of the page; nothing below")
            self.cursor += SCROLL
        elif direction == "up":
            if self.cursor == 0:
                raise ActionError("already at the top of the page; nothing above")
            self.cursor = max(0, self.cursor - SCROLL)
        else:
            raise ActionError(f"scroll takes 'down' or 'up'; got {direction!r}")
        return 0.0, False

    def _do_top(self, _: str | None) -> tuple[float, bool]:
        self.cursor = 0
        return 0.0, False

    def _do_back(self, _: str | None) -> tuple[float, bool]:
        if not self.history:
            raise ActionError("there is no previous page to go back to")
        url, cursor = self.history[-1]
        self._backend.goto(url)
        self.history.pop()
        self.cursor = cursor
        return 0.0, False

    def _do_quote(self, text: str) -> tuple[float, bool]:
        if len(self.quotes) >= MAX_QUOTES:
            raise ActionError(f"at most {MAX_QUOTES} quotes per episode")
        match = self.layout.search(text)
        if match is None:
            raise ActionError("a quote must be an exact span of the current page; "
                              f"{text[:60]!r} is not on it")
        span = match.group(0)
        title = self.wiki.entity_at(self._backend.url)
        source = title.title if title is not None else self._backend.url
        if (source, span) in self.quotes:
            raise ActionError("already quoted")
        self.quotes.append((source, span))
        return self._evidence_credit(span), False

    def gold_sentences(self) -> list[str]:
        """The sentences stating the facts on the question's gold path (the last one is absent
        when the wiki lacks the fact)."""
        corpus = self.wiki.corpus
        facts = (corpus.entities[e].facts.get(rel) for e, rel in self.question.path)
        return [f.sentence for f in facts if f is not None]

    def _evidence_credit(self, span: str) -> float:
        """Process credit for a new quote that holds a gold fact sentence not quoted before."""
        new = [s for s in self.gold_sentences() if s in span and s not in self.evidence]
        self.evidence.update(new)
        return self.evidence_reward * len(new) / self.question.hops

    def _finish(self, answer: str | None) -> tuple[float, bool]:
        q = self.question
        out = grade(q.text, answer, q.references, reward_mode=self.reward_mode,
                    rewards=self.rewards, grader=self.grader)
        self._score, self._success = out.score, out.success
        self.answered, self.abstained = answer is not None, answer is None
        return out.reward, True

    def _do_answer(self, text: str) -> tuple[float, bool]:
        return self._finish(text)

    def _do_abstain(self, _: str | None) -> tuple[float, bool]:
        return self._finish(None)

    # -- observation and info ------------------------------------------------------------
    def _page_text(self) -> str:
        if self.observation_mode != "text":  # html (and the browser backend's modes)
            return super()._page_text()
        lines = self.layout.lines
        last = min(len(lines), self.cursor + HEIGHT)
        parts = list(lines[self.cursor:last])
        more = "; scroll[down] for more" if last < len(lines) else ""
        parts.append(f"-- lines {self.cursor + 1}-{last} of {len(lines)}{more} --")
        if self.quotes:
            parts.append("Quotes:")
            parts += [f"[{i}] {src}: \"{text}\"" for i, (src, text) in enumerate(self.quotes, 1)]
        return "\n".join(parts)

    def _valid_actions(self) -> list[str]:
        actions = [f"click[{label}]" for label in self.visible_links()]
        actions += [SEARCH_PLACEHOLDER, FIND_PLACEHOLDER, QUOTE_PLACEHOLDER]
        if self.cursor + HEIGHT < len(self.layout.lines):
            actions.append("scroll[down]")
        if self.cursor > 0:
            actions += ["scroll[up]", "top"]
        if self.history:
            actions.append("back")
        return actions + [ANSWER_PLACEHOLDER, "abstain"]

    def _extra_info(self) -> dict[str, Any]:
        return {"question_index": self.question_index, "answered": self.answered,
                "abstained": self.abstained, "answerable": self.question.answer is not None,
                "quotes": len(self.quotes), "evidence": len(self.evidence)}

    @staticmethod
    def episode_metrics(final_infos: list[dict[str, Any]]) -> dict[str, float]:
        """What evaluation reports beside success for a batch of finished episodes (their last
        ``info``): accuracy on answerable questions, how often the agent answers when the wiki
        lacks the fact (hallucinates), abstains when it has it, and quoted evidence before a
        correct answer. NaN where no episode qualifies."""
        def rate(flags: list[bool]) -> float:
            return float(sum(flags) / len(flags)) if flags else float("nan")

        answerable = [i for i in final_infos if i.get("answerable")]
        unanswerable = [i for i in final_infos if not i.get("answerable")]
        correct = [i for i in answerable if i.get("success") and i.get("answered")]
        return {"answerable accuracy": rate([bool(i.get("success")) for i in answerable]),
                "answers unanswerable": rate([bool(i.get("answered")) for i in unanswerable]),
                "abstains answerable": rate([bool(i.get("abstained")) for i in answerable]),
                "quoted before correct": rate([i.get("quotes", 0) > 0 for i in correct])}

    def expert(self):
        """The scripted expert (privileged: it follows the question's gold hop path)."""
        from rlft.envs.web.research.expert import ResearchExpert

        return ResearchExpert(self)
