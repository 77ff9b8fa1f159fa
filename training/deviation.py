"""Search for a success one turn away from the policy's own episode: self-training's
``--sampler deviate``, per-turn credit from exact replays.

On an env that replays an episode exactly from its seed and its actions (the web envs' text
backends), the value of changing one turn of the policy's greedy episode is known exactly after
one greedy completion. :func:`search_episode` plays the greedy episode; where it fails, it
replays it with one turn changed to one of the policy's next ``deviations`` likeliest actions,
the latest turn first, and completes it greedily, until one succeeds. The success found is the
policy's own episode up to the turn it got wrong, the better action, and what the policy does
from there: what self-training (:mod:`rlft.training.rest`) imitates. The latest turn goes first
because the last chance to turn an episode is the most specific lesson (abstain instead of the
wrong answer, not before looking), and it leaves the most of the policy's own episode
untouched.

``benchmarks/policy_iteration.py`` measured the credit (one deviation among the three
likeliest candidates turns 0.90-0.94 of the research env's train questions into successes) and
labels every turn that has one; this is the same search stopped at the first success found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import torch

from rlft.agents.episode import Episode


@dataclass
class SearchResult:
    """What :func:`search_episode` found for one seed.

    Attributes:
        actions: the episode to record: the greedy one, or its deviation that succeeded (the
            greedy one again when none did).
        found: ``greedy`` (it succeeded as it was), ``deviated`` or ``failed``.
        turn: the turn changed when ``deviated`` (else None).
        completions: greedy completions played, the greedy episode included.
        observations: the observation before each of ``actions``.
    """

    actions: list[Any]
    found: str
    turn: int | None = None
    completions: int = 1
    observations: list[Any] = field(default_factory=list)


def ranked(policy: Any, episode: Episode, n: int) -> list[Any]:
    """The ``n`` likeliest actions of ``policy`` for the episode so far, most likely first."""
    return policy.ranked_actions(policy.encode(episode.turn()), n)


@torch.no_grad()
def play(env: gym.Env, policy: Any, seed: int, prefix: list[Any], n: int,
         options: dict[str, Any] | None = None
         ) -> tuple[bool, list[Any], list[list[Any]], list[Any]]:
    """``prefix`` then ``policy`` greedy to the end on ``env``'s episode of ``seed``:
    (success, every action taken, the ``n`` likeliest actions at each greedy turn, the
    observation before each action)."""
    obs, info = env.reset(seed=seed, options=options)
    episode, actions, alternatives, seen, done = Episode(), [], [], [], False
    while not done:
        seen.append(obs)
        episode.observe(obs, info)
        if len(actions) < len(prefix):
            action = prefix[len(actions)]
        else:
            choices = ranked(policy, episode, n)
            alternatives.append(choices)
            action = choices[0]
        episode.record(action)
        actions.append(action)
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    return bool(info.get("success", False)), actions, alternatives, seen


def search_episode(env: gym.Env, policy: Any, seed: int, deviations: int,
                   options: dict[str, Any] | None = None) -> SearchResult:
    """The policy's greedy episode of ``seed`` if it succeeds; else the first success among
    its one-turn deviations (each of the ``deviations`` next likeliest actions, latest turn
    first, completed greedily); else the greedy episode (``found="failed"``)."""
    success, actions, alternatives, seen = play(env, policy, seed, [], deviations + 1, options)
    if success:
        return SearchResult(actions, "greedy", observations=seen)
    completions = 1
    for t in reversed(range(len(alternatives))):
        for alternative in alternatives[t][1:]:
            completions += 1
            won, tried, _, tried_seen = play(env, policy, seed, actions[:t] + [alternative], 1,
                                             options)
            if won:
                return SearchResult(tried, "deviated", t, completions, tried_seen)
    return SearchResult(actions, "failed", None, completions, seen)


@dataclass
class DeviationAgent:
    """An :class:`rlft.agents.base.Agent` for :func:`rlft.training.demos.collect` that plays,
    for the episodes of seeds ``first_seed, first_seed + 1, ...`` in order, what
    :func:`search_episode` found on its own copy ``env`` of the recording env.

    The search runs at each ``reset``; ``act`` replays its actions. Where the recording env
    shows another observation than the search did (an env that does not replay exactly), the
    agent stops replaying and acts greedily, and counts the episode in ``diverged``; the
    recorded episode is then judged by its own outcome, as any sample is.
    """

    policy: Any
    env: gym.Env
    first_seed: int
    deviations: int = 2
    counts: dict[str, int] = field(default_factory=lambda: {"greedy": 0, "deviated": 0,
                                                              "failed": 0, "diverged": 0,
                                                              "completions": 0})
    _index: int = -1
    _plan: list[Any] = field(default_factory=list)
    _seen: list[Any] = field(default_factory=list)
    _episode: Episode = field(default_factory=Episode)
    _off_plan: bool = False

    def reset(self) -> None:
        """Search the next seed's episode."""
        self._index += 1
        result = search_episode(self.env, self.policy, self.first_seed + self._index,
                                self.deviations)
        self.counts[result.found] += 1
        self.counts["completions"] += result.completions
        self._plan, self._seen = result.actions, result.observations
        self._episode = Episode()
        self._off_plan = False

    @torch.no_grad()
    def act(self, obs: Any, info: dict[str, Any]) -> Any:
        """The found episode's next action (greedy once off it)."""
        t = len(self._episode.actions)
        self._episode.observe(obs, info)
        if not self._off_plan and (t >= len(self._plan) or not same(obs, self._seen[t])):
            self._off_plan = True
            self.counts["diverged"] += 1
        action = ranked(self.policy, self._episode, 1)[0] if self._off_plan else self._plan[t]
        self._episode.record(action)
        return action


def same(a: Any, b: Any) -> bool:
    """Whether two observations are equal (dicts of texts compared key by key; what cannot be
    compared counts as equal)."""
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return True
