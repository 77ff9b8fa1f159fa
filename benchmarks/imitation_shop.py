"""Imitation on rlft/Shop-v0: the MiniLM ChoicePolicy and a tiny from-scratch LM, trained from
expert demos, against random and expert agents on the test split.

    python benchmarks/imitation_shop.py [--demos 500] [--episodes 500] [--only-lm]

Stages (each skipped when its output exists under --work): collect demos, behaviour-clone the
ChoicePolicy (frozen MiniLM + heads), SFT a tiny Llama (built from a config, tokenizer trained
offline) with constrained decoding, then `rlft benchmark` over the four agents. Writes
benchmarks/results/imitation_shop.{md,json,png}; the markdown records training times.
``--only-lm`` trains and evaluates the LM row alone and merges it into the existing results.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from rlft.agents.tiny_models import make_tiny_llama
from rlft.training.benchmark import markdown, run_benchmark, write_results
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
    lm_demos: int = 500
    """Demo episodes the tiny LM is fine-tuned on."""
    lm_epochs: int = 12
    """SFT epochs of the tiny LM (the epoch with the lowest val loss is kept)."""
    lm_hidden: int = 64
    """Width of the tiny Llama."""
    lm_layers: int = 2
    """Layers of the tiny Llama."""
    lm_lr: float = 2e-3
    """SFT learning rate (full fine-tuning: the model starts from random weights)."""
    lm_window: int = 0
    """Past turns in the LM's prompt (the Shop page shows the state: chosen options are marked)."""
    lm_max_page_chars: int = 700
    """Page characters in the LM's prompt."""
    episodes: int = 500
    """Test-split episodes per agent (enough to separate random's ~1% success)."""
    lm_episodes: int = 500
    """Test-split episodes of the LM agent (its constrained decoding scores every candidate
    with a forward pass, so it acts slowly on a CPU)."""
    threads: int = 1
    """torch intra-op threads. On the 2 shared cores here one thread ran an SFT step of the tiny
    LM 8x faster than two (its small ops wait on each other's barriers under load)."""
    only_lm: bool = False
    """Train and evaluate only the LM row; the other rows are kept from the results file."""
    work: Path = Path("runs/bench-imitation")
    """Where demos and checkpoints go."""
    seed: int = 0
    """Seed of every stage."""


def main(args: Args) -> None:
    """Run the stages and write the results."""
    import torch

    torch.set_num_threads(args.threads)
    work = args.work
    demos, il, lm_base = work / "demos", work / "il-choice", work / "tiny-llama"
    lm = work / (f"sft-lm-h{args.lm_hidden}l{args.lm_layers}-w{args.lm_window}"
                 f"c{args.lm_max_page_chars}-e{args.lm_epochs}-d{args.lm_demos}")
    if not (demos / TRAJECTORY_FILE).exists():
        collect("rlft/Shop-v0", args.demos, demos, seed=args.seed)
    if not (lm / "summary.json").exists():
        base = lm_base.with_name(f"{lm_base.name}-h{args.lm_hidden}l{args.lm_layers}")
        if not (base / "config.json").exists():
            make_tiny_llama(base, hidden=args.lm_hidden, layers=args.lm_layers)
        imitate(ImitateArgs(demos=demos, out=lm, policy="lm", model=str(base), lora_r=0,
                            max_demos=args.lm_demos, epochs=args.lm_epochs, batch_size=8,
                            lr=args.lm_lr, val_episodes=20, seed=args.seed,
                            policy_config=(f"window={args.lm_window}",
                                           f"max_page_chars={args.lm_max_page_chars}")))
    lm_summary = json.loads((lm / "summary.json").read_text())
    rows = []
    if args.only_lm:
        old = json.loads(RESULTS.with_suffix(".json").read_text())
        rows = [r for r in old if r["name"] != "sft-tiny-lm"]
    else:
        if not (il / "summary.json").exists():
            imitate(ImitateArgs(demos=demos, out=il, epochs=args.epochs, seed=args.seed))
        rows = run_benchmark(BenchmarkArgs(
            agents=("random", "expert", f"il-choice-minilm={il}"),
            envs=("rlft/Shop-v0",), episodes=args.episodes, seed=args.seed, out=None))
        for r in rows:
            r["train_seconds"] = None
    if (il / "summary.json").exists():
        il_summary = json.loads((il / "summary.json").read_text())
        for r in rows:
            if r["name"] == "il-choice-minilm":
                r["train_seconds"] = il_summary["train_seconds"]
                r["about"] = (
                    f"ChoicePolicy (frozen all-MiniLM-L6-v2, trained heads) behaviour-cloned on "
                    f"{il_summary['demo_episodes']} expert demos ({il_summary['train_turns']} "
                    f"turns), {il_summary['train_seconds']:.0f} s training wall time (demo "
                    f"loading, MiniLM encoding of every distinct text, "
                    f"{il_summary['args']['epochs']} epochs, val every epoch)")
    t = time.perf_counter()
    lm_rows = run_benchmark(BenchmarkArgs(
        agents=(f"sft-tiny-lm={lm}",), envs=("rlft/Shop-v0",), episodes=args.lm_episodes,
        seed=args.seed, out=None))
    cfg = lm_summary["args"]
    best = min(lm_summary["history"], key=lambda h: h.get("val_loss", h["train_loss"]))
    for r in lm_rows:
        r["train_seconds"] = lm_summary["train_seconds"]
        r["about"] = (
            f"a {args.lm_layers}-layer {args.lm_hidden}-wide Llama with a BPE tokenizer trained "
            f"here, no pretraining, full SFT (lr {cfg['lr']}) on {lm_summary['demo_episodes']} "
            f"demos ({lm_summary['train_turns']} turns) for {len(lm_summary['history'])} epochs "
            f"({lm_summary['train_seconds']:.0f} s; best val loss {best['val_loss']:.3f}, "
            f"val token accuracy {best['val_acc']:.2f} at epoch {best['epoch'] + 1}); prompt: "
            f"window {args.lm_window}, {args.lm_max_page_chars} page characters; "
            f"constrained decoding; evaluated in {time.perf_counter() - t:.0f} s; CPU only "
            f"(no GPU in this session), {args.threads} torch thread(s), load "
            f"{os.getloadavg()[0]:.1f} at the end")
    rows = [r for r in rows if r["name"] != "sft-tiny-lm"] + lm_rows
    note = (
        f"Test split, the same seeds {args.seed}.. for every agent; 2-core CPU shared with "
        f"other jobs. actions/s counts the agent's act() time only. "
        + " ".join(f"`{r['name']}`: {r['about']}." for r in rows if r.get("about"))
        + " Produced by `python benchmarks/imitation_shop.py` (the LM row alone: "
        "`--only-lm`).")
    write_results(rows, RESULTS, note=note)
    print(markdown(rows, note))


if __name__ == "__main__":
    main(tyro.cli(Args))
