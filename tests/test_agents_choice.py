"""ChoicePolicy and the valid-action helpers: candidates, probabilities, save/load, errors."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import pytest
import torch
from tiny_models import make_tiny_bert

import rlft.envs  # noqa: F401
from rlft.agents import ChoicePolicy, ChoicePolicyConfig, Turn, load_policy, make_agent
from rlft.agents.choice_policy import ANSWER_KINDS, KindBlock
from rlft.agents.episode import rollout
from rlft.envs.web.actions import SEARCH_PLACEHOLDER
from rlft.wrappers.valid_actions import (
    action_label,
    candidate_context,
    expand_valid_actions,
    match_candidate,
    page_buttons,
    price_fits,
    propose_queries,
)

GOAL = ("i want to buy a trail mix which is individually wrapped, plant based and keto "
        "friendly, flavor spicy, and price lower than 20.00 dollars")
RESULTS = """[button] Back to Search [button_]
Page 1 (Total results: 50)
[button] Next > [button_]
[button] B008Z3NN54 [button_]
Noxtralux Trail Mix - Gluten Free, Keto Friendly
$9.99
[button] B0RWJ4Q0VM [button_]
Casbenmir Trail Mix - Individually Wrapped
$35.99"""


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    return str(make_tiny_bert(tmp_path_factory.mktemp("tiny-bert")))


def expert_turns(env_id: str, seeds: tuple[int, ...]) -> tuple[list[Turn], list[str]]:
    """The turns of the expert's test-split episodes from ``seeds``, and its actions."""
    env = gym.make(env_id, split="test")
    turns, actions = [], []
    for seed in seeds:
        history: list[str] = []
        for t in rollout(env, env.unwrapped.expert(), seed=seed):
            turns.append(Turn.from_env(t.obs, t.info, history))
            history.append(t.action)
        actions += history
    env.close()
    return turns, actions


@pytest.fixture(scope="module")
def shop_turns():
    """Turns of two expert episodes on the test split."""
    return expert_turns("rlft/Shop-v0", (0, 1))[0]


def test_queries_drop_request_and_price_phrases():
    qs = propose_queries(GOAL)
    assert qs[0] == "trail mix individually wrapped plant based keto friendly flavor spicy"
    assert "trail mix individually wrapped plant based keto friendly" in qs
    assert all("dollars" not in q for q in qs[:-1]) and len(qs) == len(set(qs))


def test_expand_replaces_only_the_placeholder():
    out = expand_valid_actions(GOAL, [SEARCH_PLACEHOLDER, "click[Back to Search]"], ["a b"])
    assert out == ["search[a b]", "click[Back to Search]"]


def test_candidate_context_reads_title_and_price():
    buttons = page_buttons(RESULTS)
    ctx, pressed = candidate_context(RESULTS, "click[b008z3nn54]", buttons)
    assert ctx == "Noxtralux Trail Mix - Gluten Free, Keto Friendly $9.99" and not pressed
    assert candidate_context(RESULTS, "click[Next >]", buttons) == ("", False)
    assert price_fits("$9.99", GOAL) == 1.0 and price_fits("$35.99", GOAL) == -1.0
    pressed_page = "[clicked button] spicy [clicked button_]\n[button] Buy Now [button_]"
    assert candidate_context(pressed_page, "click[spicy]")[1] is True


def test_log_probs_sum_to_one_over_the_choice_set(tiny_encoder, shop_turns):
    torch.manual_seed(0)
    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16)).eval()
    out = policy(shop_turns)
    probs = out.log_probs().exp()
    sizes = torch.tensor([len(c) for c in out.candidates])
    assert torch.allclose(probs.sum(-1), torch.ones(len(shop_turns)), atol=1e-5)
    for b, n in enumerate(sizes):
        assert (probs[b, n:] == 0).all() and (probs[b, :n] > 0).all()
    ent = out.entropy()
    assert ((ent >= 0) & (ent <= torch.log(sizes.float()) + 1e-5)).all()
    actions = torch.tensor([len(c) - 1 for c in out.candidates])
    ev = policy.rl_evaluate([policy.encode(t) for t in shop_turns], actions.tolist())
    assert torch.allclose(ev.log_probs[:, 0], out.log_probs()[torch.arange(len(actions)), actions])
    assert torch.allclose(ev.entropy, ent) and ev.values.shape == (len(shop_turns),)


