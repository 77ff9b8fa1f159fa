"""Self-training from reward: ReST (Gulcehre et al. 2023), also called expert iteration or
rejection-sampling fine-tuning.

``rlft train rest --env rlft/Tabletop-v0 --policy runs/il --demos runs/demos --out runs/rest``

Each round *grows* a dataset: ``episodes`` episodes of the training split, the policy sampling
its actions (:class:`rlft.agents.rl.SamplingAgent`: ``rl_act``, as PPO's rollouts do), recorded
by :func:`rlft.training.demos.collect` into ``OUT/round-K/samples``; and *improves* the policy on
it: behaviour cloning (the policy's own ``imitation_loss``, the loop of
:func:`rlft.training.imitation.train_epoch`) on every kept episode so far plus the demos the
policy imitated. An episode is kept when it succeeded (or its return reached ``min_return``);
with ``keep="progress"`` the filter is per turn instead: every turn of any sampled episode whose
reward was positive (a sub-goal reached, under a shaped reward that pays each). Turns whose
action the env rejected (``action_error``) are never imitated. On a multi-task env,
``task_focus`` spends a share of each round's episodes on the tasks the previous round's
samples failed most (:func:`task_schedule`). With ``unlikelihood`` > 0 the failed turns of the
round's samples (:func:`failed`) are trained on too, their actions pushed down by the policy's
``unlikelihood_loss`` (:class:`WithUnlikelihood`): a negative signal that cloning successes
alone lacks. With ``sampler="deviate"`` a round's episodes are not sampled but searched
(:mod:`rlft.training.deviation`): the policy's greedy episode, or where it fails, the first of
its one-turn deviations (the policy's next likeliest actions, latest turn first) that succeeds
when completed greedily: exact per-turn credit on an env that replays an episode from its seed.
With ``lesson_weight`` W > 1 the kept sampled turns where the policy, as the round starts, would
act otherwise (:func:`disagreements`: the turns the search changed, the sampled actions that
paid off) count W times in the round's cloning.

Where PPO moves a policy by small clipped steps along advantage-weighted log-probabilities, this
trains on the policy's successes with imitation's full loss (for the CLIP policy that includes
the sub-cell offsets and augmentation, which PPO's scores do not touch), so a success the
policy samples once in five tries becomes what it does greedily.

A finished round leaves ``round-K/round.json`` (written last), so an interrupted run resumes at
the first unfinished round (a larger ``rounds`` continues a finished run); an interrupted
sample collection is redone. A rerun whose settings differ from those the finished rounds were
made with (``rest_settings.json``) is refused. ``summary.json`` is written last of all.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from itertools import chain
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import rlft.envs  # noqa: F401  (registers the ids)
from rlft.agents.loading import default_device, load_policy
from rlft.agents.rl import SamplingAgent
from rlft.training.configs import RestArgs, parse_env_kwargs
from rlft.training.demos import collect, demo_turns, demos_complete, load_demos, load_env_demos
from rlft.training.deviation import DeviationAgent
from rlft.training.imitation import encode_examples, make_optimizer, rollout_success, train_epoch
from rlft.training.ppo import load_rl_policy
from rlft.training.presets import resolve

ROUND_FILE = "round.json"
SUMMARY = "summary.json"
#: the deviation search's counts of a round, beside its samples (``round-K/samples/``)
SEARCH_FILE = "search.json"
#: the actions the deviation search replaced, beside its samples: ``[episode, turn, action]``
REPLACED_FILE = "replaced.json"
#: sampled episodes of round K are seeded from ``seed + SAMPLE_SEED * K`` (demos use 0, 1, ...)
SAMPLE_SEED = 1_000_000
#: turns scored per batch when finding the ones the policy would act otherwise on
DISAGREEMENT_BATCH = 256


def episode_kept(records: list[dict[str, Any]], min_return: float | None) -> bool:
    """Whether a recorded episode passes the filter: it succeeded (``min_return`` None), or
    its return is at least ``min_return``."""
    if min_return is None:
        return bool(records[-1].get("success", False))
    return sum(float(r["reward"]) for r in records) >= min_return


def progressed(record: dict[str, Any]) -> bool:
    """Whether a recorded turn's action earned a positive reward (under the shaped reward: it
    reached a sub-goal)."""
    return float(record.get("reward", 0.0)) > 0.0


def failed(record: dict[str, Any], by_progress: bool) -> bool:
    """Whether a recorded turn failed, as ``--unlikelihood`` reads it: the env accepted its
    action and it earned nothing (``by_progress``: reward <= 0) or was penalised (otherwise:
    reward < 0, e.g. a wrong answer under correct +1 / abstain 0 / wrong -1)."""
    reward = float(record.get("reward", 0.0))
    return not record.get("action_error") and (reward <= 0.0 if by_progress else reward < 0.0)


def failed_turns(directory: Path, episodes: list[list[dict[str, Any]]], by_progress: bool
                 ) -> list[tuple[Any, Any]]:
    """``(turn, action)`` of every step of ``episodes`` (recorded in ``directory``) that
    :func:`failed`."""
    return [example for example, record in zip(demo_turns(directory, episodes),
                                               chain.from_iterable(episodes), strict=True)
            if failed(record, by_progress)]


def replaced_turns(directory: Path, episodes: list[list[dict[str, Any]]],
                   replaced: Sequence[Sequence[Any]]) -> list[tuple[Any, Any]]:
    """``(turn, action)`` of each action the deviation search replaced (``[episode, turn,
    action]``, :attr:`DeviationAgent.replaced`): the turn of the recorded ``episodes`` where the
    search changed the greedy action, with that greedy action, which completed greedily
    failed. Skipped where the recording does not show the deviation (an env that did not
    replay exactly): the episode did not succeed, or its action there is the replaced one."""
    out = []
    for ep, t, action in replaced:
        records = episodes[ep] if 0 <= ep < len(episodes) else []
        if t < len(records) and records[-1].get("success") and records[t]["action"] != action:
            out.append((demo_turns(directory, [records])[t][0], action))
    return out


@dataclass(frozen=True)
class Negative:
    """An imitation target to push down rather than pull up (:class:`WithUnlikelihood`)."""

    target: Any


class WithUnlikelihood:
    """``policy`` seen by :func:`rlft.training.imitation.train_epoch` with a signed objective:
    its ``imitation_loss`` on the plain targets of a batch, ``weight`` times its
    ``unlikelihood_loss`` on the :class:`Negative` ones, each a mean over its examples and
    summed in proportion to their counts (so a batch's loss is a mean over all its examples);
    the accuracy is the positives'. Everything else is the policy's."""

    def __init__(self, policy: Any, weight: float) -> None:
        self.policy, self.weight = policy, weight

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)

    def imitation_loss(self, features: list[Any], targets: list[Any]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """The signed loss and the positives' accuracy of a batch."""
        pos = [i for i, t in enumerate(targets) if not isinstance(t, Negative)]
        neg = [i for i, t in enumerate(targets) if isinstance(t, Negative)]
        n = len(targets)
        loss, acc = torch.zeros(()), torch.zeros(())
        if pos:
            pos_loss, acc = self.policy.imitation_loss([features[i] for i in pos],
                                                       [targets[i] for i in pos])
            loss = pos_loss * (len(pos) / n)
        if neg:
            loss = loss + self.weight * (len(neg) / n) * self.policy.unlikelihood_loss(
                [features[i] for i in neg], [targets[i].target for i in neg])
        return loss, acc


@torch.no_grad()
def disagreements(policy: Any, inputs: list[Any], targets: list[Any]) -> list[int]:
    """Indices of the encoded turns whose target is not the policy's likeliest action
    (``ranked_actions``; ``--lesson-weight``)."""
    was_training = policy.training
    policy.eval()
    if hasattr(policy, "ranked_actions_many"):  # scored in batches: the same likeliest actions
        best = [a[0] for i in range(0, len(inputs), DISAGREEMENT_BATCH)
                for a in policy.ranked_actions_many(inputs[i : i + DISAGREEMENT_BATCH], 1)]
    else:
        best = [policy.ranked_actions(f, 1)[0] for f in inputs]
    out = [i for i, (f, t, b) in enumerate(zip(inputs, targets, best, strict=True))
           if policy.imitation_target(f, b) != t]
    policy.train(was_training)
    return out


def pass_turns(n: int, first: Sequence[int], limit: int) -> list[int]:
    """The turns (indices among ``n``) of one capped cloning pass (``--epoch-turns``): every
    turn of ``first`` (the ones the policy got wrong as the round began; a uniform draw of
    ``limit`` of them if there are more), then a uniform draw without replacement of the
    others up to ``limit`` turns in all (Python's ``random``: a fresh draw each pass)."""
    first = list(first)
    if len(first) >= limit:
        return random.sample(first, limit)
    taken = set(first)
    others = [i for i in range(n) if i not in taken]
    return first + random.sample(others, min(len(others), limit - len(first)))


def imitable_turns(directory: Path, episodes: list[list[dict[str, Any]]],
                   progress_only: bool = False) -> list[tuple[Any, Any]]:
    """``(turn, action)`` of every step of ``episodes`` (recorded in ``directory``) whose action
    the env accepted: a rejected action stays in the later turns' history, but is not a target.
    With ``progress_only``, only the steps whose reward was positive (:func:`progressed`)."""
    return [example for example, record in zip(demo_turns(directory, episodes),
                                               chain.from_iterable(episodes), strict=True)
            if not record.get("action_error") and (not progress_only or progressed(record))]


def task_schedule(success_by_task: dict[str, float], episodes: int, focus: float) -> list[str]:
    """The task each of a round's ``episodes`` plays on a multi-task env: a share ``1 - focus``
    spread evenly over the tasks of ``success_by_task`` (each task's success rate in the
    previous round's samples), the share ``focus`` in proportion to their failure rates (all
    even when no task failed). Counts are rounded by largest remainder so they sum to
    ``episodes``; each task's episodes are spread evenly through the list (the order
    ``benchmarks/results/tabletop_multitask_focus.md`` was measured with: the seed of an
    episode is its place in the list)."""
    names = sorted(success_by_task)
    failures = {t: 1.0 - success_by_task[t] for t in names}
    total = sum(failures.values())
    want = {t: episodes * ((1 - focus) / len(names)
                           + focus * (failures[t] / total if total > 0 else 1 / len(names)))
            for t in names}
    counts = {t: int(want[t]) for t in names}
    by_remainder = sorted(names, key=lambda t: (-(want[t] - counts[t]), t))
    for t in by_remainder[: episodes - sum(counts.values())]:
        counts[t] += 1
    slots = sorted(((k + 0.5) / n, t) for t, n in counts.items() for k in range(n))
    return [t for _, t in slots]


def check_args(args: RestArgs) -> None:
    """Raise a ValueError naming the first setting of ``args`` (presets resolved) that cannot
    run."""
    for name in ("rounds", "episodes", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got "
                             f"{getattr(args, name)}")
    if args.epoch_turns < 0:
        raise ValueError(f"--epoch-turns caps the turns of a cloning pass: a positive number, "
                         f"or 0 for every turn, got {args.epoch_turns}")
    if args.keep == "progress" and args.min_return is not None:
        raise ValueError("--min-return filters whole episodes; --keep progress keeps turns by "
                         "their own reward: give one of them")
    if not 0 <= args.task_focus <= 1:
        raise ValueError(f"--task-focus is a share of the episodes, from 0 to 1, got "
                         f"{args.task_focus}")
    if args.temperature < 0:
        raise ValueError(f"--temperature cannot be negative, got {args.temperature}")
    if args.lr <= 0:
        raise ValueError(f"--lr must be positive, got {args.lr}")
    if args.lesson_weight < 1:
        raise ValueError(f"--lesson-weight counts a turn that many times, 1 or more, got "
                         f"{args.lesson_weight}")
    if args.unlikelihood < 0:
        raise ValueError(f"--unlikelihood is a loss weight, 0 or more, got {args.unlikelihood}")
    if args.val_episodes < 0 or args.eval_episodes < 0:
        raise ValueError("--val-episodes and --eval-episodes cannot be negative")
    if args.sampler == "deviate":
        if args.deviations < 1:
            raise ValueError(f"--deviations must be at least 1, got {args.deviations}")
        if args.search_envs < 1:
            raise ValueError(f"--search-envs must be at least 1, got {args.search_envs}")
        if args.task_focus > 0:
            raise ValueError("--task-focus chooses tasks for sampled episodes; --sampler "
                             "deviate searches the episodes of the env's own seeds: give one "
                             "of them")


def resolve_rest_args(args: RestArgs) -> RestArgs:
    """``args`` with the env's preset filled in and checked. A ``min_return`` given without
    ``keep`` filters episodes, whatever the preset keeps (a return is an episode's)."""
    if args.min_return is not None and args.keep is None:
        args = replace(args, keep="episodes")
    args = resolve(args)
    check_args(args)
    return args


def train_rest(args: RestArgs) -> dict[str, Any]:
    """Run self-training as configured; returns the summary (also written to OUT/summary.json)."""
    from torch.utils.tensorboard import SummaryWriter

    args = resolve_rest_args(args)
    t_start = time.perf_counter()
    env_kwargs = {"reward_mode": args.reward_mode,
                  **parse_env_kwargs(args.env_kwargs, "split", "reward_mode")}
    # (directory, kept episodes, whether only their progress turns are imitated)
    sources: list[tuple[Path, list[list[dict[str, Any]]], bool]] = []
    if args.demos is not None:
        sources.append((Path(args.demos),
                        load_env_demos(args.demos, args.env, args.max_demos), False))
    demo_sources = len(sources)  # the sources after them are the rounds' samples
    # (no LoRA adapter added: self-training imitates, so it trains what imitation trained)
    policy = load_rl_policy(args.policy, args.env, lora_r=None, method="ReST").to(
        default_device())
    if args.unlikelihood > 0 and not hasattr(policy, "unlikelihood_loss"):
        raise ValueError(f"--unlikelihood needs a policy that can push an action down "
                         f"(unlikelihood_loss: the choice and CLIP policies); "
                         f"{args.policy} is a {getattr(policy, 'policy_type', type(policy))} "
                         f"policy: run without --unlikelihood")
    if args.lesson_weight > 1 and not getattr(policy, "ranks_actions", False):
        raise ValueError(f"--lesson-weight finds the turns where the policy would act "
                         f"otherwise, which needs a policy that ranks the env's candidates "
                         f"(choice, or an LM policy with constrained=True); {args.policy} is a "
                         f"{getattr(policy, 'policy_type', type(policy).__name__)} policy: "
                         f"run with --lesson-weight 1")
    if args.sampler == "deviate" and not getattr(policy, "ranks_actions", False):
        raise ValueError(f"--sampler deviate tries the policy's next likeliest actions, which "
                         f"needs a policy that ranks the env's candidates (choice, or an LM "
                         f"policy with constrained=True); {args.policy} is a "
                         f"{getattr(policy, 'policy_type', type(policy).__name__)} policy "
                         f"that does not: use --sampler sample")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_settings(out, args)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    writer = SummaryWriter(str(out / "tb"))
    val_seed = args.seed + 10_000

    by_progress = args.keep == "progress"
    # each task's success rate in the latest round that sampled it (multi-task envs only)
    success_by_task: dict[str, float] = {}
    history: list[dict[str, Any]] = []
    # (inputs, targets) of each entry of ``sources`` encoded so far, in the same order
    encoded: list[tuple[list[Any], list[Any]]] = []
    if args.val_episodes:
        history.append({"round": 0, **_val(policy, args, val_seed)})
    for k in range(1, args.rounds + 1):
        rdir = out / f"round-{k}"
        samples = rdir / "samples"
        finished = (rdir / ROUND_FILE).is_file()  # before an interruption: reuse it
        t_round = time.perf_counter()
        policy.eval()
        searched: dict[str, int] = {}
        if not finished and not demos_complete(samples):
            focused = args.task_focus > 0 and bool(success_by_task)
            first_seed = args.seed + SAMPLE_SEED * k
            search_envs: list[gym.Env] = []
            if args.sampler == "deviate":
                search_envs = [gym.make(args.env, split=args.split, **env_kwargs)
                               for _ in range(args.search_envs)]
                agent: Any = DeviationAgent(policy, search_envs, first_seed, args.deviations,
                                            episodes=args.episodes)
                searched = agent.counts
            else:
                agent = SamplingAgent(policy, torch.Generator().manual_seed(args.seed + k),
                                      args.temperature)
            try:
                with _bar(args.progress, args.episodes, f"round {k}/{args.rounds}: "
                          f"{'searching' if search_envs else 'sampling'}", "episode") as bar:
                    collect(args.env, args.episodes, samples, split=args.split, seed=first_seed,
                            agent=agent,
                            tasks=task_schedule(success_by_task, args.episodes, args.task_focus)
                            if focused else None,
                            progress=None if bar is None else lambda n: bar.update(n - bar.n),
                            **env_kwargs)
            finally:
                for search_env in search_envs:
                    search_env.close()
            if searched:  # kept beside the samples: a resumed round still reports them
                (samples / SEARCH_FILE).write_text(json.dumps(searched, indent=2))
                (samples / REPLACED_FILE).write_text(json.dumps(agent.replaced))
        elif (samples / SEARCH_FILE).is_file():
            searched = json.loads((samples / SEARCH_FILE).read_text())
        _, sampled = load_demos(samples)
        tasks = Counter(str(ep[-1].get("task", "")) for ep in sampled)
        won = Counter(str(ep[-1].get("task", "")) for ep in sampled if ep[-1].get("success"))
        multi_task = set(tasks) != {""}
        rates = {t: won[t] / n for t, n in sorted(tasks.items())}  # this round's, per task
        if multi_task:
            success_by_task.update(rates)
        elif args.task_focus > 0 and k == 1:
            print(f"--task-focus {args.task_focus:g} has nothing to focus on: {args.env}'s "
                  f"episodes name no task (info['task']), so every round samples as the first")
        kept = [ep for ep in sampled if (any(progressed(r) for r in ep) if by_progress
                                         else episode_kept(ep, args.min_return))]
        sources.append((samples, kept, by_progress))
        if finished:
            policy = load_policy(rdir / "policy").to(default_device())
            history.append(json.loads((rdir / ROUND_FILE).read_text()))
            continue
        t_sampled = time.perf_counter()
        # each source (the demos, a round's kept samples) is encoded once, in the round that
        # adds it: a turn's features depend on the policy's config, not its weights, and with a
        # frozen encoder they keep their embeddings and similarity columns for later rounds
        while len(encoded) < len(sources):
            directory, eps, only = sources[len(encoded)]
            encoded.append(encode_examples(policy, imitable_turns(directory, eps, only)))
        n_demo_turns = sum(len(ins) for ins, _ in encoded[:demo_sources])
        inputs = [f for ins, _ in encoded for f in ins]
        targets = [t for _, tgs in encoded for t in tgs]
        lessons: list[int] = []
        if args.lesson_weight > 1:  # the sampled turns the policy would not repeat, repeated
            lessons = [n_demo_turns + i for i in disagreements(
                policy, inputs[n_demo_turns:], targets[n_demo_turns:])]
            inputs += [inputs[i] for i in lessons for _ in range(args.lesson_weight - 1)]
            targets += [targets[i] for i in lessons for _ in range(args.lesson_weight - 1)]
        negatives = 0
        if args.unlikelihood > 0:  # this round's mistakes: what the policy does wrong now
            replaced = json.loads((samples / REPLACED_FILE).read_text()) \
                if (samples / REPLACED_FILE).is_file() else []
            neg_inputs, neg_targets = encode_examples(
                policy, failed_turns(samples, sampled, by_progress)
                + replaced_turns(samples, sampled, replaced))
            negatives = len(neg_inputs)
            inputs += neg_inputs
            targets += [Negative(t) for t in neg_targets]
        objective = WithUnlikelihood(policy, args.unlikelihood) if negatives else policy
        loss: float | None = None
        acc: float | None = None
        limit = args.epoch_turns if 0 < args.epoch_turns < len(inputs) else None
        wrong: list[int] = []
        if inputs:
            policy.train()
            policy.prepare_imitation(inputs)
            trainable = [p for p in policy.parameters() if p.requires_grad]
            if limit:  # what the policy gets wrong now, and what it pushes down, in every pass
                plain = [i for i, t in enumerate(targets) if not isinstance(t, Negative)]
                wrong = [plain[i] for i in disagreements(policy, [inputs[i] for i in plain],
                                                         [targets[i] for i in plain])] \
                    if getattr(policy, "ranks_actions", False) else []
                every_pass = wrong + [i for i, t in enumerate(targets) if isinstance(t, Negative)]
            steps = args.epochs * max(1, -(-(limit or len(inputs)) // args.batch_size))
            optim, sched = make_optimizer(trainable, args.lr, args.weight_decay, steps)
            with _bar(args.progress, args.epochs,
                      f"round {k}/{args.rounds}: training on {len(inputs)} turns"
                      + (f", {limit} a pass ({len(wrong)} it gets wrong in each)"
                         if limit else ""), "epoch") as bar:
                for _ in range(args.epochs):
                    if limit:
                        turns = pass_turns(len(inputs), every_pass, limit)
                        loss, acc = train_epoch(objective, [inputs[i] for i in turns],
                                                [targets[i] for i in turns], optim, sched,
                                                args.batch_size)
                    else:
                        loss, acc = train_epoch(objective, inputs, targets, optim, sched,
                                                args.batch_size)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.3f}")
            policy.eval()
        else:
            nothing = "turn was rewarded" if by_progress else "episode passed the filter"
            print(f"round {k}: no sampled {nothing} and no --demos: nothing to train on, the "
                  f"policy is unchanged")
        policy.save_pretrained(rdir / "policy")

        kept_tasks = Counter(str(ep[-1].get("task", "")) for ep in kept)
        row = {"round": k, "sampled": len(sampled), "kept": len(kept),
               "kept_rate": len(kept) / len(sampled),
               "sampled_success": sum(bool(ep[-1].get("success")) for ep in sampled)
               / len(sampled),
               "train_turns": len(inputs) - negatives, "negative_turns": negatives,
               "epoch_turns": limit or len(inputs),
               "wrong_turns": len(wrong) if limit else None,
               "lesson_turns": len(lessons),
               "train_loss": loss, "train_acc": acc,
               "sample_seconds": t_sampled - t_round,
               "train_seconds": time.perf_counter() - t_sampled}
        if searched:  # the deviation search's own counts (episodes it played greedily etc.)
            row["searched"] = dict(searched)
            row["greedy_success"] = searched["greedy"] / len(sampled)
        if multi_task:
            row["sampled_by_task"] = dict(sorted(tasks.items()))
            row["kept_rate_by_task"] = {t: kept_tasks[t] / n for t, n in sorted(tasks.items())}
            row["sampled_success_by_task"] = rates
        if args.val_episodes:
            row.update(_val(policy, args, val_seed))
        for key in ("kept_rate", "train_loss", "train_acc", "val_success"):
            if row.get(key) is not None:
                writer.add_scalar(f"rest/{key}", row[key], k)
        (rdir / ROUND_FILE).write_text(json.dumps(row, indent=2))  # last: the round is done
        history.append(row)
        print(f"round {k}: kept {len(kept)}/{len(sampled)} sampled episodes"
              + (f" (greedy {searched['greedy']}, one turn changed {searched['deviated']})"
                 if searched else "")
              + f", trained on {len(inputs)} turns"
              + (f" ({len(lessons)} it would not repeat, counted {args.lesson_weight} times)"
                 if lessons else "")
              + (f", {negatives} of them pushed down" if negatives else "")
              + (f" (loss {loss:.3f})" if loss is not None else "")
              + (f", val success {row['val_success']:.3f}" if "val_success" in row else ""))
    policy.save_pretrained(out / "policy")
    writer.close()

    summary: dict[str, Any] = {
        "env_id": args.env, "start": str(args.policy), "rounds": args.rounds,
        "history": history, "seconds": time.perf_counter() - t_start,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(args).items()}}
    if args.eval_episodes:
        from rlft.training.benchmark import start_and_result

        summary.update(start_and_result(args.env, args.policy, "rest", str(out / "policy"),
                                        args.eval_episodes, **env_kwargs))
    (out / SUMMARY).write_text(json.dumps(summary, indent=2))  # last: the run is complete
    return summary


#: the settings a finished round depends on: a rerun that changes one cannot reuse the rounds
#: (``rounds``, ``val_episodes`` and ``eval_episodes`` may change: more rounds continue the run)
ROUND_SETTINGS = ("env", "policy", "demos", "max_demos", "episodes", "temperature", "min_return",
                  "epochs", "epoch_turns", "batch_size", "lr", "weight_decay", "split",
                  "reward_mode", "env_kwargs", "seed", "keep", "task_focus", "unlikelihood", "sampler",
                  "deviations", "lesson_weight")
#: what a setting read before it existed was (runs written before it keep working)
SETTING_DEFAULTS = {"keep": "episodes", "task_focus": 0.0, "unlikelihood": 0.0,
                    "sampler": "sample", "deviations": 2, "lesson_weight": 1,
                    "epoch_turns": 0}
SETTINGS_FILE = "rest_settings.json"


def _check_same_settings(out: Path, args: RestArgs) -> None:
    """Write ``OUT/rest_settings.json`` on the first run; on a rerun, refuse settings that
    differ from the ones its finished rounds were made with."""
    mine = json.loads(json.dumps({k: getattr(args, k) for k in ROUND_SETTINGS}, default=str))
    path = out / SETTINGS_FILE
    if path.is_file():
        before = json.loads(path.read_text())
        before = {**SETTING_DEFAULTS, **before}
        changed = [f"--{k.replace('_', '-')} {before.get(k)!r} -> {mine[k]!r}"
                   for k in ROUND_SETTINGS if before.get(k) != mine[k]]
        if changed and any(out.glob(f"round-*/{ROUND_FILE}")):
            raise ValueError(f"{out} holds self-training rounds made with other settings "
                             f"({'; '.join(changed)}); rerun with the old ones to continue, or "
                             f"choose a new --out")
    path.write_text(json.dumps(mine, indent=2))


@contextmanager
def _bar(enabled: bool, total: int, desc: str, unit: str) -> Iterator[Any]:
    """A tqdm bar of ``total`` ``unit``s that closes itself (None when not ``enabled``)."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit=unit, leave=False) as bar:
        yield bar


def _val(policy: Any, args: RestArgs, seed: int) -> dict[str, float]:
    """Greedy success and score on ``val_episodes`` val-split episodes (the same ones each
    round; with ``--sampler deviate``, ``--search-envs`` of them side by side)."""
    roll = rollout_success(policy, args.env, args.val_episodes, seed=seed,
                           concurrency=args.search_envs if args.sampler == "deviate" else 1)
    return {"val_success": roll["success"], "val_score": roll["score"]}
