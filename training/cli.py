"""The ``rlft`` command: one entry point for environments, evaluation and training.

    rlft envs                          list the registered environments
    rlft play rlft/Shop-v1 --seed 3    play an env in the terminal
    rlft evaluate --env rlft/Shop-v1 --agent expert|random|PATH --episodes 100
    rlft collect --env rlft/Shop-v1 --episodes 500 --out runs/demos
    rlft imitate --policy choice --env rlft/Shop-v1 --demos runs/demos --out runs/il-shop
    rlft benchmark --agents random expert runs/il-shop --envs rlft/Shop-v1
    rlft train ppo --env rlft/Shop-v1 --policy runs/il-shop --out runs/ppo-shop
    rlft train rest --env rlft/Shop-v1 --policy runs/il-shop --demos runs/demos --out runs/rest
    rlft demo --out runs/demo          the main job: demos -> imitation -> RL -> table
    rlft setup-browser                 install a Chromium for the browser backend
"""

from __future__ import annotations

import json
import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
# made MiniLM encoding 2x slower (11.8 s -> 5.4 s for 400 texts at load 4). Read when torch
# loads, which the commands do lazily, after this line.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path
from typing import Annotated

import tyro

from rlft.training.configs import (
    BenchmarkArgs,
    ImitateArgs,
    PPOArgs,
    PretrainClipArgs,
    RestArgs,
    parse_env_kwargs,
)
from rlft.training.main_job import MainJobArgs


def envs() -> None:
    """List every registered rlft environment with a one-line description."""
    from rich.console import Console
    from rich.table import Table

    from rlft.envs import ENV_DESCRIPTIONS

    table = Table("id", "description", "max steps")
    import gymnasium as gym

    for env_id, text in ENV_DESCRIPTIONS.items():
        spec = gym.spec(env_id)
        table.add_row(env_id, text, str(spec.max_episode_steps))
    Console(width=140).print(table)


def play(env_id: tyro.conf.Positional[str], seed: int = 0, split: str = "train",
         reward_mode: str = "shaped", env_kwargs: tuple[str, ...] = ()) -> None:
    """Play an environment in the terminal: the page and valid actions are shown; type an
    action (or the number of a valid action) per line; 'reset' starts over, 'quit' leaves.
    --env-kwargs KEY=VALUE ... (values read as JSON) configure the env, e.g. catalog_seed=7."""
    from rlft.training.play import play_text

    play_text(env_id, seed=seed, split=split, reward_mode=reward_mode,
              **parse_env_kwargs(env_kwargs, "split", "reward_mode"))


def evaluate(env: str = "rlft/Shop-v1", agent: str = "expert",
             episodes: int = 100, split: str = "test", seed: int = 0,
             out: Path | None = None, concurrency: int = 1,
             env_kwargs: tuple[str, ...] = ()) -> None:
    """Evaluate an agent: 'expert', 'random' or a checkpoint directory written by
    `rlft imitate`; print a table (and write JSON to --out). --concurrency N plays N episodes
    side by side, a trained policy deciding their turns together (what a GPU wants).
    --env-kwargs KEY=VALUE ... (values read as JSON) configure the env: e.g. catalog_seed=7
    (another store catalog), corpus_seed=3 (another wiki), backend=browser."""
    from rlft.training.benchmark import evaluate_agents
    from rlft.training.evaluate import print_table

    results = evaluate_agents(env, [agent], episodes=episodes, split=split, seed=seed,
                              concurrency=concurrency,
                              **parse_env_kwargs(env_kwargs, "split"))
    print_table(results, title=f"{env} ({split} split)")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([r.to_dict() for r in results], indent=2))


def setup_browser() -> None:
    """Install a Chromium for the browser backend (Playwright's, else Debian's as root)."""
    from rlft.envs.web.chromium import ChromiumNotFound, install_chromium

    try:
        print(f"Chromium: {install_chromium()}")
    except ChromiumNotFound as e:
        print(f"warning: {e}", file=sys.stderr)
        print("The text backend works without it; the browser backend needs it.", file=sys.stderr)


def collect(env: str = "rlft/Shop-v1", episodes: int = 500, out: Path = Path("runs/demos"),
            split: str = "train", seed: int = 0, env_kwargs: tuple[str, ...] = ()) -> None:
    """Record expert demonstrations (trajectories.jsonl + meta.json in --out; see README).
    --env-kwargs KEY=VALUE ... (values read as JSON) configure the env; meta.json keeps them
    and `rlft imitate` validates on the same env."""
    from rich.progress import Progress

    from rlft.training.demos import collect as collect_demos

    with Progress(transient=True) as bar:
        task = bar.add_task(f"collect {env}", total=episodes)
        meta = collect_demos(env, episodes, out, split=split, seed=seed,
                             progress=lambda n: bar.update(task, completed=n),
                             **parse_env_kwargs(env_kwargs, "split"))
    print(f"{meta['episodes']} episodes, {meta['steps']} steps, expert success "
          f"{meta['expert_success']:.3f} -> {out}")


