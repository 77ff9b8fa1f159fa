"""What a trainable policy is: the :class:`TrainablePolicy` contract and the shared acting loop.

Every trainable policy (choice, LM, CLIP) turns the episode so far (an
:class:`rlft.agents.episode.Turn`) into model input with ONE method, :meth:`encode`; acting,
imitation and PPO all call it, so they cannot see different inputs::

    episode -> Turn -> policy.encode(turn) -> features --+-> policy.choose(features)     (act)
                                                         +-> policy.imitation_loss(...)  (imitate)
                                                         +-> policy.rl_act / rl_evaluate (PPO)

The imitation and PPO loops (:mod:`rlft.training.imitation`, :mod:`rlft.training.ppo`) use only
these methods, so a new policy kind is one module implementing them (plus its line in
:data:`rlft.agents.loading.POLICY_KINDS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import gymnasium as gym
import torch

from rlft.agents.episode import Episode, Turn
from rlft.agents.rl import RLPolicy


@runtime_checkable
class TrainablePolicy(RLPolicy, Protocol):
    """A policy that imitation and PPO can train (and that acts as an :class:`Agent`).

    * which envs: ``observation_keys`` (the observation keys it reads; :func:`check_pairing`);
    * construction: the classmethod ``for_env(env, model=..., seed=..., **config_fields)`` (a
      fresh policy sized and configured for ``env``) and ``config_class``;
    * input: :meth:`encode` (the one episode -> model input path);
    * acting: :meth:`reset` / :meth:`act` (from :class:`EpisodicPolicy`) over :meth:`choose`;
    * imitation: :meth:`imitation_target`, :meth:`imitation_loss`, :meth:`prepare_imitation`;
    * PPO: the :class:`rlft.agents.rl.RLPolicy` methods;
    * persistence: :meth:`save_pretrained` / ``from_pretrained`` (``rlft_policy.json``).
    """

    policy_type: str
    observation_keys: ClassVar[frozenset[str]]
    config_class: ClassVar[type]
    """The dataclass of its hyper-parameters (saved in ``rlft_policy.json``)."""

    def encode(self, turn: Turn) -> Any:
        """The model input of ``turn`` (cache frozen-model outputs on it: PPO re-scores it)."""

    def choose(self, features: Any) -> Any:
        """The env action for one encoded turn (greedy, or sampled when ``self.sample``)."""

    def imitation_target(self, features: Any, action: Any) -> Any:
        """What :meth:`imitation_loss` trains ``features`` towards for the demonstrated
        ``action`` (a ValueError when the action cannot be represented)."""

    def imitation_loss(self, features: Sequence[Any], targets: Sequence[Any]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Imitation loss (with gradients) and accuracy of a batch."""

    def prepare_imitation(self, features: Sequence[Any],
                          progress: Callable[[int, int], None] | None = None) -> None:
        """Precompute what the epochs reuse (e.g. frozen-encoder embeddings)."""

    def reset(self) -> None:
        """Forget the episode."""

    def act(self, obs: Any, info: dict[str, Any]) -> Any:
        """The action to take now."""

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the checkpoint (``rlft_policy.json`` last)."""


class EpisodicPolicy:
    """The acting half of :class:`TrainablePolicy`, shared by every policy kind: an
    :class:`Episode` of the policy's own, encoded with ``encode`` and decided by ``choose``.

    Subclasses (``nn.Module`` s) set ``observation_keys`` and ``env_kind`` and implement
    ``encode`` and ``choose``.
    """

    observation_keys: ClassVar[frozenset[str]] = frozenset()
    env_kind: ClassVar[str] = ""
    """``web`` or ``tabletop``: what the error messages call the envs this policy acts in."""
    _episode: Episode

    def reset(self) -> None:
        """Forget the episode's history."""
        self._episode = Episode()

    def act(self, obs: Any, info: dict[str, Any]) -> Any:
        """The action for the episode so far (greedy, or sampled when ``self.sample``)."""
        if not hasattr(self, "_episode"):
            self.reset()
        self._check_obs(obs)
        self._episode.observe(obs, info)
        return self.act_many([self._episode])[0]

    @torch.no_grad()
    def act_many(self, episodes: Sequence[Episode]) -> list[Any]:
        """One action for each of several concurrent episodes, decided together by
        :meth:`choose_many` and recorded in them. Each :class:`Episode` has observed its
        current step (:meth:`act` is this for the policy's own episode; concurrent evaluation,
        :func:`rlft.training.evaluate.evaluate_concurrent`, passes one per env)."""
        for episode in episodes:
            self._check_obs(episode.observation)
        was_training = self.training  # type: ignore[attr-defined]
        self.eval()  # type: ignore[attr-defined]
        try:
            actions = self.choose_many([self.encode(e.turn())  # type: ignore[attr-defined]
                                        for e in episodes])
        finally:
            self.train(was_training)  # type: ignore[attr-defined]
        for episode, action in zip(episodes, actions, strict=True):
            episode.record(action)
        return actions

    def choose_many(self, features: Sequence[Any]) -> list[Any]:
        """:meth:`choose` for the turns of several concurrent episodes: one by one here; a
        policy that scores turns in batches (the LM policy on a GPU) overrides it."""
        return [self.choose(f) for f in features]  # type: ignore[attr-defined]

    def _check_obs(self, obs: Any) -> None:
        """A TypeError saying what to use when ``obs`` is not this policy's kind of env's."""
        if not isinstance(obs, dict) or not self.observation_keys <= set(obs):
            raise TypeError(f"{type(self).__name__} acts in {self.env_kind} envs (observation "
                            f"keys {sorted(self.observation_keys)}); {pairing_hint(self)}")


def pass_size(policy: Any, requested: int | None, whole: int) -> int:
    """Examples per forward/backward pass of a training step over ``whole`` examples (SFT's
    batch, PPO's minibatch): ``requested`` (``--micro-batch-size``), else the policy's own
    ``update_micro_batch`` where it declares one (the LM policy on a CPU), else ``whole``."""
    return requested or getattr(policy, "update_micro_batch", None) or whole


def pairing_hint(policy: Any) -> str:
    """What to use instead of ``policy`` in an env it cannot act in."""
    if getattr(policy, "env_kind", "") == "tabletop":
        return ("evaluate it on a tabletop env such as rlft/PutBlockInBowl-v0, or use the "
                "choice or lm policy for web envs")
    return ("evaluate it on a web env such as rlft/Shop-v0, or use a policy made for tabletop "
            "envs (the clip policy)")


def check_pairing(policy: Any, env: gym.Env) -> None:
    """Raise a ValueError saying what to do when ``policy`` cannot act in ``env`` (its
    observation lacks a key the policy reads)."""
    need = getattr(policy, "observation_keys", frozenset())
    space = env.observation_space
    keys = set(space.spaces) if isinstance(space, gym.spaces.Dict) else set()
    if need <= keys:
        return
    spec = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    kind = getattr(policy, "policy_type", type(policy).__name__)
    raise ValueError(f"a {kind!r} policy acts in {getattr(policy, 'env_kind', '')} envs "
                     f"(observation keys {sorted(need)}) but {spec} is not one; "
                     f"{pairing_hint(policy)}")
