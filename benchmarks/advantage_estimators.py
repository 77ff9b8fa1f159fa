"""PPO-GAE against GRPO and RLOO, from the same imitation checkpoint, on the same turn budget.

    python benchmarks/advantage_estimators.py   # -> benchmarks/results/advantage_estimators.{md,json}

For each env (the hard store's main job and the research env's): the main job's imitation
checkpoint (made here from its preset demos and epochs unless ``--il`` names one), then for each
estimator and seed one ``rlft train ppo`` run of the env's preset updates, and every policy on
the same held-out test goals. ``gae`` uses the preset's 4 envs x 32 turns a update; ``grpo`` and
``rloo`` 8 envs in groups of 4 and 16 turns each, so every run takes the same number of turns
(the group methods spend them on complete episodes). Stages already in ``--work`` are reused; a
run over some envs replaces their rows of the results and keeps the others' (so each env can
have seeds of its own). No estimator is assumed to win.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro

RESULTS = Path(__file__).parent / "results" / "advantage_estimators"


@dataclass
class Args:
    """GAE vs GRPO vs RLOO."""

    envs: tuple[str, ...] = ("rlft/Shop-v1", "rlft/Research-v0")
    """Envs to compare on (each with its main job's preset)."""
    estimators: tuple[str, ...] = ("gae", "grpo", "rloo")
    """Advantage estimators (``PPOArgs.advantage``; ``gigpo`` runs in the group methods'
    shape too: ``--estimators gae grpo rloo gigpo``)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """PPO seeds (the imitation checkpoint is the same for all)."""
    il: dict[str, str] = field(default_factory=dict)
    """An existing imitation checkpoint per env (``--il rlft/Shop-v1 runs/demo/il``), else one
    is made in ``--work`` with the main job's preset."""
    group_size: int = 4
    """Rollouts per goal of the group methods."""
    episodes: int = 200
    """Test goals per policy."""
    work: Path = Path("runs/bench-advantage")
    """Where checkpoints and runs go (reused when present)."""


def imitation_checkpoint(env: str, work: Path) -> str:
    """The main job's IL stage for ``env`` on its preset (demos, epochs), made once in ``work``."""
    from rlft.training.configs import ImitateArgs
    from rlft.training.demos import collect, demos_complete
    from rlft.training.imitation import imitate
    from rlft.training.main_job import MainJobArgs
    from rlft.training.presets import preset

    job = preset(MainJobArgs, env)
    demos, il = work / "demos", work / "il"
    if not demos_complete(demos):
        collect(env, job["demos"], demos, seed=0)
    if not (il / "summary.json").exists():
        imitate(ImitateArgs(demos=str(demos), out=str(il), env=env,
                            epochs=job["imitate.epochs"], seed=0))
    return str(il)


def main(args: Args) -> None:
    """Train every (env, estimator, seed), evaluate, write the results."""
    import rlft.envs  # noqa: F401
    from rlft.training.benchmark import evaluate_agents
    from rlft.training.configs import PPOArgs
    from rlft.training.ppo import train_ppo
    from rlft.training.presets import preset

    t0 = time.perf_counter()
    rows: list[dict] = []
    for env in args.envs:
        slug = env.split("/")[-1]
        il = args.il.get(env) or imitation_checkpoint(env, args.work / slug)
        ppo = preset(PPOArgs, env)
        budget = ppo["num_envs"] * ppo["num_steps"]
        agents, walls = {"IL": il}, {}
        for est in args.estimators:
            for seed in args.seeds:
                out = args.work / slug / f"{est}-seed{seed}"
                shape = {} if est == "gae" else {
                    "num_envs": 2 * args.group_size,
                    "num_steps": budget // (2 * args.group_size),
                    "group_size": args.group_size}
                if not (out / "summary.json").exists():
                    start = time.perf_counter()
                    train_ppo(PPOArgs(env=env, policy=il, out=str(out), advantage=est, seed=seed,
                                      eval_episodes=0, checkpoint_every=0, progress=False,
                                      **shape))
                    (out / "wall.json").write_text(json.dumps({
                        "seconds": time.perf_counter() - start, "load": os.getloadavg()[0]}))
                walls[f"{est} seed {seed}"] = json.loads((out / "wall.json").read_text())
                agents[f"{est} seed {seed}"] = str(out / "policy")
        results = evaluate_agents(env, agents, episodes=args.episodes, split="test",
                                  seed=10_000)
        for r in results:
            row = {"env": env, **r.to_dict(), "updates": ppo["updates"],
                   "turns_per_update": budget}
            if r.name in walls:
                row["train_seconds"] = walls[r.name]["seconds"]
                row["load"] = walls[r.name]["load"]
            rows.append(row)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    # A run over some envs replaces their rows and keeps the others' (so envs can be run apart,
    # with seeds of their own).
    kept, runs = [], []
    if RESULTS.with_suffix(".json").exists():
        old = json.loads(RESULTS.with_suffix(".json").read_text())
        kept = [r for r in old.get("rows", []) if r["env"] not in args.envs]
        runs = [r for r in old.get("runs", []) if not set(r["args"]["envs"]) & set(args.envs)]
    runs.append({"args": {k: str(v) if isinstance(v, Path) else v
                          for k, v in vars(args).items()},
                 "seconds": time.perf_counter() - t0, "load": os.getloadavg()[0]})
    rows = kept + rows
    RESULTS.with_suffix(".json").write_text(json.dumps({"rows": rows, "runs": runs}, indent=2))
    text = report(rows, runs)
    RESULTS.with_suffix(".md").write_text(text)
    print(text)


def report(rows: list[dict], runs: list[dict]) -> str:
    """Per env: one line per run, then the mean over seeds per estimator."""
    import numpy as np

    from rlft.training.evaluate import rate_cell

    out = ["# GAE vs GRPO vs RLOO from one imitation checkpoint", "",
           "Every run starts from the env's main-job imitation checkpoint and takes the same "
           "turns (the preset's updates x turns per update); held-out test goals, the same "
           "goals for every policy, 95% Wilson intervals. Produced by:", ""]
    for run in runs:
        a = run["args"]
        out.append(f"* `python benchmarks/advantage_estimators.py --envs {' '.join(a['envs'])} "
                   f"--seeds {' '.join(map(str, a['seeds']))}` ({a['episodes']} test episodes "
                   f"per policy): {run['seconds'] / 60:.0f} minutes on a 2-core CPU for what "
                   f"was not already in `--work` (each run's training time is in its row), "
                   f"load {run['load']:.1f} at the end")
    out.append("")
    envs = list(dict.fromkeys(r["env"] for r in rows))
    estimators = list(dict.fromkeys(r["name"].split(" seed")[0] for r in rows
                                    if " seed " in r["name"]))
    for env in envs:
        mine = [r for r in rows if r["env"] == env]
        if not mine:
            continue
        rates = [k for k in ("answers unanswerable", "abstains answerable")
                 if k in mine[0].get("metrics", {})]
        out += [f"## {env}", "",
                f"{mine[0]['updates']} updates x {mine[0]['turns_per_update']} turns.", "",
                "| policy | success | 95% CI | mean reward | " + "".join(f"{k} | " for k in rates)
                + "train time | load |",
                "|---|---:|---|---:|" + "---:|" * len(rates) + "---:|---:|"]
        for r in mine:
            lo, hi = r["success_ci"]
            t = f"{r['train_seconds'] / 60:.1f} min" if "train_seconds" in r else "-"
            load = f"{r['load']:.1f}" if "load" in r else "-"
            extra = "".join(f"{rate_cell(r['metrics'].get(k))} | " for k in rates)
            out.append(f"| {r['name']} | {r['success']:.3f} | [{lo:.2f}, {hi:.2f}] | "
                       f"{r['mean_return']:+.2f} | {extra}{t} | {load} |")
        out += ["", "| estimator | mean success over seeds | min | max | mean train time |",
                "|---|---:|---:|---:|---:|"]
        for est in estimators:
            mine_est = [r for r in mine if r["name"].startswith(f"{est} seed")]
            if mine_est:
                s = [r["success"] for r in mine_est]
                out.append(f"| {est} | {np.mean(s):.3f} | {min(s):.3f} | {max(s):.3f} | "
                           f"{np.mean([r['train_seconds'] for r in mine_est]) / 60:.1f} min |")
        out.append("")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main(tyro.cli(Args))
