"""LMPolicy under PPO: action-token parts and masks, rollout/update agreement, the KL reference
and a short end-to-end run on rlft/Shop-v0 with a tiny Llama."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch
from tiny_models import make_tiny_llama

import rlft.envs  # noqa: F401
from rlft.agents import LMPolicy, LMPolicyConfig, Turn, load_policy
from rlft.agents.rl import RLPolicy, masked_mean, reference_weights
from rlft.training.ppo import PPOArgs, load_rl_policy, train_ppo


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: these tiny models' small ops run several times faster than with two
    on a shared 2-core machine (no barrier waits)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return str(make_tiny_llama(tmp_path_factory.mktemp("tiny-llama")))


def _policy(tiny_lm: str, **kw) -> LMPolicy:
    torch.manual_seed(0)
    cfg = {"lora_r": 4, "window": 1, "max_page_chars": 200, "max_prompt_tokens": 192, **kw}
    policy = LMPolicy(LMPolicyConfig(model=tiny_lm, **cfg)).eval()
    with torch.no_grad():  # a non-trivial adapter, so its effect is visible
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return policy


def _turns(policy: LMPolicy, n: int = 2) -> list:
    """Turns of the first steps of Shop episodes (the search page, then a results page)."""
    env = gym.make("rlft/Shop-v0", split="train")
    feats = []
    for seed in range(n):
        obs, info = env.reset(seed=seed)
        feats.append(policy.encode(Turn.from_env(obs, info)))
        action = env.unwrapped.expert().act(obs, info)
        obs, _, _, _, info = env.step(action)
        feats.append(policy.encode(Turn.from_env(obs, info, [action])))
    env.close()
    return feats


def test_parts_are_exactly_the_action_tokens(tiny_lm):
    policy = _policy(tiny_lm)
    assert isinstance(policy, RLPolicy)
    feats = _turns(policy)
    actions = [f.candidate_ids[i % len(f.candidates)] for i, f in enumerate(feats)]
    ev = policy.rl_evaluate(feats, actions)
    eos = policy.tokenizer.eos_token_id
    for i, (f, a) in enumerate(zip(feats, actions, strict=True)):
        assert a[-1] == eos and ev.mask[i].sum() == len(a)  # every action token, EOS included
        assert ev.mask[i, : len(a)].all() and not ev.mask[i, len(a):].any()  # left-aligned
        # Brute force: the full forward's log-softmax at the positions predicting the action
        # tokens, and nothing from the prompt positions.
        ids = torch.tensor([list(f.prompt_ids) + list(a)])
        with torch.no_grad():
            logp = torch.log_softmax(policy.model(input_ids=ids).logits[0, :-1].float(), -1)
        n_prompt = len(f.prompt_ids)
        want = logp[n_prompt - 1 :].gather(-1, ids[0, n_prompt:, None])[:, 0]
        torch.testing.assert_close(ev.log_probs[i, : len(a)].detach(), want, atol=1e-5,
                                   rtol=1e-5)
        ent = -(logp[n_prompt - 1 :].exp() * logp[n_prompt - 1 :]).sum(-1).mean()
        torch.testing.assert_close(ev.entropy[i].detach(), ent, atol=1e-5, rtol=1e-5)


def test_prompt_tokens_get_no_gradient_through_the_loss(tiny_lm):
    """The LM head sees only the hidden states that predict action tokens: the surrogate's
    gradient w.r.t. the head's input is zero at every prompt position."""
    policy = _policy(tiny_lm)
    feats = _turns(policy, n=1)
    actions = [f.candidate_ids[0] for f in feats]
    seen: list[torch.Tensor] = []
    final = policy.model.get_output_embeddings()

    def keep_hidden(_module, args):
        seen.append(args[0])

    # Capture the decoder's last hidden states (the head's input rows are a selection of them).
    hook = final.register_forward_pre_hook(keep_hidden)
    captured: list[torch.Tensor] = []
    norm = policy.model.get_base_model().model.norm

    def keep_normed(_module, _args, out):
        out.retain_grad()
        captured.append(out)

    h2 = norm.register_forward_hook(keep_normed)
    try:
        ev = policy.rl_evaluate(feats, actions)
        masked_mean(ev.log_probs, ev.mask).backward()
    finally:
        hook.remove()
        h2.remove()
    grad = captured[0].grad[:, :-1].abs().sum(-1)  # [B, T-1]: position t predicts token t+1
    for i, (f, a) in enumerate(zip(feats, actions, strict=True)):
        n_prompt = len(f.prompt_ids)
        assert grad[i, : n_prompt - 1].sum() == 0  # predicting prompt tokens: no loss
        assert (grad[i, n_prompt - 1 : n_prompt - 1 + len(a)] > 0).all()
    # the model call itself keeps one logit row per sequence; our head call gets the rest
    assert seen[-1].shape[0] == sum(len(a) for a in actions)


