"""ClipPolicy: heatmaps, action <-> index mapping, save/load, imitation on tabletop demos."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlft.envs  # noqa: F401
from rlft.agents import ClipPolicy, ClipPolicyConfig, load_policy, make_agent
from rlft.agents.tiny_models import make_tiny_clip
from rlft.training.configs import ImitateArgs
from rlft.training.demos import collect
from rlft.training.imitation import imitate


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return str(make_tiny_clip(tmp_path_factory.mktemp("tiny-clip")))


@pytest.fixture(scope="module")
def scene():
    env = gym.make("rlft/PutBlockInBowl-v0")
    obs, info = env.reset(seed=0)
    action = env.unwrapped.expert().act(obs, info)
    env.close()
    return obs, np.asarray(action, dtype=np.float32)


def test_heatmaps_are_distributions_and_indices_round_trip(tiny_clip, scene):
    obs, action = scene
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip)).eval()
    h, w = policy.grid
    assert (h, w) == (40, 80)
    with torch.no_grad():
        out = policy([obs["goal"]], obs["color"], obs["depth"])
    assert out.pick.shape == (1, h * w) and out.place.shape == (1, 8 * h * w)
    assert torch.isclose(out.pick.softmax(-1).sum(), torch.tensor(1.0))
    ent = out.entropy()
    assert 0 < float(ent) <= math.log(h * w) + math.log(8 * h * w) + 1e-3
    pick, place = policy.action_to_indices(action)
    back = policy.indices_to_action(pick, place)
    cell = 0.5 / h  # metres per heatmap row (and column: 1.0 m / 80)
    assert np.allclose(back[:4], action[:4], atol=cell)
    assert abs((back[4] - action[4] + math.pi) % (2 * math.pi) - math.pi) <= math.pi / 8 + 1e-6
    logp, ent2, values = policy.evaluate_actions([obs["goal"]], obs["color"], obs["depth"],
                                                 action[None])
    assert torch.allclose(logp, out.log_prob(torch.tensor([pick]), torch.tensor([place])))
    assert torch.allclose(ent2, ent) and values.shape == (1,)


def test_save_load_round_trip(tmp_path, tiny_clip, scene):
    obs, _ = scene
    torch.manual_seed(1)
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, rotations=4)).eval()
    policy.save_pretrained(tmp_path)
    loaded = load_policy(tmp_path)
    assert isinstance(loaded, ClipPolicy) and loaded.config == policy.config
    with torch.no_grad():
        a = policy([obs["goal"]], obs["color"], obs["depth"])
        b = loaded([obs["goal"]], obs["color"], obs["depth"])
    assert torch.allclose(a.pick, b.pick) and torch.allclose(a.place, b.place)
    assert np.array_equal(policy.act(obs, {}), loaded.act(obs, {}))


def test_clip_policy_on_a_web_env_says_what_to_do(tmp_path, tiny_clip):
    ClipPolicy(ClipPolicyConfig(clip=tiny_clip)).save_pretrained(tmp_path)
    env = gym.make("rlft/Shop-v0")
    with pytest.raises(ValueError, match="tabletop"):
        make_agent(str(tmp_path), env)
    env.close()


def test_imitation_on_tabletop_demos_lowers_val_loss(tmp_path, tiny_clip):
    demos = tmp_path / "demos"
    collect("rlft/PutBlockInBowl-v0", 4, demos)
    assert list(demos.glob("episode_*.npz"))
    summary = imitate(ImitateArgs(demos=demos, out=tmp_path / "il", env="rlft/PutBlockInBowl-v0",
                                  policy="clip", model=tiny_clip, epochs=4, batch_size=4,
                                  lr=3e-3, val_episodes=2))
    hist = summary["history"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    policy = load_policy(tmp_path / "il")
    env = gym.make("rlft/PutBlockInBowl-v0")
    obs, _ = env.reset(seed=5)
    assert env.action_space.contains(policy.act(obs, {}))
    env.close()


def test_pretrain_clip_cli_learns_captions_and_feeds_the_policy(tmp_path, capsys):
    import json

    from rlft.training.cli import main

    out = tmp_path / "clip"
    main(["pretrain-clip", "--out", str(out), "--scenes", "3", "--eval-scenes", "1",
          "--steps", "25", "--hidden", "32", "--batch-size", "16"])
    assert "CLIP saved" in capsys.readouterr().out
    summary = json.loads((out / "pretrain_summary.json").read_text())
    assert summary["last_loss"] < summary["first_loss"]
    assert summary["retrieval_train"] > 3 * summary["chance"]
    policy = ClipPolicy(ClipPolicyConfig(clip=str(out)))
    env = gym.make("rlft/PutBlockInBowl-v0")
    obs, _ = env.reset(seed=0)
    assert env.action_space.contains(policy.act(obs, {}))
    env.close()
