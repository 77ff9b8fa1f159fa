"""The store's catalog: products generated from a seed, built once per process and cached."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from rlft.envs.web.shop import hard

_ASIN_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


@dataclass(frozen=True)
class Category:
    """A store category: where it sits, what it sells and which attributes/options apply."""

    name: str
    path: tuple[str, ...]
    types: tuple[str, ...]
    attributes: tuple[str, ...]
    options: dict[str, tuple[str, ...]]
    price_range: tuple[float, float]


@dataclass(frozen=True)
class Review:
    """One customer review."""

    rating: int
    text: str


@dataclass(frozen=True)
class Product:
    """One product of the store.

    ``options`` maps an option type ("size", "color", ...) to the values one can choose; it is
    empty for products without options. Option values are unique across a product's types, so
    an option button's label identifies it.

    In the hard store (:mod:`rlft.envs.web.shop.hard`) a product also records what a shopper
    calls each option label (``spoken_options``: ``{"Onyx": "black", "M": "medium"}``), the
    attributes its whole family shares (``base``) and the one that sets it apart (``variant``).
    """

    asin: str
    title: str
    category: str
    category_path: tuple[str, ...]
    product_type: str
    brand: str
    attributes: tuple[str, ...]
    options: dict[str, tuple[str, ...]]
    price: float
    rating: float
    description: str
    features: tuple[str, ...]
    reviews: tuple[Review, ...]
    spoken_options: dict[str, str] = field(default_factory=dict)
    base: tuple[str, ...] = ()
    variant: str = ""

    def search_text(self) -> str:
        """The text BM25 indexes for this product."""
        opts = " ".join(v for values in self.options.values() for v in values)
        return " ".join(
            [self.title, self.product_type, " ".join(self.category_path), " ".join(self.attributes),
             " ".join(self.features), opts]
        )


@dataclass(frozen=True)
class Catalog:
    """All products, with lookup by ASIN, and the category table they were drawn from."""

    products: tuple[Product, ...]
    categories: tuple[Category, ...]
    by_asin: dict[str, int]
    difficulty: str = "easy"

    def __len__(self) -> int:
        return len(self.products)

    def get(self, asin: str) -> Product | None:
        """The product with this ASIN (case-insensitive), or None."""
        i = self.by_asin.get(asin.upper())
        return None if i is None else self.products[i]


def load_vocabulary() -> dict:
    """The category table and word lists shipped in ``rlft.assets/shop/categories.json``."""
    text = resources.files("rlft.assets").joinpath("shop/categories.json").read_text("utf-8")
    return json.loads(text)


def _categories(vocab: dict) -> tuple[Category, ...]:
    cats = []
    for c in vocab["categories"]:
        options = {
            k: tuple(vocab["colors"] if v == "colors" else v) for k, v in c["options"].items()
        }
        cats.append(
            Category(c["name"], tuple(c["path"]), tuple(c["types"]), tuple(c["attributes"]),
                     options, (float(c["price"][0]), float(c["price"][1])))
        )
    return tuple(cats)


def _brand(rng: random.Random, syllables: list[str]) -> str:
    return "".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))).capitalize()


def _options(rng: random.Random, cat: Category) -> dict[str, tuple[str, ...]]:
    """Option values a product offers (none for some products), in the category's order."""
    options: dict[str, tuple[str, ...]] = {}
    if rng.random() > 0.15:  # some products have no options at all
        used: set[str] = set()
        for name, values in cat.options.items():
            if len(cat.options) > 1 and rng.random() < 0.25:
                continue
            pool = [v for v in values if v not in used]
            chosen = rng.sample(pool, rng.randint(min(2, len(pool)), min(6, len(pool))))
            order = {v: i for i, v in enumerate(values)}
            options[name] = tuple(sorted(chosen, key=order.__getitem__))
            used.update(chosen)
    return options


def _price_tag(amount: float) -> float:
    """A shop price near ``amount``: whole dollars less a cent, at least 1.99."""
    return max(round(amount, 0) - 0.01, 1.99)


def _price(rng: random.Random, cat: Category) -> float:
    lo, hi = cat.price_range
    return _price_tag(lo + (hi - lo) * rng.random() ** 1.5)


def _texts(rng: random.Random, brand: str, ptype: str, attributes: tuple[str, ...],
           title_attrs: list[str], cat: Category, vocab: dict
           ) -> tuple[str, str, tuple[str, ...], tuple[Review, ...], float]:
    """Title, description, features, reviews and rating of a product."""
    title = f"{brand} {ptype.title()} - {', '.join(a.title() for a in title_attrs)}"
    if rng.random() < 0.5:
        title += f", {rng.choice(['Classic', 'Premium', 'Everyday', 'Pro', 'Essential', 'Deluxe'])} Edition"
    description = (
        f"The {brand} {ptype} is {rng.choice(['designed', 'made', 'built'])} for "
        f"{rng.choice(['everyday use', 'people who care about quality', 'comfort and value', 'busy lives'])}. "
        f"It is {' and '.join(attributes[:2])}, and ships from our {cat.path[0].lower()} store."
    )
    features = tuple(f"{a.capitalize()}: {rng.choice(['tested', 'certified', 'built', 'made'])} "
                     f"to be {a}" for a in attributes)
    reviews = []
    for _ in range(rng.randint(1, 3)):
        stars = rng.choices([5, 4, 3, 2, 1], weights=[5, 4, 2, 1, 1])[0]
        reviews.append(Review(stars, rng.choice(vocab["review_phrases"][str(stars)])))
    rating = round(sum(r.rating for r in reviews) / len(reviews), 1)
    return title, description, features, tuple(reviews), rating


