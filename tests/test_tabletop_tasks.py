"""Tabletop tasks: oracles solve them, rewards add up as documented, goals follow the splits,
and sequential tasks update their sub-goal."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rlft.envs  # noqa: F401  (registers the ids)
from rlft.envs.tabletop.shapes import color_names, object_names
from rlft.envs.tabletop.tasks import TASKS
from rlft.envs.tabletop.tasks.base import split_of
from rlft.envs.tabletop.tasks.towers_of_hanoi import hanoi_moves

IDS = {
    "put-block-in-bowl": "rlft/PutBlockInBowl-v0",
    "packing-objects": "rlft/PackingObjects-v0",
    "stack-block-pyramid": "rlft/StackBlockPyramid-v0",
    "place-blocks-in-zone": "rlft/PlaceBlocksInZone-v0",
    "towers-of-hanoi": "rlft/TowersOfHanoi-v0",
    "block-insertion": "rlft/BlockInsertion-v0",
}


def run_oracle(env, seed: int) -> tuple[bool, list[float], list[str]]:
    obs, info = env.reset(seed=seed)
    expert = env.unwrapped.expert()
    expert.reset()
    rewards, goals = [], [obs["goal"]]
    term = trunc = False
    while not (term or trunc):
        obs, r, term, trunc, info = env.step(expert.act(obs, info))
        rewards.append(r)
        goals.append(obs["goal"])
        assert info["action_error"] == "" and info["sim_error"] == ""
    return info["success"], rewards, goals


def test_every_task_has_an_id():
    assert set(TASKS) == set(IDS)
    assert rlft.envs.tabletop_task_ids() == IDS  # the benchmarks' per-task ids, in this order
    assert list(rlft.envs.tabletop_task_ids()) == list(IDS)


@pytest.mark.parametrize("task", sorted(IDS))
def test_oracle_solves_the_test_split_with_shaped_credit_summing_to_one(task):
    env = gym.make(IDS[task], split="test", reward_mode="shaped")
    wins = 0
    for seed in range(20):
        ok, rewards, _ = run_oracle(env, seed)
        wins += ok
        if ok:
            assert sum(rewards) == pytest.approx(1.0)
            assert all(r >= 0 for r in rewards)
    env.close()
    assert wins >= 19


@pytest.mark.parametrize("task", ["put-block-in-bowl", "towers-of-hanoi"])
def test_sparse_reward_is_one_only_on_the_final_step_and_dense_telescopes(task):
    env = gym.make(IDS[task], split="unseen", reward_mode="sparse")
    ok, rewards, _ = run_oracle(env, 3)
    assert ok and rewards[-1] == 1.0 and sum(rewards) == 1.0
    env.close()
    env = gym.make(IDS[task], split="unseen", reward_mode="dense")
    env.reset(seed=3)
    phi0 = env.unwrapped.task.potential(env.unwrapped.sim)
    ok, rewards, _ = run_oracle(env, 3)
    assert ok and sum(rewards) == pytest.approx(1.0 - phi0)
    assert phi0 < 0  # nothing placed yet, some distance to go
    env.close()


def test_sequential_tasks_change_the_goal_text_as_sub_goals_complete():
    env = gym.make(IDS["towers-of-hanoi"], split="train")
    _, _, goals = run_oracle(env, 0)
    env.close()
    assert len(goals) == 8 and len(set(goals[:7])) >= 3
    assert all(g.startswith("move the ") and g.endswith(" peg") for g in goals[:7])
    assert goals[-1].startswith("done")
    env = gym.make(IDS["stack-block-pyramid"], split="train")
    _, _, goals = run_oracle(env, 0)
    env.close()
    assert len(set(goals)) == 7 and "brown square" in goals[0] and " and " in goals[4]


def test_hanoi_plan_is_optimal_and_legal():
    moves = hanoi_moves(3, 0, 2, 1)
    assert len(moves) == 7
    pegs = [[0, 1, 2], [], []]  # ring 0 largest at the bottom
    for ring, to in moves:
        src = next(p for p in pegs if p and p[-1] == ring)
        src.pop()
        assert not pegs[to] or pegs[to][-1] < ring
        pegs[to].append(ring)
    assert pegs == [[], [], [0, 1, 2]]


def _goals(task: str, split: str, n: int = 40) -> set[str]:
    env = gym.make(IDS[task], split=split)
    out = set()
    for seed in range(n):
        _, info = env.reset(seed=seed)
        out.add(info["goal"])
    env.close()
    return out


@pytest.mark.parametrize("task", ["put-block-in-bowl", "packing-objects"])
def test_splits_hold_disjoint_goals_and_unseen_uses_held_out_words(task):
    goals = {s: _goals(task, s) for s in ("train", "val", "test", "unseen")}
    assert not goals["train"] & goals["val"]
    assert not goals["train"] & goals["test"]
    assert not goals["val"] & goals["test"]
    held = object_names("unseen") if task == "packing-objects" else color_names("unseen")
    assert all(any(w in g for w in held) for g in goals["unseen"])
    for s in ("train", "val", "test"):
        assert not any(any(f" {w} " in f" {g} " for w in held) for g in goals[s])


def test_train_scenes_show_no_held_out_colour():
    env = gym.make(IDS["place-blocks-in-zone"], split="train")
    held = set(color_names("unseen"))
    for seed in range(10):
        env.reset(seed=seed)
        names = {o.shape.name.split()[0] for o in env.unwrapped.sim.objects.values()
                 if o.body != env.unwrapped.sim.table}
        assert not names & held
    env.close()


def test_split_hash_is_stable():
    assert split_of(("red", "blue")) == split_of(("red", "blue"))
    counts = {s: 0 for s in ("train", "val", "test")}
    for a in range(30):
        for b in range(30):
            counts[split_of((a, b))] += 1
    assert 0.6 < counts["train"] / 900 < 0.8 and counts["val"] > 60 and counts["test"] > 60


def test_score_counts_partial_progress():
    env = gym.make(IDS["stack-block-pyramid"], split="val", reward_mode="shaped")
    obs, info = env.reset(seed=2)
    expert = env.unwrapped.expert()
    scores = [info["score"]]
    for _ in range(3):
        obs, r, term, trunc, info = env.step(expert.act(obs, info))
        scores.append(info["score"])
        assert r == pytest.approx(1 / 6)
    assert scores == pytest.approx([0, 1 / 6, 2 / 6, 3 / 6])
    assert not info["success"]
    env.close()


def test_block_insertion_needs_the_right_rotation():
    env = gym.make(IDS["block-insertion"], split="test")
    obs, info = env.reset(seed=1)
    a = env.unwrapped.expert().act(obs, info)
    wrong = a.copy()
    wrong[4] = np.float32(((a[4] + np.pi / 2 + np.pi) % (2 * np.pi)) - np.pi)
    obs, r, term, *_ , info = env.step(wrong)
    assert not info["success"] and info["score"] == 0.0
    env.close()


def test_block_insertion_errors_measure_what_success_is_judged_on():
    env = gym.make(IDS["block-insertion"], split="test")
    u = env.unwrapped
    obs, info = env.reset(seed=2)
    d0, yaw0 = u.task.errors(u.sim)
    assert d0 > 0.02  # the block starts away from its outline
    a = u.expert().act(obs, info)
    *_, info = env.step(a)
    d, yaw = u.task.errors(u.sim)
    assert info["success"] and d < 0.01 and yaw < np.radians(10)
    obs, info = env.reset(seed=2)
    wrong = u.expert().act(obs, info).copy()
    wrong[4] = np.float32(((wrong[4] + np.pi / 2 + np.pi) % (2 * np.pi)) - np.pi)
    *_, info = env.step(wrong)
    d, yaw = u.task.errors(u.sim)
    assert not info["success"]
    assert abs(np.degrees(yaw) - 90) < 15  # a quarter turn off, as placed
    env.close()


def test_pyramid_aim_errors_tell_a_bridge_from_a_place_on_one_block():
    env = gym.make(IDS["stack-block-pyramid"], split="test")
    u = env.unwrapped
    obs, info = env.reset(seed=3)
    for _ in range(3):  # the bottom row
        obs, _, _, _, info = env.step(u.expert().act(obs, info))
    task = u.task
    assert task.next_position(u.sim) == 3
    aim = u.expert().act(obs, info)[2:4]
    good = task.aim_errors(u.sim, 3, aim)
    assert good["target"] < 0.005 and good["midpoint"] < 0.005
    assert 0.02 < good["support"] < 0.03  # half a bridge from each block below
    on_one = u.sim.pose(task.blocks[0])[0][:2]
    bad = task.aim_errors(u.sim, 3, on_one)
    assert bad["support"] < 0.002 and bad["midpoint"] > 0.02 and bad["target"] > 0.015
    assert set(task.aim_errors(u.sim, 0, aim)) == {"target"}  # the bottom row has no supports
    # the midpoint is read from the blocks as they stand, not from their targets: set the
    # middle base block 8 mm along the row (still within the 15 mm that counts it)
    obs, info = env.reset(seed=3)
    along = task.targets[2][:2] - task.targets[0][:2]
    along = along / np.linalg.norm(along)
    for k in range(3):
        a = u.expert().act(obs, info).copy()
        if k == 1:
            a[2:4] += (0.008 * along).astype(a.dtype)
        obs, _, _, _, info = env.step(a)
    assert task.next_position(u.sim) == 3
    shifted = task.aim_errors(u.sim, 3, u.expert().act(obs, info)[2:4])
    assert shifted["target"] < 0.005 and 0.002 < shifted["midpoint"] < 0.006
    env.close()
