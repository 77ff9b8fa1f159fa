"""rlft agents: experts, random, and pretrained-model policies. All follow :class:`Agent`.

The trainable policies import torch and transformers; they load on first use
(``from rlft.agents import ChoicePolicy``) so that ``import rlft.agents`` stays light.
"""

from __future__ import annotations

from typing import Any

from rlft.agents.base import Agent
from rlft.agents.expert_agent import ExpertAgent
from rlft.agents.fixed_agent import FixedAgent
from rlft.agents.random_agent import RandomAgent

_LAZY = {
    "ChoicePolicy": "rlft.agents.choice_policy",
    "ChoicePolicyConfig": "rlft.agents.choice_policy",
    "Episode": "rlft.agents.episode",
    "Turn": "rlft.agents.episode",
    "TrainablePolicy": "rlft.agents.policy",
    "build_policy": "rlft.agents.loading",
    "ClipPolicy": "rlft.agents.clip_policy",
    "ClipPolicyConfig": "rlft.agents.clip_policy",
    "LMPolicy": "rlft.agents.lm_policy",
    "LMPolicyConfig": "rlft.agents.lm_policy",
    "TextEncoder": "rlft.agents.text_encoder",
    "load_policy": "rlft.agents.loading",
    "make_agent": "rlft.agents.loading",
}

__all__ = ["Agent", "ExpertAgent", "FixedAgent", "RandomAgent", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlft.agents' has no attribute {name!r}")