def _make_product(rng: random.Random, asin: str, cat: Category, vocab: dict) -> Product:
    ptype = rng.choice(cat.types)
    brand = _brand(rng, vocab["brand_syllables"])
    attributes = tuple(rng.sample(cat.attributes, rng.randint(3, min(5, len(cat.attributes)))))
    options = _options(rng, cat)
    price = _price(rng, cat)
    title_attrs = rng.sample(attributes, rng.randint(1, min(2, len(attributes))))
    title, description, features, reviews, rating = _texts(
        rng, brand, ptype, attributes, title_attrs, cat, vocab)
    return Product(asin, title, cat.name, cat.path, ptype, brand, attributes, options,
                   float(price), rating, description, features, reviews)


def _make_family(rng: random.Random, asins: list[str], cat: Category, vocab: dict
                 ) -> list[Product]:
    """A hard-store family: members of one brand and type sharing two base attributes, each
    with its own variant attribute, options labelled in the store's notation."""
    words = hard.load_hard_vocabulary()
    ptype = rng.choice(cat.types)
    brand = _brand(rng, vocab["brand_syllables"])
    base, variants, fillers = hard.family_layout(rng, cat.attributes, len(asins))
    hidden = rng.random() < hard.HIDDEN_VARIANT_RATE
    family_options = _options(rng, cat)
    marketing_only = rng.random() < hard.MARKETING_ONLY_RATE
    labels = {(name, v): hard.option_label(name, v, rng, words, marketing_only)
              for name, values in family_options.items() for v in values}
    base_price = _price(rng, cat)
    premium = rng.randrange(len(variants)) if len(variants) >= 3 and rng.random() < 0.5 else -1
    out = []
    for i, (asin, variant) in enumerate(zip(asins, variants, strict=True)):
        extra = tuple(rng.sample(fillers, min(len(fillers), rng.randint(0, 1))))
        attributes = tuple(rng.sample(base + (variant,) + extra, len(base) + 1 + len(extra)))
        options: dict[str, tuple[str, ...]] = {}
        spoken: dict[str, str] = {}
        for name, values in family_options.items():
            keep = [v for v in values if rng.random() < 0.7] or [rng.choice(values)]
            options[name] = tuple(labels[name, v] for v in keep)
            spoken.update({labels[name, v]: v for v in keep})
        factor = rng.uniform(2.2, 2.8) if i == premium else rng.uniform(0.9, 1.1)
        price = _price_tag(base_price * factor)
        title_attrs = list(base) if hidden else rng.sample(base + (variant,), 3)
        title, description, features, reviews, rating = _texts(
            rng, brand, ptype, attributes, title_attrs, cat, vocab)
        out.append(Product(asin, title, cat.name, cat.path, ptype, brand, attributes, options,
                           float(price), rating, description, features, reviews, spoken,
                           base, variant))
    return out


def _new_asin(rng: random.Random, by_asin: dict[str, int]) -> str:
    while True:
        asin = "B0" + "".join(rng.choices(_ASIN_CHARS, k=8))
        if asin not in by_asin:
            by_asin[asin] = len(by_asin)
            return asin


DIFFICULTIES = ("easy", "hard")


@lru_cache(maxsize=4)
def build_catalog(num_products: int = 2000, seed: int = 0, difficulty: str = "easy") -> Catalog:
    """Generate ``num_products`` products deterministically from ``seed`` (cached per process).

    Products cycle through every category so each holds about the same share. ``difficulty``
    ``"hard"`` builds the near-duplicate families of :mod:`rlft.envs.web.shop.hard` (listed in
    a shuffled order, so neighbours in the catalog are not a cue).
    """
    if num_products < 1:
        raise ValueError(f"num_products must be >= 1, got {num_products}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    vocab = load_vocabulary()
    cats = _categories(vocab)
    by_asin: dict[str, int] = {}
    products: list[Product] = []
    if difficulty == "easy":
        rng = random.Random(f"rlft-shop-catalog-{seed}")
        for i in range(num_products):
            products.append(_make_product(rng, _new_asin(rng, by_asin), cats[i % len(cats)],
                                          vocab))
    else:
        rng = random.Random(f"rlft-shop-hard-catalog-{seed}")
        f = 0
        while len(products) < num_products:
            cat = cats[f % len(cats)]
            size = min(rng.randint(4, 6), len(cat.attributes) - 2, num_products - len(products))
            asins = [_new_asin(rng, by_asin) for _ in range(size)]
            products.extend(_make_family(rng, asins, cat, vocab))
            f += 1
        rng.shuffle(products)
        by_asin = {p.asin: i for i, p in enumerate(products)}
    return Catalog(tuple(products), cats, by_asin, difficulty)