def test_reference_scores_cached_once_give_the_kl_of_scoring_each_minibatch(tiny_encoder,
                                                                            shop_turns):
    """PPO scores the taken actions under the reference once per update; the KL read from the
    cached rows must equal scoring the minibatch under the reference weights, on the exact
    (full-distribution) path and on the k3 path, with candidate sets of different sizes."""
    from rlft.agents.rl import reference_scores, reference_weights, stack_reference

    torch.manual_seed(0)
    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16)).eval()
    feats = [policy.encode(t) for t in shop_turns]
    sizes = [len(c) for c in policy(feats).candidates]
    assert len(set(sizes)) > 1
    actions = [n - 1 for n in sizes]
    reference = {n: p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad}
    rows = reference_scores(policy, reference, feats, actions, batch_size=2)
    assert [len(d) for _, d in rows] == sizes  # the -inf padding is cut per turn
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    mb = [2, 0]  # another batch than the one the rows were scored in
    ev = policy.rl_evaluate([feats[j] for j in mb], [actions[j] for j in mb])
    with torch.no_grad(), reference_weights(policy, reference):
        direct = policy.rl_evaluate([feats[j] for j in mb], [actions[j] for j in mb])
    cached = stack_reference([rows[j] for j in mb], ev)
    assert float(ev.kl(direct)) > 1e-3
    torch.testing.assert_close(ev.kl(cached), ev.kl(direct))
    ev.dist_log_probs = None  # the k3 estimate over the taken actions
    torch.testing.assert_close(ev.kl(cached), ev.kl(direct))


def test_frozen_embeddings_kept_on_the_features_score_the_same_as_fresh_ones(tiny_encoder):
    """PPO scores a buffered turn in every epoch from the embeddings memoised on its features
    (candidates, relations, quotes, residual words): the scores must equal a fresh encoding's."""
    turns, actions = expert_turns("rlft/Research-v0", (3,))
    assert any(a.startswith("quote[") for a in actions) and len(turns) > 3
    torch.manual_seed(0)
    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16,
                                             evidence_features=True, semantic_features=True))
    policy.eval()
    feats = [policy.encode(t) for t in turns]
    first = policy(feats).logits
    assert {"emb", "rel", "fields", "sem"} <= {k for f in feats for k in f.extra}
    again = policy(feats).logits  # from the memo
    fresh = policy([policy.encode(t) for t in turns]).logits
    torch.testing.assert_close(again, first)
    torch.testing.assert_close(fresh, first)


def test_frozen_follows_requires_grad_and_a_replaced_model(tiny_encoder):
    """``frozen`` keeps its list of parameters between calls: it must still see a parameter
    unfrozen in place, and an adapter added by replacing the model."""
    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16))
    enc = policy.encoder
    assert enc.frozen
    first = next(enc.model.parameters())
    first.requires_grad_(True)
    assert not enc.frozen
    first.requires_grad_(False)
    assert enc.frozen
    # a model replaced without clear_cache(): the kept list must follow the new object
    from peft import LoraConfig, get_peft_model

    enc.model = get_peft_model(enc.model, LoraConfig(r=2, target_modules=["query", "value"]))
    assert any("lora_" in n for n, _ in enc.model.named_parameters())
    assert not enc.frozen


def test_act_returns_a_concrete_valid_action(tiny_encoder):
    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16), sample=True,
                          seed=1)
    env = gym.make("rlft/Shop-v0")
    obs, info = env.reset(seed=0)
    policy.reset()
    for _ in range(4):
        action = policy.act(obs, info)
        assert action != SEARCH_PLACEHOLDER
        assert action in expand_valid_actions(obs["goal"], info["valid_actions"])
        obs, _, term, trunc, info = env.step(action)
        assert info["action_error"] is None
        if term or trunc:
            break
    env.close()


