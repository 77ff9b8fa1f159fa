"""Lexical rule agents for the store: the few-line baselines a store must be harder than.

WebShop reports such a rule baseline (search the instruction, buy the first result: 9.6%
success). These rules read only words: they search the goal text, open a result, press the
option buttons whose words the goal contains and buy. A store on which they succeed says little
about understanding; ``benchmarks/shop_difficulty.py`` measures them.
"""

from __future__ import annotations

from typing import Any

from rlft.envs.web.actions import SEARCH_PLACEHOLDER
from rlft.wrappers.valid_actions import (
    action_label,
    content_words,
    page_buttons,
    price_fits,
    propose_queries,
)

RULES = ("first", "overlap")


class LexicalRuleAgent:
    """A word-matching shopper.

    * ``"first"``: search the goal (its content words without the request and price clauses),
      open the first result, press every option whose label's words all occur in the goal,
      buy.
    * ``"overlap"``: the same search; open the result whose title shares the most words with
      the goal among those within budget (the first on ties); per option group press the
      label sharing the most words with the goal (none when no label shares a word); buy.

    Args:
        rule: ``"first"`` or ``"overlap"``.
    """

    def __init__(self, rule: str = "first"):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        self.rule = rule

    def reset(self) -> None:
        """Nothing to forget: the rule reads the page at every step."""

    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> str:
        """The next action: search, open a result, press options, buy."""
        goal, page = str(obs["goal"]), str(obs["page"])
        valid = list(info.get("valid_actions", []))
        goal_words = set(content_words(goal))
        if "click[Buy Now]" in valid:
            buttons = page_buttons(page)
            for option in self._options(page, goal_words):
                if not buttons.get(option.casefold(), ("", False))[1]:
                    return f"click[{option}]"
            return "click[Buy Now]"
        products = [a for a in valid if action_label(a).startswith("B0")]
        if products:
            if self.rule == "first":
                return products[0]
            buttons = page_buttons(page)

            def score(a: str) -> tuple[float, int]:
                context = buttons.get(action_label(a).casefold(), ("", False))[0]
                return (price_fits(context, goal) >= 0,
                        len(set(content_words(context)) & goal_words))

            return max(products, key=score)
        if SEARCH_PLACEHOLDER in valid:
            return f"search[{propose_queries(goal)[0]}]"
        return "click[Back to Search]" if "click[Back to Search]" in valid else valid[0]

    def _options(self, page: str, goal_words: set[str]) -> list[str]:
        """Option labels to press on an item page, per group (a group: the buttons under a
        plain heading line, before the product title)."""
        groups: list[list[str]] = []
        for line in page.splitlines():
            line = line.strip()
            if line.startswith(("[button]", "[clicked button]")):
                label = line.split("]", 1)[1].rsplit("[", 1)[0].strip()
                if groups and label not in ("Back to Search", "< Prev"):
                    groups[-1].append(label)
            elif line.startswith(("Price:", "Rating:")):
                break
            elif line and not line.startswith("$"):
                groups.append([])
        chosen = []
        for labels in groups:
            if not labels:
                continue
            if self.rule == "first":
                chosen += [x for x in labels if content_words(x)
                           and set(content_words(x)) <= goal_words]
            else:
                overlap = [(len(set(content_words(x)) & goal_words), -i, x)
                           for i, x in enumerate(labels)]
                best = max(overlap)
                if best[0] > 0:
                    chosen.append(best[2])
        return chosen
