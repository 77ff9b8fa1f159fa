"""Why the pyramid fails: where each agent aims its blocks, row by row, on the same seeded test
games.

    python benchmarks/tabletop_pyramid_errors.py [--work runs/bench-tabletop-multi]
        [--agents NAME=PATH ...] [--episodes 100]

The pyramid is built position by position: three blocks on the brown squares (the bottom row),
then two "on the a and b blocks" (the middle row: each across two blocks below) and one on top
(across the middle two). A block counts when it lies within 15 mm of its position. Success
alone does not say which move an agent cannot make; this script plays each agent greedily
through ``--episodes`` test games of ``rlft/StackBlockPyramid-v0`` (seeds 10,000, 10,001, ...:
the multi-task benchmark's games) and, before every move, reads the task's own measure of the
aimed place (:meth:`StackBlockPyramid.aim_errors`): its distance to the position's target, and
for the upper rows to the midpoint of the two blocks below as they stand and to the nearer of
their centres (a place on one block, not across two). It also reports the position each game
stopped at. By default the agents are the checkpoints ``benchmarks/tabletop_multitask.py``
left under ``--work`` (IL(10), IL(100) and the RL agents from IL(10), where present).

``--samples DIR ...`` also replays recorded episodes (a ``rlft train rest`` round's
``round-N/samples``, or any ``rlft collect`` output of the pyramid or ``rlft/Tabletop-v0``)
action by action and measures their bridge moves the same way, split by whether the move
filled its position: what self-training imitates (the rewarded moves) against what it drops.

Writes ``benchmarks/results/tabletop_pyramid_errors.{md,json}``.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
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
from rlft.envs.tabletop.tasks.stack_block_pyramid import StackBlockPyramid
from rlft.training.demos import load_demos
from rlft.training.evaluate import wilson_interval

RESULTS = Path(__file__).resolve().parent / "results" / "tabletop_pyramid_errors"
ENV_ID = "rlft/StackBlockPyramid-v0"
TOLERANCE_MM = 15.0
PYRAMID = StackBlockPyramid.name


@dataclass
class Args(PlayArgs):
    """Where each agent aims the pyramid's blocks, bottom row and bridges."""

    samples: tuple[Path, ...] = ()
    """Recorded episodes to replay (folders with ``trajectories.jsonl`` and ``meta.json``):
    their bridge moves, rewarded and not."""
    out: Path = RESULTS
    """The results files, OUT.md and OUT.json."""


def play(spec: str, episodes: int, seed: int) -> dict[str, list]:
    """Every move's aim errors (mm) by row, and each game's success and stopping position."""
    env = gym.make(ENV_ID, split="test")
    moves: dict[str, list] = {"bottom": [], "bridge": [], "games": []}
    try:
        agent = make_agent(spec, env, seed=seed)
        task, sim = env.unwrapped.task, env.unwrapped.sim
        for i in range(episodes):
            obs, info = env.reset(seed=seed + i)
            agent.reset()
            done = False
            while not done:
                k = task.next_position(sim)
                action = np.asarray(agent.act(obs, info))
                if k < 6:
                    errors = {name: 1000 * v
                              for name, v in task.aim_errors(sim, k, action[2:4]).items()}
                    moves["bottom" if k < 3 else "bridge"].append(errors)
                obs, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
            moves["games"].append({"success": bool(info["success"]),
                                   "stopped_at": task.next_position(sim)})
        return moves
    finally:
        env.close()


def replay_bridges(directory: Path) -> dict[str, list[dict[str, float]]]:
    """The aim errors (mm) of every bridge move in the pyramid episodes recorded under
    ``directory``, replayed action by action from their seeds: ``filled`` (the move filled
    its position) and ``missed``."""
    meta, episodes = load_demos(directory)
    env = gym.make(meta["env_id"], split=meta.get("split", "train"),
                   **meta.get("env_kwargs", {}))
    out: dict[str, list[dict[str, float]]] = {"filled": [], "missed": []}
    try:
        task_name = env.unwrapped.task.name if not env.unwrapped.multi_task else PYRAMID
        for steps in episodes:
            if steps[0].get("task", task_name) != PYRAMID:
                continue
            obs, _ = env.reset(seed=steps[0]["seed"], options={"task": PYRAMID})
            if obs["goal"] != steps[0]["goal"]:
                raise ValueError(f"{directory}: episode {steps[0]['episode']} does not replay "
                                 f"(goal {obs['goal']!r}, recorded {steps[0]['goal']!r})")
            task, sim = env.unwrapped.task, env.unwrapped.sim
            for step in steps:
                k = task.next_position(sim)
                action = np.asarray(step["action"], dtype=np.float32)
                errors = task.aim_errors(sim, k, action[2:4]) if 3 <= k < 6 else None
                env.step(action)
                if errors is not None:
                    out["filled" if task.next_position(sim) > k else "missed"].append(
                        {name: 1000 * v for name, v in errors.items()})
        return out
    finally:
        env.close()


