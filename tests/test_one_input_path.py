"""Acting, imitation and PPO see the same model input for every turn, for every policy kind.

One episode is played by the policy itself (``act``) and recorded as demos; imitation encodes
those demos; PPO replays the same episode (same env seed, the recorded actions forced in place of
its samples). Every turn's input must be identical in the three places. Before the
episode-to-input path was shared, the LM failed this: PPO's prompt lacked the past pages that
acting and SFT showed (1,336 against 1,658 characters at step 3 with ``window=2``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

import rlft.envs  # noqa: F401
from rlft.agents.tiny_models import make_tiny_bert, make_tiny_clip, make_tiny_llama
from rlft.training import ppo
from rlft.training.configs import PPOArgs
from rlft.training.demos import collect, demo_turns, load_demos
from rlft.training.imitation import encode_examples


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _policy(kind: str, tmp_path_factory) -> tuple[Any, str]:
    from rlft.agents import (
        ChoicePolicy,
        ChoicePolicyConfig,
        ClipPolicy,
        ClipPolicyConfig,
        LMPolicy,
        LMPolicyConfig,
    )

    torch.manual_seed(0)
    if kind == "choice":
        bert = make_tiny_bert(tmp_path_factory.mktemp("bert"))
        return ChoicePolicy(ChoicePolicyConfig(encoder=str(bert), hidden=16)), "rlft/Shop-v0"
    if kind == "lm":
        llama = make_tiny_llama(tmp_path_factory.mktemp("llama"))
        policy = LMPolicy(LMPolicyConfig(model=str(llama), lora_r=2, window=2,
                                         max_page_chars=300, max_prompt_tokens=4096))
        return policy, "rlft/Shop-v0"
    clip = make_tiny_clip(tmp_path_factory.mktemp("clip"))
    return ClipPolicy(ClipPolicyConfig(clip=str(clip))), "rlft/PutBlockInBowl-v0"


def _same(a: Any, b: Any) -> bool:
    """Field-by-field equality of two encoded turns (tensors and arrays exactly)."""
    if type(a) is not type(b):
        return False
    for f in dataclasses.fields(a):
        if f.name == "extra":  # the choice policy's memo of frozen embeddings
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, torch.Tensor):
            if not torch.equal(x, y):
                return False
        elif isinstance(x, np.ndarray):
            if not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True


def _forced(policy: Any, features: Any, action: Any) -> Any:
    """What ``rl_act`` keeps for training when the env action is ``action``."""
    kind = policy.policy_type
    if kind == "choice":
        return features.candidates.index(action)
    if kind == "lm":
        return features.candidate_ids[features.candidates.index(action)]
    return policy.action_to_indices(action)


@pytest.mark.parametrize("kind", ["choice", "lm", "clip"])
def test_acting_imitation_and_ppo_encode_the_same_turns(kind, tmp_path, tmp_path_factory,
                                                        monkeypatch):
    policy, env_id = _policy(kind, tmp_path_factory)
    policy.eval()
    seed = 3
    encoded: list[Any] = []
    real_encode = policy.encode

    def spy(turn):
        features = real_encode(turn)
        encoded.append(features)
        return features

    monkeypatch.setattr(policy, "encode", spy)

    # 1. acting: the policy plays one episode, recorded as demos
    collect(env_id, 1, tmp_path / "demos", seed=seed, agent=policy)
    acted = list(encoded)
    _, episodes = load_demos(tmp_path / "demos")
    actions = [rec["action"] for rec in episodes[0]]
    assert len(acted) == len(actions) >= 3  # enough history to matter
    if kind == "lm":  # past pages are in the prompt (window 2)
        turn3 = demo_turns(tmp_path / "demos", episodes)[2][0]
        assert turn3.history_pages[1] and turn3.history_pages[1][:40] in \
            policy.tokenizer.decode(list(acted[2].prompt_ids))

    # 2. imitation: the recorded demos, encoded as imitation encodes them
    encoded.clear()
    imitated, _ = encode_examples(policy, demo_turns(tmp_path / "demos", episodes))
    assert len(imitated) == len(acted)
    for t, (a, b) in enumerate(zip(acted, imitated, strict=True)):
        assert _same(a, b), f"turn {t}: imitation input differs from the acting input"

    # 3. PPO: the same episode replayed by the runner, the recorded actions forced
    encoded.clear()
    real_act = policy.rl_act
    replay = iter(actions)

    def forced_act(features, generator):
        step = real_act(features, generator)
        action = next(replay)
        step.env_actions = [np.asarray(action, dtype=np.float32) if kind == "clip" else action]
        step.actions = [_forced(policy, features[0], step.env_actions[0])]
        return step

    monkeypatch.setattr(policy, "rl_act", forced_act)
    monkeypatch.setattr(ppo, "load_rl_policy", lambda *a, **k: policy)
    ppo.train_ppo(PPOArgs(env=env_id, policy="unused", out=str(tmp_path / "ppo"), num_envs=1,
                          num_steps=len(actions), updates=1, update_epochs=1,
                          minibatch_size=len(actions), seed=seed, checkpoint_every=0,
                          eval_episodes=0, progress=False))
    trained = encoded[: len(actions)]
    for t, (a, b) in enumerate(zip(acted, trained, strict=True)):
        assert _same(a, b), f"turn {t}: the PPO input differs from the acting input"
