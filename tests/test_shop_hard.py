"""The hard store (rlft/Shop-v1): near-duplicates, goals in other words, the store's notation,
an expert that still always succeeds, and lexical rules that stop working."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest

from rlft.agents.episode import rollout
from rlft.agents.rule_agent import LexicalRuleAgent
from rlft.envs.web.shop import hard
from rlft.envs.web.shop.catalog import build_catalog, load_vocabulary
from rlft.envs.web.shop.goals import SPLITS, goal_pool
from rlft.wrappers.valid_actions import content_words

N = 3000  # a smaller hard catalog keeps the tests quick; the default is 10,000


def _success(env, agent, seed: int) -> bool:
    return bool(list(rollout(env, agent, seed=seed))[-1].next_info["success"])


def _stems(text: str) -> set[str]:
    """Four-letter word stems (one-letter words are left out, as the search's tokenizer does)."""
    return {w[:4] for w in content_words(text.replace("-", " ")) if len(w) > 1}


def test_vocabulary_covers_every_attribute_and_colour_in_other_words():
    words = hard.load_hard_vocabulary()
    vocab = load_vocabulary()
    attributes = {a for c in vocab["categories"] for a in c["attributes"]}
    assert set(words["attribute_phrases"]) == attributes
    for attribute, phrases in words["attribute_phrases"].items():
        assert len(phrases) >= 2
        for phrase in phrases:
            shared = _stems(attribute) & _stems(phrase)
            assert not shared, (attribute, phrase, shared)
    plain = set(vocab["colors"])
    names = [n.casefold() for ns in words["color_names"].values() for n in ns]
    assert len(names) == len(set(names)), "a marketing name must mean one colour"
    for name in names:
        assert not set(name.split()) & plain, name


def test_catalog_is_families_of_near_duplicates():
    cat = build_catalog(N, 0, "hard")
    assert len(cat) == N and cat.difficulty == "hard"
    families = Counter((p.brand, p.product_type, p.base) for p in cat.products)
    sizes = Counter(families.values())
    assert set(sizes) <= {1, 2, 3, 4, 5, 6} and sum(n * k for n, k in sizes.items()) == N
    assert sizes[4] + sizes[5] + sizes[6] >= 0.95 * len(families)
    by_family: dict = {}
    for p in cat.products:
        by_family.setdefault((p.brand, p.product_type, p.base), []).append(p)
    hidden = 0
    for members in by_family.values():
        variants = [p.variant for p in members]
        assert len(set(variants)) == len(variants), "each member has its own variant"
        for p in members:
            assert set(p.base) <= set(p.attributes) and p.variant in p.attributes
            others = {q.variant for q in members if q is not p}
            assert not others & set(p.attributes), "a sibling's variant would satisfy the goal"
        hidden += all(p.variant.title() not in p.title for p in members)
        for p in members:
            labels = [v for vs in p.options.values() for v in vs]
            assert len(labels) == len(set(labels)), "option labels must be unique per product"
    assert 0.15 < hidden / len(by_family) < 0.35  # HIDDEN_VARIANT_RATE of titles omit it
    # neighbours in the catalog are not siblings
    same = sum(a.brand == b.brand for a, b in zip(cat.products, cat.products[1:], strict=False))
    assert same < 0.05 * N


def test_goals_name_the_variant_in_other_words_and_options_as_shoppers_do():
    cat = build_catalog(N, 0, "hard")
    words = hard.load_hard_vocabulary()
    plain = set(load_vocabulary()["colors"])
    goals = goal_pool("test", N, 0, "hard")
    coloured = 0
    for g in goals:
        p = cat.get(g.asin)
        assert g.attributes == p.base + (p.variant,)
        assert all(a in g.instruction for a in p.base) and g.product_type in g.instruction
        assert p.variant not in g.instruction
        assert any(x in g.instruction for x in words["attribute_phrases"][p.variant])
        labels = {said: label for label, said in p.spoken_options.items()}
        for name, said in g.options.items():
            label = labels[said]  # the target's button that means what the goal says
            assert label in p.options[name]
            assert said in g.instruction
            if name == "color" and said in plain:
                coloured += 1
                name_only = label.casefold().removesuffix(f" {said}")  # "Onyx Black" -> onyx
                assert not re.search(rf"\b{re.escape(name_only)}\b", g.instruction.casefold())
        assert g.price_upper >= p.price and f"{g.price_upper:.2f}" in g.instruction
    assert coloured > len(goals) / 3


def test_options_score_by_meaning_not_label():
    from rlft.envs.web.shop.reward import score_purchase

    cat = build_catalog(N, 0, "hard")
    g = next(g for g in goal_pool("test", N, 0, "hard") if g.options.get("color"))
    p = cat.get(g.asin)
    labels = {said: label for label, said in p.spoken_options.items()}
    chosen = {name: labels[said] for name, said in g.options.items()}
    assert score_purchase(g, p, chosen).success
    other = next(label for label in p.options["color"] if label != chosen["color"])
    assert not score_purchase(g, p, {**chosen, "color": other}).success
    # another product's button meaning the same colour counts, whatever its name
    q = next(q for q in cat.products if q is not p and g.options["color"] in
             {q.spoken_options.get(x) for x in q.options.get("color", ())})
    label = next(x for x in q.options["color"] if q.spoken_options[x] == g.options["color"])
    assert score_purchase(g, q, {"color": label}).matched_options == 1


def test_splits_are_disjoint_deterministic_and_other_seeds_differ():
    pools = {s: goal_pool(s, N, 0, "hard") for s in SPLITS}
    targets = {s: {g.asin for g in pools[s]} for s in SPLITS}
    assert all(not targets[a] & targets[b] for a in SPLITS for b in SPLITS if a < b)
    code = ("from rlft.envs.web.shop.goals import goal_pool;"
            f"print([g.instruction for g in goal_pool('test', {N}, 0, 'hard')[:20]])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == str([g.instruction for g in pools["test"][:20]])
    other = build_catalog(N, 1, "hard")
    assert {p.asin for p in other.products}.isdisjoint(targets["test"])


@pytest.mark.parametrize("split", ["test", "unseen"])
def test_expert_always_succeeds(split):
    env = gym.make("rlft/Shop-v1", split=split, num_products=N)
    wins = [_success(env, env.unwrapped.expert(), s) for s in range(60)]
    env.close()
    assert all(wins)


def test_lexical_rules_fail_here_but_not_on_the_easy_store():
    rates = {}
    for env_id, kwargs in (("rlft/Shop-v0", {}), ("rlft/Shop-v1", {"num_products": N})):
        env = gym.make(env_id, split="test", reward_mode="sparse", **kwargs)
        for rule in ("first", "overlap"):
            wins = [_success(env, LexicalRuleAgent(rule), s) for s in range(60)]
            rates[env_id, rule] = float(np.mean(wins))
        env.close()
    assert rates["rlft/Shop-v0", "overlap"] >= 0.5, rates
    assert max(rates["rlft/Shop-v1", r] for r in ("first", "overlap")) <= 0.25, rates


def test_default_hard_store_has_ten_thousand_products():
    env = gym.make("rlft/Shop-v1")
    assert len(env.unwrapped.shop.catalog) == 10_000
    assert env.unwrapped.difficulty == "hard"
    obs, info = env.reset(seed=0)
    obs, *_ = env.step("search[" + obs["goal"] + "]")
    assert "Total results: 50" in obs["page"]
    env.close()


@pytest.mark.parametrize("kwargs, fragment", [
    ({"difficulty": "medium"}, "difficulty"), ({"catalog_seed": "1"}, "catalog_seed")])
def test_bad_store_arguments_are_named(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        gym.make("rlft/Shop-v1", num_products=N, **kwargs)


def test_rule_agent_rejects_unknown_rule():
    with pytest.raises(ValueError, match="rule must be one of"):
        LexicalRuleAgent("cheat")


def test_vocabulary_is_valid_json_shipped_with_the_package():
    from importlib import resources

    text = resources.files("rlft.assets").joinpath("shop/hard_vocabulary.json").read_text()
    assert set(json.loads(text)) == {"attribute_phrases", "color_names"}
