"""``ChoicePolicy``: a pretrained text encoder scores (state, candidate action) pairs for web envs.

WebShop's choice model, made to fit a 2-core CPU. Each turn the valid actions are made concrete
(the ``search[...]`` placeholder becomes queries proposed from the goal) and each candidate is
described by its action plus its page context (a product's title and price after its button).
A pretrained encoder (default: the bundled all-MiniLM-L6-v2) embeds the goal, every candidate
and the recent history; a small trained head scores each candidate from those embeddings and a
few lexical features (word overlap with the goal, pressed, already done, price within budget);
a softmax over the candidates is the policy. A value head reads the same state for PPO.

What is trained: by default the head only (the encoder stays frozen, so every distinct text is
encoded once and cached: behaviour cloning on 500 demos takes minutes on a CPU). With
``lora_r > 0`` LoRA adapters (peft) on the encoder's top ``lora_layers`` layers train too, and
are saved as PEFT adapters next to the head.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlft.agents.rl import ActionEval, RLStep
from rlft.agents.text_encoder import DEFAULT_ENCODER, TextEncoder
from rlft.wrappers.valid_actions import (
    action_label,
    candidate_context,
    content_words,
    expand_valid_actions,
    page_buttons,
    price_fits,
)

CONFIG_NAME = "rlft_policy.json"
HEAD_NAME = "head.safetensors"
ADAPTER_DIR = "adapter"
NUM_FEATURES = 10


@dataclass
class ChoicePolicyConfig:
    """Hyper-parameters of a :class:`ChoicePolicy` (saved with every checkpoint)."""

    encoder: str = DEFAULT_ENCODER
    """HF encoder name or local path; ``all-MiniLM-L6-v2`` is the bundled MiniLM."""
    max_length: int = 64
    """Tokens per embedded text (goal, candidate with context, history action)."""
    hidden: int = 256
    """Width of the scoring and value heads."""
    dropout: float = 0.1
    """Dropout in the heads while training."""
    history: int = 4
    """How many previous actions the state includes."""
    max_steps: int = 15
    """Episode length used to scale the step feature."""
    lora_r: int = 0
    """LoRA rank on the encoder (0: frozen encoder with cached embeddings)."""
    lora_layers: int = 2
    """How many of the encoder's top layers get LoRA adapters when ``lora_r > 0``."""


@dataclass
class Turn:
    """What a policy sees at one step: goal, page, the env's valid actions, history, step."""

    goal: str
    page: str
    valid_actions: tuple[str, ...]
    history: tuple[str, ...] = ()
    step: int = 0

    @classmethod
    def from_env(cls, obs: dict[str, Any], info: dict[str, Any], history: Sequence[str] = (),
                 step: int | None = None) -> Turn:
        """Build a turn from a web env's observation and info."""
        history = tuple(history)
        return cls(str(obs["goal"]), str(obs["page"]), tuple(info.get("valid_actions") or ()),
                   history, len(history) if step is None else step)


@dataclass
class TurnFeatures:
    """A turn prepared for scoring: concrete candidates, the texts to embed, lexical features."""

    candidates: list[str]
    candidate_texts: list[str]
    goal: str
    history_texts: list[str]
    features: torch.Tensor  # [K, NUM_FEATURES]
    step: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PolicyOutput:
    """Scores of a batch of turns: ``logits`` [B, K] (-inf on padding), ``values`` [B]."""

    logits: torch.Tensor
    values: torch.Tensor
    candidates: list[list[str]]

    def log_probs(self) -> torch.Tensor:
        """Log-softmax over each turn's candidates (padding: -inf)."""
        return torch.log_softmax(self.logits, dim=-1)

    def entropy(self) -> torch.Tensor:
        """Entropy of each turn's distribution [B]."""
        logp = self.log_probs()
        p = logp.exp()
        return -(p * torch.where(torch.isfinite(logp), logp, torch.zeros_like(logp))).sum(-1)


