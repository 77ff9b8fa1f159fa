"""Peak memory of one LM training step, whole against micro-batched (``--micro-batch-size``).

    python benchmarks/lm_update_memory.py [--turns 16] [--micro 1 4 16]

For each stage (a PPO minibatch update; an SFT batch step) and micro-batch size, a fresh
process loads the bundled SmolLM2-135M-Instruct with a LoRA adapter (r 8; the prompt settings
of ``benchmarks/lm_pretrained.py``) and encodes ``--turns`` store turns. PPO samples an action
for each and runs :func:`rlft.training.ppo.minibatch_gradients` once over them in passes of
that many turns; SFT runs :func:`rlft.training.imitation.batch_gradients` once with the
expert's actions as targets. It reports the process's peak resident memory before the step
(model loaded, turns encoded, PPO's rollout done) and after it, and the step's seconds. The
gradients are the same for every size (``tests/test_ppo_lm.py``, ``tests/test_agents_lm.py``).
Writes ``benchmarks/results/lm_update_memory.{md,json}``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tyro

RESULTS = Path(__file__).parent / "results" / "lm_update_memory"


@dataclass
class Args:
    """LM PPO update memory (see the module docstring)."""

    model: str = "SmolLM2-135M-Instruct"
    """The causal LM (the bundled one, an HF name or a folder)."""
    turns: int = 16
    """Turns in the minibatch."""
    micro: tuple[int, ...] = field(default=(1, 4, 16))
    """Micro-batch sizes to measure (one fresh process each)."""


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def measure(model: str, turns: int, micro: int, stage: str = "ppo") -> dict[str, float]:
    """One step of ``stage`` (``ppo`` or ``sft``) in this process (run by :func:`main` in a
    fresh one per stage and size)."""
    import time

    import torch

    from rlft.agents import LMPolicy, LMPolicyConfig
    from rlft.agents.rl import reference_scores
    from rlft.training.imitation import batch_gradients
    from rlft.training.ppo import PPOArgs, minibatch_gradients

    torch.manual_seed(0)
    policy = LMPolicy(LMPolicyConfig(model=model, lora_r=8, window=1, max_page_chars=600,
                                     max_prompt_tokens=384)).eval()
    sys.path.insert(0, str(Path(__file__).parent))
    from lm_acting_speed import store_turns

    turns = store_turns(turns)
    feats = [policy.encode(t) for t, _ in turns]
    expert_actions = [a for _, a in turns]
    if stage == "sft":
        policy.train()
        targets = [policy.imitation_target(f, a) for f, a in zip(feats, expert_actions,
                                                                  strict=True)]
        before = _peak_mb()
        t = time.perf_counter()
        batch_gradients(policy, feats, targets, micro)
    else:
        with torch.no_grad():
            step = policy.rl_act(feats, torch.Generator().manual_seed(0))
        old = [step.log_probs[i][step.mask[i] > 0] for i in range(len(feats))]
        trainable = {n: p.detach().clone() for n, p in policy.named_parameters()
                     if p.requires_grad}
        ref_rows = reference_scores(policy, trainable, feats, step.actions, micro)
        adv = torch.randn(len(feats), generator=torch.Generator().manual_seed(1))
        before = _peak_mb()
        t = time.perf_counter()
        minibatch_gradients(policy, feats, step.actions, old, ref_rows, adv, adv.clone(),
                            torch.zeros(len(feats)), PPOArgs(ent_coef=0.01, kl_coef=0.05),
                            micro)
    return {"stage": stage, "micro": micro, "peak_mb_before": before,
            "peak_mb_after": _peak_mb(), "seconds": time.perf_counter() - t,
            "prompt_tokens": sum(len(f.prompt_ids) for f in feats) / len(feats)}


def main(args: Args) -> None:
    """Measure each size in its own process and write the results."""
    rows = []
    for stage, micro in ((stage, micro) for stage in ("ppo", "sft") for micro in args.micro):
        code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                f"import lm_update_memory as m; "
                f"print(json.dumps(m.measure({args.model!r}, {args.turns}, {micro}, "
                f"{stage!r})))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    out = {"args": asdict(args), "machine": f"CPU ({os.cpu_count()} cores, "
           f"{platform.machine()})", "load": os.getloadavg()[0], "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(out, indent=2))
    lines = ["# LM training step memory: whole batch against micro-batches", "",
             f"`python benchmarks/lm_update_memory.py --turns {args.turns} --micro "
             f"{' '.join(map(str, args.micro))}` on {out['machine']} (load {out['load']:.1f} at "
             f"the end): {args.model}, LoRA r 8, float32, one step over {args.turns} store "
             f"turns ({rows[0]['prompt_tokens']:.0f} prompt tokens per turn on average) in "
             f"passes of `--micro-batch-size` turns; peak resident memory of a fresh process.",
             "", "| step | micro-batch | peak MB before the step | peak MB after | step s |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {'PPO update' if r['stage'] == 'ppo' else 'SFT step'} | {r['micro']} | "
              f"{r['peak_mb_before']:.0f} | {r['peak_mb_after']:.0f} | {r['seconds']:.1f} |"
              for r in rows]
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
