"""The main job (`rlft demo`) over several seeds: is IL+RL >= IL + 15 points on held-out goals
(+20 on the research wiki)?

    python benchmarks/main_job.py [--seeds 0 1 2]

Each seed runs the whole job on its embedded defaults (`MainJobArgs`: 20 expert demos of the
hard store rlft/Shop-v1 -> imitation of the MiniLM ChoicePolicy -> PPO (the research wiki:
self-training) -> random / IL / IL+RL /
expert on 200 test-split episodes each, and IL / IL+RL on the unseen categories and on a store
built from catalog_seed 1) in its own directory under --work, timing it end to end. Writes
benchmarks/results/main_job.{md,json}: every seed's tables, the mean IL -> IL+RL lift and the
wall time per run (with the load average, since the machine is shared). ``--env`` runs the job
on another env (e.g. rlft/Shop-v0, the easy store; rlft/Research-v0, the second main job) and
writes main_job_<env>.{md,json}.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tyro

from rlft.training.cli import main as _cli  # noqa: F401  (the rlft command's OpenMP setting)
from rlft.training.evaluate import markdown_table
from rlft.training.main_job import (
    MainJobArgs,
    generalisation_table,
    run_main_job,
    unanswerable_line,
)
from rlft.training.presets import env_family

RESULTS = Path(__file__).parent / "results" / "main_job"


@dataclass
class Args:
    """Main-job benchmark over seeds."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds, one full run each."""
    work: Path = Path("runs/bench-main-job")
    """Run directories (cleared first, so every stage is timed)."""
    env: str = MainJobArgs.env
    """The job's env (the default: the main job's)."""


def main(args: Args) -> None:
    """Run the job per seed and write the results."""
    runs = []
    for seed in args.seeds:
        job = MainJobArgs(out=str(args.work / f"seed{seed}"), seed=seed, env=args.env)
        shutil.rmtree(job.out, ignore_errors=True)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        results = run_main_job(job)
        wall = time.perf_counter() - t0
        by_name = {r.name: r for r in results}
        held = json.loads((Path(job.out) / "results.json").read_text()).get("held_out", {})
        runs.append({"seed": seed, "wall_s": wall, "load_before": load_before,
                     "load_after": os.getloadavg()[0],
                     "results": [r.to_dict() for r in results],
                     "lift": by_name["IL+RL"].success - by_name["IL"].success,
                     "table": markdown_table(results), "held_out": held,
                     "general": generalisation_table(results, held),
                     "answers": unanswerable_line(held)})
    lifts = [r["lift"] for r in runs]
    defaults = asdict(MainJobArgs(env=args.env).resolved())
    rl = defaults["rl"]
    stage_keys = ("updates",) if rl == "ppo" else ("rounds", "episodes", "sampler")
    defaults = {k: v for k, v in defaults.items() if k not in ("out", "imitate", "ppo", "rest")
                } | {"imitate.epochs": defaults["imitate"]["epochs"]} | {
        f"{rl}.{k}": defaults[rl][k] for k in stage_keys}
    target = 20 if env_family(args.env) == "research" else 15
    lines = [f"# Main job: imitation then {'PPO' if rl == 'ppo' else 'self-training'} on "
             f"{args.env}", "",
             "Produced by `python benchmarks/main_job.py` (each seed = one `rlft demo` run on "
             f"its defaults: {json.dumps(defaults)}).",
             "", f"Target: IL+RL success >= IL success + {target} points, within 20 minutes per "
             "run.",
             "", "| seed | IL success | IL+RL success | lift (points) | wall time | load avg |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        res = {x["name"]: x for x in r["results"]}
        lines.append(f"| {r['seed']} | {res['IL']['success']:.3f} | {res['IL+RL']['success']:.3f} "
                     f"| {100 * r['lift']:+.1f} | {r['wall_s'] / 60:.1f} min "
                     f"| {r['load_before']:.1f} -> {r['load_after']:.1f} |")
    lines += ["", f"Mean lift: {100 * sum(lifts) / len(lifts):+.1f} points over "
              f"{len(lifts)} seeds.", ""]
    for r in runs:
        lines += [f"## Seed {r['seed']}", "", r["table"], ""]
        if r["general"]:
            lines += ["Generalisation (success, 95% CI):", "", r["general"], ""]
        if r.get("answers"):
            lines += [r["answers"], ""]
    out = RESULTS if args.env == MainJobArgs.env else RESULTS.with_name(
        "main_job_" + args.env.split("/")[-1].lower().replace("-", "_"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(runs, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
