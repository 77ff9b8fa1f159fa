"""The hard store (``rlft/Shop-v1``): a catalog and goals that word matching cannot solve.

What makes it hard, each thing built from the vocabulary in ``rlft.assets/shop``:

* **Near-duplicate families.** Products come in families of 4-6 of one brand and type that share
  two *base* attributes and differ in one *variant* attribute each; one member may cost about
  twice as much. A search for the goal finds the whole family, ranked in no useful order.
* **Attributes in other words.** A goal names the base attributes as the product text does
  (so search finds the family) and the variant attribute only by a paraphrase or a use that
  implies it (*"that keep the rain out"*, *"for rainy hikes"* for ``waterproof``), taken from
  ``hard_vocabulary.json``; no word of it occurs in the product text.
* **Attributes only on the item page.** In about one family in four the titles leave the
  variant attribute out: it is on the item page's Description / Features / Attributes only.
* **Options in the store's notation.** Colour buttons carry marketing names (*Onyx* for
  black, *Crimson* for red; each family picks its own, half the families without the colour
  after it), clothing sizes are letters (*M*), and some sizes are in other units (*50 ml* for
  1.7 fl oz); the goal says what a shopper says.

The expert still succeeds on every goal (it knows the target product), and everything remains
a pure function of ``(num_products, seed)``.
"""

from __future__ import annotations

import json
import math
import random
from functools import lru_cache
from importlib import resources

#: The share of families whose titles leave out the variant attribute.
HIDDEN_VARIANT_RATE = 0.25
#: The share of families whose colour buttons carry a marketing name only (*Onyx*); the others
#: add the colour (*Onyx Black*). A small sentence encoder does not know that *Sunflower* is
#: yellow (MiniLM: cosine 0.32 to "yellow", 0.38 to "rose"), so names alone would make colour
#: a matter of memorising 105 names.
MARKETING_ONLY_RATE = 0.5
#: How a store labels option values a shopper names otherwise (values absent keep their word).
OPTION_LABELS = {
    "x-small": "XS", "small": "S", "medium": "M", "large": "L", "x-large": "XL",
    "xx-large": "XXL", "3x-large": "3XL",
    "1 fl oz": "30 ml", "1.7 fl oz": "50 ml", "3.4 fl oz": "100 ml", "6.8 fl oz": "200 ml",
    "8 fl oz": "236 ml", "12 fl oz": "355 ml", "16 fl oz": "473 ml", "33.8 fl oz": "1 liter",
    "8 inch": "20 cm", "10 inch": "25 cm", "12 inch": "30 cm", "5 quart": "4.7 l",
    "7 quart": "6.6 l", "12 ounce": "340 g", "2 pound": "907 g", "25 ft": "7.5 m",
    "50 ft": "15 m", "pack of 6": "half dozen", "pack of 12": "dozen", "pack of 24": "two dozen",
}
_LEADS = ("i am looking for", "i need", "find me", "i want to buy", "looking for",
          "could you get me")
#: price clauses; WebShop's own phrasing is listed twice, so it is drawn twice as often
_TAILS = ("and price lower than {p} dollars", "that costs less than {p} dollars",
          "under {p} dollars", "with a price below {p} dollars", "and price lower than {p} dollars")


@lru_cache(maxsize=1)
def load_hard_vocabulary() -> dict:
    """Paraphrases of every attribute and marketing names of every colour
    (``rlft.assets/shop/hard_vocabulary.json``)."""
    text = resources.files("rlft.assets").joinpath("shop/hard_vocabulary.json").read_text("utf-8")
    return json.loads(text)


def option_label(option: str, value: str, rng: random.Random, vocab: dict,
                 marketing_only: bool = True) -> str:
    """The button label the store shows for ``value`` of option type ``option``: a marketing
    name for a colour (drawn with ``rng``; followed by the colour unless ``marketing_only``),
    else :data:`OPTION_LABELS`, ``US n`` for a numeric size, or the value itself."""
    if option == "color" and value in vocab["color_names"]:
        name = rng.choice(vocab["color_names"][value])
        return name if marketing_only else f"{name} {value.title()}"
    if value in OPTION_LABELS:
        return OPTION_LABELS[value]
    if option == "size" and value.replace(".", "", 1).isdigit():
        return f"US {value}"
    return value


def family_layout(rng: random.Random, attributes: tuple[str, ...], size: int
                  ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(base, variants, fillers)``: two attributes every member has, one distinct variant
    attribute per member, and what is left of the category's attributes."""
    pool = list(attributes)
    rng.shuffle(pool)
    size = min(size, len(pool) - 2)
    return tuple(pool[:2]), tuple(pool[2 : 2 + size]), tuple(pool[2 + size :])


def phrase_goal(rng: random.Random, product_type: str, base: tuple[str, ...], variant: str,
                opts: list[str], price_upper: float, vocab: dict) -> str:
    """The instruction of a hard goal: base attributes in the product's words before the type,
    the variant attribute by one of its paraphrases, then the option phrases ``opts`` (what a
    shopper says: "in black", "size medium")."""
    para = rng.choice(vocab["attribute_phrases"][variant])
    text = (f"{rng.choice(_LEADS)} {' and '.join(base)} {product_type} {para}"
            + (", " + ", ".join(opts) if opts else "")
            + ", " + rng.choice(_TAILS).format(p=f"{price_upper:.2f}"))
    return " ".join(text.split())


def budget(price: float, rng: random.Random) -> float:
    """A goal's price bound: 1.1-1.8 times the target's price, rounded up to tens."""
    return float(math.ceil(price * rng.uniform(1.1, 1.8) / 10.0) * 10)
