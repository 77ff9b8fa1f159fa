"""Parsing of web actions: ``search[query]``, ``click[label]`` and bare commands like ``back``.

Malformed input never raises out of an env's ``step``: :func:`parse_action` raises
:class:`ActionError`, whose message the env puts in ``info["action_error"]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: The longest action string accepted; longer ones are rejected, not truncated.
MAX_ACTION_LENGTH = 512

#: The entry in ``info["valid_actions"]`` that stands for "search[<any query>]".
SEARCH_PLACEHOLDER = "search[...]"

_ACTION = re.compile(r"\s*([A-Za-z_]+)\s*(?:\[(.*)\])?\s*", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


class ActionError(ValueError):
    """An action that cannot be carried out; the message is shown to the agent."""


@dataclass(frozen=True)
class ParsedAction:
    """A parsed action: the command name (lower case) and its argument, if any."""

    command: str
    argument: str | None = None

    def __str__(self) -> str:
        return self.command if self.argument is None else f"{self.command}[{self.argument}]"


def _preview(text: str, limit: int = 60) -> str:
    text = text if len(text) <= limit else text[:limit] + "..."
    return repr(text)


def parse_action(action: Any, commands: frozenset[str] | set[str]) -> ParsedAction:
    """Parse ``action`` against the allowed ``commands`` or raise :class:`ActionError`.

    Args:
        action: what the agent sent, e.g. ``"click[Buy Now]"``; anything else is an error.
        commands: the command names the env understands, e.g. ``{"search", "click"}``.
    """
    if isinstance(action, bytes):
        raise ActionError("action must be a str, got bytes; decode it first")
    if not isinstance(action, str):
        raise ActionError(
            f"action must be a str such as 'click[Buy Now]', got {type(action).__name__}"
        )
    if not action.strip():
        raise ActionError("empty action; expected e.g. 'search[red shoes]' or 'click[Buy Now]'")
    if len(action) > MAX_ACTION_LENGTH:
        raise ActionError(
            f"action is {len(action)} characters long; the limit is {MAX_ACTION_LENGTH}"
        )
    if _CONTROL.search(action):
        raise ActionError(f"action {_preview(action)} contains control or binary characters")
    m = _ACTION.fullmatch(action)
    if m is None:
        raise ActionError(
            f"malformed action {_preview(action)}: expected command[argument], "
            f"e.g. 'click[Buy Now]' (check the brackets)"
        )
    command, argument = m.group(1).lower(), m.group(2)
    if command not in commands:
        raise ActionError(
            f"unknown command {command!r}; this env understands: {', '.join(sorted(commands))}"
        )
    if argument is not None:
        argument = argument.strip()
    return ParsedAction(command, argument)
