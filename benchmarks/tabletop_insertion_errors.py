"""Why block insertion fails: how far each agent's block ends from its outline, in position and
in yaw, on the same seeded test games.

    python benchmarks/tabletop_insertion_errors.py [--work runs/bench-tabletop-multi]
        [--agents NAME=PATH ...] [--episodes 100]

Block insertion succeeds when the L-shaped block ends within 1 cm and 10 degrees of its
outline. Success alone does not say which of the two an agent misses, and so what it would
have to learn; this script plays each agent greedily to the end of ``--episodes`` test games
of ``rlft/BlockInsertion-v0`` (seeds 10,000, 10,001, ...: the multi-task benchmark's games)
and reads the task's own error measure (:meth:`BlockInsertion.errors`) at the end of each.
By default the agents are the checkpoints ``benchmarks/tabletop_multitask.py`` left under
``--work`` (IL(10), IL(100) and the RL agents from IL(10), where present).

Writes ``benchmarks/results/tabletop_insertion_errors.{md,json}``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import tyro

# (benchmarks/ is on the path of a script run)
from tabletop_multitask import (
    PlayArgs,
    measure_each,
    measured_by,
    played_agents,
    write_results,
)

from rlft.agents.loading import make_agent
from rlft.envs.tabletop.tasks.block_insertion import POS_TOL, YAW_TOL
from rlft.training.evaluate import run_episode, wilson_interval

RESULTS = Path(__file__).resolve().parent / "results" / "tabletop_insertion_errors"
ENV_ID = "rlft/BlockInsertion-v0"


@dataclass
class Args(PlayArgs):
    """Position and yaw errors of block insertion, per agent."""

    out: Path = RESULTS
    """The results files, OUT.md and OUT.json."""


def play(spec: str, episodes: int, seed: int) -> list[dict[str, float]]:
    """Each game's success, centre distance (mm) and yaw error (degrees) at its end."""
    env = gym.make(ENV_ID, split="test")
    try:
        agent = make_agent(spec, env, seed=seed)
        games = []
        for i in range(episodes):
            result = run_episode(env, agent, seed=seed + i)
            task = env.unwrapped
            d, yaw = task.task.errors(task.sim)
            games.append({"success": bool(result.success), "position_mm": 1000 * d,
                          "yaw_deg": math.degrees(yaw), "steps": result.steps})
        return games
    finally:
        env.close()


def summarize(games: list[dict[str, float]]) -> dict[str, float]:
    """Shares within each tolerance, and which of the two the failures missed."""
    n = len(games)
    pos = np.array([g["position_mm"] for g in games])
    yaw = np.array([g["yaw_deg"] for g in games])
    ok_pos, ok_yaw = pos < 1000 * POS_TOL, yaw < math.degrees(YAW_TOL)
    failed = ~np.array([g["success"] for g in games])
    k = int(n - failed.sum())
    return {"success": k / n, "success_ci": wilson_interval(k, n),
            "within_1cm": float(ok_pos.mean()), "within_10deg": float(ok_yaw.mean()),
            "median_position_mm": float(np.median(pos)), "median_yaw_deg": float(np.median(yaw)),
            "failed_yaw_only": int((failed & ok_pos & ~ok_yaw).sum()),
            "failed_position_only": int((failed & ~ok_pos & ok_yaw).sum()),
            "failed_both": int((failed & ~ok_pos & ~ok_yaw).sum()),
            "failed_other": int((failed & ok_pos & ok_yaw).sum()),
            "steps": float(np.mean([g["steps"] for g in games]))}


def main(args: Args) -> None:
    agents = played_agents(args, "tabletop_insertion_errors")
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    rows = measure_each(agents, lambda spec: summarize(play(spec, args.episodes, args.seed)),
                        "tabletop_insertion_errors")
    header = ["agent", "success", "within 1 cm", "within 10 deg", "median distance (mm)",
              "median yaw error (deg)", "failed: yaw only / position only / both / other",
              "steps"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['success']:.2f} [{r['success_ci'][0]:.2f}, {r['success_ci'][1]:.2f}]"
            f" | {r['within_1cm']:.2f} | {r['within_10deg']:.2f} | {r['median_position_mm']:.1f}"
            f" | {r['median_yaw_deg']:.1f} | {r['failed_yaw_only']} / "
            f"{r['failed_position_only']} / {r['failed_both']} / {r['failed_other']}"
            f" | {r['steps']:.1f} |")
    seconds = time.perf_counter() - t0
    note = (f"{measured_by(seconds, load0)}. "
            f"{args.episodes} greedy games of {ENV_ID}'s test split per agent, seeds "
            f"{args.seed} to {args.seed + args.episodes - 1}, each played to its end (up to 4 "
            f"moves); errors of the block against its outline at the end. \"Other\" failures "
            f"are within both tolerances but not lying flat (the block ended on something).")
    write_results(args.out, lines + ["", note],
                  {"agents": agents, "rows": rows, "episodes": args.episodes, "seed": args.seed,
                   "seconds": seconds})


if __name__ == "__main__":
    main(tyro.cli(Args))
