"""rlft environments. Importing this package registers every ``rlft/...`` id with Gymnasium.

    import gymnasium as gym
    import rlft.envs  # noqa: F401  (registers the ids)

    env = gym.make("rlft/Shop-v0", reward_mode="shaped", split="test")

Registration is a flat list of ``register`` calls with string entry points (a lambda cannot be
serialised by ``EnvSpec.to_json``). ``ENV_DESCRIPTIONS`` gives each id the one-line summary
that ``rlft envs`` prints.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

ENV_DESCRIPTIONS: dict[str, str] = {}


def _register(env_id: str, entry_point: str, description: str, **kwargs) -> None:
    """Register ``env_id`` once (re-importing the package is a no-op) and record its summary."""
    ENV_DESCRIPTIONS[env_id] = description
    if env_id not in registry:
        register(id=env_id, entry_point=entry_point, **kwargs)


# --- web: text-browser environments ---------------------------------------------------------
_register(
    "rlft/Shop-v1",
    "rlft.envs.web.shop.env:ShopEnv",
    "WebShop-hard store (10k products): near-duplicates, goals in other words than the product.",
    max_episode_steps=15,
    kwargs={"difficulty": "hard", "num_products": 10_000},
)
_register(
    "rlft/Shop-Browser-v1",
    "rlft.envs.web.shop.env:ShopEnv",
    "The hard store in headless Chromium (Playwright); observation_mode text/html/axtree/screenshot.",
    max_episode_steps=15,
    kwargs={"difficulty": "hard", "num_products": 10_000, "backend": "browser"},
)
_register(
    "rlft/Shop-v0",
    "rlft.envs.web.shop.env:ShopEnv",
    "The easy store (2k products): the goal's words are the product's; lexical rules reach 0.86.",
    max_episode_steps=15,
)
_register(
    "rlft/Shop-Browser-v0",
    "rlft.envs.web.shop.env:ShopEnv",
    "The easy store in headless Chromium (Playwright); observation_mode text/html/axtree/screenshot.",
    max_episode_steps=15,
    kwargs={"backend": "browser"},
)
_register(
    "rlft/Research-v0",
    "rlft.envs.web.research.env:ResearchEnv",
    "WebGPT-style research: search an offline wiki of fictional facts, quote, answer or abstain.",
    max_episode_steps=30,
)

# --- tabletop: language-conditioned pick-and-place in PyBullet (envs/tabletop) ---------------
# One env class; the `task` kwarg picks the task module in envs/tabletop/tasks/.
_register(
    "rlft/PutBlockInBowl-v0",
    "rlft.envs.tabletop.env:TabletopEnv",
    "Tabletop: put the blocks of one colour in a bowl of another colour.",
    max_episode_steps=8,
    kwargs={"task": "put-block-in-bowl"},
)
_register(
    "rlft/PackingObjects-v0",
    "rlft.envs.tabletop.env:TabletopEnv",
    "Tabletop: pack named everyday objects (duck, mug, teddy bear, ...) into the brown box.",
    max_episode_steps=8,
    kwargs={"task": "packing-objects"},
)
_register(
    "rlft/StackBlockPyramid-v0",
    "rlft.envs.tabletop.env:TabletopEnv",
    "Tabletop: build a 3-2-1 pyramid of coloured blocks, one sub-goal per block.",
    max_episode_steps=12,
    kwargs={"task": "stack-block-pyramid"},
)
_register(
    "rlft/PlaceBlocksInZone-v0",
    "rlft.envs.tabletop.env:TabletopEnv",
    "Tabletop: separate blocks by colour, putting all of one colour in a coloured zone.",
    max_episode_steps=10,
    kwargs={"task": "place-blocks-in-zone"},
)
_register(
    "rlft/TowersOfHanoi-v0",
    "rlft.envs.tabletop.env:TabletopEnv",
    "Tabletop: move a three-ring tower between pegs, one ring move per sub-goal.",
    max_episode_steps=14,
    kwargs={"task": "towers-of-hanoi"},
)
_register(
    "rlft/Tabletop-v0",
    "rlft.envs.tabletop.env:TabletopEnv",
    "Tabletop, all six tasks in one env (CLIPort's multi-task setting): the goal says the task.",
    # the env truncates at the episode's own task's max_steps; this bound is the longest's
    max_episode_steps=14,
    kwargs={"task": "all"},
)
_register(
    "rlft/BlockInsertion-v0",
    "rlft.envs.tabletop.env:TabletopEnv",
    "Tabletop: put an L-shaped block on the matching outline (position and rotation).",
    max_episode_steps=4,
    kwargs={"task": "block-insertion"},
)


def tabletop_task_ids() -> dict[str, str]:
    """Each tabletop task's own env id by task name (``{"put-block-in-bowl":
    "rlft/PutBlockInBowl-v0", ...}``), in registration order; the multi-task
    ``rlft/Tabletop-v0`` is not among them."""
    return {registry[i].kwargs["task"]: i for i in ENV_DESCRIPTIONS
            if registry[i].entry_point == "rlft.envs.tabletop.env:TabletopEnv"
            and registry[i].kwargs.get("task") != "all"}
