"""WebShop's purchase score: how well a bought product matches the goal."""

from __future__ import annotations

from dataclasses import dataclass

from rlft.envs.web.shop.catalog import Product
from rlft.envs.web.shop.goals import Goal


@dataclass(frozen=True)
class PurchaseScore:
    """The parts of the score and the score itself.

    ``score = r_type * (matched_attributes + matched_options + price_ok)
    / (len(goal.attributes) + len(goal.options) + 1)``.
    """

    r_type: float
    matched_attributes: int
    matched_options: int
    price_ok: bool
    total: int
    score: float

    @property
    def success(self) -> bool:
        """A full match: right type, every attribute and option, within budget."""
        return (self.r_type == 1.0 and self.price_ok
                and self.matched_attributes + self.matched_options + 1 == self.total)


def type_match(goal: Goal, product: Product) -> float:
    """1 for the goal's product type, 0.5 for another type of the same category, else 0.1."""
    if product.product_type == goal.product_type:
        return 1.0
    return 0.5 if product.category == goal.category else 0.1


def score_purchase(goal: Goal, product: Product, options: dict[str, str]) -> PurchaseScore:
    """Score buying ``product`` with the chosen ``options`` against ``goal``.

    Attributes match when the product has them; an option matches when the chosen value for
    that option type means the goal's (case-insensitive; a hard-store label such as *Onyx* means
    what the product's ``spoken_options`` say, *black*); the price is ok when it does not
    exceed the goal's bound.
    """
    have = {a.lower() for a in product.attributes}
    matched_attributes = sum(a.lower() in have for a in goal.attributes)
    chosen = {k.lower(): product.spoken_options.get(v, v).lower() for k, v in options.items()}
    matched_options = sum(chosen.get(k.lower()) == v.lower() for k, v in goal.options.items())
    price_ok = product.price <= goal.price_upper
    total = len(goal.attributes) + len(goal.options) + 1
    r_type = type_match(goal, product)
    score = r_type * (matched_attributes + matched_options + int(price_ok)) / total
    return PurchaseScore(r_type, matched_attributes, matched_options, price_ok, total, score)
