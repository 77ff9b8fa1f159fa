"""Dense CLIP features against one crop per heatmap cell: ClipPolicy speed, grounding, PPO speed.

    python benchmarks/clip_dense.py [--episodes 30] [--ppo-updates 4]

With one CLIP pretrained here (``rlft pretrain-clip``: crop and dense objectives), on
rlft/PutBlockInBowl-v0:

* **actions/s** of a ClipPolicy acting greedily (``policy.act``: towers, heads, argmax) with
  ``features="dense"`` (one vision pass over the heightmap) and ``"crops"`` (a crop around each
  of the 3,200 heatmap cells), on the same observations;
* **grounding**: on the first observation of ``--episodes`` test-split (seen colours) and unseen
  episodes, whether the argmax of the pick grounding map (CLIP similarity to "a {colour}
  block") lies on an object like the one the expert picks (the same shape name: the goal's
  "red blocks" may be two), and the place map's on one like the object under the expert's
  place point (the bowl), for both feature kinds (no training involved);
* **tabletop PPO env steps/s**: ``rlft train ppo`` from a ClipPolicy behaviour-cloned on a few
  demos, the tabletop preset (8 envs x 8 turns), ``--ppo-updates`` updates, for both kinds;
* grounding with dense features of a second CLIP pretrained narrowly (``--no-broad``: the
  tasks' train scenes and seen colours only), to show what broad pretraining adds.

Writes ``benchmarks/results/clip_dense.{md,json}``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import tyro

import rlft.envs  # noqa: F401
from rlft.agents.clip_policy import ClipPolicy
from rlft.training.configs import ImitateArgs, PPOArgs, PretrainClipArgs
from rlft.training.demos import TRAJECTORY_FILE, collect
from rlft.training.imitation import imitate
from rlft.training.ppo import train_ppo
from rlft.training.pretrain_clip import cell_on_objects, object_labels, pretrain_clip

RESULTS = Path(__file__).resolve().parent / "results" / "clip_dense"
ENV = "rlft/PutBlockInBowl-v0"
KINDS = ("dense", "crops")


@dataclass
class Args:
    """Dense vs per-cell CLIP features."""

    episodes: int = 30
    """Episodes per split for grounding (first observation of each)."""
    speed_steps: int = 200
    """Observations timed per feature kind (crops: a tenth as many, at least 3)."""
    clip_steps: int = 2000
    """pretrain-clip optimiser steps (when the CLIP is not there yet)."""
    demos: int = 20
    """Expert demos for the imitation checkpoint PPO starts from."""
    ppo_updates: int = 16
    """PPO updates timed per feature kind (8 envs x 8 turns each): enough that the rate is not
    the first update's warm-up."""
    work: Path = Path("runs/bench-clip-dense")
    """Where the CLIP, demos and checkpoints go."""
    seed: int = 0


def grounding(policy: ClipPolicy, split: str, episodes: int) -> dict[str, float]:
    """Pick and place grounding hits (argmax cell on the expert's object) on first turns."""
    env = gym.make(ENV, split=split)
    sim = env.unwrapped.sim
    picks, places = [], []
    d = policy.config.downsample
    try:
        for ep in range(episodes):
            obs, info = env.reset(seed=10_000 + ep)
            action = env.unwrapped.expert().act(obs, info)
            labels, objects = object_labels(env)
            bodies = [o.body for o in objects]
            _, _, grid = policy._images(obs["color"], obs["depth"])
            ground = policy.grounding([str(obs["goal"])], grid)[0]  # [2, h, w]
            w = policy.grid[1]
            for part, (x, y), hits in ((0, action[:2], picks), (1, action[2:4], places)):
                body, _ = sim.body_under(float(x), float(y))
                if body not in bodies:
                    continue
                # any object the phrase names counts: "the red blocks" may be two
                name = objects[bodies.index(body)].shape.name
                same = [k for k, o in enumerate(objects) if o.shape.name == name]
                cell = int(ground[part].flatten().argmax())
                hits.append(cell_on_objects(labels, same, cell, w, d))
    finally:
        env.close()
    return {"pick": float(np.mean(picks)), "place": float(np.mean(places)),
            "pick_n": len(picks), "place_n": len(places)}


def actions_per_s(policy: ClipPolicy, steps: int) -> float:
    """Greedy ``act`` calls per second on ``steps`` distinct observations."""
    env = gym.make(ENV, split="test")
    observations = []
    for ep in range(steps):
        obs, info = env.reset(seed=20_000 + ep)
        observations.append((obs, info))
    env.close()
    policy.reset()
    policy.act(*observations[0])  # warm-up
    t = time.perf_counter()
    for obs, info in observations:
        policy.reset()
        policy.act(obs, info)
    return steps / (time.perf_counter() - t)