@pytest.mark.parametrize("constrained", [True, False])
def test_evaluate_matches_act_for_the_same_actions(tiny_lm, constrained):
    policy = _policy(tiny_lm, constrained=constrained, max_action_tokens=8)
    feats = _turns(policy)
    with torch.no_grad():
        step = policy.rl_act(feats, torch.Generator().manual_seed(0))
        ev = policy.rl_evaluate(feats, step.actions)
        values = policy.rl_values(feats)
    assert step.log_probs.shape == ev.log_probs.shape and torch.equal(step.mask, ev.mask)
    torch.testing.assert_close(step.log_probs, ev.log_probs, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(step.values, ev.values, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, ev.values, atol=1e-5, rtol=1e-5)
    for f, env_action, ids in zip(feats, step.env_actions, step.actions, strict=True):
        if constrained:
            assert env_action in f.candidates and tuple(ids) == f.candidate_ids[
                f.candidates.index(env_action)]
        else:
            assert env_action == policy._decode(ids)


def test_kl_to_the_reference_is_zero_before_an_update_and_grows_after(tiny_lm):
    policy = _policy(tiny_lm)
    feats = _turns(policy)
    actions = [f.candidate_ids[0] for f in feats]
    trainable = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("value_head") for n in trainable)
    reference = {n: p.detach().clone() for n, p in trainable.items()}
    with torch.no_grad():
        ev = policy.rl_evaluate(feats, actions)
        with reference_weights(policy, reference):
            ref = policy.rl_evaluate(feats, actions)
        assert float(ev.kl(ref)) == pytest.approx(0.0, abs=1e-7)
        for name, p in trainable.items():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.2)
        moved = policy.rl_evaluate(feats, actions)
        with reference_weights(policy, reference):
            ref2 = policy.rl_evaluate(feats, actions)
    assert float(moved.kl(ref2)) > 1e-4
    torch.testing.assert_close(ref2.log_probs, ref.log_probs)  # the reference is restored exactly


def _weights(policy: LMPolicy) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in policy.model.named_parameters()}


def test_ppo_end_to_end_trains_the_adapter_only(tiny_lm, tmp_path):
    init = tmp_path / "init"
    start = _policy(tiny_lm)
    start.save_pretrained(init)
    before = _weights(start)
    args = PPOArgs(env="rlft/Shop-v0", policy=str(init), out=str(tmp_path / "run"), num_envs=2,
                   num_steps=4, updates=2, update_epochs=1, minibatch_size=4, eval_episodes=0,
                   progress=False, checkpoint_every=0, learning_rate=1e-2)
    summary = train_ppo(args)
    assert summary["global_step"] == 16
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["updates"] == 2
    assert (tmp_path / "run" / "policy" / "adapter" / "adapter_config.json").exists()
    after = load_policy(tmp_path / "run" / "policy")
    assert isinstance(after, LMPolicy) and after.config == start.config
    trained = _weights(after)
    lora = [n for n in before if "lora_" in n]
    base = [n for n in before if "lora_" not in n]
    assert lora and base and set(trained) == set(before)
    assert any(not torch.equal(before[n], trained[n]) for n in lora)
    assert all(torch.equal(before[n], trained[n]) for n in base)


def test_full_fine_tuned_policy_gets_a_fresh_adapter_saved_with_its_base(tiny_lm, tmp_path):
    full = _policy(tiny_lm, lora_r=0)
    with torch.no_grad():  # stand-in for SFT: weights that differ from the base model's
        full.model.get_output_embeddings().weight.mul_(1.5)
    full.save_pretrained(tmp_path / "sft")
    policy = load_rl_policy(tmp_path / "sft", "rlft/Shop-v0", lora_r=2)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert policy.config.lora_r == 2 and trainable
    assert all("lora_" in n or n.startswith("value_head") for n in trainable)
    feats = _turns(policy, n=1)
    actions = [f.candidate_ids[-1] for f in feats]
    with torch.no_grad():  # a fresh adapter (lora_B = 0) leaves the fine-tuned policy as it was
        torch.testing.assert_close(policy.rl_evaluate(feats, actions).log_probs,
                                   full.rl_evaluate(feats, actions).log_probs)
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.1)
        want = policy.rl_evaluate(feats, actions).log_probs
    policy.save_pretrained(tmp_path / "rl")
    assert (tmp_path / "rl" / "adapter").is_dir() and (tmp_path / "rl" / "model").is_dir()
    loaded = load_policy(tmp_path / "rl")
    assert loaded.config == policy.config
    with torch.no_grad():
        torch.testing.assert_close(loaded.rl_evaluate(feats, actions).log_probs, want)
    with pytest.raises(ValueError, match="LoRA"):
        load_rl_policy(tmp_path / "sft", "rlft/Shop-v0", lora_r=0)


def test_two_processes_start_from_the_same_fresh_adapter(tiny_lm, tmp_path):
    """A fully fine-tuned checkpoint gets a fresh LoRA adapter on every rank, each from its own
    seed; the runner gives all ranks rank 0's, so the weights stay in sync."""
    import json
    import os
    import subprocess
    import sys

    _policy(tiny_lm, lora_r=0).save_pretrained(tmp_path / "sft")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "rlft.training.ppo", "--env", "rlft/Shop-v0", "--policy", str(tmp_path / "sft"),
           "--out", str(tmp_path / "rl"), "--lora-r", "2", "--num-envs", "1", "--num-steps", "2",
           "--updates", "1", "--minibatch-size", "2", "--eval-episodes", "0", "--no-progress",
           "--checkpoint-every", "0"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "rl" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["weights_in_sync"] is True


def test_micro_batches_add_the_minibatch_gradient(tiny_lm):
    """The LM's surrogate and k3 KL are means over action tokens: weighted by tokens, so
    passes of 2 turns with different action lengths add up to one pass over 5."""
    from ppo_toy_env import assert_micro_batches_match

    policy = _policy(tiny_lm)
    feats = _turns(policy, n=3)[:5]
    assert_micro_batches_match(policy, feats, micro=2)
