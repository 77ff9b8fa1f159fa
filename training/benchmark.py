"""``rlft benchmark`` and ``rlft evaluate``: agents x envs -> one table (markdown, JSON, chart).

Agents are ``expert``, ``random`` or checkpoint directories (``name=PATH`` gives a display
name), all built by :func:`rlft.agents.loading.make_agent`. Every (agent, env) pair plays the
same seeded episodes of the split; the table (:func:`rlft.training.evaluate.markdown_table`)
reports success (Wilson 95% interval), score (normal 95% interval), mean steps and acting speed
(actions/s: the agent's ``act`` calls only, env time excluded).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym

import rlft.envs  # noqa: F401  (registers the ids)
from rlft.agents.loading import BASELINES, make_agent
from rlft.training.configs import BenchmarkArgs, parse_env_kwargs
from rlft.training.evaluate import EvalResult, evaluate_side_by_side, markdown_table


class TimedAgent:
    """Wraps an agent and measures the wall time of its ``act`` calls (and ``act_many``'s: it
    has one exactly when the wrapped agent does, so it is evaluated side by side as that agent
    would be)."""

    def __init__(self, agent: Any):
        self.agent = agent
        self.seconds = 0.0
        self.actions = 0
        if hasattr(agent, "act_many"):
            self.act_many = self._act_many

    def reset(self) -> None:
        """Reset the wrapped agent."""
        self.agent.reset()

    def act(self, obs: Any, info: dict[str, Any]) -> Any:
        """The wrapped agent's action, timed."""
        t = time.perf_counter()
        action = self.agent.act(obs, info)
        self.seconds += time.perf_counter() - t
        self.actions += 1
        return action

    def _act_many(self, episodes: Sequence[Any]) -> list[Any]:
        """The wrapped policy's actions for concurrent episodes, timed (each one counts)."""
        t = time.perf_counter()
        actions = self.agent.act_many(episodes)
        self.seconds += time.perf_counter() - t
        self.actions += len(actions)
        return actions

    @property
    def actions_per_s(self) -> float:
        """Actions per second of acting time (nan before any action)."""
        return self.actions / self.seconds if self.seconds > 0 else float("nan")


def agent_name(spec: str) -> tuple[str, str]:
    """``(display name, agent spec)`` of ``NAME=PATH``, a baseline or a checkpoint path."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        return name, path
    if spec.startswith("always:"):
        return f"always-{spec[len('always:'):]}", spec
    return (spec if spec in BASELINES else Path(spec).name), spec


def evaluate_agents(env_id: str, agents: Mapping[str, str] | Sequence[str], *, episodes: int,
                    split: str = "test", seed: int = 0, timed: bool = False,
                    concurrency: int = 1, agent_seed: int | None = None,
                    **env_kwargs: Any) -> list[EvalResult]:
    """Evaluate each agent (``{name: spec}``, or specs named by :func:`agent_name`) on the
    same ``episodes`` seeded episodes of ``env_id``'s ``split`` (the agents made with
    ``agent_seed``, default ``seed``: a random agent's draws); with ``timed`` the results
    carry ``actions_per_s``. With ``concurrency`` > 1 a trainable policy plays that many
    episodes side by side (:func:`rlft.training.evaluate.evaluate_side_by_side`: its turns
    decided together, as a GPU wants); other agents play one at a time."""
    from rich.progress import Progress

    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {episodes}")
    if concurrency < 1:
        raise ValueError(f"--concurrency must be at least 1, got {concurrency}")
    named = dict(agents) if isinstance(agents, Mapping) else dict(map(agent_name, agents))
    results = []
    with Progress(transient=True) as bar:
        for name, spec in named.items():
            env = gym.make(env_id, split=split, **env_kwargs)
            try:
                agent = TimedAgent(make_agent(spec, env,
                                              seed=seed if agent_seed is None else agent_seed))
                task = bar.add_task(f"{env_id} {name}", total=episodes)

                def progress(n: int, t: Any = task) -> None:
                    bar.update(t, completed=n)

                result = evaluate_side_by_side(env, agent, episodes, concurrency=concurrency,
                                               seed=seed, name=name, progress=progress)
            finally:
                env.close()
            results.append(replace(result, actions_per_s=agent.actions_per_s) if timed
                           else result)
    return results


def start_and_result(env_id: str, start: str, name: str, result: str, episodes: int,
                     **env_kwargs: Any) -> dict[str, dict[str, Any]]:
    """A training run's closing comparison: the checkpoint it started from and the one it made
    (named ``name``) on the same ``episodes`` test-split episodes (seeds from 10,000), as
    ``{"test_start": ..., "test": ...}`` rows of its summary."""
    results = evaluate_agents(env_id, {"start": start, name: result}, episodes=episodes,
                              split="test", seed=10_000, **env_kwargs)
    return {"test_start": results[0].to_dict(), "test": results[1].to_dict()}


def run_benchmark(args: BenchmarkArgs) -> list[dict[str, Any]]:
    """Evaluate every agent on every env; write the table, JSON and chart; return the rows."""
    env_kwargs = parse_env_kwargs(args.env_kwargs, "split")
    rows = []
    for env_id in args.envs:
        named = dict(map(agent_name, args.agents))
        for result, spec in zip(evaluate_agents(env_id, named, episodes=args.episodes,
                                                split=args.split, seed=args.seed, timed=True,
                                                concurrency=args.concurrency, **env_kwargs),
                                named.values(), strict=True):
            rows.append({"env": env_id, "agent": spec, **result.to_dict(), "split": args.split,
                         **({"env_kwargs": env_kwargs} if env_kwargs else {})})
    if args.out is not None:
        write_results(rows, args.out, note=args.note)
    return rows


def markdown(rows: Sequence[dict[str, Any]], note: str = "") -> str:
    """The benchmark table in markdown (ends with a newline); the env keyword arguments of
    ``--env-kwargs``, where given, are named under it."""
    kwargs = rows[0].get("env_kwargs") if rows else None
    if kwargs:
        note = " ".join(filter(None, [note, f"Envs made with {json.dumps(kwargs)}."]))
    return markdown_table(rows, note) + "\n"


def bar_chart(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Success per agent, grouped by env, with 95% interval error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    envs = list(dict.fromkeys(r["env"] for r in rows))
    agents = list(dict.fromkeys(r["name"] for r in rows))
    width = 0.8 / max(1, len(agents))
    fig, ax = plt.subplots(figsize=(max(4, 1.8 * len(envs) * max(1, len(agents)) / 2), 3.5))
    for i, agent in enumerate(agents):
        xs, ys, lo, hi = [], [], [], []
        for j, env in enumerate(envs):
            for r in rows:
                if r["env"] == env and r["name"] == agent:
                    xs.append(j + i * width)
                    ys.append(r["success"])
                    # Wilson bounds at 0 or 1 can miss the estimate by rounding: clip at 0
                    lo.append(max(0.0, r["success"] - r["success_ci"][0]))
                    hi.append(max(0.0, r["success_ci"][1] - r["success"]))
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=agent)
    ax.set_xticks(np.arange(len(envs)) + width * (len(agents) - 1) / 2, envs)
    ax.set_ylabel("success (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(rows: Sequence[dict[str, Any]], out: Path, note: str = "") -> None:
    """Write ``out.md``, ``out.json`` and ``out.png`` (the markdown last: it marks the
    results complete)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(list(rows), indent=2))
    bar_chart(rows, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(markdown(rows, note))
