"""The main job (``rlft demo`` / ``make demo``): demos -> imitation -> RL -> evaluation.

1. collect a few expert demos on the train split (few enough that imitation alone is mediocre);
2. imitation-tune the MiniLM ChoicePolicy on them;
3. RL fine-tune the imitation checkpoint on the train split: PPO (``--rl ppo``, the stores'
   preset) or self-training on the policy's own rewarded episodes with the demos mixed in
   (``--rl rest``, the research wiki's preset, whose rounds search one-turn deviations of the
   policy's failed episodes: :mod:`rlft.training.rest`);
4. evaluate random / IL / IL+RL / expert on the same test-split episodes and print a table with
   95% intervals; write ``results.{md,json}`` and a learning-curve PNG beside the checkpoints.

Every stage writes into ``--out`` and marks itself complete with a file written last (demos:
``meta.json``; imitation, PPO and self-training: ``summary.json``); a complete stage is reused,
a half-written one is redone (collect) or resumed from its checkpoint (imitation, PPO) or its
last finished round (self-training), with a line saying so. ``--out`` keeps the settings that made it (``job.json``): a run with other settings (more demos, another seed...) into the same directory
stops with an error instead of reusing stages made for the old ones.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import rlft.envs  # noqa: F401  (registers the ids)
from rlft.agents.defaults import DEFAULT_ENCODER
from rlft.training.configs import ImitateArgs, PPOArgs, RestArgs

#: the RL stages ``--rl`` picks from; each writes into ``--out``/its name
RL_STAGES = ("ppo", "rest")
#: test episodes a policy plays side by side in the tables (its turns scored in one batch; a
#: greedy policy's results are the same as one at a time)
EVAL_CONCURRENCY = 16


@dataclass
class MainJobArgs:
    """Imitation then RL fine-tuning of the MiniLM choice policy, with an evaluation table.

    The stages' own configs are composed here (``--imitate.*``, and ``--ppo.*`` or
    ``--rest.*`` for the RL stage ``--rl`` picks); the job sets their env, directories, model
    and seed itself."""

    env: str = "rlft/Shop-v1"
    """Web environment id: rlft/Shop-v1 (the main job, the hard store), rlft/Shop-v0 (the easy
    store) or rlft/Research-v0 (the second one, ``make demo-research``)."""
    out: str = "runs/demo"
    """Run directory (demos/, il/, ppo/ or rest/, results.md, results.json,
    learning_curve.png)."""
    model: str = DEFAULT_ENCODER
    """Text encoder of the choice policy: HF name or local path (default: the bundled MiniLM)."""
    demos: int | None = None
    """Expert demo episodes for imitation (preset: 20; research 1,000; rlft/Shop-v1 50)."""
    eval_episodes: int = 200
    """Test-split episodes per agent in the final table."""
    held_out: bool = True
    """Also evaluate IL and IL+RL where they never trained: the ``unseen`` split and a store /
    wiki built from another seed (the generalisation table)."""
    seed: int = 0
    """Seed of every stage."""
    imitate: ImitateArgs = field(default_factory=ImitateArgs)
    """Imitation settings (``rlft imitate``, the main job's preset where unset: 15 epochs;
    research 12; demos, out, env, model and seed come from the job)."""
    rl: Literal["ppo", "rest"] | None = None
    """The RL stage: ``ppo`` (``rlft train ppo``) or ``rest``, self-training on the policy's
    own successes with the job's demos mixed in (``rlft train rest``) (preset: ppo; research
    rest, whose preset searches one-turn deviations of failed episodes)."""
    ppo: PPOArgs = field(default_factory=lambda: PPOArgs(eval_episodes=0))
    """PPO settings, with ``--rl ppo`` (``rlft train ppo``, the env's preset where unset; env,
    policy, out, seed and resume come from the job)."""
    rest: RestArgs = field(default_factory=RestArgs)
    """Self-training settings, with ``--rl rest`` (``rlft train rest``, the env's preset where
    unset, research: 6 rounds of 600 questions, 6,000 turns a cloning pass; env, policy,
    demos, out and seed come from the job)."""

    def stages(self) -> tuple[ImitateArgs, PPOArgs, RestArgs]:
        """The imitation, PPO and self-training configs this job composes (it runs the RL
        stage :meth:`rl_stage` picks)."""
        from rlft.training.presets import preset, resolve

        job = preset(MainJobArgs, self.env)
        stage = {name: {k.split(".", 1)[1]: v for k, v in job.items()
                        if k.startswith(name + ".") and getattr(cfg, k.split(".", 1)[1]) is None}
                 for name, cfg in (("imitate", self.imitate), ("ppo", self.ppo),
                                   ("rest", self.rest))}
        out = Path(self.out)
        il = replace(self.imitate, demos=out / "demos", out=out / "il", env=self.env,
                     model=self.model, seed=self.seed, **stage["imitate"])
        ppo = replace(self.ppo, env=self.env, policy=str(out / "il"), out=str(out / "ppo"),
                      seed=self.seed, resume=True, **stage["ppo"])
        rest = replace(self.rest, env=self.env, policy=str(out / "il"), out=out / "rest",
                       demos=out / "demos", seed=self.seed, **stage["rest"])
        return resolve(il), resolve(ppo), resolve(rest)

    def resolved(self) -> MainJobArgs:
        """These settings with the env's preset where unset (the stages composed)."""
        from rlft.training.presets import preset

        il, ppo, rest = self.stages()
        job = preset(MainJobArgs, self.env)
        demos = self.demos if self.demos is not None else job["demos"]
        rl = self.rl if self.rl is not None else job["rl"]
        return replace(self, demos=demos, rl=rl, imitate=il, ppo=ppo, rest=rest)

    def rl_stage(self) -> tuple[str, PPOArgs | RestArgs]:
        """``(name, config)`` of the RL stage this job runs (``--rl``, presets resolved)."""
        args = self.resolved()
        assert args.rl is not None
        return args.rl, args.ppo if args.rl == "ppo" else args.rest


