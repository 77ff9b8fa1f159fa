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
    from rlft.agents.lm_policy import LMPolicy

    kinds = {"choice": ChoicePolicy, "lm": LMPolicy}
    meta = read_policy_meta(directory)
    kind = meta.get("policy")
    if kind not in kinds:
        raise ValueError(f"{directory} holds a policy of unknown kind {kind!r}; this rlft "
                         f"loads {', '.join(sorted(kinds))}")
    return kinds[kind].from_pretrained(directory, **kwargs)


def check_pairing(policy: Any, env: gym.Env) -> None:
    """Raise a ValueError saying what to do when ``policy`` cannot act in ``env``."""
    if getattr(policy, "policy_type", None) in ("choice", "lm"):
        space = env.observation_space
        if not isinstance(space, gym.spaces.Dict) or "page" not in space.spaces:
            spec = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
            raise ValueError(f"a {policy.policy_type!r} policy acts in web envs (goal + page "
                             f"text) but {spec} is not one; evaluate it on a web env such as "
                             f"rlft/Shop-v0, or use a policy trained for {spec}")


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
