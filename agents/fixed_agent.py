"""An agent that always sends the same action: the trivial baselines (always ``abstain``)."""

from __future__ import annotations

from typing import Any


class FixedAgent:
    """Always acts ``action`` (``make_agent("always:abstain", env)``).

    On the research env ``always:abstain`` is the floor a policy that learns abstention must
    beat: it is right exactly on the questions the wiki cannot answer.
    """

    def __init__(self, action: Any):
        self.action = action

    def reset(self) -> None:
        """Nothing to forget."""

    def act(self, obs: Any, info: dict[str, Any]) -> Any:
        """The fixed action."""
        return self.action