def test_choose_many_decides_each_turn_as_choose_does(tiny_encoder, shop_turns):
    """Scored in one padded batch (candidate sets of different sizes), each turn gets the
    candidate its own scoring picks, in its own order."""
    torch.manual_seed(0)
    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16)).eval()
    feats = [policy.encode(t) for t in shop_turns]
    assert len({len(f.candidate_texts) for f in feats}) > 1
    one_by_one = [policy.choose(f) for f in feats]
    assert len(set(one_by_one)) > 1
    assert policy.choose_many(feats) == one_by_one
    assert policy.choose_many(feats[::-1]) == one_by_one[::-1]
    # the head scores each turn's own candidates the same beside longer turns (it skips the
    # padding rows, which stay -inf), and ranks them the same
    together = policy(feats).logits
    for b, f in enumerate(feats):
        n = len(f.candidates)
        assert torch.allclose(together[b, :n], policy([f]).logits[0], atol=1e-5)
        assert torch.isinf(together[b, n:]).all()
    assert policy.ranked_actions_many(feats, 3) == [policy.ranked_actions(f, 3) for f in feats]


@pytest.mark.parametrize("lora_r", [0, 2])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, tiny_encoder, shop_turns,
                                                      lora_r):
    torch.manual_seed(0)
    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16, lora_r=lora_r))
    if lora_r:  # make the adapter non-trivial (LoRA B starts at zero)
        with torch.no_grad():
            for name, p in policy.encoder.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
        assert not policy.encoder.frozen
    policy.eval()
    policy.save_pretrained(tmp_path)
    loaded = load_policy(tmp_path)
    assert isinstance(loaded, ChoicePolicy) and loaded.config == policy.config
    with torch.no_grad():
        a, b = policy(shop_turns), loaded(shop_turns)
    assert torch.equal(torch.isinf(a.logits), torch.isinf(b.logits))
    fin = torch.isfinite(a.logits)
    assert torch.allclose(a.logits[fin], b.logits[fin], atol=1e-6)
    assert torch.allclose(a.values, b.values, atol=1e-6)
    assert (tmp_path / "adapter" / "adapter_config.json").exists() == bool(lora_r)
    if lora_r:  # the adapter changes the encoder, and what was saved is the adapter alone
        fresh = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16))
        assert not torch.allclose(fresh.encoder(["hello"]), loaded.encoder(["hello"]))
        assert "base_model" in (tmp_path / "rlft_policy.json").read_text()


def test_target_index_maps_expert_actions():
    cands = ["search[red shoes]", "search[red running shoes size 9]", "click[Back to Search]"]
    assert match_candidate(cands, "click[back to search]") == 2
    assert match_candidate(cands, "search[running shoes red size 9]") == 1
    assert match_candidate(cands, "search[shoes red]") == 0
    with pytest.raises(ValueError, match="not among the candidates"):
        match_candidate(cands, "click[Buy Now]")


def test_missing_checkpoint_says_what_to_do(tmp_path):
    env = gym.make("rlft/Shop-v0")
    with pytest.raises(FileNotFoundError, match="rlft imitate"):
        make_agent(str(tmp_path / "nope"), env)
    with pytest.raises(FileNotFoundError, match="rlft imitate"):
        load_policy(tmp_path)
    env.close()


def test_wrong_env_for_policy_says_what_to_do(tmp_path, tiny_encoder):
    ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16)).save_pretrained(tmp_path)
    env = gym.make("rlft/PutBlockInBowl-v0")
    with pytest.raises(ValueError, match="web envs"):
        make_agent(str(tmp_path), env)
    env.close()


def test_real_minilm_embeds_meaning():
    from rlft.agents.text_encoder import TextEncoder

    enc = TextEncoder()
    e = enc(["waterproof hiking boots", "boots for hiking that keep water out",
             "spicy keto trail mix"])
    assert e.shape == (3, 384)
    assert torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.2
    assert math.isclose(float(enc(["spicy keto trail mix"])[0] @ e[2]), 1.0, abs_tol=1e-5)


def test_free_text_placeholders_become_page_spans():
    from rlft.wrappers.valid_actions import propose_spans

    page = "[button] Wiki home [button_]\nFecis Bellows was invented in 1921 by Cournaend Gedaer."
    goal = "When was Fecis Bellows invented?"
    assert propose_spans(page, goal) == ["Wiki", "1921", "Cournaend Gedaer"]
    out = expand_valid_actions(goal, ["answer[...]", "abstain"], ["fecis bellows"], page[30:])
    assert out == ["answer[fecis bellows]", "answer[1921]", "answer[Cournaend Gedaer]",
                   "abstain"]


