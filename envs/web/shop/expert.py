"""The Shop env's scripted expert: searches, finds the target product, picks options, buys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from rlft.envs.web.shop.search import MAX_RESULTS
from rlft.envs.web.shop.site import RESULTS_PER_PAGE

if TYPE_CHECKING:
    from rlft.envs.web.shop.env import ShopEnv


class ShopExpert:
    """Acts from privileged state (the goal's target product), from any page.

    It searches with the most natural query that finds the target (the goal's attributes and
    product type, then wider ones, the title last; in the hard store the instruction itself
    comes first, the query a shopper, and a policy proposing queries from the goal, would
    type), pages to the target, opens it, selects each option the goal asks for and buys. Being state-based, it recovers from any detour, so it
    also serves as a DAgger-style corrector.
    """

    def __init__(self, env: ShopEnv):
        self.env = env.unwrapped

    def reset(self) -> None:
        """Nothing to reset: the expert reads the env's state at every step."""

    def query(self) -> str:
        """The query the expert searches with: the first candidate that ranks the target
        highest (fewest result pages to turn)."""
        env, goal = self.env, self.env.goal
        product = env.shop.catalog.get(goal.asin)
        candidates = [goal.instruction] if env.difficulty == "hard" else []
        candidates += [
            f"{' '.join(goal.attributes)} {goal.product_type}",
            f"{goal.product_type} {' '.join(product.attributes)}",
            product.title,
        ]
        best, best_page = candidates[-1], MAX_RESULTS
        target = env.shop.catalog.by_asin[goal.asin]
        for q in candidates:
            hits = env.shop.engine.search(q)
            if target in hits:
                page = hits.index(target) // RESULTS_PER_PAGE
                if page < best_page:
                    best, best_page = q, page
        return best

    def act(self, obs: Any = None, info: Any = None) -> str:
        """The next action towards buying the goal's product with its options."""
        env, goal = self.env, self.env.goal
        url = urlsplit(env._backend.url)
        segs = [s for s in url.path.split("/") if s]
        params = dict(parse_qsl(url.query))
        page = env._backend.page
        if segs[:2] == ["item", goal.asin]:
            if len(segs) == 3:
                return "click[< Prev]"
            chosen = {k[2:]: v for k, v in params.items() if k.startswith("o_")}
            labels = {v: k for k, v in env.shop.catalog.get(goal.asin).spoken_options.items()}
            for name, value in goal.options.items():
                label = labels.get(value, value)  # the store's label for what the goal says
                if chosen.get(name) != label:
                    return f"click[{label}]"
            return "click[Buy Now]"
        if segs == ["search"] and params.get("q") == self.query():
            hits = env.shop.engine.search(params["q"])
            target = env.shop.catalog.by_asin[goal.asin]
            current = int(params.get("page", "1"))
            want = hits.index(target) // RESULTS_PER_PAGE + 1
            if want == current:
                return f"click[{goal.asin}]"
            return "click[Next >]" if want > current else "click[< Prev]"
        if page.search is not None:
            return f"search[{self.query()}]"
        return "click[Back to Search]"
