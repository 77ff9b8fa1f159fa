"""Bad tabletop actions never raise: the step counts, reward 0, a reason, state unchanged; and
objects that leave the table or explode are detected and reported."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rlft.envs  # noqa: F401  (registers the ids)

BAD = [
    ([0.5, 0.0, 0.5, np.nan, 0.0], "NaN"),
    ([0.5, 0.0, np.inf, 0.1, 0.0], "NaN or infinite"),
    ([0.5, 0.0, 0.5], "shape (5,)"),
    ([[0.5, 0.0, 0.5, 0.1, 0.0]], "shape (5,)"),
    ("pick the red block", "5 numbers"),
    (None, "shape (5,)"),
    ([0.5, 0.0, 0.9, 0.1, 0.0], "place_x=0.900"),
    ([0.5, 0.0, 0.5, 0.1, 4.0], "theta=4.000"),
    ([0.1, 2.0, 0.5, 0.1, 0.0], "pick_x=0.100"),
]


@pytest.fixture
def env():
    e = gym.make("rlft/PutBlockInBowl-v0", reward_mode="dense")
    yield e
    e.close()


def _poses(env) -> list:
    sim = env.unwrapped.sim
    return [np.concatenate(sim.pose(b)) for b in sorted(sim.objects)]


@pytest.mark.parametrize("action,reason", BAD)
def test_malformed_action_is_rejected_with_a_reason(env, action, reason):
    obs, _ = env.reset(seed=4)
    before = _poses(env)
    obs2, r, term, trunc, info = env.step(action)
    assert r == 0.0 and not term and not trunc
    assert reason in info["action_error"]
    np.testing.assert_array_equal(obs["depth"], obs2["depth"])
    np.testing.assert_array_equal(np.array(before), np.array(_poses(env)))


def test_picking_empty_table_or_a_fixed_bowl_is_rejected(env):
    env.reset(seed=4)
    u = env.unwrapped
    # find a table spot with nothing on it, and a bowl (fixed)
    empty = next((x, y) for x in np.linspace(0.27, 0.73, 12) for y in np.linspace(-0.48, 0.48, 24)
                 if u.sim.body_under(x, y)[0] == u.sim.table)
    _, r, *_, info = env.step([*empty, 0.5, 0.0, 0.0])
    assert r == 0.0 and "touched the table" in info["action_error"]
    bowl = u.task.bowls[0]
    bx, by = u.sim.pose(bowl)[0][:2]
    _, r, *_, info = env.step([bx + 0.058, by, 0.5, 0.0, 0.0])  # on the bowl's wall
    assert r == 0.0 and "bowl is fixed" in info["action_error"]


def test_bad_steps_still_count_towards_the_time_limit(env):
    env.reset(seed=4)
    trunc = False
    n = 0
    while not trunc:
        *_, trunc, info = env.step([np.nan] * 5)
        n += 1
        assert n <= 8
    assert n == 8 and info["action_error"]


def test_object_that_falls_off_the_table_is_reported_and_ends_the_episode(env):
    obs, info = env.reset(seed=4)
    u = env.unwrapped
    victim = u.task.blocks[0]
    u.sim.client.resetBasePositionAndOrientation(victim, (0.5, 0.7, 0.03), (0, 0, 0, 1))
    other = next(b for b, o in u.sim.objects.items() if o.movable and b != victim)
    px, py = u.sim.pose(other)[0][:2]
    _, r, term, trunc, info = env.step([px, py, px, py, 0.0])  # valid: the scene is simulated
    assert term and "fell off the table" in info["sim_error"]
    assert u.sim.pose(victim)[0][2] == pytest.approx(-10.0)  # parked out of the scene
    assert not info["success"]


def test_exploding_object_is_detected(env):
    obs, info = env.reset(seed=4)
    u = env.unwrapped
    victim = u.task.blocks[-1]
    u.sim.client.resetBaseVelocity(victim, (0, 0, 80.0), (0, 0, 0))
    # a pick of some other movable object triggers a simulated settle
    other = next(b for b, o in u.sim.objects.items() if o.movable and b != victim)
    px, py = u.sim.pose(other)[0][:2]
    _, _, term, _, info = env.step([px, py, px, py, 0.0])
    assert term and "exploded" in info["sim_error"]


class _Explodes:
    """An object whose every conversion raises."""

    def __array__(self, *args, **kwargs):
        raise RuntimeError("boom")

    def __repr__(self):
        raise RuntimeError("no repr either")


def test_step_fuzz_never_raises():
    """Adversarial actions of every kind: huge Python ints, tensors that require grad, complex,
    nested and ragged lists, mappings, strings, objects that raise: each is refused with a
    reason, and the episode goes on."""
    import torch

    rng = np.random.default_rng(0)
    weird = [10**400, [10**400] * 5, torch.zeros(5, requires_grad=True), [1j] * 5,
             [[0.5], [0.0], [0.5], [0.1], [0.0, 1.0]], {"pick": 1}, b"\x00" * 5, _Explodes(),
             [_Explodes()] * 5, np.array(["a"] * 5), [True] * 5, np.zeros((5, 0)), float("nan"),
             [1e308, -1e308, 1e308, 1e308, 1e308], set(), object()]
    env = gym.make("rlft/PutBlockInBowl-v0")
    env.reset(seed=0)
    refused = 0
    for i in range(400):
        action = weird[i % len(weird)] if i < 2 * len(weird) else rng.normal(0, 10.0 ** rng.integers(0, 30),
                                                                      size=rng.integers(0, 8))
        _, reward, terminated, truncated, info = env.step(action)
        refused += bool(info["action_error"])
        if terminated or truncated:
            env.reset(seed=i)
    assert refused >= 2 * len(weird) - 2  # [True]*5 is five numbers (1.0): off the workspace
    env.close()
