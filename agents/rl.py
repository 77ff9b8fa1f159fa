"""What a trainable policy offers the PPO runner: one protocol for every policy kind.

A turn's action is made of ``L`` scored parts: one for a choice over valid actions (``L = 1``),
two for a CLIP pick-and-place (the pick, then the rotation-and-place), one per generated token
for an LM. The runner clips each part's probability ratio and weights it with the turn's
advantage, averaging over the parts that ``mask`` marks (prompt and observation tokens carry no
loss). So choice, CLIP and LM policies share one PPO loop (:mod:`rlft.training.ppo`):

* ``encode(turn)`` prepares one env's turn (an :class:`rlft.agents.episode.Turn`: the episode
  so far), the same method acting and imitation use; the result is kept in the rollout buffer
  and scored again in every epoch, so frozen-encoder outputs are cached on it;
* ``rl_act(features, generator, temperature=1.0)`` samples actions for a batch of turns: an
  :class:`RLStep` (a ``temperature`` below 1 sharpens the sampling, 0 is greedy: what
  self-training's rollouts may use; the log-probs are the policy's own either way);
* ``rl_evaluate(features, actions)`` scores taken actions with gradients: an :class:`ActionEval`;
* ``rl_values(features)`` the value estimate alone (bootstrapping cut-off episodes).

The KL penalty to the imitation checkpoint needs no second model: :func:`reference_weights`
swaps the trainable tensors (heads, LoRA adapters) for copies taken before RL and swaps back.
The reference never changes, so :func:`reference_scores` scores a rollout's taken actions under
it once per update, and :func:`stack_reference` lays a minibatch's rows beside the current
policy's scores in every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class RLStep:
    """Sampled actions of a batch of turns.

    ``env_actions`` go to ``env.step``; ``actions`` is what :meth:`RLPolicy.rl_evaluate` takes
    back (indices, token ids, ...: one entry per turn); ``log_probs`` and ``mask`` are
    ``[B, L]`` (per scored part, left-aligned: a turn's parts come first, then padding),
    ``values`` ``[B]``.
    """

    env_actions: list[Any]
    actions: list[Any]
    log_probs: torch.Tensor
    mask: torch.Tensor
    values: torch.Tensor


@dataclass
class ActionEval:
    """Scores of taken actions under the current weights (with gradients).

    ``log_probs`` and ``mask`` ``[B, L]``, ``entropy`` and ``values`` ``[B]``. ``dist_log_probs``
    optionally holds the full log-distribution of each turn (``[B, K]``, ``-inf`` on padding) so
    that :meth:`kl` is exact instead of estimated from the taken actions.
    """

    log_probs: torch.Tensor
    mask: torch.Tensor
    entropy: torch.Tensor
    values: torch.Tensor
    dist_log_probs: torch.Tensor | None = None

    def kl_per_turn(self, reference: ActionEval) -> bool:
        """Whether :meth:`kl` is a mean over turns (exact: both hold full distributions) rather
        than over the taken actions' parts (k3)."""
        return self.dist_log_probs is not None and reference.dist_log_probs is not None

    def kl(self, reference: ActionEval) -> torch.Tensor:
        """Mean KL(policy || reference) per turn: exact over the full distribution when both
        have it (:meth:`kl_per_turn`), else the k3 estimator (Schulman) over the taken action's
        parts."""
        if self.kl_per_turn(reference):
            lp, ref = self.dist_log_probs, reference.dist_log_probs
            finite = torch.isfinite(lp)
            diff = torch.where(finite, lp - ref, torch.zeros_like(lp))
            return (lp.exp() * diff).sum(-1).mean()
        log_ratio = (reference.log_probs - self.log_probs).clamp(-20, 20)
        k3 = log_ratio.exp() - 1 - log_ratio
        return masked_mean(k3, self.mask)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (0 when there are none)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


@runtime_checkable
class RLPolicy(Protocol):
    """A policy the PPO runner can fine-tune (see the module docstring)."""

    policy_type: str

    def encode(self, turn: Any) -> Any:
        """One environment's turn (the episode so far), prepared for scoring."""

    def rl_act(self, features: Sequence[Any], generator: torch.Generator,
               temperature: float = 1.0) -> RLStep:
        """Sample one action per turn (no gradients)."""

    def rl_evaluate(self, features: Sequence[Any], actions: Sequence[Any]) -> ActionEval:
        """Log-probabilities, entropy and values of taken actions (with gradients)."""

    def rl_values(self, features: Sequence[Any]) -> torch.Tensor:
        """Value estimates ``[B]``."""


def sample_index(logits: torch.Tensor, generator: torch.Generator | None,
                 temperature: float = 1.0) -> torch.Tensor:
    """Indices ``[B, 1]`` drawn from each row of ``logits [B, K]`` (log-probabilities or
    logits; ``-inf`` never drawn) at ``temperature``: 1 samples the distribution itself, lower
    sharpens it, 0 (or no ``generator``) takes the argmax. Drawn on the CPU."""
    logits = logits.detach().float().cpu()
    if temperature <= 0 or generator is None:
        return logits.argmax(-1, keepdim=True)
    return torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)


