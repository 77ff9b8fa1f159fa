"""Multi-turn chat formatting for LM policies: goal, page and a window of history -> prompt.

:func:`turn_messages` is the chat of an :class:`rlft.agents.episode.Turn` (what ``LMPolicy``
encodes for acting, SFT and PPO alike); :func:`build_messages` makes the chat (system: the rules; then, per past turn, the page the
agent saw as a user message and its action as the assistant's reply; last, the current page
with the valid actions). :func:`render_prompt` applies the tokenizer's chat template when it has
one, else the plain template below, and ends where the assistant's action must start::

    ### System
    You are shopping ... Reply with exactly one action.
    ### User
    Goal: ...
    Page:
    ...
    Valid actions: search[...], click[Back to Search], ...
    ### Assistant
    search[red shoes]
    ...
    ### Assistant

:class:`ChatHistory` is the gymnasium wrapper that adds ``info["history"]`` (the episode's past
actions) and ``info["messages"]`` (the chat for the current turn, by :func:`turn_messages` over
an :class:`rlft.agents.episode.Episode`) to every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym

from rlft.agents.episode import Episode, Turn

SYSTEM_PROMPT = (
    "You are an agent in a text web browser. Reach the goal by acting on the page. "
    "Actions: search[query] where a search box is shown, click[label] for a button. "
    "Reply with exactly one action."
)
PLAIN_ROLES = {"system": "### System", "user": "### User", "assistant": "### Assistant"}
MAX_PAGE_CHARS = 1000
"""Characters of the current page in a user message (``LMPolicyConfig.max_page_chars``)."""
PAST_PAGE_CHARS = 300
"""Characters of each past page: the current page carries the detail."""


def user_message(goal: str, page: str, valid_actions: Sequence[str] = (),
                 max_page_chars: int = MAX_PAGE_CHARS) -> str:
    """The user message of one turn: goal, page (truncated) and the valid actions."""
    text = f"Goal: {goal}\nPage:\n{page[:max_page_chars]}"
    if valid_actions:
        text += "\nValid actions: " + ", ".join(valid_actions)
    return text


def build_messages(goal: str, page: str, valid_actions: Sequence[str] = (),
                   history: Sequence[tuple[str, str]] = (), window: int = 2,
                   max_page_chars: int = MAX_PAGE_CHARS) -> list[dict[str, str]]:
    """Chat messages for the current turn with the last ``window`` (page, action) turns.

    Past pages are shortened to :data:`PAST_PAGE_CHARS`: the current page carries the detail.
    """
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for past_page, action in list(history)[-window:] if window > 0 else []:
        messages.append({"role": "user",
                         "content": user_message(goal, past_page, (), PAST_PAGE_CHARS)})
        messages.append({"role": "assistant", "content": action})
    messages.append({"role": "user",
                     "content": user_message(goal, page, valid_actions, max_page_chars)})
    return messages


def turn_messages(turn: Turn, valid_actions: Sequence[str] | None = None, window: int = 2,
                  max_page_chars: int = MAX_PAGE_CHARS) -> list[dict[str, str]]:
    """:func:`build_messages` of the episode so far: ``turn``'s goal and page, its last
    ``window`` (page, action) turns, and ``valid_actions`` (default: the env's)."""
    valid = turn.valid_actions if valid_actions is None else valid_actions
    history = list(zip(turn.history_pages, (str(a) for a in turn.history), strict=True))
    return build_messages(turn.goal, turn.page, valid, history, window, max_page_chars)


def render_prompt(messages: Sequence[dict[str, str]], tokenizer: Any = None) -> str:
    """The prompt string: the tokenizer's chat template (with the generation prompt) when it
    has one, else the plain ``### Role`` template; the assistant's action follows it."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(messages), tokenize=False,
                                             add_generation_prompt=True)
    parts = [f"{PLAIN_ROLES[m['role']]}\n{m['content']}" for m in messages]
    return "\n".join(parts) + f"\n{PLAIN_ROLES['assistant']}\n"


class ChatHistory(gym.Wrapper):
    """Adds ``info["history"]`` (past actions) and ``info["messages"]`` (the chat of this turn).

    Args:
        env: a web env (observation ``{"goal", "page"}``, ``info["valid_actions"]``).
        window: how many past (page, action) turns the messages include.
    """

    def __init__(self, env: gym.Env, window: int = 2, max_page_chars: int = MAX_PAGE_CHARS):
        super().__init__(env)
        self.window = window
        self.max_page_chars = max_page_chars
        self.episode = Episode()
        """The episode so far (what a policy would encode)."""

    def _augment(self, obs: dict[str, str], info: dict[str, Any]) -> dict[str, Any]:
        self.episode.observe(obs, info)
        turn = self.episode.turn()
        info = dict(info)
        info["history"] = [str(a) for a in turn.history]
        info["messages"] = turn_messages(turn, None, self.window, self.max_page_chars)
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the env and the history."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.episode.reset()
        return obs, self._augment(obs, info)

    def step(self, action: str):
        """Step and record (page, action) in the history."""
        self.episode.record(str(action))
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._augment(obs, info)
