"""Tabletop speed and oracle success: steps/s and seconds per reset (observation included, at the
default 160 x 320 heightmap), per task, on one CPU core.

    python benchmarks/tabletop_speed.py [--episodes 50] [--only towers] [--all-cores]

Each task runs ``--episodes`` oracle episodes on the ``test`` split and as many on ``unseen``.
Step time is the time inside ``env.step`` (a real pick, place and settle every step, plus the
heightmap); the oracle's own thinking is timed apart. Writes
``benchmarks/results/tabletop_speed.json`` and ``tabletop_speed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from rlft.envs import tabletop_task_ids

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_STEPS_PER_S = 20.0
TARGET_RESET_S = 0.1
TASK_IDS = list(tabletop_task_ids().values())


def run(env_id: str, split: str, episodes: int) -> dict:
    """Oracle episodes: timings of reset / step / oracle, success rate, physics steps."""
    env = gym.make(env_id, split=split)
    env.reset(seed=10_000)  # warm-up: meshes parsed, caches filled, as in training
    reset_t, step_t, act_t = [], [], []
    wins, steps = 0, 0
    phys0 = env.unwrapped.sim.physics_steps
    for ep in range(episodes):
        t = time.perf_counter()
        obs, info = env.reset(seed=ep)
        reset_t.append(time.perf_counter() - t)
        expert = env.unwrapped.expert()
        term = trunc = False
        while not (term or trunc):
            t = time.perf_counter()
            action = expert.act(obs, info)
            act_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            obs, r, term, trunc, info = env.step(action)
            step_t.append(time.perf_counter() - t)
            steps += 1
        wins += bool(info["success"])
    phys = env.unwrapped.sim.physics_steps - phys0
    env.close()
    return {
        "episodes": episodes, "steps": steps, "success": wins / episodes,
        "steps_per_s": round(len(step_t) / sum(step_t), 1),
        "step_ms_p95": round(1000 * float(np.percentile(step_t, 95)), 2),
        "reset_s_mean": round(float(np.mean(reset_t)), 4),
        "reset_s_max": round(float(np.max(reset_t)), 4),
        "resets_per_s": round(len(reset_t) / sum(reset_t), 1),
        "oracle_ms_mean": round(1000 * float(np.mean(act_t)), 2),
        "physics_steps_per_env_step": round(phys / max(steps, 1), 1),
    }


def main() -> None:
    """Run every tabletop task and write the results files."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--only", default=None, help="substring of the env ids to run")
    ap.add_argument("--all-cores", action="store_true", help="do not pin to one CPU core")
    args = ap.parse_args()
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    for env_id in TASK_IDS:
        if args.only and args.only.lower() not in env_id.lower():
            continue
        test = run(env_id, "test", args.episodes)
        unseen = run(env_id, "unseen", args.episodes)
        row = {"env_id": env_id, **test, "success_unseen": unseen["success"]}
        rows.append(row)
        print(f"{env_id:28s} {row['steps_per_s']:7.1f} steps/s  reset {row['reset_s_mean']:.4f} s"
              f"  oracle success test {row['success']:.2f} unseen {row['success_unseen']:.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "pinned_to_one_core": not args.all_cores, "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), "image_size": [160, 320],
            "load_average_1min": [load_before, os.getloadavg()[0] if load_before is not None else None],
            "targets": {"steps_per_s": TARGET_STEPS_PER_S, "reset_s": TARGET_RESET_S}}
    (RESULTS / "tabletop_speed.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    lines = ["| env | steps/s (>= 20) | p95 step ms | reset s (<= 0.1) | max reset s | "
             "oracle success test | unseen | physics steps / step |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in rows:
        lines.append(f"| {m['env_id']} | {m['steps_per_s']:.0f} | {m['step_ms_p95']:.1f} | "
                     f"{m['reset_s_mean']:.4f} | {m['reset_s_max']:.4f} | {m['success']:.2f} | "
                     f"{m['success_unseen']:.2f} | {m['physics_steps_per_env_step']:.0f} |")
    (RESULTS / "tabletop_speed.md").write_text(
        f"Measured by `python benchmarks/tabletop_speed.py` on {meta['time']} "
        f"({'one core of ' if meta['pinned_to_one_core'] else ''}{meta['cpus']} CPUs, "
        f"Python {meta['python']}), {args.episodes} oracle episodes per task and split, "
        "default 160 x 320 heightmap, observation included. 1-minute load average "
        f"{meta['load_average_1min']} (start, end): other jobs shared the machine when above ~1. "
        "For scale: Ravens' own oracle measured about 1.9 s per step on this machine.\n\n"
        + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
