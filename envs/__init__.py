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
    "rlft/Shop-v0",
    "rlft.envs.web.shop.env:ShopEnv",
    "WebShop-style store: search, open a product, pick options, buy what the goal asks for.",
    max_episode_steps=15,
)
