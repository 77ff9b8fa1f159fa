"""Shopping goals: an instruction generated from a target product, and the split they belong to.

Every product of a seen category gets one goal; those goals are partitioned 80/10/10 into
``train``/``val``/``test`` (disjoint target products, so disjoint goals). ``unseen`` goals come
from categories that ``train`` never uses (CLIPort's seen/unseen idea). The hard store's goals
(:func:`make_hard_goal`) name attributes and options in other words than the product text.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

from rlft.envs.web.shop import hard
from rlft.envs.web.shop.catalog import Catalog, Product, build_catalog

SPLITS = ("train", "val", "test", "unseen")
#: Every UNSEEN_EVERY-th category (offset UNSEEN_OFFSET) is held out of train/val/test.
UNSEEN_EVERY, UNSEEN_OFFSET = 6, 5

_TEMPLATES = (
    "i am looking for {a_attrs} {type}{opts}, and price lower than {price} dollars",
    "i need {attrs} {type}{opts} that costs less than {price} dollars",
    "find me {a_type} that is {attrs}{opts}, under {price} dollars",
    "i want to buy {a_type} which is {attrs}{opts}, and price lower than {price} dollars",
    "looking for {attrs} {type}{opts} with a price below {price} dollars",
    "could you get me {a_attrs} {type}{opts}? my budget is {price} dollars",
)


@dataclass(frozen=True)
class Goal:
    """A shopping goal: what to buy and the instruction that asks for it.

    ``options`` holds one value per option type: in the easy store a button label of the
    target, in the hard store what a shopper says ("black"), which any product's button
    meaning it matches (:func:`rlft.envs.web.shop.reward.score_purchase`)."""

    asin: str
    instruction: str
    product_type: str
    category: str
    attributes: tuple[str, ...]
    options: dict[str, str]
    price_upper: float


def option_phrases(options: dict[str, str], color: str = " color") -> list[str]:
    """How a goal asks for each option: "in black color" (``color`` is what follows a colour),
    "size 9", "flavor vanilla"."""
    parts = []
    for name, value in options.items():
        if name == "color":
            parts.append(f"in {value}{color}")
        elif name == "size":
            parts.append(f"size {value}")
        else:
            parts.append(f"{name} {value}")
    return parts


def _phrase_options(options: dict[str, str]) -> str:
    parts = option_phrases(options)
    return (", " + " and ".join(parts)) if parts else ""


def _article(phrase: str) -> str:
    return f"{'an' if phrase[:1] in 'aeiou' else 'a'} {phrase}"


def make_goal(product: Product, rng: random.Random) -> Goal:
    """A goal whose target is ``product``: some of its attributes, one value per option type,
    and a price bound above its price."""
    attrs = tuple(rng.sample(product.attributes, rng.randint(2, min(3, len(product.attributes)))))
    options = {name: rng.choice(values) for name, values in product.options.items()}
    price_upper = float(math.ceil(product.price * rng.uniform(1.1, 1.8) / 10.0) * 10)
    attr_text = attrs[0] if len(attrs) == 1 else f"{', '.join(attrs[:-1])} and {attrs[-1]}"
    text = rng.choice(_TEMPLATES).format(
        a_attrs=_article(attr_text), a_type=_article(product.product_type), attrs=attr_text,
        type=product.product_type,
        opts=_phrase_options(options), price=f"{price_upper:.2f}",
    )
    return Goal(product.asin, " ".join(text.split()), product.product_type, product.category,
                attrs, options, price_upper)


def make_hard_goal(product: Product, rng: random.Random) -> Goal:
    """A hard-store goal (:mod:`rlft.envs.web.shop.hard`): the family's base attributes in the
    product's words, the product's variant attribute in other words, one option value per
    option type as a shopper names it (``options`` holds these values: any product's button
    that means the value matches, whatever its label), and a price bound above its price."""
    labels = {name: rng.choice(values) for name, values in product.options.items()}
    spoken = {name: product.spoken_options.get(label, label) for name, label in labels.items()}
    price_upper = hard.budget(product.price, rng)
    text = hard.phrase_goal(rng, product.product_type, product.base, product.variant,
                            option_phrases(spoken, color=""), price_upper,
                            hard.load_hard_vocabulary())
    return Goal(product.asin, text, product.product_type, product.category,
                product.base + (product.variant,), spoken, price_upper)


def is_unseen_category(index: int) -> bool:
    """Whether the category at ``index`` of the category table is held out of train."""
    return index % UNSEEN_EVERY == UNSEEN_OFFSET


@lru_cache(maxsize=8)
def goal_pool(split: str, num_products: int = 2000, seed: int = 0,
              difficulty: str = "easy") -> tuple[Goal, ...]:
    """All goals of ``split`` for the catalog ``(num_products, seed, difficulty)`` (cached per
    process)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    catalog: Catalog = build_catalog(num_products, seed, difficulty)
    unseen_names = {c.name for i, c in enumerate(catalog.categories) if is_unseen_category(i)}
    seen, unseen = [], []
    for i, p in enumerate(catalog.products):
        (unseen if p.category in unseen_names else seen).append(i)
    rng = random.Random(f"rlft-shop-goals-{seed}")
    rng.shuffle(seen)
    n_val = n_test = max(1, len(seen) // 10)
    members = {
        "test": seen[:n_test],
        "val": seen[n_test : n_test + n_val],
        "train": seen[n_test + n_val :],
        "unseen": unseen,
    }[split]
    if not members:
        raise ValueError(f"the {split!r} split is empty for a catalog of {num_products} products")
    # One goal per product, drawn from a per-product stream so it never depends on the split.
    if difficulty == "easy":
        return tuple(
            make_goal(catalog.products[i], random.Random(f"rlft-shop-goal-{seed}-{i}"))
            for i in sorted(members)
        )
    return tuple(
        make_hard_goal(catalog.products[i], random.Random(f"rlft-shop-hard-goal-{seed}-{i}"))
        for i in sorted(members)
    )