def test_choice_policy_acts_in_the_research_env(tiny_encoder):
    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16), sample=True,
                          seed=0)
    env = gym.make("rlft/Research-v0")
    obs, info = env.reset(seed=0)
    policy.reset()
    for _ in range(6):
        action = policy.act(obs, info)
        assert "[...]" not in action
        obs, _, term, trunc, info = env.step(action)
        if term or trunc:
            break
    env.close()


def test_lora_encoder_acts_from_the_first_step_and_gets_gradients(tiny_encoder, shop_turns):
    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16, lora_r=2))
    env = gym.make("rlft/Shop-v0")
    obs, info = env.reset(seed=2)
    assert policy.act(obs, info).startswith("search[")  # empty history, unfrozen encoder
    env.close()
    loss, _ = policy.imitation_loss(shop_turns[:3], [0, 0, 0])
    loss.backward()
    lora_b = [p for n, p in policy.encoder.model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.grad is not None for p in lora_b)
    assert any(float(p.grad.abs().sum()) > 0 for p in lora_b)  # B starts at 0; its grad does not


def test_frozen_encoders_share_embeddings_but_adapted_ones_do_not(tiny_encoder, tmp_path):
    from rlft.agents.text_encoder import TextEncoder

    a, b = TextEncoder(tiny_encoder), TextEncoder(tiny_encoder)
    first = a(["click[buy now]"])
    assert "click[buy now]" in b._cache  # encoded once for both
    torch.testing.assert_close(b(["click[buy now]"]), first)
    # A policy whose LoRA adapter was trained (B != 0) keeps its own memo.
    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16, lora_r=2))
    with torch.no_grad():
        for n, p in policy.encoder.model.named_parameters():
            if "lora_B" in n:
                p.fill_(0.5)
    policy.save_pretrained(tmp_path)
    loaded = ChoicePolicy.from_pretrained(tmp_path)
    assert loaded.encoder.frozen and loaded.encoder._cache is not a._cache
    adapted = loaded.encoder(["click[buy now]"])
    assert not torch.allclose(adapted, first)
    torch.testing.assert_close(a(["click[buy now]"]), first)


_TEXTS = ["click[buy now]", "search[red waterproof hiking boots for rainy trails]",
          "click[B0A1]", "quote[The town's last census counted 12,400 inhabitants.]",
          "answer[12400]", "click[Next >]", "scroll[down]", "abstain"]


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_frozen_encoders_embedding_does_not_depend_on_its_batch(precision):
    """A text's embedding is the same bits alone, beside texts of other lengths, and in any
    memo order: padding a batch to its longest text changed MiniLM's float sums by ~1e-7, so a
    resumed PPO process (its memo filled in another order) drifted from an uninterrupted run."""
    from rlft.agents.text_encoder import TextEncoder

    texts = _TEXTS
    together = TextEncoder(batch_size=4, precision=precision)
    together.clear_cache()  # a memo of its own: nothing shared with other tests
    all_at_once = together(texts)
    assert all_at_once.dtype == torch.float32
    alone = TextEncoder(precision=precision)
    alone.clear_cache()
    for k in (5, 2, 0, 7, 1, 3, 6, 4):  # another order, one text per call
        assert torch.equal(alone([texts[k]])[0], all_at_once[k]), texts[k]


