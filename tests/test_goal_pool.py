"""GoalPool: a few fixed goals for "few prompts, many epochs" training."""

from __future__ import annotations

import gymnasium as gym
import pytest

import rlft.envs  # noqa: F401
from rlft.wrappers.goal_pool import GoalPool, goal_pool_seeds


def test_every_reset_draws_one_of_the_pools_goals():
    env = GoalPool(gym.make("rlft/Shop-v1", num_products=2000), size=3)
    goals = {env.reset()[0]["goal"] for _ in range(40)}
    assert len(goals) == 3
    # a seeded reset maps to a pool member: the same seed, the same goal
    a = env.reset(seed=7)
    b = env.reset(seed=7)
    assert a[0]["goal"] == b[0]["goal"] and a[1]["goal_seed"] == b[1]["goal_seed"]
    assert a[0]["goal"] in goals
    # the member's own episode: the unwrapped env reset with that seed shows the same goal
    plain = gym.make("rlft/Shop-v1", num_products=2000)
    assert plain.reset(seed=a[1]["goal_seed"])[0]["goal"] == a[0]["goal"]


def test_pool_seeds_are_distinct_and_checked():
    seeds = goal_pool_seeds(25, pool_seed=1)
    assert len(set(seeds)) == 25 and seeds == goal_pool_seeds(25, pool_seed=1)
    assert seeds != goal_pool_seeds(25, pool_seed=2)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="goal pool"):
            goal_pool_seeds(bad)
