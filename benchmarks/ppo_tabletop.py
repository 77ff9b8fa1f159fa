"""PPO on top of imitation on rlft/PutBlockInBowl-v0: a ClipPolicy imitation checkpoint evaluated,
fine-tuned with PPO (train split), and the result evaluated again on seen colours (test split) and
unseen colours.

    python benchmarks/imitation_tabletop.py   # the CLIP, demos and IL checkpoint (once)
    python benchmarks/ppo_tabletop.py                       # strong start: that IL checkpoint
    python benchmarks/ppo_tabletop.py --il-demos 5 --il-epochs 1 --ppo.updates 64  # weak start

Sections, one per command (a rerun of the same command replaces its own): ``strong`` starts
from the checkpoint of ``benchmarks/imitation_tabletop.py`` (100 demos, no headroom on seen
colours); ``weak`` (with ``--il-demos``) first behaviour-clones its own deliberately weak start
from the first N of the same demos on the same local CLIP, like the main job's 20 Shop demos
(pass --out to try other PPO settings from the same start). Writes
benchmarks/results/ppo_tabletop.{md,json}: success and score with 95% intervals for IL and IL+RL
on both splits, the PPO settings, its learning curve and wall times.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import tyro

from rlft.training.benchmark import markdown, run_benchmark
from rlft.training.configs import BenchmarkArgs, ImitateArgs
from rlft.training.ppo import PPOArgs, train_ppo
from rlft.training.presets import resolve

RESULTS = Path(__file__).parent / "results" / "ppo_tabletop"
ENV = "rlft/PutBlockInBowl-v0"
WORK = Path("runs/bench-tabletop")
TITLES = {"strong": "Strong start: the imitation checkpoint of benchmarks/imitation_tabletop.py",
          "weak": "Weak start: behaviour cloning from a few of the demos"}


@dataclass
class Args:
    """PPO benchmark on put-block-in-bowl."""

    il: Path | None = None
    """Imitation checkpoint to start from (default: WORK/il-clip, the checkpoint of
    ``benchmarks/imitation_tabletop.py``; with --il-demos: WORK/il-clip-weak-<N>d<E>e, built
    here)."""
    out: Path | None = None
    """PPO run directory (rerun from scratch when its summary.json is missing; default:
    WORK/ppo-clip, or WORK/ppo-clip-weak-<N>d<E>e with --il-demos)."""
    il_demos: int | None = None
    """Weak start: behaviour-clone the start from the first N demos of WORK/demos (on the CLIP
    at WORK/clip) instead of using the full imitation checkpoint; the section is ``weak``."""
    il_epochs: int = 1
    """With --il-demos: behaviour-cloning epochs (batch 16, lr 2e-3; the epoch of lowest train
    loss kept)."""
    episodes: int = 50
    """Evaluation episodes per agent and split."""
    ppo: PPOArgs = field(default_factory=lambda: PPOArgs(
        env=ENV, reward_mode="shaped", updates=12, checkpoint_every=0, eval_episodes=0))
    """PPO settings (``policy`` and ``out`` are set from ``il`` and ``out``); the rest is the
    tabletop preset of ``rlft.training.presets`` (8 envs x 8 turns, gamma 0.9, lr 1e-3, 2
    epochs, no entropy bonus, KL 0.02). gamma 0.9: a rejected pick (empty space) leaves the
    scene as it was, so at 0.99 it cost only 1% of the return and PPO barely learnt to avoid
    it; lr 1e-3: at 3e-4 the diffuse weak start's entropy (about 10 nats over 3,200 x 25,600
    actions) had not moved after 32 updates."""
    seed: int = 0
    """Seed of imitation, PPO and the evaluation episodes."""


def weak_start(args: Args, il: Path) -> dict[str, Any]:
    """Behaviour-clone the weak start into ``il`` (skipped when its summary exists)."""
    from rlft.training.imitation import imitate

    clip, demos = WORK / "clip", WORK / "demos"
    if not (il / "summary.json").exists():
        if not (clip / "config.json").exists() or not (demos / "trajectories.jsonl").exists():
            raise FileNotFoundError(f"no CLIP at {clip} or demos at {demos}: run "
                                    f"`python benchmarks/imitation_tabletop.py` first")
        imitate(ImitateArgs(demos=demos, out=il, env=ENV, policy="clip", model=str(clip),
                            max_demos=args.il_demos, epochs=args.il_epochs, batch_size=16,
                            lr=2e-3, val_episodes=0, select_by="val_loss", seed=args.seed))
    return json.loads((il / "summary.json").read_text())


def load_sections() -> dict[str, Any]:
    """The sections already in the results json, by command."""
    path = RESULTS.with_suffix(".json")
    return json.loads(path.read_text())["sections"] if path.exists() else {}


def render(sections: dict[str, Any]) -> str:
    """The markdown of every section (weak starts first): title, exact command, table, note."""
    order = sorted(sections.values(), key=lambda s: s["start"] == "strong")
    return "\n".join(f"## {TITLES[s['start']]}\n\n`{s['command']}`\n\n"
                     + markdown(s["rows"], s["note"]) for s in order)


def main(args: Args) -> None:
    """Build the start (weak section), evaluate IL, run PPO, evaluate IL+RL; write the results."""
    key = "strong" if args.il_demos is None else "weak"
    if args.il_demos is not None and args.il_demos < 1:
        raise ValueError(f"--il-demos must be >= 1, got {args.il_demos}")
    tag = f"weak-{args.il_demos}d{args.il_epochs}e"
    il = args.il or (WORK / "il-clip" if key == "strong" else WORK / f"il-clip-{tag}")
    out = args.out or (WORK / "ppo-clip" if key == "strong" else WORK / f"ppo-clip-{tag}")
    t0 = time.perf_counter()
    il_summary = weak_start(args, il) if key == "weak" else None
    if not (il / "rlft_policy.json").exists():
        raise FileNotFoundError(f"no imitation checkpoint at {il}: run "
                                f"`python benchmarks/imitation_tabletop.py` first or pass --il")
    ppo_args = replace(args.ppo, policy=str(il), out=str(out), seed=args.seed)
    if not (out / "summary.json").exists():
        t = time.perf_counter()
        summary = train_ppo(ppo_args)
        summary["wall_seconds"] = time.perf_counter() - t
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    summary = json.loads((out / "summary.json").read_text())
    rows = []
    for split in ("test", "unseen"):
        part = run_benchmark(BenchmarkArgs(
            agents=(f"il-clip={il}", f"il+rl-clip={out / 'policy'}"), envs=(ENV,),
            episodes=args.episodes, split=split, seed=args.seed, out=None))
        for r in part:
            r["name"] = f"{r['name']} ({'seen' if split == 'test' else 'unseen'} colours)"
        rows += part
    p = resolve(ppo_args)  # the preset values the run used
    command = shlex.join(["python", "benchmarks/ppo_tabletop.py", *sys.argv[1:]])
    curve = ", ".join(f"{h['success']:.2f}" for h in summary["history"][:: max(1, len(
        summary["history"]) // 12)])
    start = (f"the imitation checkpoint {il} (`python benchmarks/imitation_tabletop.py`)"
             if il_summary is None else
             f"{il}: the ClipPolicy behaviour-cloned here on the first "
             f"{il_summary['demo_episodes']} of the {WORK / 'demos'} expert demos "
             f"({il_summary['train_turns']} steps), {args.il_epochs} epoch(s) of batch 16 at lr "
             f"2e-3 on the CLIP at {WORK / 'clip'}, in {il_summary['train_seconds']:.0f} s")
    note = (
        f"{args.episodes} episodes per agent and split (seen colours = test split goals, never "
        f"trained on). `il-clip`: {start}; `il+rl-clip`: it after PPO on the train "
        f"split: reward_mode={p.reward_mode}, {p.updates} updates x {p.num_envs} envs x "
        f"{p.num_steps} turns ({summary['global_step']} env steps), lr {p.learning_rate}, "
        f"{p.update_epochs} epochs of minibatch {p.minibatch_size}, clip {p.clip_coef}, "
        f"kl_coef {p.kl_coef} (k3 estimate), ent_coef {p.ent_coef}, gamma {p.gamma}; PPO took "
        f"{summary.get('wall_seconds', float('nan')):.0f} s ({summary['samples_per_s']:.1f} env "
        f"steps/s); training-episode success over the updates: {curve}. Greedy (argmax) "
        f"evaluation. Benchmark wall time {time.perf_counter() - t0:.0f} s (PPO included when "
        f"it ran now) on a 2-core CPU shared with other jobs (load {os.getloadavg()[0]:.1f} at "
        f"the end). Produced by `{command}`.")
    sections = load_sections()
    sections[command] = {"command": command, "start": key, "rows": rows, "ppo_args": asdict(p),
                         "ppo_summary": summary, "il_summary": il_summary,
                         "benchmark_seconds": time.perf_counter() - t0, "note": note}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".md").write_text(render(sections))
    RESULTS.with_suffix(".json").write_text(json.dumps({"sections": sections}, indent=2,
                                                       default=str))
    print(render(sections))


if __name__ == "__main__":
    main(tyro.cli(Args))
