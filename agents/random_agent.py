"""A uniformly random agent: the floor every benchmark table starts from."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from gymnasium import spaces

from rlft.envs.web.actions import SEARCH_PLACEHOLDER

_WORD = re.compile(r"[a-z0-9]+")


class RandomAgent:
    """Picks a random valid action.

    Web envs: uniform over ``info["valid_actions"]``; the ``search[...]`` placeholder becomes a
    query of 1-3 random words of the goal, other ``cmd[...]`` placeholders (``find``,
    ``quote``, ``answer``) 1-3 consecutive words of the page. Other envs (no
    ``valid_actions``): a sample of ``action_space`` (for tabletop envs: a random in-bounds
    pick and place).

    Args:
        action_space: the env's action space, needed when ``info`` has no ``valid_actions``.
        seed: seed of the agent's own generator.
    """

    def __init__(self, action_space: spaces.Space | None = None, seed: int | None = None):
        self.action_space = action_space
        self.rng = np.random.default_rng(seed)
        if action_space is not None:
            action_space.seed(int(self.rng.integers(2**31)))

    def reset(self) -> None:
        """Nothing to forget."""

    def act(self, obs: Any, info: dict[str, Any]) -> Any:
        """A random valid action."""
        valid = info.get("valid_actions") if isinstance(info, dict) else None
        if valid:
            action = valid[int(self.rng.integers(len(valid)))]
            if action == SEARCH_PLACEHOLDER:
                words = _WORD.findall(str(obs.get("goal", "")).lower()) or ["item"]
                n = int(self.rng.integers(1, 4))
                action = f"search[{' '.join(self.rng.choice(words, size=n))}]"
            elif action.endswith("[...]"):  # find[...], quote[...], answer[...]: a page span
                words = str(obs.get("page", "")).split() or ["item"]
                n = int(self.rng.integers(1, 4))
                start = int(self.rng.integers(max(1, len(words) - n + 1)))
                action = f"{action[:-5]}[{' '.join(words[start:start + n])}]"
            return action
        if self.action_space is None:
            raise ValueError("RandomAgent needs action_space for envs without valid_actions")
        return self.action_space.sample()
