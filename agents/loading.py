"""Turn ``expert`` / ``random`` / a checkpoint directory into an agent for an env."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym

from rlft.agents.base import Agent

BASELINES = ("expert", "random")


def load_policy(directory: str | Path, **kwargs: Any) -> Any:
    """Load a trained policy saved with ``save_pretrained`` (its kind is read from the
    checkpoint's ``rlft_policy.json``)."""
    from rlft.agents.choice_policy import ChoicePolicy, read_policy_meta
    from rlft.agents.clip_policy import ClipPolicy
    from rlft.agents.lm_policy import LMPolicy

    kinds = {"choice": ChoicePolicy, "lm": LMPolicy, "clip": ClipPolicy}
    meta = read_policy_meta(directory)
    kind = meta.get("policy")
    if kind not in kinds:
        raise ValueError(f"{directory} holds a policy of unknown kind {kind!r}; this rlft "
                         f"loads {', '.join(sorted(kinds))}")
    return kinds[kind].from_pretrained(directory, **kwargs)


def check_pairing(policy: Any, env: gym.Env) -> None:
    """Raise a ValueError saying what to do when ``policy`` cannot act in ``env``."""
    kind = getattr(policy, "policy_type", None)
    space = env.observation_space
    keys = set(space.spaces) if isinstance(space, gym.spaces.Dict) else set()
    spec = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    if kind in ("choice", "lm") and "page" not in keys:
        raise ValueError(f"a {kind!r} policy acts in web envs (goal + page text) but {spec} is "
                         f"not one; evaluate it on a web env such as rlft/Shop-v0, or use a "
                         f"policy trained for {spec} (tabletop: the clip policy)")
    if kind == "clip" and "color" not in keys:
        raise ValueError(f"a 'clip' policy acts in tabletop envs (heightmap + goal) but {spec} "
                         f"is not one; evaluate it on e.g. rlft/PutBlockInBowl-v0, or use the "
                         f"choice or lm policy for web envs")


def make_agent(spec: str, env: gym.Env, seed: int = 0) -> Agent:
    """``"expert"``, ``"random"`` or the path of a saved policy, as an agent acting in ``env``."""
    from rlft.agents.expert_agent import ExpertAgent
    from rlft.agents.random_agent import RandomAgent

    if spec == "expert":
        return ExpertAgent(env)
    if spec == "random":
        return RandomAgent(env.action_space, seed=seed)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"agent {spec!r} is neither 'expert', 'random' nor an existing "
                                f"checkpoint directory; train one with `rlft imitate ... --out "
                                f"{spec}` or pass --agent expert|random")
    policy = load_policy(path, seed=seed)
    check_pairing(policy, env)
    return policy
