"""Evaluation: run an agent for N episodes and report success and score with 95% intervals."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from rlft.agents.base import Agent


@dataclass(frozen=True)
class EpisodeResult:
    """One episode: whether it succeeded, its final score, return and length."""

    success: bool
    score: float
    ret: float
    steps: int


@dataclass(frozen=True)
class EvalResult:
    """Aggregate of many episodes; intervals are 95% (Wilson for success, normal for score)."""

    name: str
    episodes: int
    success: float
    success_ci: tuple[float, float]
    score: float
    score_ci: tuple[float, float]
    mean_return: float
    mean_steps: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return asdict(self)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (well-behaved at 0 and 1)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: Iterable[float], z: float = 1.96) -> tuple[float, float]:
    """Normal-approximation interval of a mean of values in [0, 1], clipped to [0, 1]."""
    v = np.asarray(list(values), dtype=float)
    if len(v) < 2:
        return (0.0, 1.0) if len(v) == 0 else (float(v[0]), float(v[0]))
    half = z * v.std(ddof=1) / math.sqrt(len(v))
    return (max(0.0, float(v.mean() - half)), min(1.0, float(v.mean() + half)))


def run_episode(env: gym.Env, agent: Agent, *, seed: int | None = None,
                options: dict[str, Any] | None = None) -> EpisodeResult:
    """Play one episode of ``agent`` in ``env`` to its end (termination or truncation)."""
    obs, info = env.reset(seed=seed, options=options)
    agent.reset()
    ret, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
        ret += float(reward)
        steps += 1
        if terminated or truncated:
            return EpisodeResult(bool(info.get("success", False)), float(info.get("score", 0.0)),
                                 ret, steps)


def summarize(name: str, results: list[EpisodeResult]) -> EvalResult:
    """Aggregate episode results into an :class:`EvalResult`."""
    n = len(results)
    succ = [r.success for r in results]
    scores = [r.score for r in results]
    return EvalResult(
        name, n, float(np.mean(succ)) if n else 0.0, wilson_interval(int(sum(succ)), n),
        float(np.mean(scores)) if n else 0.0, mean_interval(scores),
        float(np.mean([r.ret for r in results])) if n else 0.0,
        float(np.mean([r.steps for r in results])) if n else 0.0,
    )


def evaluate(env: gym.Env, agent: Agent, episodes: int, *, seed: int = 0, name: str = "agent",
             progress: Callable[[int], None] | None = None) -> EvalResult:
    """Run ``episodes`` episodes seeded ``seed, seed + 1, ...`` and summarise them."""
    results = []
    for i in range(episodes):
        results.append(run_episode(env, agent, seed=seed + i))
        if progress is not None:
            progress(i + 1)
    return summarize(name, results)


def markdown_table(results: list[EvalResult]) -> str:
    """A markdown table of results: success and score with their 95% intervals."""
    lines = ["| agent | episodes | success | 95% CI | score | 95% CI | steps |",
             "|---|---:|---:|---|---:|---|---:|"]
    for r in results:
        lines.append(
            f"| {r.name} | {r.episodes} | {r.success:.3f} | [{r.success_ci[0]:.2f}, "
            f"{r.success_ci[1]:.2f}] | {r.score:.3f} | [{r.score_ci[0]:.2f}, {r.score_ci[1]:.2f}]"
            f" | {r.mean_steps:.1f} |"
        )
    return "\n".join(lines)
