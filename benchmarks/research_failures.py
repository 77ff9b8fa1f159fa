"""Where research policies fail: each failed test episode by kind, and success by hop count.

    python benchmarks/research_failures.py IL=runs/demo-research/il \
        IL+RL=runs/demo-research/rest/policy     # -> benchmarks/results/research_failures.{md,json}

Every policy plays the main job's test episodes greedily (seeds 10,000 on, as in its table; 16 side
by side, `evaluate_concurrent`, which reads each episode as it ends through `on_end`). A
failed episode is counted as: an answer to an unanswerable question; an abstention on an
answerable one (with how many of the question's gold fact sentences were quoted by then); a
wrong answer (likewise); or no answer before the step limit. Success is also split by how many
facts the question chains (1-3 hops), and the answers given where they were wrong (a wrong
answer, or any answer to an unanswerable question) by whether they are of the kind the question
asks for (:meth:`rlft.agents.ChoicePolicy.answer_kind`: a year, another number, a name or words;
the kind asked is the one the split's answers to questions about that relation have).
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import tyro

import rlft.envs  # noqa: F401
from rlft.agents.choice_policy import ChoicePolicy
from rlft.agents.loading import load_policy
from rlft.training.cli import main as _cli  # noqa: F401  (the rlft command's OpenMP setting)
from rlft.training.evaluate import evaluate_concurrent
from rlft.wrappers.valid_actions import action_label

RESULTS = Path(__file__).parent / "results" / "research_failures"


@dataclass
class Args:
    """Failure kinds of research policies on test questions."""

    policies: tyro.conf.Positional[tuple[str, ...]]
    """NAME=PATH of each policy (a directory written by save_pretrained)."""
    episodes: int = 200
    """Test episodes per policy (seeded 10,000, 10,001, ...: the main job's)."""
    out: Path = RESULTS
    """Where the results go (OUT.md, OUT.json)."""


def failure_kind(info: dict, answerable: bool, gold: int) -> str:
    """The kind of a failed episode from its last ``info`` (``gold``: the question's gold fact
    sentences)."""
    if not answerable:
        return "answered unanswerable" if info.get("answered") else "no answer (unanswerable)"
    quoted = f"{info.get('evidence', 0)} of {gold} gold facts quoted"
    if info.get("abstained"):
        return f"abstained on answerable, {quoted}"
    if info.get("answered"):
        return f"wrong answer, {quoted}"
    return "no answer before the step limit"


def asked_kinds(questions) -> dict[str, str]:
    """The answer kind each relation asks for: the commonest kind of the answers to the
    answerable ``questions`` whose last hop is that relation."""
    seen: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for q in questions:
        if q.answerable:
            seen[q.path[-1][1]][ChoicePolicy.answer_kind(q.answer)] += 1
    return {relation: counts.most_common(1)[0][0] for relation, counts in seen.items()}


def measure(path: str, episodes: int, side_by_side: int = 16) -> dict:
    """Failure counts, success by hops, and the wrong answers' kinds of the policy at
    ``path``, on test episodes seeded from 10,000 (``side_by_side`` of them played at once,
    :func:`rlft.training.evaluate.evaluate_concurrent`: the same episodes as one at a time)."""
    policy = load_policy(path)
    policy.eval()
    envs = [gym.make("rlft/Research-v0", split="test") for _ in range(min(side_by_side,
                                                                          episodes))]
    asked = asked_kinds(envs[0].unwrapped.questions)
    # of the wrong answers (answerable) and the answers to unanswerable questions: how many,
    # and how many of another kind than the question asks for
    wrong_kind = {"wrong answers": [0, 0], "answers to unanswerable": [0, 0]}
    kinds: collections.Counter[str] = collections.Counter()
    hops: collections.Counter[int] = collections.Counter()
    won: collections.Counter[int] = collections.Counter()

    def ended(i: int, env: gym.Env, info: dict, action: str) -> None:
        question = env.unwrapped.question
        hops[question.hops] += 1
        if info.get("answered") and not info.get("success"):
            which = "wrong answers" if question.answerable else "answers to unanswerable"
            given = ChoicePolicy.answer_kind(action_label(action))
            wrong_kind[which][0] += 1
            wrong_kind[which][1] += given != asked.get(question.path[-1][1], given)
        if info.get("success"):
            won[question.hops] += 1
        else:
            kinds[failure_kind(info, question.answerable,
                               len(env.unwrapped.gold_sentences()))] += 1

    try:
        evaluate_concurrent(envs, policy, episodes, seed=10_000, on_end=ended)
    finally:
        for env in envs:
            env.close()
    return {"episodes": episodes, "success": sum(won.values()) / episodes,
            "failures": dict(kinds.most_common()), "of_another_kind": wrong_kind,
            "success_by_hops": {h: [won[h], hops[h]] for h in sorted(hops)}}


def main(args: Args) -> None:
    """Measure each policy and write the results."""
    if not args.policies:
        raise SystemExit("name at least one policy: python benchmarks/research_failures.py "
                         "NAME=PATH [NAME=PATH ...]")
    named = dict(p.split("=", 1) if "=" in p else (Path(p).name, p) for p in args.policies)
    try:
        results = {name: measure(path, args.episodes) for name, path in named.items()}
    except (FileNotFoundError, ValueError) as e:  # a path that holds no policy, say
        raise SystemExit(f"research_failures: {e}") from None
    kinds = list(dict.fromkeys(k for r in results.values() for k in r["failures"]))
    names = list(results)
    lines = [f"# Where research policies fail ({args.episodes} test questions each)", "",
             "Produced by `python benchmarks/research_failures.py "
             + " ".join(f"{n}={p}" for n, p in named.items()) + "`.", "",
             "| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names),
             "| success | " + " | ".join(f"{results[n]['success']:.3f}" for n in names) + " |"]
    hop_counts = sorted({h for r in results.values() for h in r["success_by_hops"]})
    for h in hop_counts:
        lines.append(f"| success, {h}-hop questions | " + " | ".join(
            "{}/{}".format(*results[n]["success_by_hops"].get(h, [0, 0])) for n in names) + " |")
    for k in kinds:
        lines.append(f"| failed: {k} | " + " | ".join(
            str(results[n]["failures"].get(k, 0)) for n in names) + " |")
    for k in ("wrong answers", "answers to unanswerable"):
        lines.append(f"| {k} of another kind than asked | " + " | ".join(
            "{1}/{0}".format(*results[n]["of_another_kind"][k]) for n in names) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(
        {"policies": named, "results": results}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
