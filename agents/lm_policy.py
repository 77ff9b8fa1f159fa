"""``LMPolicy``: any HF causal LM acting in a web env, one action per turn.

The prompt is the multi-turn chat of :mod:`rlft.wrappers.chat` (the model's chat template, or a
plain template for models without one). The action is the assistant's reply. Decoding:

* ``constrained=True`` (default): the candidates (valid actions, the search placeholder made
  concrete with queries proposed from the goal) are scored by the sum of their token
  log-probabilities and the best (or a sample) is taken — exact decoding restricted to the
  valid set;
* ``constrained=False``: greedy (or sampled) generation up to ``max_action_tokens``.

For training, :meth:`LMPolicy.token_log_probs` returns per-token log-probabilities, entropies and
a mask that is 1 on action tokens only (prompt and observation tokens are masked out), plus a
value estimate read from the last prompt token's hidden state. :meth:`LMPolicy.sft_loss` is the
SFT loss on action tokens only. LoRA adapters (peft) when ``lora_r > 0``, else full fine-tuning.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlft.agents.choice_policy import CONFIG_NAME, Turn, read_policy_meta
from rlft.wrappers.chat import build_messages, render_prompt
from rlft.wrappers.valid_actions import expand_valid_actions

VALUE_HEAD = "value_head.safetensors"


@dataclass
class LMPolicyConfig:
    """Hyper-parameters of an :class:`LMPolicy` (saved with every checkpoint)."""

    model: str
    """HF causal LM name (e.g. ``Qwen/Qwen2.5-0.5B-Instruct``) or local directory."""
    lora_r: int = 8
    """LoRA rank (0: train every weight)."""
    lora_alpha: int = 16
    """LoRA scaling numerator."""
    lora_target: str = "all-linear"
    """peft ``target_modules`` (``all-linear`` or comma-separated module names)."""
    window: int = 2
    """Past (page, action) turns in the prompt."""
    max_page_chars: int = 1000
    """Characters of the current page in the prompt."""
    max_prompt_tokens: int = 1024
    """Prompt tokens kept (the oldest are cut)."""
    max_action_tokens: int = 48
    """Longest action, in tokens."""
    constrained: bool = True
    """Decode only valid actions (score each candidate) instead of free generation."""


@dataclass
class TokenOutput:
    """Per-token results over (prompt + action) sequences, shifted to predict token t+1.

    ``log_probs``, ``entropy`` and ``mask`` are ``[B, T-1]``; ``mask`` is 1 on action tokens only.
    ``values`` is ``[B]``.
    """

    log_probs: torch.Tensor
    entropy: torch.Tensor
    mask: torch.Tensor
    values: torch.Tensor

    def sequence_log_probs(self) -> torch.Tensor:
        """Log-probability of each whole action ``[B]``."""
        return (self.log_probs * self.mask).sum(-1)


class LMPolicy(nn.Module):
    """A causal LM as a web-env policy (see the module docstring).

    Args:
        config: an :class:`LMPolicyConfig` naming the model.
        sample: sample actions instead of taking the most likely one.
        seed: seed of the sampler.
    """

    policy_type = "lm"

    def __init__(self, config: LMPolicyConfig, *, sample: bool = False, seed: int | None = None,
                 _adapter: str | Path | None = None):
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.tokenizer = AutoTokenizer.from_pretrained(config.model)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(config.model)
        if _adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(_adapter), is_trainable=True)
        elif config.lora_r > 0:
            from peft import LoraConfig, get_peft_model

            target: Any = config.lora_target
            if target != "all-linear":
                target = [t.strip() for t in target.split(",") if t.strip()]
            model = get_peft_model(model, LoraConfig(
                r=config.lora_r, lora_alpha=config.lora_alpha, target_modules=target,
                lora_dropout=0.0, task_type="CAUSAL_LM"))
        self.model = model
        hidden = int(getattr(model.config, "hidden_size", 0) or model.config.n_embd)
        self.value_head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.sample = sample
        self.generator = torch.Generator().manual_seed(int(seed or 0))
        self._turns: list[tuple[str, str]] = []

    @property
    def device(self) -> torch.device:
        """Where the model lives."""
        return next(self.model.parameters()).device

    # -- prompts -------------------------------------------------------------------------
    def prompt(self, turn: Turn, history_pages: Sequence[str] = ()) -> str:
        """The chat prompt of ``turn`` (past pages from ``history_pages`` when given)."""
        pages = list(history_pages) + [""] * (len(turn.history) - len(history_pages))
        history = list(zip(pages, turn.history, strict=True))
        valid = expand_valid_actions(turn.goal, turn.valid_actions, page=turn.page)
        return render_prompt(build_messages(turn.goal, turn.page, valid, history,
                                            self.config.window, self.config.max_page_chars),
                             self.tokenizer)

    def candidates(self, turn: Turn) -> list[str]:
        """The concrete valid actions of ``turn``."""
        return expand_valid_actions(turn.goal, turn.valid_actions, page=turn.page)

    def _batch(self, prompts: Sequence[str], actions: Sequence[str]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        tok, eos = self.tokenizer, self.tokenizer.eos_token_id
        rows, masks, last_prompt = [], [], []
        for p, a in zip(prompts, actions, strict=True):
            p_ids = tok(p, add_special_tokens=False)["input_ids"][-self.config.max_prompt_tokens:]
            a_ids = tok(a, add_special_tokens=False)["input_ids"][: self.config.max_action_tokens]
            a_ids = a_ids + ([eos] if eos is not None else [])
            rows.append(p_ids + a_ids)
            masks.append([0] * len(p_ids) + [1] * len(a_ids))
            last_prompt.append(len(p_ids) - 1)
        T = max(len(r) for r in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.full((len(rows), T), pad, dtype=torch.long)
        attn = torch.zeros(len(rows), T, dtype=torch.long)
        amask = torch.zeros(len(rows), T)
        for i, (r, m) in enumerate(zip(rows, masks, strict=True)):
            ids[i, : len(r)] = torch.tensor(r)
            attn[i, : len(r)] = 1
            amask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
        dev = self.device
        return ids.to(dev), attn.to(dev), amask.to(dev), torch.tensor(last_prompt, device=dev)

    def action_mask(self, prompts: Sequence[str], actions: Sequence[str]) -> torch.Tensor:
        """``[B, T]`` mask over (prompt + action + eos) tokens: 1 on action tokens only."""
        return self._batch(prompts, actions)[2]

    # -- scoring -------------------------------------------------------------------------
    def token_log_probs(self, prompts: Sequence[str], actions: Sequence[str]) -> TokenOutput:
        """Per-token log-probs, entropies and the action mask, plus values (see TokenOutput)."""
        ids, attn, amask, last_prompt = self._batch(prompts, actions)
        out = self.model(input_ids=ids, attention_mask=attn, output_hidden_states=True)
        logits = out.logits[:, :-1].float()
        logp_all = torch.log_softmax(logits, dim=-1)
        logp = logp_all.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        hidden = out.hidden_states[-1]
        values = self.value_head(hidden[torch.arange(len(ids)), last_prompt].float()).squeeze(-1)
        return TokenOutput(logp, entropy, amask[:, 1:], values)

    def sft_loss(self, prompts: Sequence[str], actions: Sequence[str]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean negative log-likelihood of the action tokens (prompt tokens carry no loss) and
        the accuracy of greedy next-token prediction on them."""
        ids, attn, amask, _ = self._batch(prompts, actions)
        logits = self.model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
        labels = ids[:, 1:].masked_fill(amask[:, 1:] == 0, -100)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           labels.reshape(-1), ignore_index=-100)
        keep = labels != -100
        acc = (logits.argmax(-1)[keep] == labels[keep]).float().mean()
        return loss, acc

    def score_candidates(self, prompt: str, candidates: Sequence[str]) -> torch.Tensor:
        """Log-probability of each candidate action after ``prompt`` ``[K]``."""
        return self.token_log_probs([prompt] * len(candidates), list(candidates)
                                    ).sequence_log_probs()

    @torch.no_grad()
    def generate_action(self, prompt: str) -> str:
        """Free decoding (greedy or sampled) of one action, cut at EOS or a newline."""
        tok = self.tokenizer
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        ids = ids[:, -self.config.max_prompt_tokens:].to(self.device)
        new: list[int] = []
        for _ in range(self.config.max_action_tokens):
            logits = self.model(input_ids=ids).logits[0, -1].float()
            if self.sample:
                nxt = int(torch.multinomial(torch.softmax(logits, -1).cpu(), 1,
                                            generator=self.generator))
            else:
                nxt = int(logits.argmax())
            if nxt == tok.eos_token_id:
                break
            new.append(nxt)
            if "\n" in tok.decode(new):
                break
            ids = torch.cat([ids, torch.tensor([[nxt]], device=self.device)], dim=1)
        return tok.decode(new, skip_special_tokens=True).split("\n")[0].strip()

    # -- agent protocol ------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the episode's history."""
        self._turns = []

    @torch.no_grad()
    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> str:
        """One action: the best (or a sampled) valid action, or free generation."""
        if not isinstance(obs, dict) or "page" not in obs:
            raise TypeError("LMPolicy acts in web envs (observation {'goal', 'page'}); "
                            "use the CLIP policy for tabletop envs")
        was_training = self.training
        self.eval()
        history = [a for _, a in self._turns]
        turn = Turn.from_env(obs, info, history)
        prompt = self.prompt(turn, [p for p, _ in self._turns])
        if self.config.constrained:
            cands = self.candidates(turn)
            scores = self.score_candidates(prompt, cands)
            if self.sample:
                k = int(torch.multinomial(torch.softmax(scores, -1).cpu(), 1,
                                          generator=self.generator))
            else:
                k = int(scores.argmax())
            action = cands[k]
        else:
            action = self.generate_action(prompt)
        self.train(was_training)
        self._turns.append((turn.page, action))
        return action

    # -- persistence ---------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``rlft_policy.json``, the LoRA adapter (``adapter/``) or the full model
        (``model/``), the tokenizer and the value head."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"policy": self.policy_type, "config": asdict(self.config),
                "base_model": self.config.model, "adapter": self.config.lora_r > 0}
        (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
        sub = "adapter" if self.config.lora_r > 0 else "model"
        self.model.save_pretrained(str(directory / sub))
        self.tokenizer.save_pretrained(str(directory / "model" if sub == "model"
                                           else directory / "adapter"))
        save_file({k: v.contiguous().cpu() for k, v in self.value_head.state_dict().items()},
                  str(directory / VALUE_HEAD))

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> LMPolicy:
        """Load a policy written by :meth:`save_pretrained` (base model + adapter, or the
        full fine-tuned model)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        meta = read_policy_meta(directory, expect=cls.policy_type)
        config = LMPolicyConfig(**meta["config"])
        if meta.get("adapter"):
            policy = cls(config, _adapter=directory / "adapter", **kwargs)
        else:
            local = LMPolicyConfig(**{**meta["config"], "model": str(directory / "model")})
            policy = cls(local, **kwargs)
            policy.config = config
        policy.value_head.load_state_dict(load_file(str(directory / VALUE_HEAD)))
        policy.eval()
        return policy