def run_main_job(args: MainJobArgs) -> list[Any]:
    """Run the four stages; returns the evaluation results (random, always-abstain on envs
    with abstention, IL, IL+RL, expert)."""
    import gymnasium as gym

    from rlft.training.benchmark import evaluate_agents
    from rlft.training.demos import collect, demos_complete
    from rlft.training.evaluate import markdown_table, print_table
    from rlft.training.imitation import SUMMARY, imitate
    from rlft.training.imitation import check_args as check_imitate
    from rlft.training.ppo import check_args as check_ppo
    from rlft.training.ppo import train_ppo
    from rlft.training.rest import check_args as check_rest
    from rlft.training.rest import train_rest

    args = args.resolved()
    if args.demos < 1 or args.eval_episodes < 1:
        raise ValueError("--demos and --eval-episodes must be at least 1")
    rl, rl_args = args.rl_stage()
    # Every stage's settings are checked before the first starts: a bad RL setting is
    # refused now, not after the demos and imitation have run.
    for stage, check, stage_args in (("imitate", check_imitate, args.imitate),
                                     (rl, check_ppo if rl == "ppo" else check_rest, rl_args)):
        try:
            check(stage_args)
        except ValueError as e:
            raise ValueError(f"{stage} stage (--{stage}.*): {e}") from None
    out = Path(args.out)
    reused = check_settings(out, args)
    demos, il_dir, rl_dir = out / "demos", out / "il", out / rl
    il_args = args.imitate
    if reused:
        print(f"{out} holds a run with these settings: its finished stages are reused "
              f"(delete {out} or pass --out to start afresh)")
    print(f"[1/4] collecting {args.demos} expert demos -> {demos}")
    if not demos_complete(demos):
        collect(args.env, args.demos, demos, split="train", seed=args.seed)
    print(f"[2/4] imitation ({il_args.epochs} epochs) -> {il_dir}")
    if not (il_dir / SUMMARY).exists():
        imitate(il_args)
    if isinstance(rl_args, PPOArgs):
        print(f"[3/4] PPO fine-tuning ({rl_args.updates} updates) -> {rl_dir}")
    else:
        print(f"[3/4] self-training ({rl_args.rounds} rounds of {rl_args.episodes} episodes, "
              f"sampler {rl_args.sampler}) -> {rl_dir}")
    if (rl_dir / SUMMARY).exists():
        trained = json.loads((rl_dir / SUMMARY).read_text())
    else:
        trained = train_ppo(rl_args) if isinstance(rl_args, PPOArgs) else train_rest(rl_args)
    print(f"[4/4] evaluating on {args.eval_episodes} test episodes per agent")
    agents: dict[str, str] = {"random": "random"}
    probe = gym.make(args.env)
    if "abstain" in getattr(probe.unwrapped, "commands", ()):
        agents["always-abstain"] = "always:abstain"  # the floor of an env with abstention
    probe.close()
    agents.update({"IL": str(il_dir), "IL+RL": str(rl_dir / "policy"), "expert": "expert"})
    results = evaluate_agents(args.env, agents,
                              episodes=args.eval_episodes, seed=10_000, agent_seed=args.seed,
                              concurrency=EVAL_CONCURRENCY)
    print_table(results, title=f"{args.env}: test split, {args.eval_episodes} episodes per agent")
    general: dict[str, list[Any]] = {}
    if args.held_out:
        from rlft.training.presets import held_out

        for where, kwargs in held_out(args.env).items():
            print(f"      generalisation: IL and IL+RL on {where}")
            general[where] = evaluate_agents(
                args.env, {name: agents[name] for name in ("IL", "IL+RL")},
                episodes=args.eval_episodes, seed=10_000, concurrency=EVAL_CONCURRENCY,
                **kwargs)
    settings = _settings(args)
    (out / "results.json").write_text(json.dumps(
        {"args": settings, "results": [r.to_dict() for r in results],
         "held_out": {k: [r.to_dict() for r in v] for k, v in general.items()},
         "rl": rl, "rl_history": trained["history"]}, indent=2))
    plot_learning_curve(trained["history"], results, out / "learning_curve.png",
                        trained.get("args", {}).get("val_episodes"))
    table = generalisation_table(results, general)
    answers = unanswerable_line(general)
    if table:
        print(table)
    if answers:
        print(answers)
    (out / "results.md").write_text(  # last: the job is complete
        f"Produced by `rlft demo` ({json.dumps(settings)}).\n\n{markdown_table(results)}\n"
        + (f"\nGeneralisation (success, 95% CI; {args.eval_episodes} episodes each):\n\n"
           f"{table}\n" if table else "")
        + (f"\n{answers}\n" if answers else ""))
    print(f"wrote {out / 'results.md'} and {out / 'learning_curve.png'}")
    return results