def test_bfloat16_embeddings_are_float32_ones_to_four_digits_in_a_memo_of_their_own(tmp_path):
    from rlft.agents.choice_policy import ChoicePolicy, ChoicePolicyConfig
    from rlft.agents.text_encoder import TextEncoder, native_bfloat16

    full, half = TextEncoder(precision="float32"), TextEncoder(precision="bfloat16")
    a, b = full(_TEXTS), half(_TEXTS)
    cos = (a * b).sum(-1)  # unit vectors
    assert cos.min() > 0.999 and not torch.equal(a, b)  # bfloat16 ran, and stayed close
    assert full(_TEXTS).equal(a) and half(_TEXTS).equal(b)  # neither memo holds the other's
    # auto is what this machine computes natively, recorded as such in the checkpoint
    auto = ChoicePolicyConfig().encoder_precision
    assert auto == ("bfloat16" if native_bfloat16() else "float32")
    with pytest.raises(ValueError, match="encoder_precision must be one of auto, float32"):
        ChoicePolicyConfig(encoder_precision="fp16")
    # a checkpoint acts in the precision it was written with; one written before the field
    # existed was float32
    ChoicePolicy(ChoicePolicyConfig(encoder_precision="bfloat16")).save_pretrained(tmp_path)
    assert ChoicePolicy.from_pretrained(tmp_path).encoder.precision == "bfloat16"
    meta = json.loads((tmp_path / "rlft_policy.json").read_text())
    del meta["config"]["encoder_precision"]
    (tmp_path / "rlft_policy.json").write_text(json.dumps(meta))
    assert ChoicePolicy.from_pretrained(tmp_path).encoder.precision == "float32"


def test_frozen_encoder_never_runs_dropout(tiny_encoder):
    """A policy in training mode (behaviour cloning) must not memoise dropout-noised embeddings
    of its frozen encoder: they were reused at evaluation in the same process, so a run's table
    differed from a fresh evaluation of its own checkpoints."""
    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16)).train()
    enc = policy.encoder
    assert enc.frozen and enc.model.config.hidden_dropout_prob > 0
    assert policy.training and not enc.model.training
    with torch.no_grad():
        twice = enc._encode(["click[dropout check]"] * 2)
    torch.testing.assert_close(twice[0], twice[1], rtol=0, atol=0)
    lora = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16, lora_r=2)).train()
    assert not lora.encoder.frozen and lora.encoder.model.training  # adapters train with dropout


CHAIN_PAGE = """[button] Wiki home [button_]
[search box]
Bruthmyr Collective
Bruthmyr Collective is a shipbuilding concern. Among the staff of Bruthmyr Collective was Kenipom Vonkend. The founder of Bruthmyr Collective was Mexstarfail Zevba.
-- lines 1-3 of 3 --
Quotes:
[1] Kenipom Vonkend: "For most of a long career, Kenipom Vonkend was employed by Bruthmyr Collective."
"""


def test_names_numbers_and_quote_sources_are_read_from_the_page():
    from rlft.wrappers.valid_actions import names_and_numbers, page_quote_sources, page_quotes

    assert names_and_numbers("Records show that Ilvara Denn was born in Corvane in 1,820.") == {
        "ilvara denn", "corvane", "1,820"}
    # a two-word name opening the sentence is a name; a single capitalised first word is not
    assert names_and_numbers("Kenipom Vonkend worked for Tothrir Foundry.") == {
        "kenipom vonkend", "tothrir foundry"}
    quote = "For most of a long career, Kenipom Vonkend was employed by Bruthmyr Collective."
    assert page_quote_sources(CHAIN_PAGE) == [("Kenipom Vonkend", quote)]
    assert page_quotes(CHAIN_PAGE) == [quote]


def _on_chain_page(tiny_encoder: str, goal: str) -> tuple[ChoicePolicy, object]:
    """A policy with the evidence features and its encoding of a turn on CHAIN_PAGE."""
    turn = Turn(goal, {"goal": goal, "page": CHAIN_PAGE},
                ("quote[...]", "answer[...]", "abstain"))
    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16,
                                             evidence_features=True))
    return policy, policy.encode(turn)


