"""Issue 18's target, measured closer: IL(few)+RL against IL(many), task by task, on the same
seeded test games, paired.

    python benchmarks/tabletop_target.py [--work runs/bench-tabletop-multi [W ...]] [--episodes 300]
        [--tasks TASK ...] [--extra NAME=PATH ...] [--extra-only]

``benchmarks/tabletop_multitask.py`` evaluates every agent on 100 games per task and split; at
success rates near 0.9-1.0 its 95% intervals are 5-10 points wide, wider than the differences
the target turns on (IL(10)+ReST 0.87 against IL(100) 0.89 on the towers of Hanoi). This script
takes the checkpoints that benchmark left under ``--work`` and plays IL(many) and each RL agent
on the *same* ``--episodes`` games of every task's test split (seeds 10,000, 10,001, ...: the
benchmark's 100 are the first 100 of them), so each game is a pair. Per task it reports each
agent's success with its Wilson interval, and the paired difference (RL minus IL(many)) with a
95% interval and the counts of games that only one of the two won (McNemar's discordant pairs,
with the exact two-sided p-value). The target, "IL(few)+RL >= IL(many) on at least 4 of 6
tasks", is counted on the point estimates, as the issue states it, and also as "not worse
beyond the interval" (the paired difference's interval reaches 0 or above).

Imitation's own result moves from one training run to the next by as much as the differences
the target turns on (docs/results.md: IL(100)'s pyramid read 0.62 in one run of the stages and
0.78 in another), so ``--work`` takes several runs' folders (``tabletop_multitask.py --seed S
--work W_S``): each run is paired game by game as above, and a last table gives, per task, the
mean over the runs of each agent's success and of the paired difference, with the runs' own
figures beside it; the target is counted on those means and per run.

Writes ``benchmarks/results/tabletop_target.{md,json}``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import tyro
from tabletop_multitask import (  # (benchmarks/ is on the path of a script run)
    checkpoints,
    measured_by,
    named_paths,
    write_results,
)

from rlft.agents.loading import make_agent
from rlft.envs import tabletop_task_ids
from rlft.training.evaluate import paired_difference, run_episode, wilson_interval

RESULTS = Path(__file__).resolve().parent / "results" / "tabletop_target"
TASK_IDS = tabletop_task_ids()


@dataclass
class Args:
    """Paired comparison of RL from few demos against imitation of many, per tabletop task."""

    work: tuple[Path, ...] = (Path("runs/bench-tabletop-multi"),)
    """The ``--work`` folder of ``benchmarks/tabletop_multitask.py`` (its checkpoints); several
    for several training runs (each its own ``--seed``)."""
    few: int = 10
    """Demos per task that the RL agents started from."""
    many: int = 100
    """Demos per task of the imitation agent they are held against."""
    extra: tuple[str, ...] = ()
    """More RL agents from IL(few), as NAME=PATH (e.g. a self-training variant's policy),
    paired against each run's IL(many) beside the run's own."""
    extra_only: bool = False
    """Only IL(many) and the ``--extra`` agents play: the run's own RL agents (IL(few)+PPO,
    IL(few)+ReST), already measured, are left out."""
    tasks: tuple[str, ...] = ()
    """Only these tasks (e.g. ``towers-of-hanoi place-blocks-in-zone``; default: all six).
    The target is then counted over them."""
    episodes: int = 300
    """Test games per task (the same for every agent)."""
    seed: int = 10_000
    """Seed of the first game (the multi-task benchmark's)."""
    out: Path = RESULTS
    """The results files, OUT.md and OUT.json."""


def play(env_id: str, spec: str, episodes: int, seed: int) -> list[bool]:
    """Success of each of ``episodes`` greedy games seeded ``seed, seed + 1, ...``."""
    env = gym.make(env_id, split="test")
    try:
        agent = make_agent(spec, env, seed=seed)
        return [run_episode(env, agent, seed=seed + i).success for i in range(episodes)]
    finally:
        env.close()


def main(args: Args) -> None:
    if args.episodes < 1:
        sys.exit(f"tabletop_target: --episodes must be at least 1, got {args.episodes}")
    if not args.work:
        sys.exit("tabletop_target: --work needs at least one folder")
    unknown = [t for t in args.tasks if t not in TASK_IDS]
    if unknown:
        sys.exit(f"tabletop_target: unknown --tasks {', '.join(unknown)}; the tasks are "
                 f"{', '.join(TASK_IDS)}")
    tasks = {t: e for t, e in TASK_IDS.items() if not args.tasks or t in args.tasks}
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    many = f"IL({args.many})"
    extra = {name: Path(path)
             for name, path in named_paths(args.extra, "--extra", "tabletop_target").items()}
    runs = {work: {**{name: path for name, path in checkpoints(work, args.few, args.many).items()
                      if name != f"IL({args.few})" and (name == many or not args.extra_only)},
                   **extra}
            for work in args.work}
    if args.extra_only and not extra:
        sys.exit("tabletop_target: --extra-only needs --extra agents")
    missing = [str(p) for agents in runs.values() for p in agents.values()
               if not (p / "rlft_policy.json").is_file()]
    if missing:
        sys.exit(f"tabletop_target: no checkpoint at {', '.join(missing)}; run "
                 f"`python benchmarks/tabletop_multitask.py --work W` first for each --work")
    rls = [name for name in runs[args.work[0]] if name != many]
    # run -> task -> agent -> the won games
    wins: dict[Path, dict[str, dict[str, list[bool]]]] = {}
    for work, agents in runs.items():
        wins[work] = {}
        for task, env_id in tasks.items():
            wins[work][task] = {}
            for name, path in agents.items():
                t = time.perf_counter()
                wins[work][task][name] = play(env_id, str(path), args.episodes, args.seed)
                print(f"{work} {task} {name}: {sum(wins[work][task][name])}/{args.episodes} "
                      f"({time.perf_counter() - t:.0f} s)", flush=True)
    write(args, wins, many, rls, time.perf_counter() - t0, load0)


def paired_table(wins: dict[str, dict[str, list[bool]]], many: str, rls: list[str], n: int
                 ) -> tuple[list[str], list[dict], dict[str, int], dict[str, int]]:
    """One run's per-task table of successes and paired differences (markdown lines), its rows,
    and the target's two counts per RL agent."""
    header = ["task", many, *rls, *(f"{rl} - {many} (only RL won / only {many} won; p)"
                                    for rl in rls)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    rows, at_least, not_worse = [], dict.fromkeys(rls, 0), dict.fromkeys(rls, 0)
    for task, by_agent in wins.items():
        cells, row = [], {"task": task, "episodes": n}
        for name in (many, *rls):
            k = sum(by_agent[name])
            lo, hi = wilson_interval(k, n)
            cells.append(f"{k / n:.3f} [{lo:.2f}, {hi:.2f}]")
            row[name] = {"success": k / n, "ci": (lo, hi), "wins": by_agent[name]}
        for rl in rls:
            pair = paired_difference(by_agent[rl], by_agent[many])
            cells.append(f"{pair['difference']:+.3f} [{pair['ci'][0]:+.2f}, {pair['ci'][1]:+.2f}]"
                         f" ({pair['only_a']} / {pair['only_b']}; {pair['p']:.2f})")
            row[f"{rl} - {many}"] = pair
            at_least[rl] += pair["difference"] >= 0
            not_worse[rl] += pair["ci"][1] >= 0
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
        rows.append(row)
    return lines, rows, at_least, not_worse


def mean_table(runs: dict[Path, list[dict]], many: str, rls: list[str]
               ) -> tuple[list[str], dict[str, int]]:
    """Over several runs: per task, each agent's mean success and each RL agent's mean paired
    difference (the runs' own figures in brackets), and how many tasks the mean difference is
    at least 0 on."""
    header = ["task", *(f"{name} (per run)" for name in (many, *rls)),
              *(f"{rl} - {many} (per run)" for rl in rls)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    at_least = dict.fromkeys(rls, 0)
    tables = list(runs.values())
    for i, first in enumerate(tables[0]):
        task = first["task"]
        rows = [table[i] for table in tables]
        cells = []
        for name in (many, *rls):
            each = [r[name]["success"] for r in rows]
            cells.append(f"{sum(each) / len(each):.3f} ({' / '.join(f'{x:.2f}' for x in each)})")
        for rl in rls:
            each = [r[f"{rl} - {many}"]["difference"] for r in rows]
            mean = sum(each) / len(each)
            at_least[rl] += mean >= 0
            cells.append(f"{mean:+.3f} ({' / '.join(f'{x:+.2f}' for x in each)})")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines, at_least


def write(args: Args, wins: dict[Path, dict[str, dict[str, list[bool]]]], many: str,
          rls: list[str], seconds: float, load0: float) -> None:
    """Per run, the per-task table of successes and paired differences; over several runs, the
    table of means; the target's counts."""
    n = args.episodes
    played = len(next(iter(wins.values())))  # tasks played (the same in every run)
    lines: list[str] = []
    per_run: dict[Path, list[dict]] = {}
    counts = []
    for work, by_task in wins.items():
        table, rows, at_least, not_worse = paired_table(by_task, many, rls, n)
        if len(wins) > 1:
            lines += [f"**run `{work}`**", ""]
        lines += table + [""]
        per_run[work] = rows
        counts.append(f"`{work}`: " + ", ".join(
            f"{rl} {at_least[rl]}/{played} ({not_worse[rl]}/{played} not worse beyond the "
            f"interval)" for rl in rls))
    summary = {}
    if len(wins) > 1:
        table, summary = mean_table(per_run, many, rls)
        lines += [f"**mean over the {len(wins)} runs**", ""] + table + [""]
    works = ", ".join(f"`{w}`" for w in wins)
    only = "" if played == 6 else f" (counted over the {played} task{'s' * (played != 1)} played)"
    note = [
        f"{measured_by(seconds, load0)}, from the checkpoints of "
        f"`benchmarks/tabletop_multitask.py` in {works}. {n} greedy games "
        f"per task of the test split (seen colours and objects), seeds {args.seed} to "
        f"{args.seed + n - 1}, the same games for every agent; success with 95% Wilson "
        f"intervals; the paired difference with a 95% normal interval, the games only one of "
        f"the two won and McNemar's exact p-value.",
        "",
        f"Target, IL({args.few})+RL >= {many} on at least 4 of 6 tasks, on the point estimates"
        f"{only}, per run: " + "; ".join(counts) + "."
        + ("" if not summary else " On the mean over the runs: "
           + ", ".join(f"{rl} {summary[rl]}/{played}" for rl in rls) + "."),
    ]
    write_results(args.out, lines + note,
                  {"runs": {str(w): rows for w, rows in per_run.items()}, "episodes": n,
                   "seed": args.seed, "mean_at_least": summary, "seconds": seconds})


if __name__ == "__main__":
    main(tyro.cli(Args))