@contextmanager
def reference_weights(module: nn.Module, reference: dict[str, torch.Tensor]) -> Iterator[None]:
    """Temporarily give ``module``'s parameters named in ``reference`` those values.

    With the trainable tensors of an imitation checkpoint as ``reference`` this evaluates the
    frozen imitation policy in place: the frozen encoder or base model is shared, and for a LoRA
    adapter added fresh for RL it is the same as disabling the adapter.
    """
    params = dict(module.named_parameters())
    saved = {name: params[name].data for name in reference}
    try:
        for name, value in reference.items():
            params[name].data = value
        yield
    finally:
        for name, value in saved.items():
            params[name].data = value


def reference_scores(policy: Any, reference: dict[str, torch.Tensor], features: Sequence[Any],
                     actions: Sequence[Any], batch_size: int
                     ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Score every buffered turn's taken action under the reference weights, ``batch_size``
    turns at a time (no gradients): per turn, the log-probs of its scored parts and, where the
    policy gives one, its full log-distribution (trailing ``-inf`` padding cut), on the CPU."""
    rows: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    with torch.no_grad(), reference_weights(policy, reference):
        for s in range(0, len(features), max(1, batch_size)):
            ev = policy.rl_evaluate(features[s : s + batch_size], actions[s : s + batch_size])
            lp, mask = ev.log_probs.detach().cpu(), ev.mask.cpu()
            dist = None if ev.dist_log_probs is None else ev.dist_log_probs.detach().cpu()
            for i in range(len(lp)):
                d = None
                if dist is not None:
                    finite = torch.isfinite(dist[i]).nonzero()
                    d = dist[i][: int(finite[-1]) + 1 if len(finite) else 0]
                rows.append((lp[i][mask[i] > 0], d))
    return rows


def stack_reference(rows: Sequence[tuple[torch.Tensor, torch.Tensor | None]], like: ActionEval
                    ) -> ActionEval:
    """A minibatch's :func:`reference_scores` rows as an :class:`ActionEval` shaped like the
    current policy's ``like`` (parts right-padded, distributions padded with ``-inf``), for
    :meth:`ActionEval.kl`; its entropy and values are zeros (the KL reads neither)."""
    device = like.log_probs.device
    log_probs, mask = stack_parts([r[0] for r in rows], width=like.log_probs.shape[1])
    dist = None
    if like.dist_log_probs is not None and all(r[1] is not None for r in rows):
        dist = torch.full((len(rows), like.dist_log_probs.shape[1]), float("-inf"))
        for i, (_, d) in enumerate(rows):
            dist[i, : len(d)] = d[: dist.shape[1]]
        dist = dist.to(device=device, dtype=like.dist_log_probs.dtype)
    zeros = torch.zeros(len(rows), device=device)
    return ActionEval(log_probs.to(device=device, dtype=like.log_probs.dtype), mask.to(device),
                      zeros, zeros, dist)


def stack_parts(rows: Sequence[torch.Tensor], width: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-d per-turn tensors of part scores into ``([B, L] values, [B, L] mask)``
    (``L`` = ``width``, or the longest row)."""
    L = max(1, width or max((len(r) for r in rows), default=1))
    out = torch.zeros(len(rows), L)
    mask = torch.zeros(len(rows), L)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r[:L]
        mask[i, : len(r)] = 1.0
    return out, mask


class SamplingAgent:
    """An :class:`rlft.agents.base.Agent` that plays an :class:`RLPolicy` by sampling, as the
    PPO runner's rollouts do (``rl_act`` on the policy's own encoding of the episode so far),
    for rollouts outside PPO (self-training's samples, :mod:`rlft.training.rest`).

    Args:
        policy: any :class:`RLPolicy` (choice, CLIP, LM).
        generator: the random stream of the samples (seeded by the caller).
        temperature: of the sampling (1: the policy's own distribution; 0: greedy).
    """

    def __init__(self, policy: Any, generator: torch.Generator, temperature: float = 1.0
                 ) -> None:
        from rlft.agents.episode import Episode

        self.policy, self.generator, self.temperature = policy, generator, temperature
        self._episode = Episode()

    def reset(self) -> None:
        """Start a new episode."""
        self._episode.reset()

    @torch.no_grad()
    def act(self, obs: Any, info: dict[str, Any]) -> Any:
        """A sampled action for the episode so far."""
        self._episode.observe(obs, info)
        step = self.policy.rl_act([self.policy.encode(self._episode.turn())], self.generator,
                                  self.temperature)
        self._episode.record(step.env_actions[0])
        return step.env_actions[0]
