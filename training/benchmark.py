"""Benchmark tables: evaluate baseline agents (and later trained policies) on one env."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym

import rlft.envs  # noqa: F401  (registers the ids)
from rlft.agents import ExpertAgent, RandomAgent
from rlft.agents.base import Agent
from rlft.training.evaluate import EvalResult, evaluate


def make_baseline(name: str, env: gym.Env, seed: int = 0) -> Agent:
    """``"expert"`` (the task's oracle), ``"random"``, or a checkpoint directory for ``env``."""
    if name == "expert":
        return ExpertAgent(env)
    if name == "random":
        return RandomAgent(env.action_space, seed=seed)
    from rlft.agents.loading import make_agent

    return make_agent(name, env, seed=seed)


def evaluate_baselines(env_id: str, agents: Sequence[str], *, episodes: int, split: str = "test",
                       seed: int = 0, **env_kwargs) -> list[EvalResult]:
    """Evaluate each named baseline on ``episodes`` seeded episodes of ``env_id``'s ``split``."""
    from rich.progress import Progress

    results = []
    with Progress(transient=True) as bar:
        for name in agents:
            env = gym.make(env_id, split=split, **env_kwargs)
            task = bar.add_task(f"{name:>8}", total=episodes)
            agent = make_baseline(name, env, seed)
            results.append(evaluate(env, agent, episodes, seed=seed, name=name,
                                    progress=lambda n, t=task: bar.update(t, completed=n)))
            env.close()
    return results


def print_table(results: Sequence[EvalResult], title: str = "") -> None:
    """Print results as a rich table with 95% intervals."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("agent", "episodes", "success", "95% CI", "score", "95% CI", "steps"):
        table.add_column(col, justify="left" if col == "agent" else "right")
    for r in results:
        table.add_row(r.name, str(r.episodes), f"{r.success:.3f}",
                      f"[{r.success_ci[0]:.2f}, {r.success_ci[1]:.2f}]", f"{r.score:.3f}",
                      f"[{r.score_ci[0]:.2f}, {r.score_ci[1]:.2f}]", f"{r.mean_steps:.1f}")
    Console(width=120).print(table)