class ChoicePolicy(nn.Module):
    """Softmax over the valid actions of a web env, scored with a pretrained text encoder.

    Agent protocol: :meth:`reset` and :meth:`act` (greedy unless ``sample=True``). For
    training: :meth:`featurize` turns a :class:`Turn` into candidates and features,
    :meth:`forward` scores a batch, :meth:`evaluate_actions` gives log-probabilities of taken
    actions, entropy and values (what PPO needs), :meth:`bc_loss` is the imitation loss.

    Args:
        config: a :class:`ChoicePolicyConfig` (default: bundled MiniLM, frozen, head only).
        sample: act by sampling instead of taking the most likely action.
        seed: seed of the sampler.
    """

    policy_type = "choice"

    def __init__(self, config: ChoicePolicyConfig | None = None, *, sample: bool = False,
                 seed: int | None = None):
        super().__init__()
        self.config = config = config or ChoicePolicyConfig()
        self.encoder = TextEncoder(config.encoder, max_length=config.max_length)
        if config.lora_r > 0:
            self._add_lora()
        d, h = self.encoder.dim, config.hidden
        self.score_head = nn.Sequential(
            nn.Linear(4 * d + NUM_FEATURES, h), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))
        self.value_head = nn.Sequential(
            nn.Linear(3 * d + 1, h), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(h, 1))
        self.sample = sample
        self.generator = torch.Generator().manual_seed(int(seed or 0))
        self._history: list[str] = []

    # -- encoder adapters ----------------------------------------------------------------
    def _add_lora(self) -> None:
        from peft import LoraConfig, get_peft_model

        n_layers = int(self.encoder.model.config.num_hidden_layers)
        top = list(range(max(0, n_layers - self.config.lora_layers), n_layers))
        lora = LoraConfig(r=self.config.lora_r, lora_alpha=2 * self.config.lora_r,
                          target_modules=["query", "value"], layers_to_transform=top,
                          lora_dropout=0.0)
        self.encoder.model = get_peft_model(self.encoder.model, lora)
        self.encoder.clear_cache()

    @property
    def device(self) -> torch.device:
        """Where the head's parameters live."""
        return next(self.score_head.parameters()).device

    # -- features ------------------------------------------------------------------------
    def featurize(self, turn: Turn) -> TurnFeatures:
        """Concrete candidates of ``turn`` with their texts and lexical features."""
        candidates = expand_valid_actions(turn.goal, turn.valid_actions, page=turn.page)
        if not candidates:
            raise ValueError("no valid actions to choose from (is the episode over? "
                             "call env.reset())")
        buttons = page_buttons(turn.page)
        goal_words = set(content_words(turn.goal))
        goal_lower = f" {' '.join(content_words(turn.goal))} "
        recent = turn.history[-self.config.history:] if self.config.history else ()
        texts, feats = [], []
        for k, action in enumerate(candidates):
            context, pressed = candidate_context(turn.page, action, buttons)
            label = action_label(action)
            text = f"{action} {context}".strip()
            words = content_words(f"{label} {context}")
            wset = set(words)
            label_words = " ".join(content_words(label))
            feats.append([
                len(wset & goal_words) / max(1, len(wset)),
                len(wset & goal_words) / max(1, len(goal_words)),
                float(pressed),
                min(3, turn.history.count(action)) / 3.0,
                price_fits(context, turn.goal),
                k / max(1, len(candidates) - 1),
                float(bool(label_words) and f" {label_words} " in goal_lower),
                float(action.startswith("search[")),
                min(1.0, turn.step / max(1, self.config.max_steps)),
                float(bool(turn.history) and turn.history[-1] == action),
            ])
            texts.append(text)
        return TurnFeatures(candidates, texts, turn.goal, list(recent),
                            torch.tensor(feats, dtype=torch.float32),
                            min(1.0, turn.step / max(1, self.config.max_steps)))

    # -- scoring -------------------------------------------------------------------------
    def forward(self, turns: Sequence[Turn | TurnFeatures]) -> PolicyOutput:
        """Score every candidate of every turn: logits [B, K] (-inf padding) and values [B]."""
        feats = [t if isinstance(t, TurnFeatures) else self.featurize(t) for t in turns]
        sizes = [len(f.candidates) for f in feats]
        enc = self.encoder
        if enc.frozen:  # embeddings are constants: keep them on the features for the epochs
            for f in feats:
                if "emb" not in f.extra:
                    f.extra["emb"] = (enc(f.candidate_texts), enc([f.goal])[0],
                                      enc(f.history_texts))
            cand = torch.cat([f.extra["emb"][0] for f in feats]).to(self.device)
            goals = torch.stack([f.extra["emb"][1] for f in feats]).to(self.device)
            hist_all = torch.cat([f.extra["emb"][2] for f in feats]).to(self.device)
        else:
            cand = enc([t for f in feats for t in f.candidate_texts]).to(self.device)
            goals = enc([f.goal for f in feats]).to(self.device)
            hist_all = enc([t for f in feats for t in f.history_texts]).to(self.device)
        B, K, d = len(feats), max(sizes), enc.dim
        c = torch.zeros(B, K, d, device=self.device)
        x = torch.zeros(B, K, NUM_FEATURES, device=self.device)
        mask = torch.zeros(B, K, dtype=torch.bool, device=self.device)
        hist = torch.zeros(B, d, device=self.device)
        i = j = 0
        for b, f in enumerate(feats):
            n = sizes[b]
            c[b, :n] = cand[i : i + n]
            x[b, :n] = f.features.to(self.device)
            mask[b, :n] = True
            i += n
            if f.history_texts:
                hist[b] = hist_all[j : j + len(f.history_texts)].mean(0)
                j += len(f.history_texts)
        page = (c * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        g = goals.unsqueeze(1).expand(B, K, d)
        inp = torch.cat([c, g * c, hist.unsqueeze(1).expand(B, K, d) * c,
                         page.unsqueeze(1).expand(B, K, d) * c, x], dim=-1)
        logits = self.score_head(inp).squeeze(-1).masked_fill(~mask, float("-inf"))
        steps = torch.tensor([[f.step] for f in feats], device=self.device)
        values = self.value_head(torch.cat([goals, page, hist, steps], dim=-1)).squeeze(-1)
        return PolicyOutput(logits, values, [f.candidates for f in feats])

    def evaluate_actions(self, turns: Sequence[Turn | TurnFeatures], actions: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_prob of each taken action index [B], entropy [B], value [B])``."""
        out = self(turns)
        logp = out.log_probs().gather(1, actions.long().view(-1, 1).to(self.device)).squeeze(1)
        return logp, out.entropy(), out.values

    def bc_loss(self, turns: Sequence[Turn | TurnFeatures], targets: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Behaviour-cloning cross-entropy and accuracy of choosing ``targets`` (indices)."""
        out = self(turns)
        targets = targets.long().to(self.device)
        loss = nn.functional.cross_entropy(out.logits, targets)
        acc = (out.logits.argmax(-1) == targets).float().mean()
        return loss, acc

    # -- reinforcement learning (rlft.agents.rl.RLPolicy) ---------------------------------
    def rl_features(self, obs: dict[str, Any], info: dict[str, Any], history: Sequence[str]
                    ) -> TurnFeatures:
        """The turn's candidates and features (frozen-encoder embeddings are cached on them)."""
        return self.featurize(Turn.from_env(obs, info, history))

    @torch.no_grad()
    def rl_act(self, features: Sequence[TurnFeatures], generator: torch.Generator) -> RLStep:
        """Sample a candidate per turn; the action kept for training is its index."""
        out = self(features)
        logp = out.log_probs().cpu()
        idx = torch.multinomial(logp.exp(), 1, generator=generator)
        taken = logp.gather(1, idx)
        return RLStep([out.candidates[i][int(k)] for i, k in enumerate(idx[:, 0])],
                      idx[:, 0].tolist(), taken, torch.ones_like(taken), out.values.cpu())

    def rl_evaluate(self, features: Sequence[TurnFeatures], actions: Sequence[int]
                    ) -> ActionEval:
        """Log-probability of each taken candidate index, with the full distribution."""
        out = self(features)
        logp = out.log_probs()
        idx = torch.as_tensor(list(actions), dtype=torch.long, device=logp.device).view(-1, 1)
        taken = logp.gather(1, idx)
        return ActionEval(taken, torch.ones_like(taken), out.entropy(), out.values, logp)

    def rl_values(self, features: Sequence[TurnFeatures]) -> torch.Tensor:
        """Value estimates ``[B]``."""
        return self(features).values

    @staticmethod
    def target_index(candidates: Sequence[str], action: str) -> int:
        """Index of the candidate that stands for the demonstrated ``action``: the same string
        (case-insensitive), else for a search the proposed query sharing most words with it."""
        low = action.strip().casefold()
        for k, c in enumerate(candidates):
            if c.casefold() == low:
                return k
        if low.startswith("search["):
            want = set(content_words(action_label(action)))
            best, best_k = -1.0, -1
            for k, c in enumerate(candidates):
                if c.startswith("search["):
                    have = set(content_words(action_label(c)))
                    sim = len(want & have) / max(1, len(want | have))
                    if sim > best:
                        best, best_k = sim, k
            if best_k >= 0:
                return best_k
        raise ValueError(f"demonstrated action {action!r} is not among the candidates "
                         f"{candidates[:5]}...; were the demos recorded on another env?")

    # -- agent protocol ------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the episode's history."""
        self._history = []

    @torch.no_grad()
    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> str:
        """The chosen action (greedy, or sampled when ``self.sample``)."""
        if not isinstance(obs, dict) or "page" not in obs:
            raise TypeError("ChoicePolicy acts in web envs (observation {'goal', 'page'} and "
                            "info['valid_actions']); use the CLIP policy for tabletop envs")
        was_training = self.training
        self.eval()
        out = self([Turn.from_env(obs, info, self._history)])
        self.train(was_training)
        if self.sample:
            k = int(torch.multinomial(out.log_probs()[0].exp(), 1, generator=self.generator))
        else:
            k = int(out.logits[0].argmax())
        action = out.candidates[0][k]
        self._history.append(action)
        return action

    # -- persistence ---------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The head weights (the encoder is saved as its base name plus PEFT adapters)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``rlft_policy.json`` (type and config, including the base encoder), the heads
        as safetensors and, with LoRA, the PEFT adapter in ``adapter/``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"policy": self.policy_type, "config": asdict(self.config),
                "base_model": self.config.encoder}
        (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
        save_file({k: v.contiguous().cpu() for k, v in self.trainable_state_dict().items()},
                  str(directory / HEAD_NAME))
        if self.config.lora_r > 0:
            self.encoder.model.save_pretrained(str(directory / ADAPTER_DIR))

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> ChoicePolicy:
        """Load a policy written by :meth:`save_pretrained` (base encoder + adapters + heads)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        meta = read_policy_meta(directory, expect=cls.policy_type)
        config = ChoicePolicyConfig(**meta["config"])
        lora_r = config.lora_r
        config.lora_r = 0
        policy = cls(config, **kwargs)
        if lora_r > 0:
            from peft import PeftModel

            policy.encoder.model = PeftModel.from_pretrained(
                policy.encoder.model, str(directory / ADAPTER_DIR))
            policy.encoder.model.requires_grad_(False)
            policy.encoder.clear_cache()
        policy.config.lora_r = lora_r
        missing, unexpected = policy.load_state_dict(load_file(str(directory / HEAD_NAME)),
                                                     strict=False)
        bad = [k for k in missing if not k.startswith("encoder.")] + list(unexpected)
        if bad:
            raise ValueError(f"{directory / HEAD_NAME} does not fit this policy: {bad[:5]}")
        policy.eval()
        return policy

    def set_seed(self, seed: int) -> None:
        """Seed the sampler."""
        self.generator.manual_seed(int(seed))


def read_policy_meta(directory: str | Path, expect: str | None = None) -> dict[str, Any]:
    """The ``rlft_policy.json`` of a checkpoint, with errors that say what to do."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no rlft policy checkpoint at {directory} (missing {CONFIG_NAME}); train one with "
            f"`rlft imitate --env rlft/Shop-v0 --demos DEMOS --out {directory}` or pass "
            f"--agent expert|random")
    meta = json.loads(path.read_text())
    if expect is not None and meta.get("policy") != expect:
        raise ValueError(f"{directory} holds a {meta.get('policy')!r} policy, not {expect!r}; "
                         f"load it with rlft.agents.load_policy")
    return meta


def seed_everything(seed: int) -> None:
    """Seed torch and numpy (used by the training scripts)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
