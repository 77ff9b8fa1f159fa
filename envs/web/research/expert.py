"""The Research env's scripted expert: follows the gold hop path, quotes evidence, answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlft.envs.web.research.viewport import HEIGHT

if TYPE_CHECKING:
    from rlft.envs.web.research.corpus import Entity
    from rlft.envs.web.research.env import ResearchEnv


class ResearchExpert:
    """Acts from privileged state (the question's hop path), from any page.

    For each hop it goes to the hop's article (clicking the link when it is in view, else
    searching for the title and clicking the result), scrolls until the sentence stating the
    fact is wholly in view, and quotes it. With every fact quoted it answers; when the wiki
    lacks the last fact it abstains once it has opened the article that should state it.
    Every action it takes is one a policy can propose from the observation alone (a search for
    a name in the goal or in a quote, a link or sentence in view, an answer from a quote), so
    imitation can represent all of them. Being state-based, it recovers from any detour
    (usable as a DAgger-style corrector).
    """

    def __init__(self, env: ResearchEnv, abstains: bool = True):
        self.env = env.unwrapped
        self.abstains = abstains
        """False: an expert that never admits ignorance; where the wiki lacks the fact it
        answers a guess from the page instead (for the imitation-only comparison)."""

    def reset(self) -> None:
        """Nothing to reset: the expert reads the env's state at every step."""

    def act(self, obs: Any = None, info: Any = None) -> str:
        """The next action on the gold path."""
        env = self.env
        corpus = env.wiki.corpus
        quoted = {text for _, text in env.quotes}
        here = env.wiki.entity_at(env._backend.url)
        for entity_index, relation in env.question.path:
            entity = corpus.entities[entity_index]
            fact = entity.facts.get(relation)
            if here is not entity:
                if fact is None or fact.sentence not in quoted:
                    return self._go_to(entity)
                continue
            if fact is None:  # the wiki lacks the fact this page should state
                return "abstain" if self.abstains else self._guess()
            if fact.sentence in quoted:
                continue
            return self._bring_into_view(fact.sentence) or f"quote[{fact.sentence}]"
        return f"answer[{env.question.answer}]"

    def _bring_into_view(self, sentence: str) -> str | None:
        """A scroll that brings ``sentence`` wholly into view, or None when it is in view (or
        can never be: then it is quoted as it is)."""
        env = self.env
        if sentence in env.visible_text():
            return None
        lay = env.layout
        match = lay.search(sentence)
        if match is None:
            return None
        first, last = lay.line_of(match.start()), lay.line_of(match.end() - 1)
        if last - first >= HEIGHT:
            return None
        if last >= env.cursor + HEIGHT:
            return "scroll[down]"
        if first < env.cursor:
            return "top" if first < HEIGHT else "scroll[up]"
        return None

    def _guess(self) -> str:
        """An answer that sounds right: the first answer a policy could propose from the page."""
        from rlft.wrappers.valid_actions import propose_answers

        page = self.env._page_text()
        guesses = propose_answers(page, self.env.question.text)
        return f"answer[{guesses[0] if guesses else 'unknown'}]"

    def _go_to(self, entity: Entity) -> str:
        env = self.env
        title = entity.title
        if title.casefold() in {v.casefold() for v in env.visible_links()}:
            return f"click[{title}]"
        if env._backend.page.find(title) is not None:
            lay = env.layout
            match = lay.search(f"[button] {title} [button_]")
            if match is not None:
                line = lay.line_of(match.start())
                if line < env.cursor and env.cursor > 0:
                    return "top" if line < HEIGHT else "scroll[up]"
                return "scroll[down]"
        return f"search[{title}]"
