"""PPO: GAE, learning a small task from a random policy, and the KL term's pull to the reference."""

from __future__ import annotations

import json

import pytest
import torch
from ppo_toy_env import (  # (registers rlft-test/Doors-v0)
    assert_micro_batches_match,
    doors_success,
    save_random_policy,
)

from rlft.training.ppo import PPOArgs, compute_gae, train_ppo


def test_gae_matches_hand_computation_and_stops_at_episode_ends():
    rewards = torch.tensor([[0.0], [1.0], [0.5]])
    values = torch.tensor([[0.2], [0.4], [0.3]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])
    g, lam = 0.9, 0.5
    adv, ret = compute_gae(rewards, values, dones, torch.tensor([0.6]), g, lam)
    d2 = 0.5 + g * 0.6 - 0.3
    d1 = 1.0 - 0.4                       # episode ended at t=1: no bootstrap
    d0 = 0.0 + g * 0.4 - 0.2
    expected = torch.tensor([[d0 + g * lam * d1], [d1], [d2]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


@pytest.fixture(scope="module")
def init_policy(tmp_path_factory):
    return save_random_policy(tmp_path_factory.mktemp("policy"))


def test_ppo_learns_the_doors_task_from_a_random_policy(init_policy, tmp_path):
    before = doors_success(init_policy)
    summary = train_ppo(PPOArgs(env="rlft-test/Doors-v0", policy=init_policy, out=str(tmp_path),
                                reward_mode="sparse", num_envs=8, num_steps=8, updates=25,
                                learning_rate=1e-3, minibatch_size=32, kl_coef=0.0,
                                ent_coef=0.0, eval_episodes=0, progress=False, checkpoint_every=0))
    after = doors_success(str(tmp_path / "policy"))
    assert before < 0.5
    assert after >= 0.95, (before, after, summary)
    assert json.loads((tmp_path / "summary.json").read_text())["updates"] == 25
    assert any((tmp_path / "tb").iterdir())


def _kl_to(policy_dir: str, reference_dir: str) -> float:
    import gymnasium as gym

    from rlft.agents.choice_policy import ChoicePolicy
    from rlft.agents.episode import Turn

    env = gym.make("rlft-test/Doors-v0")
    a, b = ChoicePolicy.from_pretrained(policy_dir), ChoicePolicy.from_pretrained(reference_dir)
    a.eval(), b.eval()
    kls = []
    for s in range(30):
        obs, info = env.reset(seed=s)
        with torch.no_grad():
            la = a([Turn.from_env(obs, info)]).log_probs()
            lb = b([Turn.from_env(obs, info)]).log_probs()
        kls.append(float((la.exp() * (la - lb)).sum()))
    return sum(kls) / len(kls)


def test_kl_term_keeps_the_policy_near_the_reference_without_reward(init_policy, tmp_path):
    common = dict(env="rlft-test/Doors-v0", policy=init_policy, reward_mode="zero", num_envs=8,
                  num_steps=8, updates=12, learning_rate=3e-3, ent_coef=0.5, eval_episodes=0,
                  progress=False, checkpoint_every=0)
    train_ppo(PPOArgs(out=str(tmp_path / "free"), kl_coef=0.0, **common))
    train_ppo(PPOArgs(out=str(tmp_path / "kl"), kl_coef=5.0, **common))
    free = _kl_to(str(tmp_path / "free" / "policy"), init_policy)
    held = _kl_to(str(tmp_path / "kl" / "policy"), init_policy)
    assert held < free / 3, (held, free)


def test_resume_continues_from_the_checkpoint(init_policy, tmp_path):
    common = dict(env="rlft-test/Doors-v0", policy=init_policy, out=str(tmp_path), num_envs=4,
                  num_steps=4, learning_rate=1e-3, eval_episodes=0, progress=False,
                  checkpoint_every=2, anneal_lr=False)
    train_ppo(PPOArgs(updates=2, **common))
    state = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=False)
    assert state["update"] == 2 and state["global_step"] == 2 * 4 * 4
    summary = train_ppo(PPOArgs(updates=4, resume=True, **common))
    assert summary["global_step"] == 4 * 4 * 4


@pytest.mark.parametrize("advantage", ["gae", "grpo"])
def test_resumed_run_reproduces_the_uninterrupted_one(init_policy, tmp_path, advantage):
    from safetensors.torch import load_file

    common = dict(env="rlft-test/Doors-v0", policy=init_policy, num_envs=4, num_steps=3,
                  learning_rate=1e-3, eval_episodes=0, progress=False, checkpoint_every=2,
                  anneal_lr=False, advantage=advantage, group_size=2)
    train_ppo(PPOArgs(out=str(tmp_path / "straight"), updates=4, **common))
    train_ppo(PPOArgs(out=str(tmp_path / "resumed"), updates=2, **common))
    train_ppo(PPOArgs(out=str(tmp_path / "resumed"), updates=4, resume=True, **common))
    a = load_file(str(tmp_path / "straight" / "policy" / "head.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "policy" / "head.safetensors"))
    init = load_file(str(tmp_path / "straight" / "policy" / "head.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert not all(torch.equal(init[k], load_file(f"{init_policy}/head.safetensors")[k])
                   for k in init)
    straight = json.loads((tmp_path / "straight" / "summary.json").read_text())["history"]
    resumed = json.loads((tmp_path / "resumed" / "summary.json").read_text())["history"]
    assert straight == resumed


def test_two_processes_with_accelerate_keep_weights_in_sync(init_policy, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent), OMP_NUM_THREADS="1")
    # accelerate's multi-process launcher (torchrun); `--cpu` alone would start one process.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "rlft.training.ppo", "--env", "ppo_toy_env:rlft-test/Doors-v0",
           "--policy", init_policy, "--out", str(tmp_path), "--num-envs", "4",
           "--num-steps", "4", "--updates", "3", "--minibatch-size", "8",
           "--eval-episodes", "0", "--no-progress", "--checkpoint-every", "0"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["processes"] == 2
    assert summary["global_step"] == 2 * 4 * 4 * 3
    assert summary["weights_in_sync"] is True


def test_train_ppo_cli_errors_say_what_to_do(init_policy, tmp_path, capsys):
    from rlft.training.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "ppo", "--policy", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "rlft imitate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "ppo", "--env", "rlft/PutBlockInBowl-v0", "--policy", init_policy,
              "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert "web envs" in err and "Traceback" not in err


def test_train_ppo_cli_ends_with_a_start_vs_ppo_table(init_policy, tmp_path, capsys):
    from rlft.training.cli import main

    main(["train", "ppo", "--env", "rlft-test/Doors-v0", "--policy", init_policy,
          "--out", str(tmp_path), "--updates", "1", "--num-envs", "2", "--num-steps", "2",
          "--eval-episodes", "3", "--no-progress"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_start"]["name"] == "start" and summary["test"]["name"] == "ppo"
    assert summary["test"]["episodes"] == summary["test_start"]["episodes"] == 3
    out = capsys.readouterr().out
    assert "start" in out and "ppo" in out


def test_async_vector_envs_give_the_same_rollouts_as_sync(init_policy, tmp_path):
    common = dict(env="rlft-test/Doors-v0", policy=init_policy, num_envs=2, num_steps=3,
                  updates=1, eval_episodes=0, progress=False, checkpoint_every=0)
    a = train_ppo(PPOArgs(out=str(tmp_path / "sync"), vectorization="sync", **common))
    b = train_ppo(PPOArgs(out=str(tmp_path / "async"), vectorization="async", **common))
    assert a["global_step"] == b["global_step"] == 6
    assert a["history"] and a["history"] == b["history"]
    from safetensors.torch import load_file

    wa = load_file(str(tmp_path / "sync" / "policy" / "head.safetensors"))
    wb = load_file(str(tmp_path / "async" / "policy" / "head.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k])


@pytest.mark.parametrize("fault", ["writing state", "old moved aside", "new in place",
                                   "new written, old not moved"])
def test_resume_after_a_kill_inside_a_checkpoint_write(init_policy, tmp_path, fault, capsys):
    """Each point of a checkpoint write where a kill can land leaves files from which
    --resume continues from the last complete checkpoint (and cleans up), never from scratch
    and never stuck."""
    import shutil

    common = dict(env="rlft-test/Doors-v0", policy=init_policy, num_envs=2, num_steps=3,
                  learning_rate=1e-3, eval_episodes=0, progress=False, checkpoint_every=1,
                  anneal_lr=False)
    out = tmp_path / "run"
    train_ppo(PPOArgs(out=str(out), updates=1, **common))
    prev = tmp_path / "prev"
    shutil.copytree(out / "checkpoint", prev)
    train_ppo(PPOArgs(out=str(out), updates=2, resume=True, **common))
    ckpt, tmp, old = out / "checkpoint", out / "checkpoint.tmp", out / "checkpoint.old"
    new = tmp_path / "new"
    shutil.move(ckpt, new)
    if fault == "writing state":  # the previous one in place, a half-written state.pt
        shutil.copytree(prev, ckpt)
        tmp.mkdir()
        (tmp / "state.pt").write_bytes((new / "state.pt").read_bytes()[:100])
        expect = 1
    elif fault == "old moved aside":  # between the two renames
        shutil.copytree(prev, old)
        shutil.copytree(new, tmp)
        expect = 2
    elif fault == "new in place":  # before the old one was removed
        shutil.copytree(new, ckpt)
        shutil.copytree(prev, old)
        expect = 2
    else:  # the new one complete in .tmp, the old one not yet moved: the new one wins
        shutil.copytree(prev, ckpt)
        shutil.copytree(new, tmp)
        expect = 2
    capsys.readouterr()
    summary = train_ppo(PPOArgs(out=str(out), updates=3, resume=True, **common))
    assert f"resuming at update {expect + 1}" in capsys.readouterr().out
    assert summary["global_step"] == 3 * 2 * 3
    assert not tmp.exists() and not old.exists()
    state = torch.load(ckpt / "state.pt", weights_only=False)
    assert state["update"] == 3


def test_a_damaged_checkpoint_is_named(init_policy, tmp_path, capsys):
    from rlft.training.cli import main

    out = tmp_path / "run"
    common = ["--env", "rlft-test/Doors-v0", "--policy", init_policy, "--out", str(out),
              "--num-envs", "2", "--num-steps", "3", "--eval-episodes", "0", "--no-progress",
              "--checkpoint-every", "1"]
    main(["train", "ppo", "--updates", "1", *common])
    state = out / "checkpoint" / "state.pt"
    for damage in (b"", b"garbage", state.read_bytes()[:200]):
        state.write_bytes(damage)
        with pytest.raises(SystemExit) as e:
            main(["train", "ppo", "--updates", "2", "--resume", *common])
        assert e.value.code == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("rlft: error: ")]
        assert len(errors) == 1 and str(state) in errors[0] and "Traceback" not in err, err


def test_group_advantages_by_hand():
    from rlft.training.ppo import group_advantages

    returns = torch.tensor([[1.0, 0.0, 0.0, -1.0], [1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 1.0, 1.0]])
    grpo, informative = group_advantages(returns, "grpo")
    assert informative.tolist() == [True, False, True]
    std0 = (2 / 3) ** 0.5                       # sample std of (1, 0, 0, -1)
    torch.testing.assert_close(grpo[0], torch.tensor([1.0, 0.0, 0.0, -1.0]) / (std0 + 1e-6))
    assert grpo[1].abs().sum() == 0             # equal returns: nothing to learn
    rloo, _ = group_advantages(returns, "rloo")
    # each return minus the mean of the other three
    torch.testing.assert_close(rloo[2], torch.tensor([2 - 2 / 3, 0 - 4 / 3, 1 - 1.0, 1 - 1.0]))
    torch.testing.assert_close(rloo[0], torch.tensor([1 + 1 / 3, 0.0, 0.0, -1 - 1 / 3]))
    with pytest.raises(ValueError, match="at least 2"):
        group_advantages(torch.zeros(3, 1), "grpo")


def test_step_advantages_compare_turns_that_saw_the_same_observation():
    """GiGPO's step groups: the anchor state A was seen by three turns (two rollouts, and one
    rollout twice), B by two with equal returns, C once."""
    import numpy as np

    from rlft.training.ppo import observation_key, step_advantages

    keys = ["A", "B", "A", "C", "B", "A"]
    returns = torch.tensor([1.0, 0.5, 0.0, 0.3, 0.5, -1.0])
    adv = step_advantages(keys, returns)
    std = torch.tensor([1.0, 0.0, -1.0]).std()  # sample std of A's returns
    torch.testing.assert_close(adv[[0, 2, 5]], torch.tensor([1.0, 0.0, -1.0]) / (std + 1e-6))
    assert adv[[1, 3, 4]].abs().sum() == 0  # equal returns, and a state seen once
    page = {"goal": "g", "page": "line one\nline two"}
    image = {"goal": "g", "rgb": np.zeros((2, 3), np.uint8)}
    assert observation_key(page) == observation_key(dict(page))
    assert observation_key(page) != observation_key({**page, "page": "line one"})
    changed = {"goal": "g", "rgb": np.eye(2, 3, dtype=np.uint8)}
    assert observation_key(image) != observation_key(changed)
    assert observation_key(image) != observation_key({**image, "rgb": np.zeros((3, 2), np.uint8)})


def test_gigpo_adds_each_turns_step_advantage_to_its_episodes(init_policy, monkeypatch):
    """The wiring around step_advantages: a group's turns go in rollout order, each gets its
    own step value (times step_weight) on top of its episode's GRPO advantage, and with
    step_weight 0 the rollout is GRPO's, turn for turn."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    import rlft.training.ppo as ppo

    policy = ppo.load_rl_policy(init_policy, "rlft-test/Doors-v0")
    seen_keys: list[list[str]] = []
    seen_returns: list[torch.Tensor] = []

    def positions(keys, returns):  # a distinct value per turn, in the order it was given
        seen_keys.append(list(keys))
        seen_returns.append(returns)
        return torch.arange(len(keys), dtype=returns.dtype) + 1.0

    def rollout(advantage, weight, spy=False):
        if spy:
            monkeypatch.setattr(ppo, "step_advantages", positions)
        envs = gym.make_vec("rlft-test/Doors-v0", num_envs=8, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
        args = PPOArgs(env="rlft-test/Doors-v0", policy=init_policy, num_envs=8, num_steps=2,
                       gamma=0.9, advantage=advantage, group_size=4, step_weight=weight)
        episodes = {"return": [], "success": [], "score": [], "task": []}
        try:
            feats, actions, _, adv, taken, stats = ppo._group_rollout(
                envs, policy, args, torch.Generator().manual_seed(0), 7, episodes)
        finally:
            envs.close()
            monkeypatch.undo()
        return actions, adv, taken, stats

    grpo, zero = rollout("grpo", 0.0), rollout("gigpo", 0.0)
    assert grpo[0] == zero[0] and torch.equal(grpo[1], zero[1])
    actions1, adv1, taken, stats = rollout("gigpo", 1.0, spy=True)
    actions2, adv2, _, _ = rollout("gigpo", 2.0, spy=True)
    assert actions1 == actions2 and taken == 16 and stats["anchored"] == 1.0
    # one round, two groups of 4 two-turn episodes: 8 turns each, rollout after rollout
    assert len(seen_keys) == 4 and all(len(k) == 8 for k in seen_keys)
    # the 4 rollouts of a goal start on the same page; turn 2 shows one shuffled page too
    assert all(len({k[0], k[2], k[4], k[6]}) == 1 for k in seen_keys)
    for r in seen_returns:  # discounted returns-to-go: reward 0 then R, so (0.9 R, R)
        assert set(r[1::2].tolist()) <= {0.0, 1.0}
        torch.testing.assert_close(r[0::2], 0.9 * r[1::2])
    assert sum(float(r.sum()) for r in seen_returns) > 0
    torch.testing.assert_close(adv2 - adv1, torch.arange(1.0, 9.0).repeat(2))
    episode = adv1 - torch.arange(1.0, 9.0).repeat(2)
    # the rest is GRPO's episode advantage: here the first goal's four rollouts scored alike
    # (GRPO skipped that group; the step values keep it) and the second's did not
    assert len(grpo[1]) == 8 and grpo[1].abs().sum() > 0
    torch.testing.assert_close(episode, torch.cat([torch.zeros(8), grpo[1]]))


@pytest.mark.parametrize("advantage", ["grpo", "rloo", "gigpo"])
def test_group_relative_ppo_learns_the_doors_task(init_policy, tmp_path, advantage):
    before = doors_success(init_policy)
    summary = train_ppo(PPOArgs(env="rlft-test/Doors-v0", policy=init_policy, out=str(tmp_path),
                                reward_mode="sparse", num_envs=8, num_steps=8, updates=25,
                                learning_rate=1e-3, minibatch_size=32, kl_coef=0.0,
                                ent_coef=0.0, eval_episodes=0, progress=False,
                                checkpoint_every=0, advantage=advantage, group_size=4))
    after = doors_success(str(tmp_path / "policy"))
    assert before < 0.5
    assert after >= 0.95, (before, after, summary)
    last = summary["history"][-1]
    # two goals a round, 2 turns an episode: 4 rounds make the 64-turn budget
    assert last["rounds"] == 4 and last["groups"] == 8
    assert summary["global_step"] == 25 * 64
    # a group of one goal played the same goal: once the task is learnt, its groups all succeed
    # and are skipped
    assert last["groups_skipped"] >= 6


def test_group_rollouts_play_one_goal_per_group(init_policy, tmp_path, monkeypatch):
    """The G envs of a group see the same goal; the groups of a round see different ones."""
    import rlft.training.ppo as ppo

    seen: list[list[str]] = []
    real = ppo._group_rollout

    def spy(envs, *a, **k):
        if not hasattr(envs, "inner_reset"):
            envs.inner_reset = envs.reset

            def reset(**kw):
                obs, info = envs.inner_reset(**kw)
                seen.append(list(obs["goal"]))
                return obs, info
            envs.reset = reset
        return real(envs, *a, **k)

    monkeypatch.setattr(ppo, "_group_rollout", spy)
    train_ppo(PPOArgs(env="rlft-test/Doors-v0", policy=init_policy, out=str(tmp_path),
                      reward_mode="sparse", num_envs=8, num_steps=4, updates=2,
                      eval_episodes=0, progress=False, checkpoint_every=0, advantage="grpo",
                      group_size=4))
    assert len(seen) == 2 * 2
    for goals in seen:
        assert len(set(goals[:4])) == 1 and len(set(goals[4:])) == 1
    assert len({g[0] for g in seen} | {g[4] for g in seen}) > 2


def test_group_size_must_divide_num_envs(init_policy, tmp_path):
    with pytest.raises(ValueError, match="multiple of --group-size"):
        train_ppo(PPOArgs(env="rlft-test/Doors-v0", policy=init_policy, out=str(tmp_path),
                          num_envs=6, advantage="grpo", group_size=4, progress=False))


@pytest.mark.parametrize("field, value, message", [
    ("learning_rate", -1.0, "--learning-rate must be positive"),
    ("clip_coef", 0.0, "--clip-coef must be positive"),
    ("max_grad_norm", -0.5, "--max-grad-norm must be positive"),
    ("kl_coef", -0.1, "--kl-coef is a loss weight"),
    ("vf_coef", -1.0, "--vf-coef is a loss weight"),
    ("checkpoint_every", -1, "--checkpoint-every is a number of updates"),
])
def test_settings_ppo_cannot_run_with_are_refused_before_anything_is_written(
        init_policy, tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        train_ppo(PPOArgs(env="rlft-test/Doors-v0", policy=init_policy, out=str(tmp_path / "o"),
                          progress=False, **{field: value}))
    assert not (tmp_path / "o").exists()


def test_goal_pool_trains_on_the_pools_goals_only(init_policy, tmp_path, monkeypatch):
    import rlft.training.ppo as ppo

    goals: set[str] = set()
    real = ppo._split_obs

    def spy(obs, n):
        goals.update(obs["goal"])
        return real(obs, n)

    monkeypatch.setattr(ppo, "_split_obs", spy)
    summary = train_ppo(PPOArgs(env="rlft-test/Doors-v0", policy=init_policy, out=str(tmp_path),
                                reward_mode="sparse", num_envs=8, num_steps=8, updates=6,
                                learning_rate=1e-3, kl_coef=0.0, ent_coef=0.0, eval_episodes=0,
                                progress=False, checkpoint_every=0, advantage="grpo",
                                goal_pool=2))
    assert len(goals) == 2, goals
    assert summary["global_step"] == 6 * 64


def test_the_closing_evaluation_plays_the_env_the_run_trained_on(init_policy, tmp_path):
    # --env-kwargs make every click right ("free"): the start and the result both succeed on
    # every test episode there, and a policy that is random on the doors task would not
    summary = train_ppo(PPOArgs(env="rlft-test/Doors-v0", policy=init_policy, out=str(tmp_path),
                                env_kwargs=('tasks=["free"]',), num_envs=2, num_steps=4,
                                updates=1, eval_episodes=10, progress=False,
                                checkpoint_every=0))
    assert summary["test_start"]["success"] == summary["test"]["success"] == 1.0
    assert doors_success(init_policy) < 0.5


def test_max_minutes_stops_after_the_update_that_spends_it(init_policy, tmp_path):
    common = dict(env="rlft-test/Doors-v0", policy=init_policy, num_envs=4, num_steps=4,
                  eval_episodes=0, progress=False, checkpoint_every=0)
    summary = train_ppo(PPOArgs(out=str(tmp_path / "cut"), updates=50, max_minutes=1e-6,
                                **common))
    assert summary["updates_done"] == 1 and summary["global_step"] == 4 * 4
    assert "--max-minutes" in summary["stopped_early"]
    assert (tmp_path / "cut" / "policy" / "rlft_policy.json").is_file()
    full = train_ppo(PPOArgs(out=str(tmp_path / "full"), updates=2, max_minutes=60, **common))
    assert full["updates_done"] == 2 and full["stopped_early"] is None
    with pytest.raises(ValueError, match="--max-minutes must be positive"):
        train_ppo(PPOArgs(out=str(tmp_path / "bad"), updates=2, max_minutes=0, **common))



def test_micro_batches_add_the_minibatch_gradient_for_a_full_distribution_policy(init_policy,
                                                                                tmp_path):
    """The choice policy's KL is exact over its candidates (each pass pads its own
    distributions), and a bad size is refused in one line."""
    import gymnasium as gym

    from rlft.agents import Turn
    from rlft.training.ppo import load_rl_policy

    policy = load_rl_policy(init_policy, "rlft-test/Doors-v0").eval()
    env = gym.make("rlft-test/Doors-v0")
    feats = [policy.encode(Turn.from_env(*env.reset(seed=seed))) for seed in range(7)]
    assert_micro_batches_match(policy, feats, micro=3)
    with pytest.raises(ValueError, match="--micro-batch-size"):
        train_ppo(PPOArgs(env="rlft-test/Doors-v0", policy=init_policy, out=str(tmp_path),
                          micro_batch_size=0))
