"""A real pretrained LM end to end: SmolLM2-135M-Instruct zero-shot, after SFT, after SFT + PPO.

    python benchmarks/lm_pretrained.py                 # CPU settings -> benchmarks/results/lm_pretrained.{md,json}
    bash benchmarks/lm_pretrained_gpu.sh               # the same at full settings on one GPU

Per env: expert demos of the train split; the bundled SmolLM2-135M-Instruct
(:mod:`rlft.agents.pretrained_lm`) with a fresh LoRA adapter (zero-shot: constrained decoding
over the valid actions, the adapter still zero); SFT of the adapter on the demos (``rlft
imitate --policy lm``); PPO from the SFT checkpoint (``rlft train ppo``); and, beside them, the
MiniLM ChoicePolicy imitated on the same demos. Every policy plays the same held-out test goals
(95% Wilson intervals). Measured on the way: prompt tokens per turn, actions/s of each policy,
SFT examples/s and PPO samples/s. Stages already in ``--work`` are reused.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import tyro

RESULTS = Path(__file__).parent / "results" / "lm_pretrained"


@dataclass
class Args:
    """SmolLM2-135M-Instruct: zero-shot, SFT, SFT + PPO (defaults sized for a 2-core CPU)."""

    envs: tuple[str, ...] = ("rlft/Shop-v0",)
    """Envs to run on (``rlft/Research-v0`` too on a GPU)."""
    model: str = "SmolLM2-135M-Instruct"
    """The causal LM (the bundled one, an HF name or a folder)."""
    demos: int = 20
    """Expert demo episodes for SFT (and the ChoicePolicy)."""
    epochs: int = 2
    """SFT epochs."""
    batch_size: int = 4
    """SFT batch size."""
    lr: float = 3e-4
    """SFT learning rate (LoRA)."""
    lora_r: int = 8
    """LoRA rank of SFT and PPO."""
    window: int = 1
    """Past turns in the prompt."""
    max_page_chars: int = 600
    """Page characters in the prompt."""
    max_prompt_tokens: int = 384
    """Prompt tokens kept."""
    dtype: str = "float32"
    """Base weights: float32, or bfloat16 on a GPU."""
    updates: int = 6
    """PPO updates."""
    num_envs: int = 4
    """PPO envs."""
    num_steps: int = 8
    """PPO turns per env per update."""
    minibatch_size: int = 8
    """PPO minibatch (turns)."""
    update_epochs: int = 2
    """PPO epochs per update."""
    ppo_lr: float = 1e-4
    """PPO learning rate."""
    ppo_minutes: float | None = None
    """Wall-clock budget of PPO (``--max-minutes``): it stops after the update that spends it."""
    budget_minutes: float | None = None
    """Wall-clock budget of the whole run, shared equally by the envs: each env's PPO stops in
    time for its final evaluation (reserved at 1.2 x the zero-shot evaluation's time)."""
    choice: bool = True
    """Also imitate and evaluate the MiniLM ChoicePolicy on the same demos and goals."""
    episodes: int = 30
    """Test goals per policy."""
    concurrency: int = 1
    """Test episodes an LM policy plays side by side, its turns scored together (16 or more
    on a GPU; 1 on a CPU, where batching saves nothing)."""
    work: Path = Path("runs/bench-lm-pretrained")
    """Where demos, checkpoints and runs go (reused when present)."""


def _policy_config(args: Args) -> tuple[str, ...]:
    return (f"window={args.window}", f"max_page_chars={args.max_page_chars}",
            f"max_prompt_tokens={args.max_prompt_tokens}", f'dtype="{args.dtype}"')


def prompt_tokens(policy_dir: str, env_id: str, episodes: int = 5) -> dict[str, float]:
    """Prompt tokens per turn on the expert's test-split trajectories (mean, max)."""
    import gymnasium as gym

    from rlft.agents import load_policy
    from rlft.agents.episode import Episode

    policy = load_policy(policy_dir)
    env = gym.make(env_id, split="test")
    counts = []
    for seed in range(episodes):
        obs, info = env.reset(seed=20_000 + seed)
        expert, ep, done = env.unwrapped.expert(), Episode(), False
        while not done:
            ep.observe(obs, info)
            counts.append(len(policy.encode(ep.turn()).prompt_ids))
            action = expert.act(obs, info)
            ep.record(action)
            obs, _, term, trunc, info = env.step(action)
            done = term or trunc
    env.close()
    return {"mean": sum(counts) / len(counts), "max": max(counts), "turns": len(counts)}


def run_env(env_id: str, args: Args, deadline: float | None = None) -> dict:
    """Every stage on one env; the rows and the measured speeds. With a ``deadline``
    (``time.perf_counter()`` seconds), PPO stops in time for the final evaluation to end by it."""
    import torch

    from rlft.agents import LMPolicy, LMPolicyConfig
    from rlft.training.benchmark import evaluate_agents
    from rlft.training.configs import ImitateArgs, PPOArgs
    from rlft.training.demos import collect, demos_complete
    from rlft.training.imitation import imitate
    from rlft.training.ppo import train_ppo

    work = args.work / env_id.split("/")[-1]
    demos, zero, sft, ppo, choice = (work / n for n in ("demos", "zero-shot", "sft", "ppo",
                                                       "choice"))
    speeds: dict[str, float] = {}
    if not demos_complete(demos):
        collect(env_id, args.demos, demos, seed=0)
    if not (zero / "rlft_policy.json").exists():
        torch.manual_seed(0)
        LMPolicy(LMPolicyConfig(model=args.model, lora_r=args.lora_r, window=args.window,
                                max_page_chars=args.max_page_chars,
                                max_prompt_tokens=args.max_prompt_tokens,
                                dtype=args.dtype)).save_pretrained(zero)
    if not (sft / "summary.json").exists():
        imitate(ImitateArgs(demos=demos, out=sft, env=env_id, policy="lm", model=args.model,
                            lora_r=args.lora_r, policy_config=_policy_config(args),
                            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                            val_episodes=2, seed=0))
    summary = json.loads((sft / "summary.json").read_text())
    speeds["sft_examples_per_s"] = (summary["train_turns"] * args.epochs
                                    / max(1e-9, summary["optimise_seconds"]))
    # The policies PPO does not change are evaluated first: with a budget, PPO gets what is
    # left after reserving the final evaluation, timed on the zero-shot policy (which plays
    # every episode to the step limit, so no slower than a trained one).
    before = {"zero-shot": str(zero), "SFT": str(sft)}
    if args.choice:
        if not (choice / "summary.json").exists():
            imitate(ImitateArgs(demos=demos, out=choice, env=env_id, policy="choice", seed=0))
        before["ChoicePolicy (IL, same demos)"] = str(choice)
    t_eval = time.perf_counter()
    rows = evaluate_agents(env_id, {"zero-shot": str(zero)}, episodes=args.episodes,
                           split="test", seed=10_000, timed=True,
                           concurrency=args.concurrency)
    reserve = 1.2 * (time.perf_counter() - t_eval) + 30.0
    rows += evaluate_agents(env_id, {k: v for k, v in before.items() if k != "zero-shot"},
                            episodes=args.episodes, split="test", seed=10_000, timed=True,
                           concurrency=args.concurrency)
    minutes = args.ppo_minutes
    if deadline is not None:
        left = (deadline - time.perf_counter() - reserve) / 60.0
        if left <= 0.5:  # what was measured is kept: the policies before PPO, the speeds
            note = (f"PPO not run: --budget-minutes left {left:.1f} min for it after the "
                    f"evaluations above; raise it, lower --episodes or raise --concurrency.")
            print(note)
            return {"env": env_id, "rows": [r.to_dict() for r in rows], "speeds": speeds,
                    "prompt_tokens": prompt_tokens(str(sft), env_id),
                    "load": os.getloadavg()[0], "note": note}
        minutes = left if minutes is None else min(minutes, left)
    if not (ppo / "summary.json").exists():
        train_ppo(PPOArgs(env=env_id, policy=str(sft), out=str(ppo), updates=args.updates,
                          num_envs=args.num_envs, num_steps=args.num_steps,
                          minibatch_size=args.minibatch_size, update_epochs=args.update_epochs,
                          learning_rate=args.ppo_lr, lora_r=args.lora_r, eval_episodes=0,
                          max_minutes=minutes, checkpoint_every=0, progress=True))
    ppo_summary = json.loads((ppo / "summary.json").read_text())
    speeds["ppo_samples_per_s"] = ppo_summary["samples_per_s"]
    rows += evaluate_agents(env_id, {"SFT+RL": str(ppo / "policy")}, episodes=args.episodes,
                            split="test", seed=10_000, timed=True,
                           concurrency=args.concurrency)
    order = ["zero-shot", "SFT", "SFT+RL", "ChoicePolicy (IL, same demos)"]
    rows.sort(key=lambda r: order.index(r.name))
    tokens = prompt_tokens(str(sft), env_id)
    return {"env": env_id, "rows": [r.to_dict() for r in rows], "speeds": speeds,
            "ppo": {"updates_done": ppo_summary.get("updates_done", args.updates),
                    "samples": ppo_summary["global_step"],
                    "train_success": [h["success"] for h in ppo_summary["history"]]},
            "prompt_tokens": tokens, "load": os.getloadavg()[0]}


def main(args: Args) -> None:
    """Run every env and write the results."""
    import torch

    import rlft.envs  # noqa: F401

    t0 = time.perf_counter()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else \
        f"CPU ({os.cpu_count()} cores)"
    suffix = "" if not torch.cuda.is_available() else "_gpu"
    path = RESULTS.with_name(RESULTS.name + suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    envs: list[dict] = []
    for i, env_id in enumerate(args.envs):  # files rewritten after each env: a cut-off run
        deadline = None if args.budget_minutes is None else \
            t0 + 60.0 * args.budget_minutes * (i + 1) / len(args.envs)
        envs.append(run_env(env_id, args, deadline))
        out = {"args": json.loads(json.dumps(asdict(args), default=str)), "device": device,
               "seconds": time.perf_counter() - t0, "envs": envs}
        path.with_suffix(".json").write_text(json.dumps(out, indent=2))
        text = report(out)
        path.with_suffix(".md").write_text(text)
    print(text)


def report(out: dict) -> str:
    """The tables of :func:`main`'s results."""
    a = out["args"]
    defaults = json.loads(json.dumps(asdict(Args()), default=str))
    flags = ""
    for k, v in a.items():
        if defaults.get(k) != v:
            flags += f" --{k.replace('_', '-')} " + (" ".join(map(str, v)) if isinstance(v, list)
                                                    else str(v))
    lines = [f"# {a['model']}: zero-shot, SFT, SFT+RL", "",
             f"Produced by `python benchmarks/lm_pretrained.py{flags}` on {out['device']}: "
             f"{out['seconds'] / 60:.0f} minutes for the stages not already in `--work` (the "
             f"speeds below are each stage's own, with the load at the end). SFT: {a['demos']} expert demos, {a['epochs']} "
             f"epochs, LoRA r {a['lora_r']}, batch {a['batch_size']}; PPO: {a['updates']} updates "
             f"x {a['num_envs']} envs x {a['num_steps']} turns from the SFT checkpoint; prompts: "
             f"{a['window']} past turn(s), {a['max_page_chars']} page characters, at most "
             f"{a['max_prompt_tokens']} tokens; weights {a['dtype']}. Every policy plays the same "
             f"{a['episodes']} held-out test goals (95% Wilson intervals).", ""]
    for env in out["envs"]:
        s, t = env["speeds"], env["prompt_tokens"]
        lines += [f"## {env['env']}", "",
                  "| policy | success | 95% CI | score | steps | actions/s |",
                  "|---|---:|---|---:|---:|---:|"]
        for r in env["rows"]:
            lo, hi = r["success_ci"]
            lines.append(f"| {r['name']} | {r['success']:.3f} | [{lo:.2f}, {hi:.2f}] | "
                         f"{r['score']:.3f} | {r['mean_steps']:.1f} | "
                         f"{r.get('actions_per_s', float('nan')):.2f} |")
        lines += ["", f"Prompt tokens per turn (expert's test trajectories): mean {t['mean']:.0f}, "
                      f"max {t['max']} over {t['turns']} turns. SFT {s['sft_examples_per_s']:.2f} "
                      f"examples/s" + (f"; PPO {s['ppo_samples_per_s']:.2f} samples/s (env "
                                       f"turns, rollout and update together)"
                                       if "ppo_samples_per_s" in s else "")
                  + f". Load average at the end: {env['load']:.1f}.", ""]
        if env.get("note"):
            lines += [env["note"], ""]
        if "ppo" in env:  # (results written before the PPO record)
            p, curve = env["ppo"], env["ppo"]["train_success"]
            lines += [f"PPO ran {p['updates_done']} of {a['updates']} updates ({p['samples']} "
                      f"turns); training success over the last 4 x envs episodes, first -> last "
                      f"update: {curve[0]:.2f} -> {curve[-1]:.2f}." if curve else
                      f"PPO ran {p['updates_done']} of {a['updates']} updates.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(tyro.cli(Args))
