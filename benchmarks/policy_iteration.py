"""Policy iteration with exact per-turn credit, distilled: is a web env's ceiling the RL signal
or what the policy can generalise?

    python benchmarks/policy_iteration.py      # research, from the research main job's clone
    python benchmarks/policy_iteration.py --name shop --env rlft/Shop-v1 --policy runs/demo/il \
        --demos runs/demo/demos --env-kwargs reward_mode=shaped --no-to-success --questions 500 --rounds 2
    # -> benchmarks/results/policy_iteration_NAME.{md,json}

Every RL method tried on ``rlft/Research-v0`` (docs/research.md) leaves the clone's test success
where it was. Outcome reward at the end of 6-7 turns is a weak signal; this benchmark replaces
it with the strongest per-turn credit the env allows, to see whether the signal is the limit.
Each round:

1. **Rollouts.** The policy plays ``questions`` train episodes greedily (seeds from
   ``100,000 * round``). At every turn each of its ``k - 1`` next most likely candidates
   is tried and the episode completed greedily. The env is deterministic given its seed and
   actions, so one completion is the exact value of deviating once (Q of the greedy policy).
   A turn is labelled with its best candidate: (success, return) highest, ties to the policy's
   own choice. With ``to_success`` only a deviation that turns the episode into a success
   counts as better (under +1 / 0 / -1, abstaining after a wrong turn also raises the return).
   The *one-step improved* policy (the greedy one, taking the best deviation where one is
   better) succeeds on every episode where some turn has a deviation that succeeds.
2. **Distillation.** Behaviour cloning from the round's policy on the demos plus, from every
   round so far, the turns whose label beat the policy's choice and every turn of the
   successful greedy episodes (``epochs`` at ``lr``, batch 64: self-training's settings).
3. **Measure.** Greedy success of the new policy on the round's train episodes (how much of
   the improvement it fits) and on ``episodes`` held-out test episodes (how much carries),
   beside the starting policy on the same test episodes.

A finished round (``WORK/round-K/round.json``) and a policy's test row
(``WORK/round-K/test-EPISODES.json``) are reused on a rerun, so ``--rounds 8`` after
``--rounds 5`` plays and evaluates only rounds 6 to 8.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tyro

RESULTS = Path(__file__).parent / "results"


@dataclass
class Args:
    """Rollout policy iteration on a web env."""

    name: str = "research"
    """Results go to ``benchmarks/results/policy_iteration_NAME.{md,json}``."""
    env: str = "rlft/Research-v0"
    policy: Path = Path("runs/demo-research/il")
    """The starting policy (the main job's clone)."""
    demos: Path = Path("runs/demo-research/demos")
    """The demos it was cloned from (imitated again beside the labels)."""
    env_kwargs: list[str] = field(default_factory=list)
    """``key=value`` env arguments for every env (e.g. ``reward_mode=shaped``)."""
    work: Path | None = None
    """Rounds' labels and policies (default ``runs/bench-policy-iteration-NAME``)."""
    questions: int = 600
    """Train episodes per round."""
    k: int = 3
    """Candidates tried per turn: the greedy one and the ``k - 1`` next most likely."""
    to_success: bool = True
    """Count a deviation as better only when it turns the episode into a success."""
    rounds: int = 1
    epochs: int = 5
    lr: float = 3e-4
    correction_weight: int = 1
    """How many times a corrected turn (label unlike the policy's choice) is imitated. They are
    about a tenth of the turns, and at weight 1 the head fits a quarter of them (weight 4 did
    not help: docs/research.md section 14)."""
    episodes: int = 200
    """Held-out test episodes (seeds from 10,000: the main job's)."""
    fit_episodes: int = 200
    """Of the round's train episodes, how many to replay greedily after training."""
    seed: int = 0


def with_flags(labels: list[tuple[Any, ...]]) -> list[tuple[int, list[str], str, bool]]:
    """Labels with their *corrected* flag. Label files written before the flag was stored
    hold ``(seed, prefix, action)``: an episode's turns are then corrections unless they are a
    successful greedy episode's, whose labels chain (turn ``t``'s action is turn ``t + 1``'s
    last prefix action) from the first turn."""
    if all(len(label) == 4 for label in labels):
        return [tuple(label) for label in labels]  # type: ignore[misc]
    by_seed: dict[int, list[tuple[int, list[str], str]]] = {}
    for s, p, a in labels:
        by_seed.setdefault(s, []).append((s, p, a))
    out = []
    for turns in by_seed.values():
        chained = len(turns) > 1 and [len(p) for _, p, _ in turns] == list(range(len(turns))) \
            and all(turns[i][2] == turns[i + 1][1][i] for i in range(len(turns) - 1))
        out += [(s, p, a, not chained) for s, p, a in turns]
    return out


def main(args: Args) -> None:
    """Run the rounds and write the results."""
    import gymnasium as gym
    import numpy as np
    import torch

    import rlft.envs  # noqa: F401
    from rlft.agents.episode import Episode
    from rlft.agents.loading import load_policy
    from rlft.training.benchmark import evaluate_agents
    from rlft.training.configs import parse_env_kwargs
    from rlft.training.demos import demo_turns, load_env_demos
    from rlft.training.evaluate import evaluate, markdown_table
    from rlft.training.imitation import encode_examples, make_optimizer, train_epoch

    kwargs = parse_env_kwargs(args.env_kwargs, "split")
    work = args.work or Path(f"runs/bench-policy-iteration-{args.name}")
    env = gym.make(args.env, split="train", **kwargs)

    def replay(seed: int, prefix: list[str]) -> tuple[Any, Any, Any, float, bool]:
        """The episode of ``seed`` after ``prefix``: (its Episode, obs, info, return so far,
        whether it ended)."""
        obs, info = env.reset(seed=seed)
        episode, total, done = Episode(), 0.0, False
        for action in prefix:
            episode.observe(obs, info)
            episode.record(action)
            obs, r, term, trunc, info = env.step(action)
            total += float(r)
            done = term or trunc
            if done:
                break
        episode.observe(obs, info)
        return episode, obs, info, total, done

    @torch.no_grad()
    def play(policy: Any, seed: int, prefix: list[str]) -> tuple[tuple[bool, float], list[Any]]:
        """``prefix`` then greedy to the end: ((success, return), the greedy turns as
        (features, log-probs, action))."""
        episode, obs, info, total, done = replay(seed, prefix)
        turns = []
        while not done:
            episode.observe(obs, info)
            f = policy.encode(episode.turn())
            logp = policy([f]).log_probs()[0].cpu()
            action = f.candidates[int(logp.argmax())]
            turns.append((f, logp, action))
            episode.record(action)
            obs, r, term, trunc, info = env.step(action)
            total += float(r)
            done = term or trunc
        return (bool(info.get("success", False)), total), turns

    def rollouts(policy: Any, seeds: list[int]) -> dict[str, Any]:
        """Label every greedy turn of the episodes of ``seeds`` with its best candidate."""
        labels, greedy_wins, improvable, improved_turns, tried = [], 0, 0, 0, 0
        for seed in seeds:
            outcome, turns = play(policy, seed, [])
            greedy_wins += outcome[0]
            actions = [a for _, _, a in turns]
            can_win = False
            for t, (f, logp, _) in enumerate(turns):
                greedy = int(logp.argmax())
                value = {greedy: outcome}
                for i in torch.argsort(logp, descending=True).tolist()[: args.k]:
                    if i != greedy:
                        value[i], _ = play(policy, seed, actions[:t] + [f.candidates[i]])
                        tried += 1
                best = max(value, key=lambda i: (value[i], float(logp[i])))
                better = value[best] > outcome and (value[best][0] or not args.to_success)
                can_win |= value[best][0] and not outcome[0]
                improved_turns += better
                if better or outcome[0]:
                    labels.append((seed, actions[:t], f.candidates[best] if better
                                   else f.candidates[greedy], bool(better)))
            improvable += can_win
        n = len(seeds)
        return {"labels": labels, "greedy_success": greedy_wins / n,
                "one_step_improved_success": (greedy_wins + improvable) / n,
                "improved_turns": improved_turns, "rollouts": tried}

    def imitated(labels: list[tuple[int, list[str], str, bool]]
                 ) -> list[tuple[int, list[str], str]]:
        """The labelled turns to imitate: every turn of the successful episodes, and the
        corrections of the failed ones ``correction_weight`` times."""
        return [(s, p, a) for s, p, a, corrected in labels
                for _ in range(args.correction_weight if corrected else 1)]

    def greedy_success(policy: Any, seeds: list[int]) -> float:
        """Greedy success on the episodes of ``seeds`` (consecutive), with the project's
        evaluation loop."""
        return evaluate(env, policy, len(seeds), seed=seeds[0]).success

    demo_examples = demo_turns(args.demos, load_env_demos(args.demos, args.env, None))
    rows: list[dict[str, Any]] = []
    agents = {"start (IL)": str(args.policy)}
    current = args.policy
    all_labels: list[tuple[int, list[str], str, bool]] = []
    t_start = time.perf_counter()
    for k in range(1, args.rounds + 1):
        rdir = work / f"round-{k}"
        done_file = rdir / "round.json"
        seeds = [100_000 * k + i for i in range(args.questions)]
        if done_file.is_file():
            row = json.loads(done_file.read_text())
            all_labels += with_flags(pickle.loads((rdir / "labels.pkl").read_bytes()))
        else:
            random.seed(args.seed + k)
            np.random.seed(args.seed + k)
            torch.manual_seed(args.seed + k)
            policy = load_policy(current)
            policy.eval()
            t0 = time.perf_counter()
            found = rollouts(policy, seeds)
            t_roll = time.perf_counter() - t0
            all_labels += found["labels"]
            examples = demo_examples + [(replay(s, p)[0].turn(), a)
                                        for s, p, a in imitated(all_labels)]
            inputs, targets = encode_examples(policy, examples)
            policy.train()
            policy.prepare_imitation(inputs)
            trainable = [p for p in policy.parameters() if p.requires_grad]
            optim, sched = make_optimizer(trainable, args.lr, 0.01,
                                          args.epochs * -(-len(inputs) // 64))
            t0 = time.perf_counter()
            for _ in range(args.epochs):
                loss, acc = train_epoch(policy, inputs, targets, optim, sched, 64)
            t_train = time.perf_counter() - t0
            policy.eval()
            policy.save_pretrained(rdir / "policy")
            start_fit = greedy_success(load_policy(current).eval(), seeds[: args.fit_episodes])
            row = {"round": k, "questions": len(seeds),
                   "greedy_success": found["greedy_success"],
                   "one_step_improved_success": found["one_step_improved_success"],
                   "improved_turns": found["improved_turns"], "rollouts": found["rollouts"],
                   "labels_this_round": len(found["labels"]),
                   "train_turns": len(inputs), "demo_turns": len(demo_examples),
                   "correction_weight": args.correction_weight,
                   "train_loss": loss, "train_acc": acc,
                   "fit_before": start_fit,
                   "fit_after": greedy_success(policy, seeds[: args.fit_episodes]),
                   "rollout_seconds": t_roll, "train_seconds": t_train}
            (rdir / "labels.pkl").write_bytes(pickle.dumps(found["labels"]))
            done_file.write_text(json.dumps(row, indent=2))
        print(json.dumps(row))
        rows.append(row)
        current = rdir / "policy"
        agents[f"round {k}"] = str(current)

    results = []
    for name, spec in agents.items():
        # a policy's test row is kept beside it (``test-N.json``), so a rerun with more
        # rounds evaluates only the new ones
        cache = (work / "start" if name == "start (IL)" else Path(spec).parent) \
            / f"test-{args.episodes}.json"
        if cache.is_file() and json.loads(cache.read_text()).get("spec") == spec:
            results.append(json.loads(cache.read_text())["result"])
            continue
        result = evaluate_agents(args.env, {name: spec}, episodes=args.episodes, split="test",
                                 seed=10_000, **kwargs)[0].to_dict()
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"spec": spec, "result": result}, indent=2))
        results.append(result)
    note = (f"{args.env}{' ' + json.dumps(kwargs) if kwargs else ''}, from {args.policy}; "
            f"{args.questions} train episodes a round, {args.k} candidates tried per turn"
            f"{', only deviations to success count' if args.to_success else ''}; "
            f"{args.episodes} test episodes (seeds from 10,000). "
            f"`python benchmarks/policy_iteration.py {' '.join(sys.argv[1:])}` on a 2-core CPU: "
            f"{sum(r['rollout_seconds'] for r in rows):.0f} s of rollouts and "
            f"{sum(r['train_seconds'] for r in rows):.0f} s of distillation over the rounds; "
            f"this run (new rounds and test rows only) {time.perf_counter() - t_start:.0f} s, "
            f"load {os.getloadavg()[0]:.1f} at the end.")
    rounds_md = ["| round | greedy success on its train episodes | one-step improved | "
                 "turns improved | labelled turns | times a correction is imitated | after "
                 "distillation, same episodes (before) | rollout s | train s |",
                 "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rounds_md.append(
            f"| {r['round']} | {r['greedy_success']:.3f} | {r['one_step_improved_success']:.3f} "
            f"| {r['improved_turns']} | {r['labels_this_round']} | "
            f"{r.get('correction_weight', 1)} | {r['fit_after']:.3f} "
            f"({r['fit_before']:.3f}, {args.fit_episodes} episodes) | "
            f"{r['rollout_seconds']:.0f} | {r['train_seconds']:.0f} |")
    text = ("\n".join(rounds_md) + "\n\nHeld-out test episodes:\n\n"
            + markdown_table(results, note) + "\n")
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"policy_iteration_{args.name}"
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(
        {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
         "rounds": rows, "test": results}, indent=2, default=str))
    print(text)


if __name__ == "__main__":
    main(tyro.cli(Args))
