"""The episode so far, owned in one place: what every policy turns into model input.

:class:`Episode` records an episode as it unfolds (observations, the env's valid actions, the
actions taken); :meth:`Episode.turn` gives the immutable :class:`Turn` a policy encodes
(``policy.encode(turn)``). The same object serves the three places that need it, so they cannot
drift apart:

* acting: a policy's ``act(obs, info)`` keeps an ``Episode`` of its own;
* imitation: :func:`rlft.training.demos.demo_turns` replays recorded demos through one;
* PPO: the runner keeps one per environment.

:func:`rollout` is the one loop that plays an agent in an env (evaluation, demo collection,
validation examples all use it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym


@dataclass(frozen=True, eq=False)
class Turn:
    """One step of an episode as a policy sees it: the current observation, the env's valid
    actions, and every earlier (observation, action) of the episode, oldest first.

    Web observations are ``{"goal", "page"}``; tabletop ones ``{"goal", "color", "depth"}``.
    ``history_observations`` may be shorter than ``history`` (a turn built from actions alone);
    :attr:`history_pages` then pads the missing pages with ``""``.
    """

    goal: str
    observation: Mapping[str, Any]
    valid_actions: tuple[str, ...] = ()
    history: tuple[Any, ...] = ()
    history_observations: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)

    @property
    def page(self) -> str:
        """The current page (web envs; ``""`` elsewhere)."""
        return str(self.observation.get("page", ""))

    @property
    def step(self) -> int:
        """How many actions the episode has taken before this turn."""
        return len(self.history)

    @property
    def history_pages(self) -> tuple[str, ...]:
        """The page before each past action (``""`` where unknown)."""
        pages = [str(o.get("page", "")) for o in self.history_observations]
        return tuple(pages + [""] * (len(self.history) - len(pages)))

    @classmethod
    def from_env(cls, obs: Mapping[str, Any], info: Mapping[str, Any],
                 history: Any = (), history_observations: Any = ()) -> Turn:
        """A turn from an env's observation and info, after the actions ``history``."""
        return cls(str(obs["goal"]), obs, tuple(info.get("valid_actions") or ()),
                   tuple(history), tuple(history_observations))


class Episode:
    """The history of one episode: :meth:`observe` what the env shows, :meth:`turn` to see the
    episode so far, :meth:`record` the action taken; :meth:`reset` starts the next episode."""

    def __init__(self) -> None:
        self._observations: list[Mapping[str, Any]] = []
        self._actions: list[Any] = []
        self._obs: Mapping[str, Any] | None = None
        self._info: Mapping[str, Any] = {}

    def reset(self) -> None:
        """Forget everything: the next :meth:`observe` starts a new episode."""
        self._observations, self._actions = [], []
        self._obs, self._info = None, {}

    def observe(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> None:
        """The env's current observation and info."""
        self._obs, self._info = obs, info

    def record(self, action: Any) -> None:
        """The action taken in the current observation (it joins the history)."""
        if self._obs is None:
            raise RuntimeError("Episode.record before observe: call observe(obs, info) first")
        self._observations.append(self._obs)
        self._actions.append(action)

    @property
    def actions(self) -> tuple[Any, ...]:
        """The actions taken so far."""
        return tuple(self._actions)

    @property
    def observation(self) -> Mapping[str, Any] | None:
        """The current observation (None before the first :meth:`observe`)."""
        return self._obs

    def turn(self) -> Turn:
        """The episode so far, at the current observation."""
        if self._obs is None:
            raise RuntimeError("Episode.turn before observe: call observe(obs, info) first")
        return Turn.from_env(self._obs, self._info, self._actions, self._observations)


@dataclass
class Transition:
    """One step of :func:`rollout`: what the agent saw, what it did, what happened."""

    obs: Any
    info: dict[str, Any]
    action: Any
    reward: float
    terminated: bool
    truncated: bool
    next_obs: Any
    next_info: dict[str, Any]


def rollout(env: gym.Env, agent: Any, *, seed: int | None = None,
            options: dict[str, Any] | None = None) -> Iterator[Transition]:
    """Play one episode of ``agent`` (``reset()``, ``act(obs, info)``) in ``env`` to its end
    (termination or truncation), yielding every step."""
    obs, info = env.reset(seed=seed, options=options)
    agent.reset()
    while True:
        action = agent.act(obs, info)
        next_obs, reward, terminated, truncated, next_info = env.step(action)
        yield Transition(obs, info, action, float(reward), bool(terminated), bool(truncated),
                         next_obs, next_info)
        if terminated or truncated:
            return
        obs, info = next_obs, next_info
