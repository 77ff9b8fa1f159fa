"""Imitation on rlft/PutBlockInBowl-v0: a ClipPolicy on a CLIP pretrained here, from expert demos,
on seen colours (test split) and unseen colours, against random and expert agents.

    python benchmarks/imitation_tabletop.py [--demos 100] [--episodes 50]

Stages (each skipped when its output exists under --work): `rlft pretrain-clip`, collect demos,
behaviour cloning, then the benchmark on the test and unseen splits. Writes
benchmarks/results/imitation_tabletop.{md,json,png}.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import tyro

from rlft.training.benchmark import markdown, run_benchmark, write_results
from rlft.training.configs import BenchmarkArgs, ImitateArgs, PretrainClipArgs
from rlft.training.demos import TRAJECTORY_FILE, collect
from rlft.training.imitation import imitate
from rlft.training.pretrain_clip import pretrain_clip

RESULTS = Path(__file__).parent / "results" / "imitation_tabletop"
ENV = "rlft/PutBlockInBowl-v0"


@dataclass
class Args:
    """Imitation benchmark on put-block-in-bowl."""

    demos: int = 100
    """Expert demo episodes (train split, seen colours)."""
    epochs: int = 40
    """Behaviour-cloning epochs."""
    clip_steps: int = 2000
    """pretrain-clip optimiser steps."""
    val_episodes: int = 30
    """Expert val-split episodes for validation loss/accuracy."""
    select_episodes: int = 20
    """Greedy val-split rollouts whose success picks the saved epoch (ImitateArgs.select_by)."""
    select_every: int = 5
    """Epochs between those rollouts (and after the last)."""
    episodes: int = 50
    """Episodes per agent and split."""
    work: Path = Path("runs/bench-tabletop")
    """Where the CLIP, demos and checkpoints go."""
    seed: int = 0
    """Seed of every stage."""


def main(args: Args) -> None:
    """Run the stages and write the results."""
    clip, demos, il = args.work / "clip", args.work / "demos", args.work / "il-clip"
    if not (clip / "pretrain_summary.json").exists():
        pretrain_clip(PretrainClipArgs(out=clip, steps=args.clip_steps, seed=args.seed))
    clip_summary = json.loads((clip / "pretrain_summary.json").read_text())
    if not (demos / TRAJECTORY_FILE).exists():
        collect(ENV, args.demos, demos, seed=args.seed)
    if not (il / "summary.json").exists():
        imitate(ImitateArgs(demos=demos, out=il, env=ENV, policy="clip", model=str(clip),
                            epochs=args.epochs, batch_size=16, lr=2e-3,
                            val_episodes=args.val_episodes, select_by="val_success",
                            select_episodes=args.select_episodes,
                            select_every=args.select_every, seed=args.seed))
    il_summary = json.loads((il / "summary.json").read_text())
    rows = []
    for split in ("test", "unseen"):
        part = run_benchmark(BenchmarkArgs(agents=("random", "expert", f"il-clip={il}"),
                                           envs=(ENV,), episodes=args.episodes, split=split,
                                           seed=args.seed, out=None))
        for r in part:
            r["name"] = f"{r['name']} ({'seen' if split == 'test' else 'unseen'} colours)"
        rows += part
    note = (
        f"{args.episodes} episodes per agent and split; 2-core CPU shared with other jobs (load "
        f"{os.getloadavg()[0]:.1f} at the end). `il-clip`: ClipPolicy on a CLIP pretrained here "
        f"(`rlft pretrain-clip`, {clip_summary['steps']} steps, {clip_summary['seconds']:.0f} s; "
        f"zero-shot caption retrieval seen {clip_summary['retrieval_test_seen']:.2f} / unseen "
        f"{clip_summary['retrieval_unseen']:.2f}, chance {clip_summary['chance']:.3f}), "
        f"behaviour-cloned on {il_summary['demo_episodes']} expert demos "
        f"({il_summary['train_turns']} steps) in {il_summary['train_seconds']:.0f} s, "
        f"{len(il_summary['history'])} epochs; saved epoch {il_summary['best_epoch']} by the "
        f"success of {args.select_episodes} greedy val rollouts every {args.select_every} "
        f"epochs (val success {il_summary['best_val_success']:.2f}). "
        f"Produced by `python benchmarks/imitation_tabletop.py`.")
    write_results(rows, RESULTS, note=note)
    print(markdown(rows, note))


if __name__ == "__main__":
    main(tyro.cli(Args))