def test_chain_features_tell_a_restated_fact_from_the_next_link(tiny_encoder):
    from rlft.agents.choice_policy import NUM_EVIDENCE_FEATURES, NUM_FEATURES

    goal = "Who was the founder of the employer of Kenipom Vonkend?"
    policy, f = _on_chain_page(tiny_encoder, goal)
    chain = {c: f.features[k, NUM_FEATURES + NUM_EVIDENCE_FEATURES:].tolist()
             for k, c in enumerate(f.candidates)}
    restated = chain["quote[Among the staff of Bruthmyr Collective was Kenipom Vonkend.]"]
    next_link = chain["quote[The founder of Bruthmyr Collective was Mexstarfail Zevba.]"]
    assert restated[:2] == [1.0, 0.0]  # its names are all in the collected quote
    assert next_link[:2] == [0.0, 1.0]  # it names someone new
    # the chain's middle entity: in the newest quote, in one quote, a name, not a quote's source
    assert chain["answer[Bruthmyr Collective]"][2:] == pytest.approx([1.0, 1 / 3, 0.0, 0.0, 1.0])
    assert f.quoted_relations == ["most of a long career, was employed by ."]
    out = policy([f])
    assert torch.isfinite(out.logits).all() and out.logits.shape == (1, len(f.candidates))
    assert policy.config.chains and policy.score_head[0].in_features == (
        (6 + int(policy.config.abstains) + 4 * int(policy.config.answer_types))
        * policy.encoder.dim + policy.config.num_features + policy.config.num_similarities)
    # each relation text's cosine to the goal's, and to the collected quote's, by hand; the
    # candidates without a relation text have none
    idx, columns, rel, goal = policy._relation_columns(f)
    assert idx == [k for k, t in enumerate(f.relation_texts) if t]
    quoted = policy.encoder(f.quoted_relations)[0]
    cosine = torch.nn.functional.cosine_similarity
    for row, k in enumerate(idx):
        text = policy.encoder([f.relation_texts[k]])[0]
        assert torch.allclose(rel[row], text)
        assert float(columns[row, 0]) == pytest.approx(float(cosine(text, goal, dim=0)), abs=1e-5)
        assert float(columns[row, 2]) == pytest.approx(float(cosine(text, quoted, dim=0)),
                                                       abs=1e-5), f.candidates[k]
    assert float(columns[:, 1].max()) == 0.0 and (columns[:, 1] <= 0).all()  # the margin
    assert len(idx) >= 3  # three quotes and an answer
    assert chain["abstain"] == [0.0] * 7


@pytest.mark.parametrize("name, on", [("chain_features", "chains"),
                                      ("abstain_features", "abstains"),
                                      ("answer_type_features", "answer_types")])
def test_checkpoints_without_newer_features_load_with_them_off(tmp_path, tiny_encoder, name,
                                                               on):
    import json

    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16,
                                             evidence_features=True, **{name: False}))
    policy.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "rlft_policy.json").read_text())
    del meta["config"][name]  # as written before the field existed
    (tmp_path / "rlft_policy.json").write_text(json.dumps(meta))
    loaded = ChoicePolicy.from_pretrained(tmp_path)  # its head has the narrower shape
    assert not getattr(loaded.config, on)
    assert getattr(ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, evidence_features=True)
                                ).config, on)


def test_a_head_of_another_shape_is_refused_with_a_message(tmp_path, tiny_encoder):
    from safetensors.torch import load_file, save_file

    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16))
    policy.save_pretrained(tmp_path)
    heads = load_file(str(tmp_path / "head.safetensors"))
    heads["score_head.0.weight"] = heads["score_head.0.weight"][:, :-2].contiguous()
    save_file(heads, str(tmp_path / "head.safetensors"))
    with pytest.raises(ValueError, match=r"score_head\.0\.weight .* reads other features"):
        ChoicePolicy.from_pretrained(tmp_path)


