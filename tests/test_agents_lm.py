"""LMPolicy and the chat wrapper: prompts, action-token masking, log-probs, save/load."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from tiny_models import make_tiny_llama

import rlft.envs  # noqa: F401
from rlft.agents import LMPolicy, LMPolicyConfig, Turn, load_policy
from rlft.wrappers.chat import ChatHistory, build_messages, render_prompt
from rlft.wrappers.valid_actions import expand_valid_actions


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return str(make_tiny_llama(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="module")
def tiny_chat_lm(tmp_path_factory):
    return str(make_tiny_llama(tmp_path_factory.mktemp("tiny-chat"), chat_template=True))


@pytest.fixture(scope="module")
def turn():
    env = gym.make("rlft/Shop-v0", split="test")
    obs, info = env.reset(seed=0)
    obs, _, _, _, info = env.step(env.unwrapped.expert().act(obs, info))
    env.close()
    return Turn.from_env(obs, info, ["search[x]"])


def test_plain_and_chat_template_prompts(tiny_lm, tiny_chat_lm, turn):
    msgs = build_messages(turn.goal, turn.page, ["click[Buy Now]"], [("old page", "search[x]")])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    plain = render_prompt(msgs)
    assert plain.endswith("### Assistant\n") and "Goal: " + turn.goal in plain
    assert "search[x]" in plain and "Valid actions: click[Buy Now]" in plain
    past = Turn(turn.goal, turn.observation, turn.valid_actions, turn.history,
                ({"goal": turn.goal, "page": "old page"},))
    chat = LMPolicy(LMPolicyConfig(model=tiny_chat_lm, lora_r=0)).prompt(past)
    assert "old page" in chat
    assert chat.startswith("<|system|>") and chat.endswith("<|assistant|>")
    assert "<|assistant|>search[x]<|end|>" in chat


def test_chat_history_wrapper_tracks_actions():
    env = ChatHistory(gym.make("rlft/Shop-v0"), window=1)
    obs, info = env.reset(seed=0)
    assert info["history"] == [] and info["messages"][-1]["role"] == "user"
    obs, _, _, _, info = env.step("search[boots]")
    obs, _, _, _, info = env.step("click[Back to Search]")
    assert info["history"] == ["search[boots]", "click[Back to Search]"]
    roles = [m["role"] for m in info["messages"]]
    assert roles == ["system", "user", "assistant", "user"]  # window=1: one past turn
    assert info["messages"][2]["content"] == "click[Back to Search]"
    env.close()


def test_mask_puts_zero_loss_on_prompt_tokens(tiny_lm, turn):
    policy = LMPolicy(LMPolicyConfig(model=tiny_lm, lora_r=0))
    prompt = policy.prompt(turn)
    n_prompt = len(policy.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    n_prompt = min(n_prompt, policy.config.max_prompt_tokens)  # the oldest tokens are cut
    n_action = len(policy.tokenizer("click[Buy Now]", add_special_tokens=False)["input_ids"])
    mask = policy.action_mask([prompt], ["click[Buy Now]"])[0]
    assert mask[:n_prompt].sum() == 0 and mask[n_prompt:].sum() == n_action + 1  # + eos
    out = policy.token_log_probs([prompt], ["click[Buy Now]"])
    # the SFT loss is the mean NLL over exactly the masked (action) tokens
    loss, _ = policy.sft_loss([prompt], ["click[Buy Now]"])
    manual = -(out.log_probs * out.mask).sum() / out.mask.sum()
    assert torch.allclose(loss, manual, atol=1e-5)
    # changing the prompt's last token changes logits but the prompt positions stay unweighted
    assert out.mask[0, : n_prompt - 1].sum() == 0


def test_constrained_scores_are_a_distribution_over_valid_actions(tiny_lm, turn):
    policy = LMPolicy(LMPolicyConfig(model=tiny_lm, lora_r=4)).eval()
    cands = policy.candidates(turn)
    with torch.no_grad():
        scores = policy.score_candidates(policy.prompt(turn), cands)
    assert scores.shape == (len(cands),) and (scores < 0).all()
    probs = torch.softmax(scores, -1)
    assert torch.isclose(probs.sum(), torch.tensor(1.0))
    obs = {"goal": turn.goal, "page": turn.page}
    action = policy.act(obs, {"valid_actions": list(turn.valid_actions)})
    assert action == cands[int(scores.argmax())]


def test_free_generation_returns_a_string(tiny_lm):
    policy = LMPolicy(LMPolicyConfig(model=tiny_lm, lora_r=0, constrained=False,
                                     max_action_tokens=5))
    env = gym.make("rlft/Shop-v0")
    obs, info = env.reset(seed=1)
    action = policy.act(obs, info)
    assert isinstance(action, str)
    env.step(action)  # whatever it is, the env takes it without raising
    env.close()


@pytest.mark.parametrize("lora_r", [0, 4])
def test_save_load_round_trip(tmp_path, tiny_lm, turn, lora_r):
    torch.manual_seed(0)
    policy = LMPolicy(LMPolicyConfig(model=tiny_lm, lora_r=lora_r))
    with torch.no_grad():  # make the fine-tuned part differ from the base model
        for name, p in policy.model.named_parameters():
            if p.requires_grad and ("lora_B" in name or lora_r == 0):
                p.add_(torch.randn_like(p) * 0.05)
        policy.value_head.bias.fill_(0.7)
    policy.eval()
    policy.save_pretrained(tmp_path)
    loaded = load_policy(tmp_path)
    assert isinstance(loaded, LMPolicy) and loaded.config == policy.config
    prompt, cands = policy.prompt(turn), policy.candidates(turn)
    with torch.no_grad():
        a = policy.token_log_probs([prompt] * 3, cands[:3])
        b = loaded.token_log_probs([prompt] * 3, cands[:3])
        base = LMPolicy(LMPolicyConfig(model=tiny_lm, lora_r=0)).eval().token_log_probs(
            [prompt] * 3, cands[:3])
    assert torch.allclose(a.log_probs, b.log_probs, atol=1e-5)
    assert torch.allclose(a.values, b.values) and torch.allclose(b.values, torch.tensor(0.7))
    assert not torch.allclose(a.log_probs, base.log_probs, atol=1e-4)
    assert (tmp_path / "adapter" / "adapter_config.json").exists() == bool(lora_r)
    assert expand_valid_actions(turn.goal, turn.valid_actions) == cands


def _shop_turns(n: int) -> list[Turn]:
    """The first ``n`` turns of expert test episodes (search, results and item pages: prompts
    and candidate sets of several sizes)."""
    from itertools import islice

    from rlft.training.demos import expert_turns

    return [t for t, _ in islice(expert_turns("rlft/Shop-v0", "test", n), n)]


def test_batched_candidate_scores_equal_the_per_turn_kv_cache_scores(tiny_lm):
    policy = LMPolicy(LMPolicyConfig(model=tiny_lm, lora_r=4, score_batch_tokens=0)).eval()
    features = [policy.encode(t) for t in _shop_turns(4)]
    calls = []
    policy.model.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        per_turn = policy._turn_scores(features)
        assert len(calls) == 2 * len(features)  # a prompt pass and a candidates pass each
        pairs = sum(len(f.candidate_ids) for f in features)
        for budget, passes in ((1, pairs), (1500, None), (10**7, 1)):
            calls.clear()
            policy.config.score_batch_tokens = budget
            batched = policy._turn_scores(features)
            if passes is not None:
                assert len(calls) == passes
            else:  # a budget of a few rows: several passes, each within it
                assert 1 < len(calls) < pairs
            for a, b in zip(per_turn, batched, strict=True):
                assert torch.equal(a.mask, b.mask)
                assert torch.allclose(a.log_probs, b.log_probs, atol=1e-5)
                assert torch.allclose(a.entropy, b.entropy, atol=1e-4)
                assert torch.allclose(a.values, b.values, atol=1e-6)
            assert policy.choose_many(features) == [policy.choose(f) for f in features]
    with pytest.raises(ValueError, match="score_batch_tokens"):
        LMPolicyConfig(model=tiny_lm, score_batch_tokens=-1)



def test_sft_micro_batches_add_the_batch_gradient(tiny_lm, tmp_path):
    """SFT's loss is a mean over target tokens: passes of 2 examples with targets of different
    lengths, each weighted by its tokens, add up to one pass over 5 (loss, accuracy, grads)."""
    from rlft.training.configs import ImitateArgs
    from rlft.training.imitation import batch_gradients, imitate

    policy = LMPolicy(LMPolicyConfig(model=tiny_lm, lora_r=4)).train()
    feats = [policy.encode(t) for t in _shop_turns(5)]
    targets = [policy.imitation_target(f, f.candidates[i % len(f.candidates)])
               for i, f in enumerate(feats)]
    assert len({len(t) for t in targets}) > 1
    results = []
    for micro in (5, 2):
        policy.zero_grad()
        loss, acc = batch_gradients(policy, feats, targets, micro)
        grads = {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}
        results.append((loss, acc, grads))
    (loss_a, acc_a, g_a), (loss_b, acc_b, g_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-5) and acc_a == pytest.approx(acc_b, abs=1e-6)
    assert g_a and set(g_a) == set(g_b) and any(g.abs().max() > 0 for g in g_a.values())
    for n in g_a:
        assert torch.allclose(g_a[n], g_b[n], rtol=1e-4, atol=1e-7), n
    with pytest.raises(ValueError, match="--micro-batch-size"):
        imitate(ImitateArgs(demos=tmp_path, out=tmp_path / "x", env="rlft/Shop-v0",
                            policy="lm", model=tiny_lm, micro_batch_size=0))
