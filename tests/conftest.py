"""Shared test helpers."""

from __future__ import annotations

import os

# One intra-op thread per test process (and the subprocesses tests start): the suite's models
# are tiny, and two spinning OpenMP threads on a busy 2-core machine made small ops ~100x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

import rlft.envs  # noqa: F401, E402  (registers the ids)

RLFT_IDS = sorted(k for k in gym.registry if k.startswith("rlft/"))
WEB_IDS = [k for k in RLFT_IDS if gym.spec(k).entry_point.startswith("rlft.envs.web")]


@pytest.fixture
def shop():
    """A Shop env on the test split, closed after the test."""
    env = gym.make("rlft/Shop-v0", split="test")
    yield env
    env.close()
