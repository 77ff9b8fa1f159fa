"""Expert demonstrations: collect them with :class:`TrajectoryRecorder`, read them back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym

import rlft.envs  # noqa: F401  (registers the ids)
from rlft.agents import ExpertAgent
from rlft.wrappers.recorder import TRAJECTORY_FILE, TrajectoryRecorder

META_FILE = "meta.json"
FORMAT = "rlft-trajectories-v1"


def collect(env_id: str, episodes: int, out: str | Path, *, split: str = "train", seed: int = 0,
            progress: Callable[[int], None] | None = None, **env_kwargs: Any) -> dict[str, Any]:
    """Roll out the env's expert for ``episodes`` episodes (seeds ``seed, seed+1, ...``) and
    record them in ``out``; returns (and writes to ``meta.json``) a summary."""
    out = Path(out)
    if (out / TRAJECTORY_FILE).exists():
        raise FileExistsError(f"{out / TRAJECTORY_FILE} exists; choose a new --out directory "
                              f"or delete the old demos")
    env = TrajectoryRecorder(gym.make(env_id, split=split, **env_kwargs), out)
    expert = ExpertAgent(env)
    successes, steps = 0, 0
    try:
        for i in range(episodes):
            obs, info = env.reset(seed=seed + i)
            expert.reset()
            while True:
                obs, _, terminated, truncated, info = env.step(expert.act(obs, info))
                steps += 1
                if terminated or truncated:
                    break
            successes += bool(info.get("success", False))
            if progress is not None:
                progress(i + 1)
    finally:
        env.close()
    meta = {"format": FORMAT, "env_id": env_id, "split": split, "episodes": episodes,
            "seed": seed, "env_kwargs": env_kwargs, "steps": steps,
            "expert_success": successes / max(1, episodes)}
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def load_demos(directory: str | Path, max_episodes: int | None = None
               ) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    """``(meta, episodes)``: each episode is its list of step records, in order."""
    directory = Path(directory)
    path = directory / TRAJECTORY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no demos at {directory} (missing {TRAJECTORY_FILE}); make "
                                f"some with `rlft collect --env ENV --episodes N --out {directory}`")
    meta_path = directory / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    episodes: dict[int, list[dict[str, Any]]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                episodes.setdefault(int(rec["episode"]), []).append(rec)
    ordered = [episodes[k] for k in sorted(episodes)]
    return meta, ordered[:max_episodes] if max_episodes is not None else ordered
