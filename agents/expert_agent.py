"""The expert as an :class:`~rlft.agents.base.Agent`: the env's scripted oracle."""

from __future__ import annotations

from typing import Any

import gymnasium as gym


class ExpertAgent:
    """Acts with ``env.unwrapped.expert()``, the task's oracle (it reads privileged state).

    Args:
        env: the env the expert acts in (any wrapper around an rlft env).
    """

    def __init__(self, env: gym.Env):
        if not hasattr(env.unwrapped, "expert"):
            raise TypeError(f"{type(env.unwrapped).__name__} has no scripted expert")
        self._expert = env.unwrapped.expert()

    def reset(self) -> None:
        """Reset the oracle's episode state."""
        self._expert.reset()

    def act(self, obs: Any, info: dict[str, Any]) -> Any:
        """The oracle's action."""
        return self._expert.act(obs, info)
