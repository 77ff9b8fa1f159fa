"""The agent protocol every rlft agent implements, so every agent can be benchmarked."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Agent(Protocol):
    """Anything with ``reset()`` and ``act(obs, info) -> action``.

    ``reset`` is called at the start of every episode; ``act`` gets the latest observation and
    info dict (web envs list ``info["valid_actions"]``) and returns the env's action.
    """

    def reset(self) -> None:
        """Forget the previous episode."""

    def act(self, obs: Any, info: dict[str, Any]) -> Any:
        """The action to take now."""
