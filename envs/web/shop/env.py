"""``rlft/Shop-v1`` (the hard store) and ``rlft/Shop-v0``: WebShop-style shopping in a simulated
store."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from rlft.envs.web.actions import SEARCH_PLACEHOLDER, ActionError, ParsedAction
from rlft.envs.web.env import REWARD_MODES, WebEnv, check_choice, option_index
from rlft.envs.web.shop.catalog import DIFFICULTIES, build_catalog
from rlft.envs.web.shop.goals import SPLITS, Goal, goal_pool
from rlft.envs.web.shop.reward import PurchaseScore, score_purchase
from rlft.envs.web.shop.search import build_search
from rlft.envs.web.shop.site import ShopSite


@lru_cache(maxsize=4)
def build_site(num_products: int = 2000, seed: int = 0, difficulty: str = "easy") -> ShopSite:
    """The store over catalog ``(num_products, seed, difficulty)``, shared by every env of the
    process."""
    return ShopSite(build_catalog(num_products, seed, difficulty),
                    build_search(num_products, seed, difficulty))


class ShopEnv(WebEnv):
    """Find and buy the product an instruction describes, in a simulated web store.

    The agent starts on the store's search page with an instruction such as *"i need
    waterproof hiking boots, size 9 and in black color that costs less than 90.00 dollars"*.
    It searches (BM25 over the catalog), pages through results, opens products, selects
    options, reads the Description / Features / Reviews / Attributes, and clicks Buy Now.

    ## Action Space
    A string (``UnicodeText(512)``): ``search[query]`` where the page has a search box, or
    ``click[label]`` for a button or link on the page (label matched case-insensitively).
    ``info["valid_actions"]`` lists them; ``"search[...]"`` stands for any query.

    ## Observation Space
    ``Dict(goal=UnicodeText, page=UnicodeText)``: the instruction and the page, rendered in
    WebShop's text_rich style (``observation_mode="text"``) or as raw HTML (``"html"``).

    ## Rewards
    Given only when Buy Now is clicked. ``shaped`` (default): WebShop's score
    ``r_type * (matched attributes + matched options + price ok) / (attributes + options + 1)``
    where ``r_type`` is 1 for the right product type, 0.5 for the right category, else 0.1.
    ``sparse``: 1 for a full match, else 0. ``info["score"]`` is the shaped score in both modes.

    ## Episode End
    Terminates on Buy Now; truncated after ``max_episode_steps`` (15 by default) with reward 0.

    ## Arguments
    * ``reward_mode``: ``"shaped"`` | ``"sparse"``.
    * ``split``: ``"train"`` | ``"val"`` | ``"test"`` (disjoint goals) | ``"unseen"`` (goals
      from categories never used in train).
    * ``difficulty``: ``"hard"`` (``rlft/Shop-v1``) | ``"easy"`` (``rlft/Shop-v0``). The hard
      store sells near-duplicate families (one brand and type, two shared attributes, one
      attribute that differs; sometimes named on the item page only; one member may cost
      twice as much) and its goals name the attribute that sets the target apart in other
      words (*"that keep the rain out"* for waterproof) and options as a shopper says them
      (*black* for the *Onyx* button, *medium* for *M*, *1.7 fl oz* for *50 ml*). In the easy
      store the goal's words are the product's.
    * ``num_products``: catalog size (default 10,000 for ``rlft/Shop-v1``, 2,000 for
      ``rlft/Shop-v0``; up to 100,000, built once per process).
    * ``catalog_seed``: seed of the generated catalog and goals (default 0).
    * ``observation_mode``: ``"text"`` | ``"html"``; with the browser backend also ``"axtree"``
      (accessibility tree text) | ``"screenshot"`` (``Box(uint8, (H, W, 3))`` page).
    * ``backend``: ``"text"`` (in-process) | ``"browser"`` (headless Chromium via Playwright).
    * ``backend_options``: for the browser, ``viewport=(width, height)`` and ``timeout_s``.
    * ``render_mode``: ``"ansi"`` | ``"human"`` | ``"rgb_array"`` (browser backend).

    ``reset(options={"goal_index": i})`` picks goal ``i`` of the split instead of a random one.
    """

    commands = frozenset({"search", "click"})

    def __init__(self, *, reward_mode: str = "shaped", split: str = "train",
                 difficulty: str = "easy", num_products: int = 2000, catalog_seed: int = 0,
                 observation_mode: str = "text",
                 backend: str = "text", render_mode: str | None = None,
                 backend_options: dict[str, Any] | None = None):
        self.reward_mode = check_choice("reward_mode", reward_mode, REWARD_MODES)
        self.split = check_choice("split", split, SPLITS)
        if not isinstance(num_products, int) or not 1 <= num_products <= 100_000:
            raise ValueError(f"num_products must be an int in [1, 100000]; got {num_products!r}")
        if not isinstance(catalog_seed, int) or isinstance(catalog_seed, bool):
            raise ValueError(f"catalog_seed must be an int; got {catalog_seed!r}")
        self.difficulty = check_choice("difficulty", difficulty, DIFFICULTIES)
        #: goals say things in other words than the pages (policies may match meanings)
        self.paraphrased_goals = self.difficulty == "hard"
        self.num_products = num_products
        self.catalog_seed = catalog_seed
        self.goals: tuple[Goal, ...] = goal_pool(split, num_products, catalog_seed, difficulty)
        self.shop: ShopSite = build_site(num_products, catalog_seed, difficulty)
        super().__init__(self.shop, observation_mode=observation_mode, render_mode=render_mode,
                         backend=backend, backend_options=backend_options)
        self.goal: Goal = self.goals[0]
        self.goal_index = 0
        self.purchase: PurchaseScore | None = None

    def _new_episode(self, options: dict[str, Any]) -> str:
        index = option_index(options, "goal_index", len(self.goals), self.split)
        if index is None:
            index = int(self.np_random.integers(len(self.goals)))
        self.goal_index, self.goal = index, self.goals[index]
        self.purchase = None
        return self.goal.instruction

    def _execute(self, action: ParsedAction) -> tuple[float, bool]:
        if action.argument is None:
            raise ActionError(f"{action.command} needs an argument, e.g. {action.command}[...]")
        if action.command == "search":
            if not action.argument:
                raise ActionError("empty search query; write search[what to look for]")
            self._backend.search(action.argument)
        else:
            self._backend.click(action.argument)
        bought = self.shop.parse_purchase(self._backend.url)
        if bought is None:
            return 0.0, False
        product = self.shop.catalog.get(bought.asin)
        assert product is not None, "the site only links to products it has"
        self.purchase = score_purchase(self.goal, product, bought.options)
        self._score, self._success = self.purchase.score, self.purchase.success
        reward = self._score if self.reward_mode == "shaped" else float(self._success)
        return reward, True

    def _valid_actions(self) -> list[str]:
        page = self._backend.page
        actions = [SEARCH_PLACEHOLDER] if page.search is not None else []
        return actions + [f"click[{c.label}]" for c in page.clickables if c.href]

    def _extra_info(self) -> dict[str, Any]:
        return {"goal_index": self.goal_index}

    def expert(self):
        """The scripted expert for this env (privileged: it knows the target product)."""
        from rlft.envs.web.shop.expert import ShopExpert

        return ShopExpert(self)
