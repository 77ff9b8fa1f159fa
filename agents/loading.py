"""One way to get an agent: ``expert`` / ``random`` / a checkpoint directory, or a fresh policy.

:data:`POLICY_KINDS` names every trainable policy kind (``rlft imitate --policy KIND``); a
checkpoint's ``rlft_policy.json`` says which kind wrote it, so :func:`load_policy` needs no
other hint. A kind may also be given as ``module:Class`` (a policy of your own that follows
:class:`rlft.agents.policy.TrainablePolicy`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import gymnasium as gym

from rlft.agents.base import Agent
from rlft.agents.policy import check_pairing

__all__ = ["BASELINES", "POLICY_KINDS", "build_policy", "check_pairing", "load_policy",
           "make_agent", "policy_class"]

BASELINES = ("expert", "random")
POLICY_KINDS = {
    "choice": "rlft.agents.choice_policy:ChoicePolicy",
    "lm": "rlft.agents.lm_policy:LMPolicy",
    "clip": "rlft.agents.clip_policy:ClipPolicy",
}


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``: where imitation and evaluation put a policy
    (PPO places it through ``accelerate``)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def policy_class(kind: str) -> type:
    """The class of a policy kind (a :data:`POLICY_KINDS` name or ``module:Class``)."""
    target = POLICY_KINDS.get(kind, kind)
    if ":" not in target:
        raise ValueError(f"unknown policy kind {kind!r}; this rlft has "
                         f"{', '.join(sorted(POLICY_KINDS))} (or pass module:Class)")
    module, name = target.split(":", 1)
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import policy class {target!r}: {e}") from None


def build_policy(kind: str, env: gym.Env, *, model: str | None = None, seed: int = 0,
                 **options: Any) -> Any:
    """A fresh (untrained) policy of ``kind`` for ``env``: ``model`` names the pretrained
    weights (an HF name or path; the choice policy defaults to the bundled MiniLM), ``options``
    are fields of the policy's config. Raises a ValueError when the kind cannot act in
    ``env``."""
    import dataclasses

    cls = policy_class(kind)
    check_pairing(cls, env)
    known = {f.name for f in dataclasses.fields(cls.config_class)}
    if options.get("lora_r") == 0 and "lora_r" not in known:
        del options["lora_r"]  # the common "no LoRA" default of a policy without adapters
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"the {kind} policy's config has no {', '.join(unknown)}; its fields: "
                         f"{', '.join(sorted(known))}")
    try:
        return cls.for_env(env, model=model, seed=seed, **options)
    except TypeError as e:  # a value of the wrong kind
        raise ValueError(f"{kind} policy: {e}") from None


def load_policy(directory: str | Path, **kwargs: Any) -> Any:
    """Load a trained policy saved with ``save_pretrained`` (its kind is read from the
    checkpoint's ``rlft_policy.json``)."""
    from rlft.agents.checkpoint import read_policy_meta

    meta = read_policy_meta(directory)
    kind = meta.get("policy")
    if kind not in POLICY_KINDS:
        raise ValueError(f"{directory} holds a policy of unknown kind {kind!r}; this rlft "
                         f"loads {', '.join(sorted(POLICY_KINDS))}")
    return policy_class(kind).from_pretrained(directory, **kwargs)


def make_agent(spec: str | Path, env: gym.Env, seed: int = 0) -> Agent:
    """``"expert"``, ``"random"``, ``"always:ACTION"`` (e.g. ``always:abstain``),
    ``"rule:first"`` / ``"rule:overlap"`` (the store's lexical rule baselines) or the path of a
    saved policy, as an agent acting in ``env`` (a loaded policy is in eval mode and acts
    greedily)."""
    from rlft.agents.expert_agent import ExpertAgent
    from rlft.agents.fixed_agent import FixedAgent
    from rlft.agents.random_agent import RandomAgent

    if spec == "expert":
        return ExpertAgent(env)
    if spec == "random":
        return RandomAgent(env.action_space, seed=seed)
    if isinstance(spec, str) and spec.startswith("always:"):
        return FixedAgent(spec[len("always:"):])
    if isinstance(spec, str) and spec.startswith("rule:"):
        from rlft.agents.rule_agent import LexicalRuleAgent

        return LexicalRuleAgent(spec[len("rule:"):])
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"agent {str(spec)!r} is neither 'expert', 'random', "
                                f"'always:ACTION', 'rule:first|overlap' nor an existing "
                                f"checkpoint directory; train one with `rlft imitate ... --out "
                                f"{spec}` or pass --agent expert|random")
    policy = load_policy(path, seed=seed)
    check_pairing(policy, env)
    return policy.to(default_device())