@pytest.mark.parametrize("field, value, message", [
    ("hidden", "x", "hidden must be int; got 'x'"),
    ("hidden", -3, "hidden must be > 0; got -3"),
    ("lora_r", 1.5, "lora_r must be int; got 1.5"),
    ("dropout", 2, r"dropout must be in \[0, 1\); got 2"),
    ("evidence_features", 1, "evidence_features must be bool; got 1"),
])
def test_a_config_of_the_wrong_type_or_range_is_refused(tmp_path, tiny_encoder, field, value,
                                                        message, capsys):
    """The same check guards the config made from --policy-config and a damaged
    rlft_policy.json: a ValueError naming the field, not an error from inside torch."""
    import json

    with pytest.raises(ValueError, match=message):
        ChoicePolicyConfig(encoder=tiny_encoder, **{field: value})
    ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16)).save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "rlft_policy.json").read_text())
    meta["config"][field] = value
    (tmp_path / "rlft_policy.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=message):
        ChoicePolicy.from_pretrained(tmp_path)
    from rlft.training.cli import main

    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--agent", str(tmp_path), "--episodes", "1"])
    assert e.value.code == 2 and "rlft_policy.json" in capsys.readouterr().err


FIELDS_PAGE = """[button] Wiki home [button_]
[search box]
Munton
Region: Poulliv Highlands
Settled: 1477
Mayor:
[button] Oummerntu Fornwair [button_]
Elevation: 2,381 metres
Munton is a town. Munton is governed by its mayor, Oummerntu Fornwair.
-- lines 1-8 of 22; scroll[down] for more --
Quotes:
[1] Mugate: "Mugate is governed by its mayor, Thaithuv Thaesgu."
[2] Thaithuv Thaesgu: "The birthplace of Thaithuv Thaesgu is Munton."
"""


def test_unresolved_relation_and_fields_are_read_from_the_page():
    from rlft.wrappers.valid_actions import page_fields, page_quotes, unresolved_relation

    goal = "How many people live in the birthplace of the mayor of Mugate?"
    quotes = page_quotes(FIELDS_PAGE)
    assert unresolved_relation(goal, quotes) == "how many people live"
    assert unresolved_relation(goal, []) == "how many people live birthplace mayor"
    # words are matched by their first letters: "founded" states "founder", "employed" "employer"
    assert unresolved_relation(
        "When was the founder of the employer of Mathcaithfae Voumwend born?",
        ["For most of a long career, Mathcaithfae Voumwend was employed by Miswe Institute.",
         "Miswe Institute was founded by Holen Mynden."]) == "when born"
    # the infobox's labels in view; the "Quotes:" heading below the position line is not one
    assert page_fields(FIELDS_PAGE) == ["Region", "Settled", "Mayor", "Elevation"]
    assert page_fields(CHAIN_PAGE) == []
    assert page_fields("Population: 12\n") == []  # no position line: not a paged article


def test_abstain_features_match_the_unresolved_relation_to_the_fields(tiny_encoder):
    goal = "How many people live in the birthplace of the mayor of Mugate?"
    turn = Turn(goal, {"goal": goal, "page": FIELDS_PAGE},
                ("quote[...]", "answer[...]", "scroll[down]", "abstain"))
    policy = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16,
                                             evidence_features=True))
    f = policy.encode(turn)
    assert f.fields == ["Region", "Settled", "Mayor", "Elevation"]
    assert f.unresolved == "how many people live"
    k, sims, match = policy._abstain_columns(f)
    assert k == f.candidates.index("abstain")  # the one row they are non-zero on
    enc = policy.encoder
    want = enc(["how many people live", f.relation_goal, *f.fields])
    cos = want[2:] @ want[:2].T
    assert sims.tolist() == pytest.approx(
        [1.0, cos[:, 0].max().item(), cos[:, 1].max().item()], abs=1e-5)
    best = int(cos[:, 0].argmax())
    assert torch.allclose(match, want[0] * want[2 + best], atol=1e-6)
    # nothing for a turn without fields in view
    bare = policy.encode(Turn(goal, {"goal": goal, "page": CHAIN_PAGE}, ("abstain",)))
    assert bare.fields == [] and policy._abstain_columns(bare) is None
    out = policy([f, bare])
    assert torch.isfinite(out.logits[0]).all()
    # an answered question leaves no relation unresolved: the whole relation stands in
    said = "Name the population of Munton."
    done = policy.encode(Turn(said, {"goal": said, "page": FIELDS_PAGE.replace(
        "[2] Thaithuv", "[3] Munton: \"The population of Munton is 900.\"\n[2] Thaithuv")},
        ("abstain",)))
    assert done.unresolved == ""
    _, sims, match = policy._abstain_columns(done)
    want = enc([done.relation_goal, *done.fields])
    assert sims[1].item() == pytest.approx((want[1:] @ want[0]).max().item(), abs=1e-5)
    # without the features the head reads d + 3 columns fewer
    old = ChoicePolicy(ChoicePolicyConfig(encoder=tiny_encoder, hidden=16,
                                          evidence_features=True, abstain_features=False))
    assert not old.config.abstains
    assert old.score_head[0].in_features == policy.score_head[0].in_features - enc.dim - 3


