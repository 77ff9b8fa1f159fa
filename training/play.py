"""``rlft play``: a person plays a text environment in the terminal."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import gymnasium as gym

import rlft.envs  # noqa: F401  (registers the ids)


def play_text(env_id: str, *, seed: int = 0, split: str = "train", reward_mode: str = "shaped",
              stdin: TextIO | None = None, stdout: TextIO | None = None,
              **env_kwargs: Any) -> float:
    """Play ``env_id`` reading one action per line; returns the total reward of the last episode.

    A line may be an action (``click[Buy Now]``), the number of a listed valid action,
    ``reset`` to start a new episode, or ``quit``. End of input quits. ``env_kwargs`` go to
    ``gym.make``.
    """
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    env = gym.make(env_id, split=split, reward_mode=reward_mode, **env_kwargs)
    if not hasattr(env.observation_space, "spaces") or "page" not in env.observation_space.spaces:
        env.close()
        raise SystemExit(f"{env_id} is not a text environment; `rlft play` plays text envs only")

    def show(obs, info) -> None:
        if info.get("action_error"):
            print(f"! {info['action_error']}", file=stdout)
        print(f"\nGoal: {obs['goal']}\n{'-' * 60}\n{obs['page']}\n{'-' * 60}", file=stdout)
        for i, a in enumerate(info.get("valid_actions", [])):
            print(f"  {i:2d}. {a}", file=stdout)

    obs, info = env.reset(seed=seed)
    episode, total = 0, 0.0
    show(obs, info)
    try:
        for line in stdin:
            line = line.strip()
            if not line:
                continue
            if line in ("quit", "exit", "q"):
                break
            if line == "reset":
                episode += 1
                obs, info = env.reset(seed=seed + episode)
                total = 0.0
                show(obs, info)
                continue
            valid = info.get("valid_actions", [])
            action = valid[int(line)] if line.isdigit() and int(line) < len(valid) else line
            obs, reward, terminated, truncated, info = env.step(action)
            total += reward
            show(obs, info)
            print(f"reward {reward:.3f}  total {total:.3f}  success {info.get('success')}",
                  file=stdout)
            if terminated or truncated:
                print("Episode over ('reset' for another, 'quit' to leave).", file=stdout)
    finally:
        env.close()
    return total
