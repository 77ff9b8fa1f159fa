"""The Shop env: store pages, splits, rewards, expert, bad input and observation modes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rlft.envs.web.shop.catalog import Product, build_catalog
from rlft.envs.web.shop.goals import SPLITS, Goal, goal_pool, is_unseen_category
from rlft.envs.web.shop.reward import score_purchase
from rlft.envs.web.shop.search import build_search


def _product(**kw) -> Product:
    base = dict(asin="B0TEST0001", title="T", category="hiking boots", category_path=("a",),
                product_type="hiking boots", brand="X", attributes=("waterproof", "lightweight"),
                options={"size": ("8", "9"), "color": ("black", "red")}, price=50.0, rating=4.0,
                description="", features=(), reviews=())
    base.update(kw)
    return Product(**base)


GOAL = Goal("B0TEST0001", "i need waterproof lightweight hiking boots", "hiking boots",
            "hiking boots", ("waterproof", "lightweight"), {"size": "9", "color": "black"}, 60.0)


# -- catalog and search ---------------------------------------------------------------------
def test_catalog_size_categories_and_fields():
    cat = build_catalog()
    assert len(cat) == 2000 and len(cat.categories) >= 20
    assert len({p.category for p in cat.products}) == len(cat.categories)
    assert len({p.asin for p in cat.products}) == 2000
    no_options = sum(not p.options for p in cat.products)
    assert 0 < no_options < 600
    for p in cat.products[:200]:
        assert p.title and p.description and p.features and p.reviews and p.attributes
        values = [v for vs in p.options.values() for v in vs]
        assert len(values) == len(set(values)), "option labels must be unique per product"
    assert build_catalog() is cat, "the catalog is built once per process"
    assert build_catalog(2000, seed=1).products[0].asin != cat.products[0].asin


def test_bm25_search_ranks_relevant_products_first():
    engine = build_search()
    hits = engine.search("waterproof hiking boots")
    assert 0 < len(hits) <= 50
    top = [engine.catalog.products[i] for i in hits[:10]]
    assert all("boots" in p.product_type for p in top)
    assert engine.search("zzzz qqqq") == ()
    assert engine.search("WATERPROOF   Hiking boots") == hits  # normalised, cached


# -- pages ----------------------------------------------------------------------------------
def test_results_pagination_and_item_page(shop):
    obs, info = shop.reset(seed=0)
    assert info["valid_actions"] == ["search[...]"] and info["url"] == "/"
    obs, r, term, trunc, info = shop.step("search[waterproof hiking boots]")
    assert "Page 1 (Total results: 50)" in obs["page"]
    assert "click[Next >]" in info["valid_actions"] and "click[< Prev]" not in info["valid_actions"]
    asins = [a for a in info["valid_actions"] if a.startswith("click[B0")]
    assert len(asins) == 10
    obs, *_, info = shop.step("click[next >]")  # labels match case-insensitively
    assert "Page 2 (Total results: 50)" in obs["page"]
    assert "click[< Prev]" in info["valid_actions"]
    obs, *_, info = shop.step(asins[0])
    assert "no clickable" in info["action_error"]  # that ASIN was on page 1, not on page 2
    shop.step("click[< Prev]")
    obs, *_, info = shop.step(asins[0].lower())  # labels match case-insensitively
    assert info["action_error"] is None and info["url"].startswith("/item/")
    for label in ("Description", "Features", "Reviews", "Attributes", "Buy Now", "< Prev"):
        assert f"click[{label}]" in info["valid_actions"]
    obs, *_, info = shop.step("click[Attributes]")
    assert "Attributes" in obs["page"]
    obs, *_, info = shop.step("click[< Prev]")
    obs, *_, info = shop.step("click[< Prev]")
    assert info["url"].startswith("/search?") and "Page 1" in obs["page"]


def test_option_click_is_marked_and_kept():
    env = gym.make("rlft/Shop-v0", split="test")
    cat = env.unwrapped.shop.catalog
    i = next(i for i, g in enumerate(env.unwrapped.goals) if len(cat.get(g.asin).options) == 2)
    env.reset(seed=0, options={"goal_index": i})
    product = cat.get(env.unwrapped.goal.asin)
    env.unwrapped._backend.goto(f"/item/{product.asin}?q=x&page=1")
    (n1, v1), (n2, v2) = [(n, vs[-1]) for n, vs in product.options.items()]
    obs, *_ = env.step(f"click[{v1}]")
    assert f"[clicked button] {v1} [clicked button_]" in obs["page"]
    obs, *_, info = env.step(f"click[{v2}]")
    assert f"[clicked button] {v1} [clicked button_]" in obs["page"]
    assert f"[clicked button] {v2} [clicked button_]" in obs["page"]
    obs, r, term, trunc, info = env.step("click[Buy Now]")
    assert term and info["valid_actions"] == []
    assert env.unwrapped.purchase.matched_options == sum(
        env.unwrapped.goal.options[n] == v for n, v in ((n1, v1), (n2, v2)))
    env.close()


# -- reward formula -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "product, options, expected, success",
    [
        (_product(), {"size": "9", "color": "black"}, 1.0, True),
        (_product(), {"size": "9"}, 4 / 5, False),                          # one option missing
        (_product(), {}, 3 / 5, False),                                     # no options chosen
        (_product(), {"SIZE": "9", "Color": "BLACK"}, 1.0, True),           # case-insensitive
        (_product(price=60.0), {"size": "9", "color": "black"}, 1.0, True),  # bound is inclusive
        (_product(price=60.01), {"size": "9", "color": "black"}, 4 / 5, False),
        (_product(attributes=("lightweight",)), {"size": "9", "color": "black"}, 4 / 5, False),
        (_product(product_type="trail shoes"), {"size": "9", "color": "black"}, 0.5, False),
        (_product(category="toys", product_type="puzzle", attributes=()), {}, 0.1 * 1 / 5, False),
    ],
)
def test_webshop_score(product, options, expected, success):
    s = score_purchase(GOAL, product, options)
    assert s.score == pytest.approx(expected)
    assert s.success is success


def test_goal_without_options_scores_over_attributes_and_price():
    goal = Goal("B0TEST0001", "x", "hiking boots", "hiking boots", ("waterproof",), {}, 10.0)
    s = score_purchase(goal, _product(), {})
    assert (s.total, s.score, s.success) == (2, pytest.approx(0.5), False)


@pytest.mark.parametrize("mode, expected", [("shaped", 0.8), ("sparse", 0.0)])
def test_reward_modes_on_partial_purchase(mode, expected):
    env = gym.make("rlft/Shop-v0", split="test", reward_mode=mode)
    cat = env.unwrapped.shop.catalog
    i = next(i for i, g in enumerate(env.unwrapped.goals)
             if len(g.options) == 1 and len(g.attributes) == 3)
    env.reset(options={"goal_index": i})
    goal = env.unwrapped.goal
    name = next(iter(goal.options))
    wrong = next(v for v in cat.get(goal.asin).options[name] if v != goal.options[name])
    env.unwrapped._backend.goto(f"/item/{goal.asin}?q=x&page=1")
    env.step(f"click[{wrong}]")
    obs, r, term, trunc, info = env.step("click[Buy Now]")
    assert term and not info["success"]
    assert info["score"] == pytest.approx(4 / 5)  # 3 attributes + price of 5 parts
    assert r == pytest.approx(expected)


# -- splits -----------------------------------------------------------------------------------
def test_splits_are_disjoint_and_unseen_categories_never_train():
    pools = {s: goal_pool(s) for s in SPLITS}
    targets = {s: {g.asin for g in pools[s]} for s in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not targets[a] & targets[b], (a, b)
    cats = build_catalog().categories
    unseen = {c.name for i, c in enumerate(cats) if is_unseen_category(i)}
    assert len(unseen) >= 3
    assert {g.category for g in pools["train"]}.isdisjoint(unseen)
    assert {g.category for g in pools["unseen"]} == unseen
    assert len(pools["test"]) >= 100 and len(pools["val"]) >= 100


def test_goal_text_mentions_what_is_scored():
    for g in goal_pool("test")[:50]:
        for a in g.attributes:
            assert a in g.instruction
        for v in g.options.values():
            assert v in g.instruction
        assert f"{g.price_upper:.2f}" in g.instruction
        assert g.price_upper >= build_catalog().get(g.asin).price


# -- expert -----------------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["test", "unseen"])
def test_expert_succeeds_on_held_out_goals(split):
    env = gym.make("rlft/Shop-v0", split=split)
    expert = env.unwrapped.expert()
    n = len(env.unwrapped.goals)
    wins = []
    for i in range(n):
        obs, info = env.reset(options={"goal_index": i})
        while True:
            obs, r, term, trunc, info = env.step(expert.act(obs, info))
            assert info["action_error"] is None
            if term or trunc:
                break
        wins.append(info["success"] and r == 1.0)
    assert np.mean(wins) >= 0.95
    env.close()


def test_expert_recovers_from_detours(shop):
    obs, info = shop.reset(seed=5)
    expert = shop.unwrapped.expert()
    shop.step("search[plush toy gift]")
    obs, *_, info = shop.step("click[Next >]")
    for _ in range(12):
        obs, r, term, trunc, info = shop.step(expert.act(obs, info))
        if term:
            break
    assert term and info["success"]


# -- bad input and arguments ------------------------------------------------------------------
@pytest.mark.parametrize(
    "action, fragment",
    [
        ("", "empty action"),
        ("x" * 10_000, "10000 characters"),
        ("click[\x00\x01\xff]", "control"),
        ("click[Buy Now", "malformed"),
        ("jump[now]", "unknown command"),
        ("click[No Such Button]", "no clickable"),
        ("search[]", "empty search"),
        ("click", "needs an argument"),
        (42, "must be a str"),
        (b"click[x]", "bytes"),
        (None, "must be a str"),
    ],
)
def test_bad_input_leaves_state_unchanged(shop, action, fragment):
    obs0, info0 = shop.reset(seed=1)
    shop.step("search[red shirt]")
    before = (shop.unwrapped._backend.url, shop.unwrapped.goal_text)
    obs, r, term, trunc, info = shop.step(action)
    assert fragment in info["action_error"]
    assert obs["page"].startswith(f"Error: {info['action_error']}")
    assert (r, term, trunc) == (0.0, False, False)
    assert (shop.unwrapped._backend.url, shop.unwrapped.goal_text) == before


def test_search_needs_a_search_box(shop):
    shop.reset(seed=0)
    shop.step("search[red shirt]")
    obs, r, term, trunc, info = shop.step("search[blue shirt]")
    assert "no search box" in info["action_error"]


def test_steps_count_and_truncate_at_15(shop):
    shop.reset(seed=0)
    for _ in range(15):
        obs, r, term, trunc, info = shop.step("click[nothing here]")
    assert trunc and not term and r == 0.0


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"split": "holdout"}, "split must be one of"), ({"reward_mode": "dense"}, "reward_mode"),
     ({"observation_mode": "pixels"}, "observation_mode"), ({"num_products": 0}, "num_products"),
     ({"backend": "lynx"}, "backend")],
)
def test_bad_arguments_say_what_is_allowed(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        gym.make("rlft/Shop-v0", **kwargs)


def test_goal_index_option_is_checked(shop):
    with pytest.raises(ValueError, match="goal_index"):
        shop.reset(options={"goal_index": 10**6})
    obs, info = shop.reset(options={"goal_index": 3})
    assert info["goal_index"] == 3 and obs["goal"] == shop.unwrapped.goals[3].instruction


def test_html_observation_mode_is_the_source_of_the_text():
    from rlft.envs.web.render import render_html

    env = gym.make("rlft/Shop-v0", observation_mode="html")
    env.reset(seed=0)
    obs, *_ = env.step("search[wireless earbuds]")
    assert obs["page"].startswith("<!DOCTYPE html>")
    assert render_html(obs["page"]).text == env.unwrapped._backend.page.text
    env.close()


def test_large_catalog_is_built_once_per_process():
    a = gym.make("rlft/Shop-v0", num_products=20_000)
    b = gym.make("rlft/Shop-v0", num_products=20_000, split="test")
    assert a.unwrapped.shop is b.unwrapped.shop
    assert len(a.unwrapped.shop.catalog) == 20_000
    obs, info = b.reset(seed=0)
    obs, *_ = b.step("search[cotton shirt]")
    assert "Total results: 50" in obs["page"]


def test_render_modes():
    env = gym.make("rlft/Shop-v0", render_mode="ansi")
    obs, _ = env.reset(seed=2)
    text = env.render()
    assert text == f"Goal: {obs['goal']}\n\n{obs['page']}"
    env.close()