def main(args: Args) -> None:
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    clip, demos = args.work / "clip", args.work / "demos"
    if not (clip / "pretrain_summary.json").exists():
        pretrain_clip(PretrainClipArgs(out=clip, steps=args.clip_steps, seed=args.seed))
    clip_summary = json.loads((clip / "pretrain_summary.json").read_text())
    if not (demos / TRAJECTORY_FILE).exists():
        collect(ENV, args.demos, demos, seed=args.seed)
    env = gym.make(ENV)
    rows = []
    for kind in KINDS:
        policy = ClipPolicy.for_env(env, model=str(clip), features=kind).eval()
        n = args.speed_steps if kind == "dense" else max(3, args.speed_steps // 10)
        row = {"features": kind, "actions_per_s": actions_per_s(policy, n), "timed_actions": n}
        for split in ("test", "unseen"):
            g = grounding(policy, split, args.episodes)
            row[f"{split}_pick"], row[f"{split}_place"] = g["pick"], g["place"]
            row[f"{split}_n"] = g["pick_n"]
        il = args.work / f"il-{kind}"
        if not (il / "summary.json").exists():
            imitate(ImitateArgs(demos=demos, out=il, env=ENV, policy="clip", model=str(clip),
                                policy_config=[f"features={kind}"], epochs=10, batch_size=16,
                                lr=2e-3, val_episodes=0, seed=args.seed))
        ppo_dir = args.work / f"ppo-{kind}"
        t = time.perf_counter()
        summary = train_ppo(PPOArgs(env=ENV, policy=str(il), out=str(ppo_dir),
                                    updates=args.ppo_updates, eval_episodes=0, seed=args.seed,
                                    resume=False, progress=False))
        seconds = time.perf_counter() - t
        # the run's own rate (rollouts and updates; PPO times it from its first update) and
        # the wall rate of the whole call (loading the policy and making the envs included)
        row["ppo_env_steps_per_s"] = summary["samples_per_s"]
        row["ppo_wall_steps_per_s"] = summary["global_step"] / seconds
        row["ppo_seconds"] = seconds
        row["ppo_env_steps"] = summary["global_step"]
        rows.append(row)
        print(row)
    # the same dense features on a CLIP pretrained narrowly: the tasks' train scenes and seen
    # colours only (`rlft pretrain-clip --no-broad`), to show what broad pretraining adds
    narrow = args.work / "clip-narrow"
    if not (narrow / "pretrain_summary.json").exists():
        pretrain_clip(PretrainClipArgs(out=narrow, steps=args.clip_steps, seed=args.seed,
                                       broad=False))
    narrow_summary = json.loads((narrow / "pretrain_summary.json").read_text())
    policy = ClipPolicy.for_env(env, model=str(narrow), features="dense").eval()
    row = {"features": "dense, narrow CLIP", "actions_per_s": float("nan")}
    for split in ("test", "unseen"):
        g = grounding(policy, split, args.episodes)
        row[f"{split}_pick"], row[f"{split}_place"] = g["pick"], g["place"]
        row[f"{split}_n"] = g["pick_n"]
    rows.append(row)
    print(row)
    env.close()
    speedup = rows[0]["actions_per_s"] / rows[1]["actions_per_s"]
    lines = [
        f"Measured by `python benchmarks/clip_dense.py` on "
        f"{time.strftime('%Y-%m-%d %H:%M')} ({os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch threads {torch.get_num_threads()}); 1-minute load "
        f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
        f"{time.perf_counter() - t0:.0f} s in all.",
        "",
        f"One CLIP pretrained here ({clip_summary['steps']} steps, crop and dense objectives, "
        f"{clip_summary['seconds']:.0f} s; dense grounding on held-out scenes: seen colours "
        f"{clip_summary.get('grounding_test_seen', float('nan')):.2f}, unseen "
        f"{clip_summary.get('grounding_unseen', float('nan')):.2f}, never-seen colours "
        f"{clip_summary.get('grounding_never', float('nan')):.2f}). Grounding below: the argmax "
        f"heatmap cell of the goal's pick / place phrase on an object like the one the expert "
        f"picks / places on (the goal's \"red blocks\" may be two), first turn of "
        f"{args.episodes} episodes per split, no training; put-block-in-bowl, seen colours = "
        f"test split, unseen = colours no demo shows (seen in pretraining).",
        "",
        "| features | actions/s (>= 50) | grounding pick, seen | place, seen | pick, unseen "
        "| place, unseen | tabletop PPO env steps/s (>= 30) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ppo = (f"{r['ppo_env_steps_per_s']:.1f} ({r['ppo_env_steps']} steps; "
               f"{r['ppo_wall_steps_per_s']:.1f} counting the policy's loading: "
               f"{r['ppo_seconds']:.0f} s)" if "ppo_seconds" in r else "-")
        speed = f"{r['actions_per_s']:.1f}" if r["actions_per_s"] == r["actions_per_s"] else "-"
        lines.append(
            f"| {r['features']} | {speed} | {r['test_pick']:.2f} | "
            f"{r['test_place']:.2f} | {r['unseen_pick']:.2f} | {r['unseen_place']:.2f} | "
            f"{ppo} |")
    lines += ["", f"Dense features act {speedup:.0f}x faster than a crop per cell (same CLIP, "
              f"same observations, measured in this one run). The narrow CLIP "
              f"(`rlft pretrain-clip --no-broad`: the tasks' train scenes and seen colours "
              f"only, {narrow_summary['steps']} steps) grounds unseen colours from what it "
              f"learnt of shapes alone (held-out retrieval / dense grounding: task colours "
              f"{narrow_summary['retrieval_test_seen']:.2f} / "
              f"{narrow_summary['grounding_test_seen']:.2f}, unseen split "
              f"{narrow_summary['retrieval_unseen']:.2f} / "
              f"{narrow_summary['grounding_unseen']:.2f})."]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(
        {"rows": rows, "clip": clip_summary, "clip_narrow": narrow_summary, "load_start": load0,
         "load_end": os.getloadavg()[0]}, indent=2))
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
