"""rlft agents: experts, random, and pretrained-model policies. All follow :class:`Agent`."""

from rlft.agents.base import Agent
from rlft.agents.expert_agent import ExpertAgent
from rlft.agents.random_agent import RandomAgent

__all__ = ["Agent", "ExpertAgent", "RandomAgent"]
