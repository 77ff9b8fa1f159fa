"""One ClipPolicy over all six tabletop tasks (CLIPort's multi-task setting): IL at 10 and 100
demos per task, and IL(10) + RL, on seen (test split) and unseen colours / objects, per task.

    python benchmarks/tabletop_multitask.py [--demos-per-task 100] [--few 10] [--episodes 100]

Stages (each reused when its output exists under ``--work``):

1. ``rlft pretrain-clip`` (broad: every task colour and more, crop and dense objectives);
2. expert demos on ``rlft/Tabletop-v0`` (train split; seeds 0..6N-1, so ``seed % 6`` gives
   each task exactly N demos);
3. behaviour cloning of one ClipPolicy on the first ``6 * few`` demos (IL(few)) and on all of
   them (IL(N)), the tabletop preset's batch and learning rate;
4. RL from IL(few) on ``rlft/Tabletop-v0`` (train split), each with the tabletop preset: PPO,
   and ReST (``rlft train rest``: rounds of sampled episodes, behaviour cloning on what the
   preset keeps of them, every rewarded turn, with the IL(few) demos);
5. every agent on every task's own env id, ``--episodes`` seeded episodes of the test split
   (seen colours and objects) and of the unseen split.

Writes ``benchmarks/results/tabletop_multitask.{md,json}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tyro

from rlft.envs import tabletop_task_ids
from rlft.envs.tabletop.tasks import TASKS
from rlft.training.benchmark import evaluate_agents
from rlft.training.configs import ImitateArgs, PPOArgs, PretrainClipArgs, RestArgs
from rlft.training.demos import TRAJECTORY_FILE, collect
from rlft.training.imitation import imitate
from rlft.training.ppo import train_ppo
from rlft.training.pretrain_clip import pretrain_clip
from rlft.training.rest import train_rest

RESULTS = Path(__file__).resolve().parent / "results" / "tabletop_multitask"
MULTI = "rlft/Tabletop-v0"
#: each task's own env id (the multi-task policy is evaluated on each alone)
TASK_IDS = tabletop_task_ids()


def checkpoints(work: Path, few: int = 10, many: int = 100) -> dict[str, Path]:
    """Where this benchmark leaves each agent's checkpoint under ``work`` (the layout
    ``tabletop_target.py`` and ``tabletop_insertion_errors.py`` read): name -> policy folder."""
    return {f"IL({few})": work / f"il-{few}", f"IL({many})": work / f"il-{many}",
            f"IL({few})+PPO": work / f"ppo-from-{few}" / "policy",
            f"IL({few})+ReST": work / f"rest-from-{few}" / "policy"}


@dataclass
class PlayArgs:
    """The arguments of the scripts that play this benchmark's agents on seeded test games
    (``tabletop_insertion_errors.py``, ``tabletop_pyramid_errors.py``)."""

    work: Path = Path("runs/bench-tabletop-multi")
    """The ``--work`` folder of ``benchmarks/tabletop_multitask.py`` (default agents)."""
    agents: tuple[str, ...] = ()
    """Agents as NAME=PATH (default: the checkpoints under ``--work``)."""
    episodes: int = 100
    """Test games per agent (the same for every agent)."""
    seed: int = 10_000
    """Seed of the first game."""


def played_agents(args: PlayArgs, prog: str, required: bool = True) -> dict[str, str]:
    """``args.agents`` as name -> path, else :func:`default_agents` of ``args.work``; exits
    with one line (``prog: ...``) on a malformed item, ``--episodes`` below 1, or (with
    ``required``) no agent at all."""
    if args.episodes < 1:
        sys.exit(f"{prog}: --episodes must be at least 1, got {args.episodes}")
    agents = named_paths(args.agents, "--agents", prog) or default_agents(args.work)
    if not agents and required:
        sys.exit(f"{prog}: no checkpoints under {args.work}; run `python "
                 f"benchmarks/tabletop_multitask.py --work {args.work}` or pass --agents")
    return agents


def named_paths(items: tuple[str, ...], flag: str, prog: str) -> dict[str, str]:
    """``NAME=PATH`` items as name -> path; exits with one line (``prog: ...``) on a malformed
    one."""
    named = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            sys.exit(f"{prog}: {flag} takes NAME=PATH, got {item!r}")
        named[name] = path
    return named


def measure_each(agents: dict[str, str], measure: Callable[[str], dict], prog: str
                 ) -> dict[str, dict]:
    """``measure(path)`` of every agent, printed as it comes: name -> result; exits with one
    line on a missing or foreign checkpoint."""
    rows = {}
    for name, spec in agents.items():
        try:
            rows[name] = measure(spec)
        except (FileNotFoundError, ValueError) as e:
            sys.exit(f"{prog}: {name}: {e}")
        print(name, rows[name], flush=True)
    return rows


def measured_by(seconds: float, load0: float, in_all: bool = False) -> str:
    """The results note's first words: the command as run (``python benchmarks/SCRIPT ARGS``),
    when, how long (``in_all``: "N min in all") and the machine's load at the start and now."""
    command = "".join(f" {a}" for a in sys.argv[1:])
    return (f"Measured by `python benchmarks/{Path(sys.argv[0]).name}{command}` on "
            f"{time.strftime('%Y-%m-%d %H:%M')}: {seconds / 60:.0f} min"
            f"{' in all' if in_all else ''} on the 2-core CPU (1-minute load {load0:.1f} at the "
            f"start, {os.getloadavg()[0]:.1f} at the end)")


