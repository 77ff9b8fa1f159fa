"""The store's catalog: products generated from a seed, built once per process and cached."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

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


def _make_product(rng: random.Random, asin: str, cat: Category, vocab: dict) -> Product:
    ptype = rng.choice(cat.types)
    brand = _brand(rng, vocab["brand_syllables"])
    attributes = tuple(rng.sample(cat.attributes, rng.randint(3, min(5, len(cat.attributes)))))
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
    lo, hi = cat.price_range
    price = round(lo + (hi - lo) * rng.random() ** 1.5, 0) - 0.01
    price = max(price, 1.99)
    title_attrs = rng.sample(attributes, rng.randint(1, min(2, len(attributes))))
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
    return Product(asin, title, cat.name, cat.path, ptype, brand, attributes, options,
                   float(price), rating, description, features, tuple(reviews))


@lru_cache(maxsize=4)
def build_catalog(num_products: int = 2000, seed: int = 0) -> Catalog:
    """Generate ``num_products`` products deterministically from ``seed`` (cached per process).

    Products cycle through every category so each holds about the same share.
    """
    if num_products < 1:
        raise ValueError(f"num_products must be >= 1, got {num_products}")
    vocab = load_vocabulary()
    cats = _categories(vocab)
    rng = random.Random(f"rlft-shop-catalog-{seed}")
    products = []
    by_asin: dict[str, int] = {}
    for i in range(num_products):
        while True:
            asin = "B0" + "".join(rng.choices(_ASIN_CHARS, k=8))
            if asin not in by_asin:
                break
        by_asin[asin] = i
        products.append(_make_product(rng, asin, cats[i % len(cats)], vocab))
    return Catalog(tuple(products), cats, by_asin)
