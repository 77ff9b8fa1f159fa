"""Environment speed: steps/s (random valid actions) and resets/s, one process, one core.

    python benchmarks/env_speed.py [--steps 20000] [--resets 2000] [--only rlft/Shop-v0]

Writes ``benchmarks/results/env_speed.json`` and ``env_speed.md``. Each configuration runs in
this process after one warm-up episode (the catalog and search index are built once per
process, like in training); the build time is reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import gymnasium as gym

import rlft.envs  # noqa: F401
from rlft.agents import RandomAgent

RESULTS = Path(__file__).resolve().parent / "results"

#: (label, env id, kwargs, target steps/s, target resets/s). Later issues append rows.
CONFIGS: list[tuple[str, str, dict, float | None, float | None]] = [
    ("Shop hard text (10k products)", "rlft/Shop-v1", {}, 3000.0, 500.0),
    ("Shop hard browser text", "rlft/Shop-v1", {"backend": "browser"}, 50.0, None),
    ("Shop text (2k products)", "rlft/Shop-v0", {}, 3000.0, 500.0),
    ("Shop text (100k products)", "rlft/Shop-v0", {"num_products": 100_000}, None, None),
    ("Research text (5k articles)", "rlft/Research-v0", {}, 3000.0, 500.0),
    ("Shop browser text", "rlft/Shop-v0", {"backend": "browser"}, 50.0, None),
    ("Shop browser html", "rlft/Shop-v0",
     {"backend": "browser", "observation_mode": "html"}, None, None),
    ("Shop browser axtree", "rlft/Shop-v0",
     {"backend": "browser", "observation_mode": "axtree"}, None, None),
    ("Shop browser screenshot 800x600", "rlft/Shop-v0",
     {"backend": "browser", "observation_mode": "screenshot"}, None, None),
]

#: Rows too slow for the default counts run at most (steps, resets).
SLOW_LIMITS: dict[str, tuple[int, int]] = {
    label: (1_000, 100) for label, _, kw, _, _ in CONFIGS if kw.get("backend") == "browser"
}
_BACKEND_KWARGS = ("backend", "observation_mode", "backend_options")


def _text_baseline(m: dict, rows: list[dict]) -> dict | None:
    """The text-backend row of the same env and settings as the browser row ``m``."""
    if m["kwargs"].get("backend", "text") == "text":
        return None
    key = {k: v for k, v in m["kwargs"].items() if k not in _BACKEND_KWARGS}
    for r in rows:
        if r["env_id"] == m["env_id"] and r["kwargs"] == key:
            return r
    return None


def measure(env_id: str, kwargs: dict, steps: int, resets: int, seed: int = 0) -> dict:
    """Build time, steps/s over ``steps`` random valid actions, resets/s over ``resets``."""
    t0 = time.perf_counter()
    env = gym.make(env_id, **kwargs)
    obs, info = env.reset(seed=seed)
    build_s = time.perf_counter() - t0
    agent = RandomAgent(env.action_space, seed=seed)
    n, episodes = 0, 0
    t0 = time.perf_counter()
    while n < steps:
        obs, r, term, trunc, info = env.step(agent.act(obs, info))
        n += 1
        if term or trunc:
            episodes += 1
            obs, info = env.reset()
    step_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(resets):
        env.reset(seed=seed + i)
    reset_s = time.perf_counter() - t0
    env.close()
    return {"build_s": round(build_s, 3), "steps": n, "episodes": episodes,
            "steps_per_s": round(n / step_s, 1), "resets": resets,
            "resets_per_s": round(resets / reset_s, 1)}


def main() -> None:
    """Run the configurations and write the results files."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--resets", type=int, default=2_000)
    ap.add_argument("--only", default=None, help="substring of the labels to run")
    args = ap.parse_args()
    rows = []
    for label, env_id, kwargs, t_steps, t_resets in CONFIGS:
        if args.only and args.only not in label and args.only != env_id:
            continue
        max_steps, max_resets = SLOW_LIMITS.get(label, (args.steps, args.resets))
        m = measure(env_id, kwargs, min(args.steps, max_steps), min(args.resets, max_resets))
        m.update(label=label, env_id=env_id, kwargs=kwargs, target_steps_per_s=t_steps,
                 target_resets_per_s=t_resets)
        rows.append(m)
        print(f"{label:32s} {m['steps_per_s']:>9.1f} steps/s {m['resets_per_s']:>9.1f} resets/s"
              f"  (build {m['build_s']} s)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    for m in rows:
        base = _text_baseline(m, rows)
        m["ratio_vs_text"] = None if base is None else round(m["steps_per_s"] / base["steps_per_s"], 4)
    (RESULTS / "env_speed.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    lines = ["| env | steps/s | target | vs text | resets/s | target | build s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for m in rows:
        t1 = "" if m["target_steps_per_s"] is None else f">= {m['target_steps_per_s']:.0f}"
        t2 = "" if m["target_resets_per_s"] is None else f">= {m['target_resets_per_s']:.0f}"
        ratio = "" if m["ratio_vs_text"] is None else f"{m['ratio_vs_text']:.3f}x"
        lines.append(f"| {m['label']} | {m['steps_per_s']:.0f} | {t1} | {ratio}"
                     f" | {m['resets_per_s']:.0f}"
                     f" | {t2} | {m['build_s']:.2f} |")
    (RESULTS / "env_speed.md").write_text(
        f"Measured by `python benchmarks/env_speed.py` on {meta['time']} "
        f"({meta['cpus']} CPUs, Python {meta['python']}).\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
