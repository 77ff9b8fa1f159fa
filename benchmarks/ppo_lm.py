"""PPO throughput of the LM path on rlft/Shop-v0: a tiny Llama with a LoRA adapter, on the CPU.

    python benchmarks/ppo_lm.py [--policy runs/bench-imitation/sft-lm-...] [--updates 3]

Runs ``train_ppo`` for a few updates (constrained decoding: every rollout turn scores each
candidate; every minibatch re-scores the taken actions twice, policy and reference) and writes
the measured samples/s (env turns per second, rollout and update together) to
``benchmarks/results/ppo_lm.{md,json}``. Without ``--policy`` it uses an untrained tiny Llama
(the speed does not depend on the weights); a fully fine-tuned SFT checkpoint gets a fresh
LoRA adapter (``--lora-r``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

RESULTS = Path(__file__).parent / "results" / "ppo_lm"


@dataclass
class Args:
    """LM PPO speed on rlft/Shop-v0."""

    policy: Path | None = None
    """LMPolicy checkpoint (default: an untrained tiny Llama with a LoRA adapter)."""
    work: Path = Path("runs/bench-ppo-lm")
    """Where the tiny model and the PPO run go."""
    num_envs: int = 4
    """Parallel environments."""
    num_steps: int = 8
    """Turns per environment per update."""
    updates: int = 3
    """PPO updates."""
    minibatch_size: int = 16
    """Turns per minibatch."""
    update_epochs: int = 2
    """Epochs per update."""
    lora_r: int = 8
    """LoRA rank (of the adapter of the default policy, or added to a fully fine-tuned one)."""
    hidden: int = 64
    """Width of the default tiny Llama."""
    layers: int = 2
    """Layers of the default tiny Llama."""
    window: int = 0
    """Past turns in the default policy's prompt."""
    max_page_chars: int = 700
    """Page characters in the default policy's prompt."""
    threads: int = 1
    """torch intra-op threads (one is faster for this tiny model on the shared 2 cores)."""


def main(args: Args) -> None:
    """Train, time and write the results."""
    import torch

    from rlft.agents.lm_policy import LMPolicy, LMPolicyConfig
    from rlft.agents.tiny_models import make_tiny_llama
    from rlft.training.ppo import PPOArgs, train_ppo

    torch.set_num_threads(args.threads)
    policy = args.policy
    if policy is None:
        base = args.work / f"tiny-llama-h{args.hidden}l{args.layers}"
        if not (base / "config.json").exists():
            make_tiny_llama(base, hidden=args.hidden, layers=args.layers)
        policy = args.work / "init"
        torch.manual_seed(0)
        LMPolicy(LMPolicyConfig(model=str(base), lora_r=args.lora_r, window=args.window,
                                max_page_chars=args.max_page_chars)).save_pretrained(policy)
    load_start = os.getloadavg()[0]
    t = time.perf_counter()
    summary = train_ppo(PPOArgs(
        env="rlft/Shop-v0", policy=str(policy), out=str(args.work / "ppo"),
        num_envs=args.num_envs, num_steps=args.num_steps, updates=args.updates,
        minibatch_size=args.minibatch_size, update_epochs=args.update_epochs,
        lora_r=args.lora_r, eval_episodes=0, checkpoint_every=0, progress=False))
    wall = time.perf_counter() - t
    load_end = os.getloadavg()[0]
    meta = json.loads((Path(policy) / "rlft_policy.json").read_text())
    trainable = sum(p.numel() for p in LMPolicy.from_pretrained(args.work / "ppo" / "policy")
                    .parameters() if p.requires_grad)
    row = {"policy": str(policy), "model": meta["config"]["model"],
           "turns": summary["global_step"], "updates": args.updates,
           "num_envs": args.num_envs, "num_steps": args.num_steps,
           "update_epochs": args.update_epochs, "minibatch_size": args.minibatch_size,
           "samples_per_s": summary["samples_per_s"], "wall_s": wall,
           "trainable_params": trainable, "device": "cpu", "torch_threads":
           torch.get_num_threads(), "load": [load_start, load_end],
           "cpu": platform.processor() or platform.machine()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(row, indent=2))
    md = (
        "| policy | turns | updates | epochs x minibatch | samples/s | wall s |\n"
        "|---|---:|---:|---|---:|---:|\n"
        f"| LMPolicy ({Path(policy).name}: {Path(row['model']).name}, LoRA r={args.lora_r}, "
        f"{trainable:,} trainable) | {row['turns']} | {args.updates} | "
        f"{args.update_epochs} x {args.minibatch_size} | {row['samples_per_s']:.2f} | "
        f"{wall:.0f} |\n\n"
        f"PPO on rlft/Shop-v0 (train split, shaped reward), {args.num_envs} sync envs x "
        f"{args.num_steps} turns per update, constrained decoding (each rollout turn scores "
        f"every candidate; each minibatch scores the taken actions' tokens for the policy and "
        f"the reference). samples/s = env turns per second of rollout + update. CPU only: no "
        f"GPU in this session, so no GPU figure is given; 2 CPU cores shared with other jobs "
        f"(load {load_start:.1f} at the start, {load_end:.1f} at the end), "
        f"{row['torch_threads']} torch threads. Produced by `python benchmarks/ppo_lm.py`.\n")
    RESULTS.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main(tyro.cli(Args))
