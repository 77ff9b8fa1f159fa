"""Train on a few goals: every reset draws its goal from a fixed pool of reset seeds.

Reinforcement fine-tuning services are often given a few dozen prompts and run many epochs over
them. :class:`GoalPool` makes any rlft env do that: all of an env's randomness flows from its
reset seed (the env contract), so a pool of ``size`` seeds is a pool of ``size`` goals.

    env = GoalPool(gym.make("rlft/Research-v0"), size=25)
    gym.make_vec("rlft/Research-v0", 8, wrappers=[lambda e: GoalPool(e, size=25)])

``reset(seed=s)`` picks the pool member ``s`` maps to (so envs reset with one seed play one
goal, as the group methods of the PPO runner need); ``reset()`` without a seed draws the next
one from the wrapper's own generator. ``info["goal_seed"]`` names the member used.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["GoalPool", "goal_pool_seeds"]


def goal_pool_seeds(size: int, pool_seed: int = 0) -> list[int]:
    """The reset seeds of a pool of ``size`` goals (distinct, from ``pool_seed``)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"a goal pool needs a size of at least 1, got {size!r}")
    rng = np.random.default_rng([pool_seed, 0x600A1])
    return [int(s) for s in rng.choice(2**31 - 1, size=size, replace=False)]


class GoalPool(gym.Wrapper):
    """Resets ``env`` only to the goals of ``size`` fixed reset seeds (see the module doc)."""

    def __init__(self, env: gym.Env, size: int, pool_seed: int = 0):
        super().__init__(env)
        self.seeds = goal_pool_seeds(size, pool_seed)
        self._draw = np.random.default_rng([pool_seed, 1])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        """Reset to a pool member: the one ``seed`` maps to, else the next random draw."""
        if seed is not None:
            self._draw = np.random.default_rng([seed, 1])
            member = self.seeds[seed % len(self.seeds)]
        else:
            member = self.seeds[int(self._draw.integers(len(self.seeds)))]
        obs, info = self.env.reset(seed=member, options=options)
        return obs, {**info, "goal_seed": member}