def generalisation_table(results: list[Any], general: dict[str, list[Any]]) -> str:
    """Markdown: IL and IL+RL success on the test split and on each held-out set (results
    as :class:`~rlft.training.evaluate.EvalResult` s or their dicts, as in results.json)."""
    if not general:
        return ""

    def as_dict(r: Any) -> dict[str, Any]:
        return r if isinstance(r, dict) else r.to_dict()

    test = {d["name"]: d for d in map(as_dict, results)}
    names = [n for n in ("IL", "IL+RL") if n in test]
    cols = ["test", *general]
    lines = ["| agent | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name in names:
        cells = [test[name]] + [next(d for d in map(as_dict, general[w]) if d["name"] == name)
                                for w in general]
        lines.append(f"| {name} | " + " | ".join(
            f"{d['success']:.3f} [{d['success_ci'][0]:.2f}, {d['success_ci'][1]:.2f}]"
            for d in cells) + " |")
    return "\n".join(lines)


def unanswerable_line(general: dict[str, list[Any]]) -> str:
    """A sentence on how often IL and IL+RL answer the test split's unanswerable questions
    (the held-out evaluation ``unanswerable``, :data:`rlft.training.presets.HELD_OUT`), with
    95% intervals; "" without that evaluation."""
    from rlft.training.evaluate import wilson_interval

    rows = [r if isinstance(r, dict) else r.to_dict() for r in general.get("unanswerable", [])]
    cells = []
    for d in rows:
        rate = (d.get("metrics") or {}).get("answers unanswerable")
        if rate is None:
            continue
        lo, hi = wilson_interval(round(rate * d["episodes"]), d["episodes"])
        cells.append(f"{d['name']} {rate:.2f} [{lo:.2f}, {hi:.2f}]")
    if not cells:
        return ""
    return (f"Answers where the wiki lacks the fact, on the test split's unanswerable questions "
            f"alone ({rows[0]['episodes']} episodes): {', '.join(cells)}.")


#: MainJobArgs fields that do not change what the stages write
_NOT_STAGE_SETTINGS = ("out", "eval_episodes", "held_out")
#: what a setting meant in runs made before it existed, where that is not today's default
#: (before ``--rl`` the RL stage was PPO; before ``--rest.epoch-turns`` a round cloned every
#: kept turn); other settings missing from an old job.json count as their defaults
SETTINGS_BEFORE: dict[str, Any] = {"rl": "ppo", "rest.epoch_turns": 0}
SETTINGS_FILE = "job.json"


def _settings(args: MainJobArgs) -> dict[str, Any]:
    """The job's settings as flat JSON values (``imitate.epochs``, ``ppo.updates``, ...), the
    stage configs as they run (presets resolved); of the RL stages, only the one it runs."""
    flat: dict[str, Any] = {}
    resolved = args.resolved()
    unused = set(RL_STAGES) - {str(resolved.rl)}
    for key, value in json.loads(json.dumps(asdict(resolved), default=str)).items():
        if key in unused:
            continue
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def check_settings(out: Path, args: MainJobArgs) -> bool:
    """Record ``args`` in ``out/job.json`` on a fresh run; on a rerun, raise a ValueError naming
    the settings that differ from those ``out`` was made with. Returns True when ``out``
    already held a run (so its finished stages are reused)."""
    settings = {k: v for k, v in _settings(args).items() if k not in _NOT_STAGE_SETTINGS}
    path = out / SETTINGS_FILE
    if path.exists():
        old = json.loads(path.read_text())
        for key, before in SETTINGS_BEFORE.items():
            old.setdefault(key, before)
        # A setting added to rlft after the run was made counts as unchanged while it keeps its
        # default: the run was made with what is now the default (e.g. ppo.advantage = gae).
        defaults = _settings(MainJobArgs(env=args.env, out=args.out, model=args.model,
                                         seed=args.seed))
        diff = [f"{k}={old.get(k)!r} there, {v!r} now" for k, v in settings.items()
                if (old[k] if k in old else defaults.get(k)) != v]
        if diff:
            raise ValueError(f"{out} holds a run made with other settings ({'; '.join(diff)}); "
                             f"pass --out NEW_DIR, or delete {out} to redo it")
        return True
    stages = [out / d for d in ("demos", "il", *RL_STAGES) if (out / d).exists()]
    if stages:
        raise ValueError(f"{out} holds stages ({', '.join(str(s) for s in stages)}) but no "
                         f"{SETTINGS_FILE} saying what made them; pass --out NEW_DIR, or delete "
                         f"{out} to redo it")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))
    return False


