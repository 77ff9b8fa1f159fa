"""The abstention trade-off on rlft/Research-v0: what the abstain reward teaches, and what
imitation alone does with an expert that abstains against one that never does.

    python benchmarks/research_abstention.py     # -> benchmarks/results/research_abstention.{md,json,png}

1. Expert demos on the train split, twice: from the expert (it abstains where the wiki lacks the
   fact) and from the same expert made to answer a guess there instead; a ChoicePolicy is
   behaviour-cloned on each.
2. From the first clone, PPO on the train split with correct +1 / wrong -1 and the abstain
   reward swept (``--abstain-rewards``).
3. Every policy, and always-abstain, on the same held-out test questions, scored with the
   env's default table (+1 / 0 / -1): success, accuracy on answerable questions, abstention on
   answerable and on unanswerable ones, mean reward.
Stages already in ``--work`` are reused.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

RESULTS = Path(__file__).parent / "results" / "research_abstention"
ENV = "rlft/Research-v0"


@dataclass
class Args:
    """Abstention sweep on the research env."""

    work: Path = Path("runs/bench-research-abstention")
    """Where demos, checkpoints and PPO runs go (reused when present)."""
    demos: int = 500
    """Expert demo episodes per expert."""
    epochs: int = 20
    """Imitation epochs."""
    updates: int = 30
    """PPO updates per abstain reward."""
    abstain_rewards: tuple[float, ...] = (-0.25, 0.0, 0.3)
    """Abstain rewards to train with (correct +1, wrong -1)."""
    episodes: int = 200
    """Test questions per agent."""
    seed: int = 0
    """Seed of every stage."""


def main(args: Args) -> None:
    """Run the stages and write the results."""
    import rlft.envs  # noqa: F401
    from rlft.envs.web.research.expert import ResearchExpert
    from rlft.training.benchmark import evaluate_agents
    from rlft.training.configs import ImitateArgs, PPOArgs
    from rlft.training.demos import collect, demos_complete
    from rlft.training.evaluate import markdown_table
    from rlft.training.imitation import imitate
    from rlft.training.ppo import train_ppo
    from rlft.training.presets import resolve

    t0 = time.perf_counter()
    clones = {}
    for name, abstains in (("abstaining", True), ("never-abstaining", False)):
        demos, il = args.work / f"demos-{name}", args.work / f"il-{name}"
        if not demos_complete(demos):
            collect(ENV, args.demos, demos, seed=args.seed,
                    agent=lambda env, a=abstains: ResearchExpert(env, abstains=a))
        if not (il / "summary.json").exists():
            imitate(ImitateArgs(demos=demos, out=il, env=ENV, epochs=args.epochs,
                                seed=args.seed))
        clones[f"IL ({name} expert)"] = str(il)
    runs = {}
    for r in args.abstain_rewards:
        out = args.work / f"ppo-abstain{r:+g}"
        if not (out / "summary.json").exists():
            train_ppo(PPOArgs(env=ENV, policy=clones["IL (abstaining expert)"], out=str(out),
                              updates=args.updates, seed=args.seed, eval_episodes=0,
                              checkpoint_every=0, progress=False,
                              env_kwargs=(f'rewards={{"abstain": {r}}}',)))
        runs[f"IL+RL (abstain {r:+g})"] = str(out / "policy")
    ppo = resolve(PPOArgs(env=ENV, policy=""))
    agents = {"always-abstain": "always:abstain", **clones, **runs}
    results = evaluate_agents(ENV, agents, episodes=args.episodes, split="test",
                              seed=10_000)
    rows = [r.to_dict() for r in results]
    note = (f"Test split, the same {args.episodes} questions for every agent, scored with the "
            f"default table (correct +1, abstain 0, wrong -1; `reward` is its mean). Clones: "
            f"{args.demos} expert demos each, {args.epochs} epochs of behaviour cloning of the "
            f"MiniLM ChoicePolicy. IL+RL: {args.updates} PPO updates ({ppo.num_envs} envs x "
            f"{ppo.num_steps} turns, lr {ppo.learning_rate:g}: the research preset; sparse "
            f"reward) from the abstaining expert's clone, trained with the abstain reward "
            f"shown. Produced by `python benchmarks/research_abstention.py` in "
            f"{time.perf_counter() - t0:.0f} s on a 2-core CPU (load "
            f"{os.getloadavg()[0]:.1f} at the end).")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps({"args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": rows}, indent=2))
    plot(rows, args.abstain_rewards, RESULTS.with_suffix(".png"))
    text = markdown_table(results, note) + "\n"
    RESULTS.with_suffix(".md").write_text(text)
    print(text)


def plot(rows: list[dict], rewards: tuple[float, ...], path: Path) -> None:
    """The rates of the IL+RL runs against the abstain reward they were trained with."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {r["name"]: r for r in rows}
    runs = [by_name[f"IL+RL (abstain {r:+g})"] for r in rewards]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("answerable accuracy", "accuracy (answerable)"),
                       ("abstains answerable", "abstains (answerable)"),
                       ("answers unanswerable", "answers (unanswerable)")):
        ax.plot(rewards, [r["metrics"][key] for r in runs], marker="o", label=label)
    ax.plot(rewards, [r["mean_return"] for r in runs], marker="s", color="k",
            label="mean reward (+1/0/-1)")
    ax.set_xlabel("abstain reward in training")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(tyro.cli(Args))
