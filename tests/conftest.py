"""Shared test helpers."""

from __future__ import annotations

import gymnasium as gym
import pytest

import rlft.envs  # noqa: F401  (registers the ids)

RLFT_IDS = sorted(k for k in gym.registry if k.startswith("rlft/"))
WEB_IDS = [k for k in RLFT_IDS if gym.spec(k).entry_point.startswith("rlft.envs.web")]


@pytest.fixture
def shop():
    """A Shop env on the test split, closed after the test."""
    env = gym.make("rlft/Shop-v0", split="test")
    yield env
    env.close()