def test_the_sparse_first_layer_scores_and_trains_as_the_plain_head(tiny_encoder):
    """The score head multiplies the relation and abstain blocks in for the rows where they
    are non-zero only: scores and gradients are the plain head's over the whole input."""
    from rlft.training.demos import expert_turns

    class Plain(ChoicePolicy):
        def _score(self, parts):
            n_rows = parts[0][0].shape[0]
            full = []
            for part in parts:
                if isinstance(part, KindBlock):  # each answer row's goal in its kind's columns
                    onehot = torch.nn.functional.one_hot(part.kinds, len(ANSWER_KINDS)).float()
                    rows = (onehot[:, :, None] * part.goals[part.turns][:, None]).flatten(1)
                    part = (rows, part.rows)
                b, at = part
                full.append(b if at is None else torch.zeros(n_rows, b.shape[1]).index_copy(
                    0, at, b))
            return self.score_head(torch.cat(full, -1)).squeeze(-1)

    config = ChoicePolicyConfig(encoder=tiny_encoder, hidden=16, evidence_features=True)
    sparse, plain = ChoicePolicy(config), Plain(config)
    plain.load_state_dict(sparse.state_dict())
    turns = [turn for turn, _ in expert_turns("rlft/Research-v0", "train", 3, seed=0)]
    feats = [sparse.encode(t) for t in turns]
    texts = [bool(t) for f in feats for t in f.relation_texts]
    assert 0 < sum(texts) < len(texts) and any(f.fields for f in feats)  # both kinds of rows
    answers = [sparse._answer_kinds(f) for f in feats]
    assert len({len(a[0]) for a in answers}) >= 2  # turns with more and fewer answer rows
    assert len({k for a in answers for k in a[1]}) >= 2  # of more than one kind
    targets = [0] * len(feats)
    for policy in (sparse, plain):
        policy.eval()
        policy.zero_grad()
        policy.imitation_loss(feats, targets)[0].backward()
    assert torch.allclose(sparse(feats).logits, plain(feats).logits, atol=1e-5)
    for (name, a), (_, b) in zip(sparse.score_head.named_parameters(),
                                 plain.score_head.named_parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_answer_kinds_put_the_goal_relation_in_the_columns_of_each_answers_kind(tiny_encoder):
    assert [ChoicePolicy.answer_kind(a) for a in ("1848", " 950 ", "327,700", "40 years",
                                                 "Ommouth", "glass blower", "12345")] == [
        "year", "year", "number", "number", "name", "words", "number"]
    goal = "When was the founder of Bruthmyr Collective born?"
    policy, f = _on_chain_page(tiny_encoder, goal)
    idx, kinds, rel_goal = policy._answer_kinds(f)
    answers = [k for k, c in enumerate(f.candidates) if c.startswith("answer[")]
    assert idx == answers and len(idx) >= 2 and len(set(kinds)) >= 2
    assert kinds == [ANSWER_KINDS.index(ChoicePolicy.answer_kind(action_label(f.candidates[k])))
                     for k in idx]
    assert torch.allclose(rel_goal, policy.encoder([f.relation_goal])[0])
    # the block's weights move the answers' scores only, and each by its own kind's columns
    policy.eval()
    before = policy([f]).logits[0].clone()
    d = policy.encoder.dim
    start = policy.score_head[0].in_features - len(ANSWER_KINDS) * d  # the last block
    kind = kinds[0]
    with torch.no_grad():
        # (along the goal's relation: a constant would cancel, an embedding sums to about 0)
        policy.score_head[0].weight[:, start + kind * d: start + (kind + 1) * d] += rel_goal
    after = policy([f]).logits[0]
    moved = {k for k in range(len(f.candidates)) if abs(after[k] - before[k]) > 1e-6}
    same_kind = {k for k, kk in zip(idx, kinds, strict=True) if kk == kind}
    assert moved == same_kind and idx[0] in moved
    # a turn without answers has no rows in the block
    bare = policy.encode(Turn(goal, {"goal": goal, "page": CHAIN_PAGE}, ("abstain",)))
    assert policy._answer_kinds(bare)[0] == []
    assert torch.isfinite(policy([f, bare]).logits[0]).all()
