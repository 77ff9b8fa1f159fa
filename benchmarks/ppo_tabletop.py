"""PPO on top of imitation on rlft/PutBlockInBowl-v0: the ClipPolicy imitation checkpoint of
``benchmarks/imitation_tabletop.py`` evaluated, fine-tuned with PPO (train split), and the result
evaluated again on seen colours (test split) and unseen colours.

    python benchmarks/imitation_tabletop.py   # the CLIP, demos and IL checkpoint (once)
    python benchmarks/ppo_tabletop.py [--updates 24] [--episodes 50]

Writes benchmarks/results/ppo_tabletop.{md,json}: success and score with 95% intervals for IL
and IL+RL on both splits, the PPO settings, its learning curve and the wall times.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import tyro

from rlft.training.agent_benchmark import markdown, run_benchmark
from rlft.training.configs import BenchmarkArgs
from rlft.training.ppo import PPOArgs, train_ppo

RESULTS = Path(__file__).parent / "results" / "ppo_tabletop"
ENV = "rlft/PutBlockInBowl-v0"


@dataclass
class Args:
    """PPO benchmark on put-block-in-bowl."""

    il: Path = Path("runs/bench-tabletop/il-clip")
    """Imitation checkpoint (``benchmarks/imitation_tabletop.py`` writes it)."""
    out: Path = Path("runs/bench-tabletop/ppo-clip")
    """PPO run directory (rerun from scratch when its summary.json is missing)."""
    episodes: int = 50
    """Evaluation episodes per agent and split."""
    ppo: PPOArgs = field(default_factory=lambda: PPOArgs(
        env=ENV, reward_mode="shaped", num_envs=8, num_steps=8, updates=12, learning_rate=3e-4,
        update_epochs=2, minibatch_size=32, ent_coef=0.0, kl_coef=0.02, checkpoint_every=0,
        eval_episodes=0))
    """PPO settings (``policy`` and ``out`` are set from ``il`` and ``out``)."""
    seed: int = 0
    """Seed of PPO and of the evaluation episodes."""


def main(args: Args) -> None:
    """Evaluate IL, run PPO, evaluate IL+RL; write the results."""
    if not (args.il / "rlft_policy.json").exists():
        raise FileNotFoundError(f"no imitation checkpoint at {args.il}: run "
                                f"`python benchmarks/imitation_tabletop.py` first or pass --il")
    t0 = time.perf_counter()
    ppo_args = replace(args.ppo, policy=str(args.il), out=str(args.out), seed=args.seed)
    if not (args.out / "summary.json").exists():
        t = time.perf_counter()
        summary = train_ppo(ppo_args)
        summary["wall_seconds"] = time.perf_counter() - t
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    summary = json.loads((args.out / "summary.json").read_text())
    rows = []
    for split in ("test", "unseen"):
        part = run_benchmark(BenchmarkArgs(
            agents=(f"il-clip={args.il}", f"il+rl-clip={args.out / 'policy'}"), envs=(ENV,),
            episodes=args.episodes, split=split, seed=args.seed, out=None))
        for r in part:
            r["name"] = f"{r['name']} ({'seen' if split == 'test' else 'unseen'} colours)"
        rows += part
    p = ppo_args
    curve = ", ".join(f"{h['success']:.2f}" for h in summary["history"][:: max(1, len(
        summary["history"]) // 8)])
    note = (
        f"{args.episodes} episodes per agent and split (seen colours = test split goals, never "
        f"trained on). `il-clip`: the imitation checkpoint {args.il} "
        f"(`python benchmarks/imitation_tabletop.py`); `il+rl-clip`: it after PPO on the train "
        f"split: reward_mode={p.reward_mode}, {p.updates} updates x {p.num_envs} envs x "
        f"{p.num_steps} turns ({summary['global_step']} env steps), lr {p.learning_rate}, "
        f"{p.update_epochs} epochs of minibatch {p.minibatch_size}, clip {p.clip_coef}, "
        f"kl_coef {p.kl_coef} (k3 estimate), ent_coef {p.ent_coef}, gamma {p.gamma}; PPO took "
        f"{summary.get('wall_seconds', float('nan')):.0f} s ({summary['samples_per_s']:.1f} env "
        f"steps/s); training-episode success over the updates: {curve}. Greedy (argmax) "
        f"evaluation. Benchmark wall time {time.perf_counter() - t0:.0f} s (PPO included when "
        f"it ran now) on a 2-core CPU shared with other jobs (load {os.getloadavg()[0]:.1f} at "
        f"the end). Produced by `python benchmarks/ppo_tabletop.py`.")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".md").write_text(markdown(rows, note))
    RESULTS.with_suffix(".json").write_text(json.dumps({
        "rows": rows, "ppo_args": asdict(p), "ppo_summary": summary,
        "benchmark_seconds": time.perf_counter() - t0, "note": note}, indent=2, default=str))
    print(markdown(rows, note))


if __name__ == "__main__":
    main(tyro.cli(Args))
