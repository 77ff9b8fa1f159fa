"""Where does a research clone go wrong? Its choice on every turn of the expert's own episodes.

    python benchmarks/research_turns.py POLICY [POLICY ...]   # -> benchmarks/results/research_turns.{md,json}

Each policy (a checkpoint directory, e.g. a main job's ``il/``) is shown the expert's episodes
on val questions turn by turn (teacher forcing: the expert acts, the policy only chooses) and
its greedy choice is compared with the expert's action. Reported per expert command: how often
the policy chose it, and what it chose instead. This is the per-turn accuracy that imitation
optimises; an episode needs every turn right.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
from pathlib import Path

import gymnasium as gym
import torch

import rlft.envs  # noqa: F401
from rlft.agents import ExpertAgent, load_policy
from rlft.agents.episode import Episode, rollout
from rlft.wrappers.valid_actions import match_candidate

RESULTS = Path(__file__).parent / "results" / "research_turns"
EPISODES = 60


def measure(path: str, episodes: int = EPISODES) -> dict:
    """Per expert command: turns, turns the policy at ``path`` chose the same, and the commands
    it chose instead (val questions ``0..episodes-1``)."""
    policy = load_policy(path)
    env = gym.make("rlft/Research-v0", split="val")
    expert = ExpertAgent(env)
    turns, right = collections.Counter(), collections.Counter()
    instead: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for i in range(episodes):
        episode = Episode()
        for step in rollout(env, expert, seed=i):
            episode.observe(step.obs, step.info)
            features = policy.encode(episode.turn())
            with torch.no_grad():
                k = int(policy([features]).logits[0].argmax())
            command = step.action.split("[", 1)[0]
            turns[command] += 1
            try:
                same = match_candidate(features.candidates, step.action) == k
            except ValueError:
                same = False
            if same:
                right[command] += 1
            else:
                instead[command][features.candidates[k].split("[", 1)[0]] += 1
            episode.record(step.action)
    env.close()
    return {c: {"turns": turns[c], "right": right[c], "instead": dict(instead[c])}
            for c in sorted(turns)}


def main(paths: list[str]) -> None:
    """Measure every policy and write the results."""
    t0 = time.perf_counter()
    results = {p: measure(p) for p in paths}
    commands = sorted({c for r in results.values() for c in r})
    lines = ["| policy | " + " | ".join(commands) + " | all |",
             "|---|" + "---:|" * (len(commands) + 1)]
    for p, r in results.items():
        cells = [f"{r[c]['right']}/{r[c]['turns']}" if c in r else "-" for c in commands]
        total = sum(v["right"] for v in r.values()), sum(v["turns"] for v in r.values())
        lines.append(f"| `{p}` | " + " | ".join(cells) + f" | {total[0]}/{total[1]} |")
    lines.append("")
    lines.append("What each policy chose instead, per expert command:")
    lines.append("")
    for p, r in results.items():
        wrong = "; ".join(f"{c}: {v['instead']}" for c, v in r.items() if v["instead"])
        lines.append(f"* `{p}`: {wrong}")
    lines.append("")
    lines.append(f"The expert's episodes on val questions 0-{EPISODES - 1}, teacher-forced; "
                 f"greedy choices. Produced by `python benchmarks/research_turns.py "
                 f"{' '.join(paths)}` in {time.perf_counter() - t0:.0f} s (load "
                 f"{os.getloadavg()[0]:.1f}).")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=2))
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
