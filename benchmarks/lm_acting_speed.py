"""How fast the LM policy acts: per-turn candidate scoring against batched, one episode against N.

    python benchmarks/lm_acting_speed.py                       # this machine, the bundled weights
    python benchmarks/lm_acting_speed.py --random-weights      # SmolLM2's architecture, no weights

On turns of the easy store's test split (0, 1 or 2 expert steps into an episode, so pages and
candidate sets vary), with the prompt settings of ``benchmarks/lm_pretrained.py`` and a LoRA
adapter of rank 8:

* **scoring**: turns/s of :meth:`LMPolicy._turn_scores` over ``--turns`` turns with
  ``score_batch_tokens=0`` (each turn's prompt run once, its KV cache shared by its candidates:
  two forward passes per turn) and ``=65536`` (every turn's candidates as whole sequences in
  a few padded batches), after a warm-up, the mean of 3 repetitions;
* **evaluation**: acting turns/s of greedy evaluation one episode at a time
  (:func:`rlft.training.evaluate.evaluate`) and ``--concurrency`` episodes side by side
  (:func:`rlft.training.evaluate.evaluate_concurrent`), with the policy's default scoring.

``--random-weights`` builds the model from the bundled model's config (for a machine without
the weights; speed does not depend on them). Writes ``benchmarks/results/lm_acting_speed.{md,json}``
(``_gpu`` on a GPU).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import torch
import tyro

import rlft.envs  # noqa: F401
from rlft.agents import LMPolicy, LMPolicyConfig, Turn
from rlft.training.benchmark import TimedAgent
from rlft.training.demos import expert_turns
from rlft.training.evaluate import evaluate, evaluate_concurrent

RESULTS = Path(__file__).parent / "results" / "lm_acting_speed"


@dataclass
class Args:
    """LM policy acting speed (defaults sized for a GPU; see the module docstring)."""

    model: str = "SmolLM2-135M-Instruct"
    """The causal LM (the bundled one, an HF name or a folder)."""
    random_weights: bool = False
    """Build the model from its config with random weights (speed only)."""
    turns: int = 16
    """Store turns scored together."""
    episodes: int = 32
    """Episodes of the concurrent evaluation (the sequential one plays an eighth, at least 2)."""
    concurrency: int = 16
    """Episodes side by side in the concurrent evaluation."""


def store_turns(n: int) -> list[tuple[Turn, str]]:
    """``(turn, expert action)`` of ``n`` test-split episodes (episode ``i`` seeded ``i``),
    ``i % 3`` expert steps in."""
    return [list(expert_turns("rlft/Shop-v0", "test", 1, seed=i))[i % 3] for i in range(n)]


def main(args: Args) -> None:
    """Measure and write the results."""
    from rlft.agents.pretrained_lm import resolve_lm

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = resolve_lm(args.model)
    tmp = None
    if args.random_weights:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        tmp = tempfile.TemporaryDirectory()
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model)).save_pretrained(tmp.name)
        AutoTokenizer.from_pretrained(model).save_pretrained(tmp.name)
        model = tmp.name
    kw = dict(model=model, lora_r=8, window=1, max_page_chars=600, max_prompt_tokens=384,
              dtype="bfloat16" if device == "cuda" else "float32")

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    turns = [t for t, _ in store_turns(args.turns)]
    scoring = {}
    for budget in (0, 65_536):
        policy = LMPolicy(LMPolicyConfig(score_batch_tokens=budget, **kw)).to(device).eval()
        features = [policy.encode(t) for t in turns]
        with torch.no_grad():
            policy._turn_scores(features[:2])
            sync()
            t = time.perf_counter()
            for _ in range(3):
                policy._turn_scores(features)
            sync()
        seconds = (time.perf_counter() - t) / 3
        scoring[budget] = {"turns_per_s": len(features) / seconds, "seconds": seconds,
                           "candidates_per_turn": sum(len(f.candidate_ids) for f in features)
                           / len(features),
                           "prompt_tokens": sum(len(f.prompt_ids) for f in features)
                           / len(features)}
    policy = LMPolicy(LMPolicyConfig(**kw)).to(device).eval()
    envs = [gym.make("rlft/Shop-v0", split="test") for _ in range(args.concurrency)]
    evaluation = {}
    for n in sorted({1, args.concurrency}):
        agent = TimedAgent(policy)
        if n == 1:
            result = evaluate(envs[0], agent, max(2, args.episodes // 8), seed=10_000)
        else:
            result = evaluate_concurrent(envs[:n], agent, args.episodes, seed=10_000)
        evaluation[n] = {"episodes": result.episodes, "turns": agent.actions,
                         "turns_per_s": agent.actions_per_s}
    for env in envs:
        env.close()
    if tmp is not None:
        tmp.cleanup()
    out = {"args": asdict(args), "device": torch.cuda.get_device_name(0) if device == "cuda"
           else f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
           "load": os.getloadavg()[0], "scoring": scoring, "evaluation": evaluation}
    path = RESULTS.with_name(RESULTS.name + ("_gpu" if device == "cuda" else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(out, indent=2))
    text = report(out)
    path.with_suffix(".md").write_text(text)
    print(text)


def report(out: dict) -> str:
    """The results as markdown."""
    a, s, e = out["args"], out["scoring"], out["evaluation"]
    per, batched = s.get("0", s.get(0)), s.get("65536", s.get(65_536))
    lines = ["# LM policy acting speed: per-turn against batched scoring", "",
             f"`python benchmarks/lm_acting_speed.py{' --random-weights' if a['random_weights'] else ''}"
             f" --turns {a['turns']} --episodes {a['episodes']} --concurrency {a['concurrency']}`"
             f" on {out['device']} (load {out['load']:.1f} at the end); model {a['model']}"
             f"{' (random weights)' if a['random_weights'] else ''}, LoRA r 8, prompts of one "
             f"past turn and 600 page characters ({per['prompt_tokens']:.0f} tokens and "
             f"{per['candidates_per_turn']:.1f} candidates per turn on average).", "",
             "| scoring of the store turns | turns/s |", "|---|---:|",
             f"| per turn (`score_batch_tokens=0`, prompt KV cache shared) | "
             f"{per['turns_per_s']:.2f} |",
             f"| batched (`score_batch_tokens=65536`) | {batched['turns_per_s']:.2f} |", "",
             "| greedy evaluation | episodes | turns | acting turns/s |", "|---|---:|---:|---:|"]
    for n, r in e.items():
        lines.append(f"| {'one episode at a time' if int(n) == 1 else f'{n} side by side'} | "
                     f"{r['episodes']} | {r['turns']} | {r['turns_per_s']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(tyro.cli(Args))
