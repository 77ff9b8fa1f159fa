"""Imitation on rlft/Shop-v0: the MiniLM ChoicePolicy and a tiny from-scratch LM, trained from
expert demos, against random and expert agents on the test split.

    python benchmarks/imitation_shop.py [--demos 500] [--episodes 100]

Stages (each skipped when its output exists under --work): collect demos, behaviour-clone the
ChoicePolicy (frozen MiniLM + heads), SFT a tiny Llama (built from a config, tokenizer trained
offline) with constrained decoding, then `rlft benchmark` over the four agents. Writes
benchmarks/results/imitation_shop.{md,json,png}; the markdown records training times.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from rlft.agents.tiny_models import make_tiny_llama
from rlft.training.agent_benchmark import markdown, run_benchmark, write_results
from rlft.training.configs import BenchmarkArgs, ImitateArgs
from rlft.training.demos import TRAJECTORY_FILE, collect
from rlft.training.imitation import imitate

RESULTS = Path(__file__).parent / "results" / "imitation_shop"


@dataclass
class Args:
    """Imitation benchmark on rlft/Shop-v0."""

    demos: int = 500
    """Expert demo episodes (train split)."""
    epochs: int = 10
    """Behaviour-cloning epochs of the choice policy."""
    lm_demos: int = 300
    """Demo episodes the tiny LM is fine-tuned on."""
    lm_epochs: int = 3
    """SFT epochs of the tiny LM."""
    episodes: int = 100
    """Test-split episodes per agent."""
    lm_episodes: int = 20
    """Test-split episodes of the LM agent (its constrained decoding scores every candidate
    with a full forward pass, so it acts slowly on a CPU)."""
    work: Path = Path("runs/bench-imitation")
    """Where demos and checkpoints go."""
    seed: int = 0
    """Seed of every stage."""


def main(args: Args) -> None:
    """Run the stages and write the results."""
    work = args.work
    demos, il, lm_base, lm = work / "demos", work / "il-choice", work / "tiny-llama", work / "sft-lm"
    if not (demos / TRAJECTORY_FILE).exists():
        collect("rlft/Shop-v0", args.demos, demos, seed=args.seed)
    times = {}
    if not (il / "summary.json").exists():
        imitate(ImitateArgs(demos=demos, out=il, epochs=args.epochs, seed=args.seed))
    il_summary = json.loads((il / "summary.json").read_text())
    times["choice"] = il_summary["train_seconds"]
    if not (lm / "summary.json").exists():
        t = time.perf_counter()
        make_tiny_llama(lm_base, hidden=64, layers=2)
        imitate(ImitateArgs(demos=demos, out=lm, policy="lm", model=str(lm_base), lora_r=0,
                            max_demos=args.lm_demos, epochs=args.lm_epochs, batch_size=8,
                            lr=2e-3, val_episodes=20, seed=args.seed))
        times["lm_build"] = time.perf_counter() - t
    lm_summary = json.loads((lm / "summary.json").read_text())
    times["lm"] = lm_summary["train_seconds"]
    note = (
        f"Test split, {args.episodes} episodes per agent ({args.lm_episodes} for the LM), the "
        f"same seeds {args.seed}.. for every agent; 2-core CPU shared "
        f"with other jobs (load {os.getloadavg()[0]:.1f} at the end). `il-choice-minilm`: "
        f"ChoicePolicy (frozen all-MiniLM-L6-v2, trained heads) behaviour-cloned on "
        f"{il_summary['demo_episodes']} expert demos ({il_summary['train_turns']} turns), "
        f"{times['choice']:.0f} s training wall time (demo loading, MiniLM encoding of every "
        f"distinct text, {il_summary['args']['epochs']} epochs, val every epoch). "
        f"`sft-tiny-lm`: a 2-layer 64-wide Llama with a BPE tokenizer trained here, no "
        f"pretraining, full SFT on {lm_summary['demo_episodes']} demos for "
        f"{len(lm_summary['history'])} epochs ({times['lm']:.0f} s), constrained decoding. "
        f"actions/s counts the agent's act() time only. Produced by "
        f"`python benchmarks/imitation_shop.py`.")
    rows = run_benchmark(BenchmarkArgs(
        agents=("random", "expert", f"il-choice-minilm={il}"),
        envs=("rlft/Shop-v0",), episodes=args.episodes, seed=args.seed, out=None))
    rows += run_benchmark(BenchmarkArgs(
        agents=(f"sft-tiny-lm={lm}",), envs=("rlft/Shop-v0",), episodes=args.lm_episodes,
        seed=args.seed, out=None))
    for r in rows:
        r["train_seconds"] = {"il-choice-minilm": times["choice"],
                              "sft-tiny-lm": times["lm"]}.get(r["name"])
    write_results(rows, RESULTS, note=note)
    print(markdown(rows, note))


if __name__ == "__main__":
    main(tyro.cli(Args))
