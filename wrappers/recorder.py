"""``TrajectoryRecorder``: write every step of every episode to disk (how demos are made).

Layout of the output directory (documented in the README, read by
:func:`rlft.training.demos.load_demos`)::

    trajectories.jsonl     one JSON object per step, in order
    episode_000000.npz     per episode, compressed arrays of its image/array observations

A step record holds what the agent saw *before* acting and what happened::

    {"episode": 0, "step": 0, "seed": 0, "goal": "...", "page": "...",
     "valid_actions": ["search[...]"], "action": "search[...]", "reward": 0.0,
     "terminated": false, "truncated": false, "success": false, "score": 0.0,
     "action_error": null}

Text observation fields are stored inline; array fields (tabletop ``color``/``depth``) go to the
episode's npz under ``<field>`` stacked over steps, and the record names them in ``"arrays"``.
Array actions are stored as lists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

TRAJECTORY_FILE = "trajectories.jsonl"
#: the fields of a step record that are not part of the observation (everything else is)
RECORD_FIELDS = frozenset({"episode", "step", "seed", "arrays", "valid_actions", "action",
                           "reward", "terminated", "truncated", "success", "score",
                           "action_error", "task"})


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class TrajectoryRecorder(gym.Wrapper):
    """Record (observation, valid actions, action, outcome) of each step as JSONL (+ npz).

    Args:
        env: the env to record.
        directory: output directory (created); records are appended to ``trajectories.jsonl``.
        first_episode: number given to the first recorded episode (to append to a demo set).
    """

    def __init__(self, env: gym.Env, directory: str | Path, first_episode: int = 0):
        super().__init__(env)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file = open(self.directory / TRAJECTORY_FILE, "a", encoding="utf-8")  # noqa: SIM115
        self.episode = first_episode - 1
        self._step = 0
        self._seed: int | None = None
        self._obs: Any = None
        self._info: dict[str, Any] = {}
        self._arrays: dict[str, list[np.ndarray]] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start a new recorded episode."""
        self._flush_arrays()
        obs, info = self.env.reset(seed=seed, options=options)
        self.episode += 1
        self._step, self._seed = 0, seed
        self._obs, self._info = obs, info
        return obs, info

    def step(self, action: Any):
        """Step the env and write the record of this step."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        record: dict[str, Any] = {"episode": self.episode, "step": self._step, "seed": self._seed}
        arrays = {}
        prev = self._obs if isinstance(self._obs, dict) else {"obs": self._obs}
        for key, value in prev.items():
            if isinstance(value, np.ndarray) and value.ndim >= 2:
                self._arrays.setdefault(key, []).append(value)
                arrays[key] = len(self._arrays[key]) - 1
            else:
                record[key] = _jsonable(value)
        if arrays:
            record["arrays"] = {"file": self._npz_name(), "index": arrays}
        if "valid_actions" in self._info:
            record["valid_actions"] = list(self._info["valid_actions"])
        record.update(action=_jsonable(action), reward=float(reward),
                      terminated=bool(terminated), truncated=bool(truncated),
                      success=bool(info.get("success", False)),
                      score=float(info.get("score", 0.0)),
                      action_error=info.get("action_error"))
        if "task" in info:  # the task played, where one env holds several (tabletop)
            record["task"] = _jsonable(info["task"])
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        self._step += 1
        self._obs, self._info = obs, info
        return obs, reward, terminated, truncated, info

    def _npz_name(self) -> str:
        return f"episode_{self.episode:06d}.npz"

    def _flush_arrays(self) -> None:
        if self._arrays:
            np.savez_compressed(self.directory / self._npz_name(),
                                **{k: np.stack(v) for k, v in self._arrays.items()})
            self._arrays = {}

    def close(self) -> None:
        """Write pending arrays, close the file and the env."""
        self._flush_arrays()
        if not self._file.closed:
            self._file.close()
        super().close()
