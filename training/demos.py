"""Expert demonstrations: collect them with :class:`TrajectoryRecorder`, read them back as turns.

A demo directory holds ``trajectories.jsonl`` (+ ``episode_*.npz`` for image observations) and
``meta.json``, written last: a directory without it is an interrupted collect, which
:func:`load_demos` refuses and :func:`collect` redoes.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import rlft.envs  # noqa: F401  (registers the ids)
from rlft.agents import ExpertAgent
from rlft.agents.episode import Episode, Turn, rollout
from rlft.wrappers.recorder import RECORD_FIELDS, TRAJECTORY_FILE, TrajectoryRecorder

META_FILE = "meta.json"
FORMAT = "rlft-trajectories-v1"


def demos_complete(directory: str | Path) -> bool:
    """Whether ``directory`` holds a finished collect (its ``meta.json``, written last)."""
    return (Path(directory) / META_FILE).is_file()


def collect(env_id: str, episodes: int, out: str | Path, *, split: str = "train", seed: int = 0,
            progress: Callable[[int], None] | None = None, agent: Any = None,
            tasks: Sequence[str] | None = None, **env_kwargs: Any) -> dict[str, Any]:
    """Roll out the env's expert (or ``agent``: anything with ``reset`` and ``act``, or a
    function of the recording env that makes one, e.g. an expert bound to that env) for
    ``episodes`` episodes (seeds ``seed, seed+1, ...``) and record them in ``out``; returns
    (and writes to ``meta.json``, last) a summary. ``tasks``, one name per episode, has a
    multi-task env play that task (reset's ``options["task"]``) instead of the one its seed
    picks. An interrupted collect left in ``out`` (no ``meta.json``) is deleted and redone."""
    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {episodes}")
    if tasks is not None and len(tasks) != episodes:
        raise ValueError(f"tasks names {len(tasks)} episodes' tasks for {episodes} episodes")
    out = Path(out)
    if demos_complete(out):
        raise FileExistsError(f"{out} holds finished demos ({out / META_FILE}); choose a new "
                              f"--out directory or delete the old demos")
    if (out / TRAJECTORY_FILE).exists():
        print(f"{out} holds an interrupted collect (no {META_FILE}): redoing it")
        shutil.rmtree(out)
    env = TrajectoryRecorder(gym.make(env_id, split=split, **env_kwargs), out)
    if agent is None:
        actor = ExpertAgent(env)
    else:
        actor = agent if hasattr(agent, "act") else agent(env)
    successes, steps = 0, 0
    try:
        for i in range(episodes):
            final: dict[str, Any] = {}
            options = None if tasks is None else {"task": tasks[i]}
            for step in rollout(env, actor, seed=seed + i, options=options):
                steps += 1
                final = step.next_info
            successes += bool(final.get("success", False))
            if progress is not None:
                progress(i + 1)
    finally:
        env.close()
    meta = {"format": FORMAT, "env_id": env_id, "split": split, "episodes": episodes,
            "seed": seed, "env_kwargs": env_kwargs, "steps": steps,
            "agent": "expert" if agent is None else type(actor).__name__,
            **({} if tasks is None else {"tasks": dict(sorted(Counter(tasks).items()))}),
            "expert_success" if agent is None else "success": successes / episodes}
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def load_env_demos(directory: str | Path, env_id: str, max_episodes: int | None = None
                   ) -> list[list[dict[str, Any]]]:
    """:func:`load_demos`' episodes, refused unless they were recorded on ``env_id``."""
    meta, episodes = load_demos(directory, max_episodes)
    if meta.get("env_id") != env_id:
        raise ValueError(f"the demos in {directory} were recorded on {meta.get('env_id')}, "
                         f"not {env_id}; pass --env {meta.get('env_id')} or other demos")
    return episodes


def _finished_meta(directory: Path) -> dict[str, Any]:
    """The ``meta.json`` of the finished collect in ``directory`` (the errors of
    :func:`load_demos` when there is none)."""
    if not demos_complete(directory):
        load_demos(directory)  # raises the precise error: no demos, or an interrupted collect
    return json.loads((directory / META_FILE).read_text())


def demos_env(directory: str | Path) -> str:
    """The env id the finished collect in ``directory`` was recorded on (the errors of
    :func:`load_demos` when there is none)."""
    directory = Path(directory)
    env_id = _finished_meta(directory).get("env_id")
    if not isinstance(env_id, str):
        raise ValueError(f"{directory / META_FILE} names no env_id; pass --env")
    return env_id


def demos_env_kwargs(directory: str | Path) -> dict[str, Any]:
    """The env keyword arguments (beyond ``split``) the finished collect in ``directory`` was
    recorded with, e.g. ``{"catalog_seed": 7}``; ``{}`` for the registered defaults."""
    directory = Path(directory)
    kwargs = _finished_meta(directory).get("env_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"{directory / META_FILE}: env_kwargs is not a mapping: {kwargs!r}")
    return kwargs


def load_demos(directory: str | Path, max_episodes: int | None = None, *,
               complete: bool = True) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    """``(meta, episodes)``: each episode is its list of step records, in order. With
    ``complete`` (the default) a directory without ``meta.json`` (an interrupted collect) is
    refused; ``complete=False`` reads what a bare :class:`TrajectoryRecorder` wrote."""
    directory = Path(directory)
    path = directory / TRAJECTORY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no demos at {directory} (missing {TRAJECTORY_FILE}); make "
                                f"some with `rlft collect --env ENV --episodes N --out {directory}`")
    if complete and not demos_complete(directory):
        raise ValueError(f"{directory} holds an interrupted collect (no {META_FILE}, which "
                         f"collect writes last); collect again into a new --out")
    meta = json.loads((directory / META_FILE).read_text()) if demos_complete(directory) else {}
    episodes: dict[int, list[dict[str, Any]]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                    episodes.setdefault(int(rec["episode"]), []).append(rec)
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    raise ValueError(f"{path}:{n} is not a step record") from None
    ordered = [episodes[k] for k in sorted(episodes)]
    return meta, ordered[:max_episodes] if max_episodes is not None else ordered


def demo_turns(directory: str | Path, episodes: list[list[dict[str, Any]]]
               ) -> list[tuple[Turn, Any]]:
    """``(turn, expert action)`` for every recorded step: each episode replayed through an
    :class:`Episode`, so a turn holds what the policy would have seen acting (observation,
    valid actions, the earlier observations and actions). Image observations are read from the
    episode's npz."""
    directory = Path(directory)
    out: list[tuple[Turn, Any]] = []
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for records in episodes:
        episode = Episode()
        for rec in records:
            obs = {k: v for k, v in rec.items() if k not in RECORD_FIELDS}
            ref = rec.get("arrays")
            if ref is not None:
                if ref["file"] not in arrays:
                    with np.load(directory / ref["file"]) as z:
                        arrays = {ref["file"]: {k: z[k] for k in z.files}}
                obs.update({k: arrays[ref["file"]][k][i] for k, i in ref["index"].items()})
            action = rec["action"]
            if isinstance(action, list):
                action = np.asarray(action, dtype=np.float32)
            episode.observe(obs, {"valid_actions": rec["valid_actions"]}
                            if "valid_actions" in rec else {})
            out.append((episode.turn(), action))
            episode.record(action)
    return out


def expert_turns(env_id: str, split: str, episodes: int, seed: int = 0, **env_kwargs: Any
                 ) -> Iterator[tuple[Turn, Any]]:
    """``(turn, expert action)`` for every step of ``episodes`` fresh expert episodes on
    ``split`` (episode ``i`` reset with ``seed + i``; nothing written to disk), the env made
    with ``env_kwargs``."""
    env = gym.make(env_id, split=split, **env_kwargs)
    expert = ExpertAgent(env)
    try:
        for i in range(episodes):
            episode = Episode()
            for step in rollout(env, expert, seed=seed + i):
                episode.observe(step.obs, step.info)
                yield episode.turn(), step.action
                episode.record(step.action)
    finally:
        env.close()