def plot_learning_curve(history: list[dict[str, Any]], results: list[Any], path: Path,
                        val_episodes: int | None = None) -> None:
    """The RL stage's training success, with the test-split levels of every agent (greedy
    actions): PPO's per update (sampled actions; raw and a 5-update moving average), or
    self-training's per round (the round's train episodes before it trained on them, greedy
    under ``--sampler deviate``; and the val-split success after it, round 0 the clone's, on
    ``val_episodes`` questions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(9, 4))
    if history and "round" in history[0]:
        rounds = [h for h in history if h["round"] > 0]
        train_key = "greedy_success" if rounds and "greedy_success" in rounds[0] \
            else "sampled_success"
        ax.plot([h["round"] - 1 for h in rounds], [h[train_key] for h in rounds], "o-",
                color="tab:blue", label="train success of the round's "
                f"{rounds[0]['sampled'] if rounds else 0} episodes "
                f"({'greedy' if train_key == 'greedy_success' else 'sampled'}), before it")
        val = [h for h in history if h.get("val_success") is not None]
        ax.plot([h["round"] for h in val], [h["val_success"] for h in val], "s--",
                color="tab:green", label="val success after the round"
                + (f" ({val_episodes} questions)" if val_episodes else ""))
        ax.set_xticks(range(max(h["round"] for h in history) + 1))
        ax.set_xlabel("self-training round (0: the clone)")
    elif history:
        x = np.array([h["global_step"] for h in history])
        y = np.array([h["success"] for h in history])
        ax.plot(x, y, color="tab:blue", alpha=0.3, label="PPO train success (recent episodes)")
        k = min(5, len(y))
        smooth = np.convolve(y, np.ones(k) / k, mode="valid")
        ax.plot(x[k - 1 :], smooth, color="tab:blue", label=f"  moving average ({k} updates)")
        ax.set_xlabel("environment steps")
    styles = {"random": "k:", "always-abstain": "m:", "IL": "b--", "IL+RL": "g-.", "expert": "r:"}
    for r in results:
        style = styles.get(r.name, "k-")
        ax.axhline(r.success, linestyle=style[1:], color=style[0], label=f"{r.name} (test)")
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