def aim_summary(moves: list[dict[str, float]]) -> dict[str, float | None]:
    """Moves' median aim error and share within the tolerance of the target; for bridge moves
    (with ``midpoint``) also the median distance to the midpoint of the two blocks below and
    the shares within 10 mm of it and on one of the two blocks (within 10 mm of its centre).
    None where there were no moves."""
    if not moves:
        return dict.fromkeys(("median_target_mm", "within_tolerance", "median_midpoint_mm",
                              "near_midpoint", "on_one_block")) | {"moves": 0}
    target = [m["target"] for m in moves]
    out: dict[str, float | None] = {
        "moves": len(moves), "median_target_mm": float(np.median(target)),
        "within_tolerance": float(np.mean([t < TOLERANCE_MM for t in target]))}
    if all("midpoint" in m for m in moves):
        out["median_midpoint_mm"] = float(np.median([m["midpoint"] for m in moves]))
        out["near_midpoint"] = float(np.mean([m["midpoint"] < 10 for m in moves]))
        out["on_one_block"] = float(np.mean([m["support"] < 10 for m in moves]))
    return out


def summarize(moves: dict[str, list]) -> dict:
    """Success, where the games stopped, and :func:`aim_summary` of each row's moves."""
    games = moves["games"]
    n = len(games)
    k = sum(g["success"] for g in games)
    return {"success": k / n, "success_ci": wilson_interval(k, n),
            "stopped_at": dict(sorted(Counter(g["stopped_at"] for g in games).items())),
            "bottom": aim_summary(moves["bottom"]), "bridge": aim_summary(moves["bridge"])}


def cell(value: float | None, fmt: str) -> str:
    """A table cell, '-' where there was no such move."""
    return "-" if value is None else format(value, fmt)


BRIDGE_COLUMNS = ["bridge moves", "bridges: median aim error (mm) / within 15 mm",
                  "bridges: median distance to the midpoint of the blocks below (mm) / within "
                  "10 mm of it", "bridges aimed on one block"]


def bridge_cells(r: dict[str, float | None]) -> str:
    """The :data:`BRIDGE_COLUMNS` cells of an :func:`aim_summary` of bridge moves."""
    return (f"{r['moves']} | {cell(r['median_target_mm'], '.1f')} / "
            f"{cell(r['within_tolerance'], '.2f')} | {cell(r.get('median_midpoint_mm'), '.1f')}"
            f" / {cell(r.get('near_midpoint'), '.2f')} | {cell(r.get('on_one_block'), '.2f')}")


def main(args: Args) -> None:
    agents = played_agents(args, "tabletop_pyramid_errors", required=not args.samples)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    rows = measure_each(agents, lambda spec: summarize(play(spec, args.episodes, args.seed)),
                        "tabletop_pyramid_errors")
    replays = {}
    for directory in args.samples:
        try:
            moves = replay_bridges(directory)
        except (FileNotFoundError, ValueError, KeyError) as e:
            sys.exit(f"tabletop_pyramid_errors: --samples {directory}: {e}")
        replays[str(directory)] = {part: aim_summary(m) for part, m in moves.items()}
        print(directory, replays[str(directory)], flush=True)
    lines: list[str] = []
    if rows:
        header = ["agent", "success", "games stopped at position 3 (the first bridge)",
                  "bottom row: median aim error (mm) / within 15 mm", *BRIDGE_COLUMNS]
        lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        for name, r in rows.items():
            lo, hi = r["success_ci"]
            lines.append(
                f"| {name} | {r['success']:.2f} [{lo:.2f}, {hi:.2f}] | "
                f"{r['stopped_at'].get(3, 0)} of {args.episodes} | "
                f"{cell(r['bottom']['median_target_mm'], '.1f')} / "
                f"{cell(r['bottom']['within_tolerance'], '.2f')} | {bridge_cells(r['bridge'])} |")
    if replays:
        header = ["recorded episodes", "bridge moves (filled their position, or missed)",
                  *BRIDGE_COLUMNS[1:]]
        lines += (["", "**bridge moves of recorded episodes, replayed**", ""] if lines else [])
        lines += ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
        for directory, parts in replays.items():
            for part, r in parts.items():
                lines.append(f"| `{directory}` | {part}: {bridge_cells(r)} |")
    seconds = time.perf_counter() - t0
    note = (f"{measured_by(seconds, load0)}. "
            f"{args.episodes} greedy games of {ENV_ID}'s test split per agent, seeds "
            f"{args.seed} to {args.seed + args.episodes - 1}, each played to its end (up to 12 "
            f"moves). Every move is counted at the position it was made for (a retried "
            f"position counts again). \"On one block\": the aimed place within 10 mm of the "
            f"centre of one of the two blocks the bridge should rest on (they stand 50 mm "
            f"apart, so a bridge's place is 25 mm from each). Where each game stopped "
            f"(position 0-5, 6 built), in the JSON.")
    write_results(args.out, lines + ["", note],
                  {"agents": agents, "rows": rows, "replays": replays, "episodes": args.episodes,
                   "seed": args.seed, "seconds": seconds})


if __name__ == "__main__":
    main(tyro.cli(Args))
