"""Can a policy represent the research expert? Candidate recall on the expert's own trajectories.

    python benchmarks/research_candidates.py            # -> benchmarks/results/research_candidates.{md,json}

For every step of expert episodes on each split, the concrete candidates a policy chooses from
(`rlft.wrappers.valid_actions.expand_valid_actions`, from the observation alone) are made and
checked for the expert's action (case-insensitive), per command. Also: candidates per turn and
the expert's episode length. Recall below 100% means imitation cannot represent those steps.
"""

from __future__ import annotations

import collections
import json
import os
import time
from pathlib import Path

import gymnasium as gym

import rlft.envs  # noqa: F401
from rlft.agents import ExpertAgent
from rlft.agents.episode import rollout
from rlft.wrappers.valid_actions import expand_valid_actions

RESULTS = Path(__file__).parent / "results" / "research_candidates"
SPLITS = {"train": 500, "val": 300, "test": 900, "unseen": 1083}


def measure(split: str, episodes: int) -> dict:
    """Recall per command, candidates per turn and episode length over ``episodes`` episodes
    (question ``i`` of the split, so test and unseen are covered whole)."""
    env = gym.make("rlft/Research-v0", split=split)
    expert = ExpertAgent(env)
    n = min(episodes, len(env.unwrapped.questions))
    hit, total = collections.Counter(), collections.Counter()
    sizes, lengths, missed = [], [], []
    for i in range(n):
        steps = 0
        for step in rollout(env, expert, seed=i, options={"question_index": i}):
            cands = expand_valid_actions(step.obs["goal"], step.info["valid_actions"],
                                         page=step.obs["page"])
            command = step.action.split("[", 1)[0]
            total[command] += 1
            if step.action.casefold() in {c.casefold() for c in cands}:
                hit[command] += 1
            elif len(missed) < 5:
                missed.append(step.action)
            sizes.append(len(cands))
            steps += 1
        lengths.append(steps)
    env.close()
    return {"split": split, "episodes": n,
            "recall": {c: [hit[c], total[c]] for c in sorted(total)},
            "candidates_mean": sum(sizes) / len(sizes), "candidates_max": max(sizes),
            "expert_steps_mean": sum(lengths) / len(lengths), "missed_examples": missed}


def main() -> None:
    """Measure every split and write the results."""
    t = time.perf_counter()
    rows = [measure(split, n) for split, n in SPLITS.items()]
    commands = sorted({c for r in rows for c in r["recall"]})
    lines = ["| split | episodes | " + " | ".join(f"`{c}` recall" for c in commands)
             + " | candidates / turn (max) | expert steps |",
             "|---|---:|" + "---:|" * len(commands) + "---:|---:|"]
    for r in rows:
        cells = []
        for c in commands:
            h, n = r["recall"].get(c, [0, 0])
            cells.append(f"{h}/{n}" if n else "-")
        lines.append(f"| {r['split']} | {r['episodes']} | " + " | ".join(cells)
                     + f" | {r['candidates_mean']:.1f} ({r['candidates_max']}) | "
                     f"{r['expert_steps_mean']:.2f} |")
    note = (f"Produced by `python benchmarks/research_candidates.py` in "
            f"{time.perf_counter() - t:.0f} s (load {os.getloadavg()[0]:.1f}).")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n\n" + note + "\n")
    print("\n".join(lines) + "\n\n" + note)


if __name__ == "__main__":
    main()