def imitate(args: Annotated[ImitateArgs, tyro.conf.arg(name="")]) -> None:
    """Imitate demos: BC (choice, clip) or SFT on action tokens (lm); the best epoch by val
    loss is saved in --out, checkpoint.pt makes a rerun resume."""
    from rlft.training.imitation import imitate as run_imitation

    summary = run_imitation(args)
    last = summary["history"][-1] if summary["history"] else {}
    best = summary["best_val_loss"]
    print(f"trained on {summary['train_turns']} turns in {summary['train_seconds']:.0f}s; "
          f"best val loss {best if best is None else f'{best:.3f}'}, last {last} -> {args.out}")
    if "val_eval" in summary:
        print(f"val success {summary['val_eval']['success']:.3f} "
              f"score {summary['val_eval']['score']:.3f}")


def train(args: Annotated[Annotated[PPOArgs, tyro.conf.subcommand("ppo")]
                          | Annotated[RestArgs, tyro.conf.subcommand("rest")],
                          tyro.conf.arg(name="")]) -> None:
    """RL fine-tune a policy checkpoint: `rlft train ppo --env ID --policy DIR --out DIR`, or
    self-train it on its own successes: `rlft train rest ... --demos DEMOS`."""
    if isinstance(args, RestArgs):
        from rlft.training.rest import train_rest as run
    else:
        from rlft.training.ppo import train_ppo as run

    summary = run(args)
    if "test" in summary:
        from rlft.training.evaluate import EvalResult, print_table

        print_table([EvalResult(**summary[k]) for k in ("test_start", "test")],
                    title=f"{args.env}: test split, {args.eval_episodes} episodes "
                          f"(start = {args.policy})")
    print(f"policy -> {args.out}/policy, logs -> {args.out}/tb")


def demo(args: Annotated[MainJobArgs, tyro.conf.arg(name="")]) -> None:
    """The main job: expert demos -> imitation -> RL (`--rl ppo|rest`) -> a random / IL /
    IL+RL / expert table on the test split (what `make demo` runs, on these embedded defaults;
    `--env rlft/Research-v0` is `make demo-research`, self-training on one-turn deviations,
    with always-abstain and abstention rates)."""
    from rlft.training.main_job import run_main_job

    run_main_job(args)


def benchmark(args: Annotated[BenchmarkArgs, tyro.conf.arg(name="")]) -> None:
    """Benchmark agents x envs: markdown table with 95% CIs, JSON and a bar chart PNG."""
    from rlft.training.benchmark import markdown, run_benchmark

    print(markdown(run_benchmark(args), args.note))


def pretrain_clip(args: Annotated[PretrainClipArgs, tyro.conf.arg(name="")]) -> None:
    """Pretrain a small CLIP on tabletop renders with generated captions (crop and dense
    objectives; more colours than the tasks use)."""
    from rlft.training.pretrain_clip import pretrain_clip as run

    summary = run(args)
    print(f"CLIP saved to {args.out}: loss {summary['first_loss']:.3f} -> "
          f"{summary['last_loss']:.3f} (dense {summary['first_dense_loss']:.3f} -> "
          f"{summary['last_dense_loss']:.3f}); held-out retrieval / dense grounding: task "
          f"colours {summary['retrieval_test_seen']:.3f} / {summary['grounding_test_seen']:.3f}, "
          f"unseen split {summary['retrieval_unseen']:.3f} / {summary['grounding_unseen']:.3f}, "
          f"never-seen colours {summary['retrieval_never']:.3f} / "
          f"{summary['grounding_never']:.3f} (retrieval chance {summary['chance']:.3f})")


COMMANDS = {
    "envs": envs,
    "play": play,
    "evaluate": evaluate,
    "collect": collect,
    "imitate": imitate,
    "benchmark": benchmark,
    "pretrain-clip": pretrain_clip,
    "train": train,
    "demo": demo,
    "setup-browser": setup_browser,
}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``rlft`` console script."""
    try:
        tyro.extras.subcommand_cli_from_dict(COMMANDS, prog="rlft", args=argv,
                                             description=__doc__)
    except Exception as e:
        # User errors (bad paths, wrong env/policy pairing, bad arguments, unknown env ids)
        # get one clear line; RLFT_DEBUG=1 shows the traceback.
        user_error = isinstance(e, (FileNotFoundError, FileExistsError, ValueError, TypeError,
                                    PermissionError, IsADirectoryError, NotADirectoryError))
        if os.environ.get("RLFT_DEBUG") or not (
                user_error or type(e).__module__.startswith("gymnasium.error")):
            raise
        print(f"rlft: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
