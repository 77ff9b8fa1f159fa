"""``rlft benchmark``: several agents x several envs -> markdown table, JSON and a bar chart.

Agents are ``expert``, ``random`` or checkpoint directories (``name=PATH`` gives a display
name). Every (agent, env) pair plays the same seeded episodes of the split; the table reports
success (Wilson 95% interval), score (normal 95% interval), mean steps and acting speed
(actions/s: the agent's ``act`` calls only, env time excluded).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

import rlft.envs  # noqa: F401  (registers the ids)
from rlft.agents.loading import make_agent
from rlft.training.configs import BenchmarkArgs
from rlft.training.evaluate import evaluate


class TimedAgent:
    """Wraps an agent and measures the wall time of its ``act`` calls."""

    def __init__(self, agent: Any):
        self.agent = agent
        self.seconds = 0.0
        self.actions = 0

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

    @property
    def actions_per_s(self) -> float:
        """Actions per second of acting time."""
        return self.actions / self.seconds if self.seconds > 0 else float("inf")


def _split_name(spec: str) -> tuple[str, str]:
    if "=" in spec:
        name, path = spec.split("=", 1)
        return name, path
    return (spec if spec in ("expert", "random") else Path(spec).name), spec


def run_benchmark(args: BenchmarkArgs) -> list[dict[str, Any]]:
    """Evaluate every agent on every env; write the table, JSON and chart; return the rows."""
    from rich.progress import Progress

    rows = []
    with Progress(transient=True) as bar:
        for env_id in args.envs:
            for spec in args.agents:
                name, path = _split_name(spec)
                env = gym.make(env_id, split=args.split)
                agent = TimedAgent(make_agent(path, env, seed=args.seed))
                task = bar.add_task(f"{env_id} {name}", total=args.episodes)
                result = evaluate(env, agent, args.episodes, seed=args.seed, name=name,
                                  progress=lambda n, t=task: bar.update(t, completed=n))
                env.close()
                rows.append({"env": env_id, "agent": path, **result.to_dict(),
                             "actions_per_s": agent.actions_per_s, "split": args.split})
    if args.out is not None:
        write_results(rows, args.out, note=args.note)
    return rows


def markdown(rows: Sequence[dict[str, Any]], note: str = "") -> str:
    """The benchmark table in markdown."""
    lines = ["| env | agent | episodes | success | 95% CI | score | 95% CI | steps | actions/s |",
             "|---|---|---:|---:|---|---:|---|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['env']} | {r['name']} | {r['episodes']} | {r['success']:.3f} | "
            f"[{r['success_ci'][0]:.2f}, {r['success_ci'][1]:.2f}] | {r['score']:.3f} | "
            f"[{r['score_ci'][0]:.2f}, {r['score_ci'][1]:.2f}] | {r['mean_steps']:.1f} | "
            f"{r['actions_per_s']:.1f} |")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


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
    """Write ``out.md``, ``out.json`` and ``out.png``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(markdown(rows, note))
    out.with_suffix(".json").write_text(json.dumps(list(rows), indent=2))
    bar_chart(rows, out.with_suffix(".png"))