def write_results(out: Path, markdown: list[str], data: dict) -> None:
    """``out.json`` (``data``) and ``out.md`` (the ``markdown`` lines, written last: they mark
    the results complete); the markdown printed too."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str))
    out.with_suffix(".md").write_text("\n".join(markdown) + "\n")
    print("\n".join(markdown))


def default_agents(work: Path) -> dict[str, str]:
    """The checkpoints of :func:`checkpoints` under ``work`` that exist: name -> path (the
    agents the error benchmarks play by default)."""
    return {name: str(p) for name, p in checkpoints(work).items()
            if (p / "rlft_policy.json").is_file()}


@dataclass
class Args:
    """Multi-task tabletop benchmark."""

    demos_per_task: int = 100
    """Demos per task for the large imitation run."""
    few: int = 10
    """Demos per task for the small imitation run that PPO starts from."""
    epochs_few: int = 40
    """Behaviour-cloning epochs on the few demos."""
    epochs_all: int = 15
    """Behaviour-cloning epochs on all the demos."""
    policy_config: tuple[str, ...] = ("text_gates=true", "augment=true", "rotations=36",
                                      "offsets=true", "transport=true", "cell_pixels=true")
    """ClipPolicy settings (KEY=VALUE): text gates let the place head read "left / middle /
    right peg"; 36 rotations (10 degrees) because block insertion wants the angle within 10;
    sub-cell offsets because stacking and pegs want a place finer than a 12.5 mm cell; the
    transport (a place conditioned on the pick) because an object moves by place minus pick,
    so a place that does not know where the pick fell misses by as much as the pick strays;
    every pixel of a cell because a cell's average hides a block's edges, hence its yaw."""
    ppo_updates: int | None = None
    """PPO updates (default: the tabletop preset)."""
    rest_rounds: int | None = None
    """ReST rounds (default: the tabletop preset)."""
    rest_task_focus: float | None = None
    """ReST's share of each round's episodes given to the tasks the last round failed
    (default: the tabletop preset's)."""
    episodes: int = 100
    """Evaluation episodes per agent, task and split (at 20 the 95% intervals are +-0.2 in the
    middle, wider than most differences between the agents; at 100 about +-0.1)."""
    clip: Path | None = None
    """A CLIP made by ``rlft pretrain-clip`` (default: pretrain one into WORK/clip)."""
    work: Path = Path("runs/bench-tabletop-multi")
    """Where the CLIP, demos and checkpoints go."""
    out: Path = RESULTS
    """The results files, OUT.md and OUT.json."""
    seed: int = 0


def main(args: Args) -> None:
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    work = args.work
    clip = args.clip or work / "clip"
    timings: dict[str, float] = {}
    if not (clip / "pretrain_summary.json").exists():
        t = time.perf_counter()
        pretrain_clip(PretrainClipArgs(out=clip, seed=args.seed))
        timings["pretrain_s"] = time.perf_counter() - t
    clip_summary = json.loads((clip / "pretrain_summary.json").read_text())
    demos = work / "demos"
    n_tasks = len(TASKS)
    if not (demos / TRAJECTORY_FILE).exists():
        t = time.perf_counter()
        collect(MULTI, n_tasks * args.demos_per_task, demos, seed=args.seed)
        timings["collect_s"] = time.perf_counter() - t
    saved = checkpoints(work, args.few, args.demos_per_task)
    agents = {}
    for name, count, epochs in ((f"IL({args.few})", args.few, args.epochs_few),
                                (f"IL({args.demos_per_task})", args.demos_per_task,
                                 args.epochs_all)):
        out = saved[name]
        if not (out / "summary.json").exists():
            t = time.perf_counter()
            imitate(ImitateArgs(demos=demos, out=out, env=MULTI, policy="clip", model=str(clip),
                                policy_config=args.policy_config, max_demos=n_tasks * count,
                                epochs=epochs, val_episodes=12, seed=args.seed))
            timings[f"imitate_{count}_s"] = time.perf_counter() - t
        agents[name] = str(out)
    ppo_dir = saved[f"IL({args.few})+PPO"].parent
    if not (ppo_dir / "summary.json").exists():
        t = time.perf_counter()
        train_ppo(PPOArgs(env=MULTI, policy=agents[f"IL({args.few})"], out=str(ppo_dir),
                          updates=args.ppo_updates, eval_episodes=0, seed=args.seed))
        timings["ppo_s"] = time.perf_counter() - t
    ppo = json.loads((ppo_dir / "summary.json").read_text())
    agents[f"IL({args.few})+PPO"] = str(ppo_dir / "policy")
    rest_dir = saved[f"IL({args.few})+ReST"].parent
    if not (rest_dir / "summary.json").exists():
        t = time.perf_counter()
        train_rest(RestArgs(env=MULTI, policy=agents[f"IL({args.few})"], out=rest_dir,
                            demos=demos, max_demos=n_tasks * args.few, rounds=args.rest_rounds,
                            task_focus=args.rest_task_focus,
                            val_episodes=0, seed=args.seed))
        timings["rest_s"] = time.perf_counter() - t
    rest = json.loads((rest_dir / "summary.json").read_text())
    agents[f"IL({args.few})+ReST"] = str(rest_dir / "policy")
    rows = []
    for task, env_id in TASK_IDS.items():
        for split in ("test", "unseen"):
            for result in evaluate_agents(env_id, agents, episodes=args.episodes, split=split,
                                          seed=10_000, timed=True):
                rows.append({"task": task, "split": split, **result.to_dict()})
                print(task, split, result.name, f"{result.success:.2f}")
    write(rows, args, clip_summary, ppo, rest, timings, time.perf_counter() - t0, load0)


def write(rows: list[dict], args: Args, clip_summary: dict, ppo: dict, rest: dict,
          timings: dict[str, float], seconds: float, load0: float) -> None:
    """The per-task table, the targets and how the run was made."""
    few, many = f"IL({args.few})", f"IL({args.demos_per_task})"
    rls = (f"{few}+PPO", f"{few}+ReST")
    names = (few, many, *rls)
    cell = {(r["task"], r["split"], r["name"]): r for r in rows}

    def fmt(task: str, split: str, name: str) -> str:
        r = cell[(task, split, name)]
        return f"{r['success']:.2f} [{r['success_ci'][0]:.2f}, {r['success_ci'][1]:.2f}]"

    lines = []
    for split, title in (("test", "seen (test split)"), ("unseen", "unseen colours / objects")):
        lines += [f"**{title}**", "", "| task | " + " | ".join(names) + " |",
                  "|---|" + "---:|" * len(names)]
        for task in TASK_IDS:
            lines.append(f"| {task} | " + " | ".join(fmt(task, split, n) for n in names) + " |")
        lines.append("")
    above_zero = sum(cell[(task, "test", many)]["success"] > 0 for task in TASK_IDS)
    rl_wins = {rl: sum(cell[(task, "test", rl)]["success"]
                       >= cell[(task, "test", many)]["success"] for task in TASK_IDS)
               for rl in rls}
    best = max(rls, key=lambda rl: rl_wins[rl])
    bowl_seen = cell[("put-block-in-bowl", "test", best)]["success"]
    bowl_unseen = cell[("put-block-in-bowl", "unseen", best)]["success"]
    rest_rounds = [{k: ({t: round(x, 2) for t, x in v.items()} if isinstance(v, dict)
                        else round(v, 2) if isinstance(v, float) else v) for k, v in r.items()
                    if k in ("round", "sampled_success", "sampled_success_by_task",
                             "train_turns")}
                   for r in rest.get("history", []) if r.get("round")]
    rest_args = rest.get("args", {})
    # the rounds' own times (summary's "seconds" is only the last invocation's when resumed)
    rest_minutes = sum(r.get("sample_seconds", 0) + r.get("train_seconds", 0)
                       for r in rest.get("history", [])) / 60
    kept = ("every rewarded turn (an object placed, a sub-goal reached) of the episodes "
            "sampled so far, failed ones included," if rest_args.get("keep") == "progress"
            else "the successful episodes sampled so far")
    history = [round(h.get("success", float("nan")), 2) for h in ppo.get("history", [])]
    # per task, over the episodes that finished in the first and in the last update's window
    rows_by_task = [h["success_by_task"] for h in ppo.get("history", []) if "success_by_task" in h]
    first_last = [{t: round(v, 2) for t, v in h.items()}
                  for h in (rows_by_task[:1] + rows_by_task[-1:] if len(rows_by_task) > 1
                            else rows_by_task)]
    focus = (f" ({rest_args['task_focus']} of them spread over the tasks by the last round's "
             f"failure rates, `--task-focus`; episodes per task each round: "
             f"{[r.get('sampled_by_task') for r in rest.get('history', []) if r.get('round')]})"
             if rest_args.get("task_focus") else "")
    note = [
        f"{measured_by(seconds, load0, in_all=True)}; stage times (s, where run now): "
        f"{json.dumps({k: round(v) for k, v in timings.items()})}.",
        "",
        f"One ClipPolicy ({', '.join(args.policy_config) or 'defaults'}) on a CLIP pretrained "
        f"here ({clip_summary['steps']} steps; held-out dense grounding: task colours "
        f"{clip_summary.get('grounding_test_seen', float('nan')):.2f}, unseen split "
        f"{clip_summary.get('grounding_unseen', float('nan')):.2f}, never-seen colours "
        f"{clip_summary.get('grounding_never', float('nan')):.2f}). {few}: behaviour cloning "
        f"on {args.few} demos per task ({args.epochs_few} epochs); {many}: on "
        f"{args.demos_per_task} per task ({args.epochs_all} epochs); {rls[0]}: {few} after PPO on "
        f"rlft/Tabletop-v0 (tabletop preset, {ppo.get('updates')} updates, "
        f"{ppo.get('global_step')} env steps, {ppo.get('samples_per_s', float('nan')):.1f} env "
        f"steps/s; training success per update {history}: the first update's finished "
        f"episodes are the short tasks', so read it per task, first and last update: "
        f"{first_last or 'not logged'}). Success with 95% intervals over "
        f"{args.episodes} episodes per agent, task and split (seen = test split, unseen = "
        f"colours / objects no demo shows).",
        "",
        f"{rls[1]}: {few} after self-training (`rlft train rest`, tabletop preset: "
        f"{rest_args.get('rounds')} rounds of {rest_args.get('episodes')} episodes sampled at "
        f"temperature {rest_args.get('temperature')}{focus}, each followed by "
        f"{rest_args.get('epochs')} epochs of behaviour cloning on {kept} and the {few} "
        f"demos; {rest_minutes:.0f} min). Success of the sampled episodes per round, overall "
        f"and per task where logged: {rest_rounds}.",
        "",
        f"Targets: every task above 0 after {many}: {above_zero}/6; RL from {few} >= {many} on "
        f"at least 4 of 6 tasks: " + ", ".join(f"{rl} {rl_wins[rl]}/6" for rl in rls)
        + f"; unseen >= 0.8 x seen on put-block-in-bowl ({best}): "
        f"{bowl_unseen:.2f} vs {bowl_seen:.2f}.",
    ]
    write_results(args.out, lines + [""] + note,
                  {"rows": rows, "clip": clip_summary,
                   "ppo": {k: v for k, v in ppo.items() if k != "history"}, "rest": rest,
                   "timings": timings, "seconds": seconds})


if __name__ == "__main__":
    main(tyro.cli(Args))
