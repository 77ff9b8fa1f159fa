"""Grading answers: normalisation, exact match over aliases, token F1, and the abstention table.

An answer is graded into a score ``g`` in [0, 1] and a verdict (correct or not):

* built-in grader: ``g`` is the best token F1 against the canonical answer and its aliases
  (SQuAD-style normalisation); correct when the normalised answer equals one of them;
* a user ``grader(question, answer, references) -> float`` (e.g. a model judge): ``g`` is its
  output clipped to [0, 1]; correct when ``g >= 0.5``.

The reward comes from the abstention table ``rewards = {"correct", "abstain", "wrong"}``:
``sparse`` pays ``correct`` or ``wrong`` by the verdict, ``shaped`` interpolates
``wrong + g * (correct - wrong)``. Abstaining pays ``abstain`` on an answerable question and
``correct`` on an unanswerable one; any answer to an unanswerable question pays ``wrong``.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The default abstention table: correct > abstain > wrong teaches "I don't know".
DEFAULT_REWARDS: dict[str, float] = {"correct": 1.0, "abstain": 0.0, "wrong": -1.0}

#: A pluggable grader: ``(question, answer, references) -> score in [0, 1]``.
Grader = Callable[[str, str, Sequence[str]], float]

_NUM_COMMA = re.compile(r"(?<=\d),(?=\d{3})")
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}‘’“”–—]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, ``12,400`` -> ``12400``, punctuation to spaces, no articles, single spaces."""
    text = _NUM_COMMA.sub("", text.lower())
    text = _PUNCT.sub(" ", text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(answer: str, references: Sequence[str]) -> bool:
    """Whether the normalised answer equals a normalised reference."""
    a = normalize_answer(answer)
    return any(a == normalize_answer(r) for r in references)


def token_f1(answer: str, references: Sequence[str]) -> float:
    """The best SQuAD token F1 of ``answer`` against ``references`` (0 when there are none)."""
    a = normalize_answer(answer).split()
    best = 0.0
    for ref in references:
        r = normalize_answer(ref).split()
        if not a or not r:
            best = max(best, float(a == r))
            continue
        common = sum((Counter(a) & Counter(r)).values())
        if common:
            p, q = common / len(a), common / len(r)
            best = max(best, 2 * p * q / (p + q))
    return best


def check_rewards(rewards: Mapping[str, float] | None) -> dict[str, float]:
    """The abstention table with defaults filled in; raise ValueError on unknown keys or
    non-finite values."""
    table = dict(DEFAULT_REWARDS)
    if rewards is None:
        return table
    if not isinstance(rewards, Mapping):
        raise ValueError(f"rewards must be a dict like {DEFAULT_REWARDS}; got {rewards!r}")
    unknown = set(rewards) - set(table)
    if unknown:
        raise ValueError(f"unknown rewards keys {sorted(unknown)}; use 'correct', 'abstain', "
                         f"'wrong'")
    for key, value in rewards.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f"rewards[{key!r}] must be a finite number; got {value!r}")
        table[key] = float(value)
    return table


@dataclass(frozen=True)
class Outcome:
    """The graded end of an episode.

    Attributes:
        reward: what the agent is paid.
        score: ``info["score"]``: the grade in [0, 1] (1 for a right abstention).
        success: the verdict (a correct answer, or abstaining on an unanswerable question).
    """

    reward: float
    score: float
    success: bool


def check_evidence_reward(value: Any) -> float:
    """``evidence_reward`` as a float, or a ValueError saying what it must be."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"evidence_reward must be a number >= 0; got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(out) or out < 0:
        raise ValueError(f"evidence_reward must be a finite number >= 0; got {value!r}")
    return out


def grade(question: str, answer: str | None, references: Sequence[str], *, reward_mode: str,
          rewards: Mapping[str, float], grader: Grader | None = None) -> Outcome:
    """Grade ``answer`` (None = abstain) to a question whose accepted answers are
    ``references`` (empty = unanswerable); see the module docstring for the rules."""
    if not references:
        if answer is None:
            return Outcome(rewards["correct"], 1.0, True)
        return Outcome(rewards["wrong"], 0.0, False)
    if answer is None:
        return Outcome(rewards["abstain"], 0.0, False)
    if grader is None:
        g, correct = token_f1(answer, references), exact_match(answer, references)
        g = 1.0 if correct else g
    else:
        raw = float(grader(question, answer, list(references)))
        g = min(1.0, max(0.0, raw)) if math.isfinite(raw) else 0.0
        correct = g >= 0.5
    if reward_mode == "sparse":
        reward = rewards["correct"] if correct else rewards["wrong"]
    else:
        reward = rewards["wrong"] + g * (rewards["correct"] - rewards["wrong"])
    return Outcome(reward, g, correct)
