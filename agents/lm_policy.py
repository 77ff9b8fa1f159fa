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
Logits are computed only where an action token is predicted (the LM head is applied to those
hidden states), so long prompts and large vocabularies cost no ``[T, V]`` logits.

PPO (:class:`rlft.agents.rl.RLPolicy`): a turn's scored parts are the action's tokens (EOS
included), with prompt and observation tokens masked out; constrained decoding samples a candidate
from the softmax of candidate sequence log-probs, free decoding samples tokens. For RL on a fully
fine-tuned checkpoint :meth:`LMPolicy.add_rl_adapter` adds a fresh LoRA adapter over the frozen
weights, so the PPO reference (the trainable tensors before RL) is the adapter, never a second
copy of the model.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from rlft.agents.checkpoint import (
    check_config,
    config_from_meta,
    load_weights,
    read_policy_meta,
    save_weights,
    write_policy_meta,
)
from rlft.agents.episode import Turn
from rlft.agents.policy import EpisodicPolicy
from rlft.agents.rl import ActionEval, RLStep, sample_index, stack_parts
from rlft.wrappers.chat import MAX_PAGE_CHARS, render_prompt, turn_messages
from rlft.wrappers.valid_actions import expand_valid_actions, match_candidate

VALUE_HEAD = "value_head.safetensors"


#: base-model weight types an :class:`LMPolicyConfig` takes
DTYPES = ("float32", "bfloat16")


@dataclass
class LMPolicyConfig:
    """Hyper-parameters of an :class:`LMPolicy` (saved with every checkpoint)."""

    model: str
    """HF causal LM name (e.g. ``Qwen/Qwen2.5-0.5B-Instruct``) or local directory;
    ``SmolLM2-135M-Instruct`` is the pretrained model bundled offline
    (:mod:`rlft.agents.pretrained_lm`)."""
    lora_r: int = 8
    """LoRA rank (0: train every weight)."""
    lora_alpha: int = 16
    """LoRA scaling numerator."""
    lora_target: str = "all-linear"
    """peft ``target_modules`` (``all-linear`` or comma-separated module names)."""
    window: int = 2
    """Past (page, action) turns in the prompt."""
    max_page_chars: int = MAX_PAGE_CHARS
    """Characters of the current page in the prompt."""
    max_prompt_tokens: int = 1024
    """Prompt tokens kept (the oldest are cut)."""
    max_action_tokens: int = 48
    """Longest action, in tokens."""
    constrained: bool = True
    """Decode only valid actions (score each candidate) instead of free generation."""
    dtype: str = "float32"
    """Weights of the base model: ``float32`` or, on a GPU, ``bfloat16`` (log-probs, the value
    head and LoRA updates stay in float32)."""
    score_batch_tokens: int | None = None
    """How the candidates of several turns are scored when acting (PPO rollouts, concurrent
    evaluation): 0 scores each turn alone, its prompt run once and its KV cache shared by its
    candidates (the least arithmetic: right for a CPU); N > 0 runs every (prompt, candidate)
    pair of all the turns as a whole sequence, in padded batches of at most about N tokens
    (the fewest forward passes: right for a GPU, where a pass costs about as much for one row
    as for a hundred). None: 0 on a CPU, 65,536 on a GPU."""

    def __post_init__(self) -> None:
        check_config(self, positive=("lora_alpha", "max_page_chars", "max_prompt_tokens",
                                     "max_action_tokens"),
                     non_negative=("lora_r", "window", "score_batch_tokens"))
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")


@dataclass
class TokenOutput:
    """Per-token results over (prompt + action) sequences, shifted to predict token t+1.

    ``log_probs``, ``entropy`` and ``mask`` are ``[B, T-1]``; ``mask`` is 1 on action tokens only
    (``log_probs`` and ``entropy`` are computed there only and are 0 elsewhere). ``values`` is
    ``[B]``.
    """

    log_probs: torch.Tensor
    entropy: torch.Tensor
    mask: torch.Tensor
    values: torch.Tensor

    def sequence_log_probs(self) -> torch.Tensor:
        """Log-probability of each whole action ``[B]``."""
        return (self.log_probs * self.mask).sum(-1)


@dataclass
class LMTurn:
    """One turn as model input (acting, SFT and PPO alike): the prompt's token ids (already cut
    to ``max_prompt_tokens``) and the concrete valid actions with their token ids (EOS
    included): decoding chooses among them when constrained, SFT's target is one of them."""

    prompt_ids: tuple[int, ...]
    candidates: tuple[str, ...] = ()
    candidate_ids: tuple[tuple[int, ...], ...] = field(default=(), repr=False)


@dataclass
class _Scores:
    """Action-token scores left-aligned to ``[B, L]`` (L = the longest action) and values."""

    log_probs: torch.Tensor
    entropy: torch.Tensor
    mask: torch.Tensor
    values: torch.Tensor


class LMPolicy(EpisodicPolicy, nn.Module):
    """A causal LM as a web-env policy (see the module docstring).

    Args:
        config: an :class:`LMPolicyConfig` naming the model.
        sample: sample actions instead of taking the most likely one.
        seed: seed of the sampler.
    """

    policy_type = "lm"
    config_class: ClassVar[type] = LMPolicyConfig
    observation_keys: ClassVar[frozenset[str]] = frozenset({"goal", "page"})
    env_kind: ClassVar[str] = "web"

    def __init__(self, config: LMPolicyConfig, *, sample: bool = False, seed: int | None = None,
                 _adapter: str | Path | None = None):
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from rlft.agents.pretrained_lm import resolve_lm

        self.config = config
        path = resolve_lm(config.model)  # a bundled model's converted folder, else unchanged
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, config.dtype))
        if _adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(_adapter), is_trainable=True)
        elif config.lora_r > 0:
            model = self._with_lora(model)
        self.model = model
        self.base_path = path
        """Where the base weights were loaded from."""
        self._base_in_checkpoint = False  # an RL adapter over fully fine-tuned weights
        hidden = int(getattr(model.config, "hidden_size", 0) or model.config.n_embd)
        self.value_head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.sample = sample
        self.generator = torch.Generator().manual_seed(int(seed or 0))
        self.reset()

    @classmethod
    def for_env(cls, env: Any, *, model: str | None = None, seed: int = 0,
                **options: Any) -> LMPolicy:
        """A fresh policy for a web env: ``model`` is the HF causal LM (name or path);
        ``options`` are :class:`LMPolicyConfig` fields."""
        del env
        if not model:
            raise ValueError("the lm policy needs --model NAME_OR_PATH (an HF causal LM)")
        return cls(LMPolicyConfig(model=model, **options), seed=seed)

    def imitation_weight(self, target: Sequence[int]) -> float:
        """An example's weight in :meth:`imitation_loss` (a mean over target tokens): its
        tokens, so SFT micro-batches add up to the batch's step."""
        return float(len(target))

    @property
    def update_micro_batch(self) -> int | None:
        """Turns per forward/backward pass of an SFT step or a PPO update unless
        ``--micro-batch-size`` says otherwise: 1 on a CPU, where a step over 16 SmolLM2 turns
        took 2 GB and 30-37 s in passes of 1 against 10-14 GB and 72-90 s in one pass
        (``benchmarks/results/lm_update_memory.md``); None (the whole batch) on a GPU."""
        return 1 if self.device.type == "cpu" else None

    @property
    def device(self) -> torch.device:
        """Where the model lives."""
        return next(self.model.parameters()).device

    # -- prompts -------------------------------------------------------------------------
    def prompt(self, turn: Turn, candidates: Sequence[str] | None = None) -> str:
        """The chat prompt of ``turn``: its last ``window`` (page, action) turns, the current
        page and the concrete valid actions (``candidates``, made from ``turn`` when None)."""
        cands = self.candidates(turn) if candidates is None else candidates
        return render_prompt(turn_messages(turn, cands, self.config.window,
                                           self.config.max_page_chars), self.tokenizer)

    def encode(self, turn: Turn) -> LMTurn:
        """The model input of ``turn`` (acting, SFT and PPO alike): :meth:`prompt`'s token ids
        and the candidates with theirs."""
        cands = self.candidates(turn)
        return LMTurn(tuple(self.prompt_ids(self.prompt(turn, cands))), tuple(cands),
                      tuple(tuple(self.action_ids(c)) for c in cands))

    def candidates(self, turn: Turn) -> list[str]:
        """The concrete valid actions of ``turn``."""
        return expand_valid_actions(turn.goal, turn.valid_actions, page=turn.page)

    def _ids(self, text: str, limit: int, keep_end: bool = False) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[-limit:] if keep_end else ids[:limit]

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of ``prompt`` (the oldest cut to keep ``max_prompt_tokens``)."""
        return self._ids(prompt, self.config.max_prompt_tokens, keep_end=True)

    def action_ids(self, action: str) -> list[int]:
        """Token ids of ``action`` (at most ``max_action_tokens``) followed by EOS."""
        eos = self.tokenizer.eos_token_id
        return self._ids(action, self.config.max_action_tokens) + ([eos] if eos is not None
                                                                   else [])

    def _batch(self, prompts: Sequence[str], actions: Sequence[str]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._batch_ids([self.prompt_ids(p) for p in prompts],
                               [self.action_ids(a) for a in actions])

    def _batch_ids(self, prompt_ids: Sequence[Sequence[int]], action_ids: Sequence[Sequence[int]]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded ``(ids, attention, action mask, last prompt position)``."""
        rows = [list(p) + list(a) for p, a in zip(prompt_ids, action_ids, strict=True)]
        T = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), T), pad, dtype=torch.long)
        attn = torch.zeros(len(rows), T, dtype=torch.long)
        amask = torch.zeros(len(rows), T)
        for i, (r, p) in enumerate(zip(rows, prompt_ids, strict=True)):
            ids[i, : len(r)] = torch.tensor(r)
            attn[i, : len(r)] = 1
            amask[i, len(p) : len(r)] = 1.0
        dev = self.device
        last_prompt = torch.tensor([len(p) - 1 for p in prompt_ids], device=dev)
        return ids.to(dev), attn.to(dev), amask.to(dev), last_prompt

    def action_mask(self, prompts: Sequence[str], actions: Sequence[str]) -> torch.Tensor:
        """``[B, T]`` mask over (prompt + action + eos) tokens: 1 on action tokens only."""
        return self._batch(prompts, actions)[2]

    # -- scoring -------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, attn: torch.Tensor, amask: torch.Tensor,
                 last_prompt: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One forward pass: ``(target, log_probs [N], entropy [N], values [B])`` where
        ``target`` ``[B, T-1]`` marks the N positions whose next token is an action token. The
        LM head runs on those hidden states only."""
        out = self.model(input_ids=ids, attention_mask=attn, output_hidden_states=True,
                         logits_to_keep=1)
        hidden = out.hidden_states[-1]
        target = amask[:, 1:] > 0
        logits = self.model.get_output_embeddings()(hidden[:, :-1][target]).float()
        logp_all = torch.log_softmax(logits, dim=-1)
        logp = logp_all.gather(-1, ids[:, 1:][target].unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        values = self.value_head(hidden[torch.arange(len(ids)), last_prompt].float()).squeeze(-1)
        return target, logp, entropy, values

    def token_log_probs(self, prompts: Sequence[str], actions: Sequence[str]) -> TokenOutput:
        """Per-token log-probs, entropies and the action mask, plus values (see TokenOutput)."""
        ids, attn, amask, last_prompt = self._batch(prompts, actions)
        target, logp, entropy, values = self._forward(ids, attn, amask, last_prompt)
        full_logp = torch.zeros(target.shape, device=logp.device, dtype=logp.dtype)
        full_ent = torch.zeros_like(full_logp)
        full_logp[target], full_ent[target] = logp, entropy
        return TokenOutput(full_logp, full_ent, target.float(), values)

    def _action_scores(self, prompt_ids: Sequence[Sequence[int]],
                       action_ids: Sequence[Sequence[int]]) -> _Scores:
        """Scores of each action's tokens, left-aligned ``[B, L]`` (L = longest action)."""
        ids, attn, amask, last_prompt = self._batch_ids(prompt_ids, action_ids)
        target, logp, entropy, values = self._forward(ids, attn, amask, last_prompt)
        lengths = target.sum(-1)
        L = max(1, int(lengths.max()))
        mask = (torch.arange(L, device=ids.device) < lengths.unsqueeze(1))
        # Action tokens are contiguous in each row, so row-major order is each turn's parts.
        out_logp = torch.zeros(mask.shape, device=logp.device, dtype=logp.dtype)
        out_ent = torch.zeros_like(out_logp)
        out_logp[mask], out_ent[mask] = logp, entropy
        return _Scores(out_logp, out_ent, mask.float(), values)

    def _candidate_scores(self, prompt_ids: Sequence[int],
                          candidate_ids: Sequence[Sequence[int]]) -> _Scores:
        """:meth:`_action_scores` of K candidates after one prompt, the prompt run once: its
        KV cache is repeated for the candidates, whose tokens alone are then run (the same
        numbers up to float rounding, ~T_prompt/T_action times less work)."""
        K = len(candidate_ids)
        dev = self.device
        prompt = torch.tensor([list(prompt_ids)], device=dev)
        out = self.model(input_ids=prompt, use_cache=True, output_hidden_states=True,
                         logits_to_keep=1)
        cache = out.past_key_values
        if K == 0 or not hasattr(cache, "batch_repeat_interleave"):
            return self._action_scores([prompt_ids] * K, candidate_ids)
        last = out.hidden_states[-1][0, -1]
        value = self.value_head(last.float()).squeeze(-1)
        lengths = torch.tensor([len(c) for c in candidate_ids], device=dev)
        L = int(lengths.max())
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((K, L), pad, dtype=torch.long, device=dev)
        for i, c in enumerate(candidate_ids):
            ids[i, : len(c)] = torch.tensor(list(c), device=dev)
        mask = torch.arange(L, device=dev) < lengths.unsqueeze(1)
        hidden = last.expand(K, 1, -1)
        if L > 1:  # candidate tokens 0..L-2 predict tokens 1..L-1
            cache.batch_repeat_interleave(K)
            attn = torch.cat([torch.ones(K, len(prompt_ids), dtype=torch.long, device=dev),
                              mask[:, :-1].long()], dim=1)
            rest = self.model(input_ids=ids[:, :-1], attention_mask=attn, past_key_values=cache,
                              use_cache=True, output_hidden_states=True, logits_to_keep=1)
            hidden = torch.cat([hidden, rest.hidden_states[-1]], dim=1)
        logits = self.model.get_output_embeddings()(hidden[mask]).float()
        logp_all = torch.log_softmax(logits, dim=-1)
        logp = logp_all.gather(-1, ids[mask].unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        out_logp = torch.zeros(K, L, device=dev, dtype=logp.dtype)
        out_ent = torch.zeros_like(out_logp)
        out_logp[mask], out_ent[mask] = logp, entropy
        return _Scores(out_logp, out_ent, mask.float(), value.expand(K))

    def _turn_scores(self, features: Sequence[LMTurn]) -> list[_Scores]:
        """:meth:`_candidate_scores` of each turn. With ``score_batch_tokens`` (see
        :class:`LMPolicyConfig`) every turn's (prompt, candidate) pairs go through
        :meth:`_action_scores` together, in padded batches of at most that many tokens (a
        batch holds at least one pair), and are regrouped by turn: the same numbers up to
        float rounding, in a few forward passes instead of two per turn."""
        budget = self.config.score_batch_tokens
        if budget is None:
            budget = 65_536 if self.device.type == "cuda" else 0
        if budget <= 0:
            return [self._candidate_scores(f.prompt_ids, f.candidate_ids) for f in features]
        pairs = [(f, c) for f in features for c in f.candidate_ids]
        rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        start = 0
        while start < len(pairs):
            end, longest = start, 0
            while end < len(pairs):
                n = max(longest, len(pairs[end][0].prompt_ids) + len(pairs[end][1]))
                if end > start and (end - start + 1) * n > budget:
                    break
                end, longest = end + 1, n
            chunk = pairs[start:end]
            s = self._action_scores([f.prompt_ids for f, _ in chunk], [c for _, c in chunk])
            rows += [(s.log_probs[r, : len(c)], s.entropy[r, : len(c)], s.values[r])
                     for r, (_, c) in enumerate(chunk)]
            start = end
        out, dev, at = [], self.device, 0
        for f in features:  # a few ops per turn, not one per candidate (each is a launch)
            part = rows[at : at + len(f.candidate_ids)]
            at += len(part)
            if not part:
                empty = torch.zeros(0, 1, device=dev)
                out.append(_Scores(empty, empty, empty, torch.zeros(0, device=dev)))
                continue
            logp = pad_sequence([lp for lp, _, _ in part], batch_first=True)
            ent = pad_sequence([en for _, en, _ in part], batch_first=True)
            lengths = torch.tensor([len(c) for c in f.candidate_ids], device=dev)
            mask = (torch.arange(logp.shape[1], device=dev) < lengths[:, None]).float()
            out.append(_Scores(logp, ent, mask, torch.stack([v for *_, v in part])))
        return out

    def sft_loss(self, prompts: Sequence[str], actions: Sequence[str]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean negative log-likelihood of the action tokens (prompt tokens carry no loss) and
        the accuracy of greedy next-token prediction on them."""
        return self._sft_loss(*self._batch(prompts, actions)[:3])

    def _sft_loss(self, ids: torch.Tensor, attn: torch.Tensor, amask: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=ids, attention_mask=attn, output_hidden_states=True,
                         logits_to_keep=1)
        target = amask[:, 1:] > 0
        logits = self.model.get_output_embeddings()(out.hidden_states[-1][:, :-1][target])
        labels = ids[:, 1:][target]
        loss = nn.functional.cross_entropy(logits.float(), labels)
        acc = (logits.argmax(-1) == labels).float().mean()
        return loss, acc

    def score_candidates(self, prompt: str, candidates: Sequence[str]) -> torch.Tensor:
        """Log-probability of each candidate action after ``prompt`` ``[K]``."""
        p = self.prompt_ids(prompt)
        s = self._candidate_scores(p, [self.action_ids(c) for c in candidates])
        return (s.log_probs * s.mask).sum(-1)

    @torch.no_grad()
    def generate_action(self, prompt: str) -> str:
        """Free decoding (greedy or sampled) of one action, cut at EOS or a newline."""
        return self._decode(self._generate(self.prompt_ids(prompt),
                                           self.generator if self.sample else None)[0])

    def _generate(self, prompt_ids: Sequence[int], generator: torch.Generator | None,
                  temperature: float = 1.0) -> tuple[list[int], list[float]]:
        """Token ids of one action (greedy when ``generator`` is None or ``temperature`` 0,
        else sampled at ``temperature``), ending with EOS unless cut by a newline or
        ``max_action_tokens``, and their log-probs under the LM."""
        tok = self.tokenizer
        ids = torch.tensor([list(prompt_ids)], device=self.device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        new: list[int] = []
        logps: list[float] = []
        for _ in range(self.config.max_action_tokens):
            logp = torch.log_softmax(out.logits[0, -1].float(), -1)
            nxt = int(sample_index(logp[None], generator, temperature)[0, 0])
            new.append(nxt)
            logps.append(float(logp[nxt]))
            if nxt == tok.eos_token_id or "\n" in tok.decode(new):
                break
            out = self.model(input_ids=torch.tensor([[nxt]], device=self.device),
                             past_key_values=out.past_key_values, use_cache=True)
        return new, logps

    def _decode(self, action_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(action_ids), skip_special_tokens=True
                                     ).split("\n")[0].strip()

    # -- imitation (rlft.agents.policy.TrainablePolicy) ----------------------------------
    def imitation_target(self, features: LMTurn, action: str) -> tuple[int, ...]:
        """Token ids (EOS included) of the candidate standing for the demonstrated ``action``
        (for a search: the proposed query closest to it)."""
        return features.candidate_ids[match_candidate(features.candidates, action)]

    def imitation_loss(self, features: Sequence[LMTurn], targets: Sequence[Sequence[int]]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """SFT: the negative log-likelihood of the target action's tokens after the prompt
        (prompt tokens carry no loss) and the greedy next-token accuracy on them."""
        return self._sft_loss(*self._batch_ids([f.prompt_ids for f in features], targets)[:3])

    def prepare_imitation(self, features: Sequence[LMTurn],
                          progress: Callable[[int, int], None] | None = None) -> None:
        """Nothing to precompute: the LM runs in every step."""

    # -- acting and reinforcement learning (rlft.agents.rl.RLPolicy) -----------------------
    def choose(self, features: LMTurn) -> str:
        """Constrained: the candidate with the highest sequence log-probability (or a sample
        from their softmax when ``self.sample``); else greedy (or sampled) generation."""
        return self.choose_many([features])[0]

    def choose_many(self, features: Sequence[LMTurn]) -> list[str]:
        """:meth:`choose` for several turns (of concurrent episodes) at once: constrained,
        their candidates are scored together (:meth:`_turn_scores`)."""
        generator = self.generator if self.sample else None
        if not self.config.constrained:
            return [self._decode(self._generate(f.prompt_ids, generator)[0]) for f in features]
        chosen = []
        for f, s in zip(features, self._turn_scores(features), strict=True):
            scores = (s.log_probs * s.mask).sum(-1)
            chosen.append(f.candidates[int(sample_index(scores[None], generator)[0, 0])])
        return chosen

    @property
    def ranks_actions(self) -> bool:
        """Whether :meth:`ranked_actions` can rank: constrained, it scores the env's
        candidates; generating freely, it has no list."""
        return bool(self.config.constrained)

    @torch.no_grad()
    def ranked_actions(self, features: LMTurn, n: int) -> list[str]:
        """The ``n`` likeliest candidates of an encoded turn by sequence log-probability, most
        likely first (self-training's deviation search, :mod:`rlft.training.deviation`). Needs
        the constrained mode: generation has no list to rank."""
        if not self.config.constrained:
            raise ValueError("ranking actions needs a constrained LM policy (it scores the "
                             "env's candidates); this one generates its actions freely")
        s = self._turn_scores([features])[0]
        scores = (s.log_probs * s.mask).sum(-1).cpu()
        order = torch.argsort(scores, descending=True, stable=True)[:n]
        return [features.candidates[int(i)] for i in order]

    @torch.no_grad()
    def rl_act(self, features: Sequence[LMTurn], generator: torch.Generator,
               temperature: float = 1.0) -> RLStep:
        """Sample one action per turn (at ``temperature``): constrained, a candidate from the
        softmax of candidate sequence log-probs; else tokens by generation. The action kept for
        training is its token ids (EOS included); its parts are those tokens' log-probs under
        the LM. (A constrained rollout samples from the candidate softmax, whose normaliser the
        per-token ratio leaves out: the per-token objective the issue asks for, not exact
        per-candidate PPO.)"""
        env_actions, actions, rows, values = [], [], [], []
        scored = self._turn_scores(features) if self.config.constrained else [None] * len(features)
        for f, s in zip(features, scored, strict=True):
            if s is not None:
                seq = (s.log_probs * s.mask).sum(-1)
                k = int(sample_index(seq[None], generator, temperature)[0, 0])
                env_actions.append(f.candidates[k])
                actions.append(f.candidate_ids[k])
                rows.append(s.log_probs[k][s.mask[k] > 0].cpu())
                values.append(float(s.values[k]))
            else:
                ids, logps = self._generate(f.prompt_ids, generator, temperature)
                env_actions.append(self._decode(ids))
                actions.append(tuple(ids))
                rows.append(torch.tensor(logps))
                values.append(float(self.rl_values([f])[0]))
        log_probs, mask = stack_parts(rows)
        return RLStep(env_actions, actions, log_probs, mask, torch.tensor(values))

    def rl_evaluate(self, features: Sequence[LMTurn], actions: Sequence[Sequence[int]]
                    ) -> ActionEval:
        """Per-token log-probs of the taken actions' tokens ``[B, L]`` (prompt tokens masked
        out), mean token entropy over them and values, with gradients."""
        s = self._action_scores([f.prompt_ids for f in features], actions)
        entropy = (s.entropy * s.mask).sum(-1) / s.mask.sum(-1).clamp(min=1.0)
        return ActionEval(s.log_probs, s.mask, entropy, s.values)

    def rl_values(self, features: Sequence[LMTurn]) -> torch.Tensor:
        """Value estimates ``[B]`` from the last prompt token's hidden state."""
        ids, attn, _, last_prompt = self._batch_ids([f.prompt_ids for f in features],
                                                    [[] for _ in features])
        out = self.model(input_ids=ids, attention_mask=attn, output_hidden_states=True,
                         logits_to_keep=1)
        hidden = out.hidden_states[-1][torch.arange(len(ids)), last_prompt]
        return self.value_head(hidden.float()).squeeze(-1)

    def add_rl_adapter(self, lora_r: int) -> None:
        """Give a fully fine-tuned policy (``lora_r == 0``) a fresh LoRA adapter of rank
        ``lora_r`` over its now frozen weights (no-op when it has an adapter already), so RL
        trains and keeps as reference only the adapter and the value head."""
        if self.config.lora_r > 0:
            return
        if lora_r <= 0:
            raise ValueError("this LM policy was fully fine-tuned (no LoRA adapter); PPO trains "
                             "a LoRA adapter on it: pass --lora-r 8 (or any rank > 0)")
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.config.lora_r = lora_r
        self.model = self._with_lora(self.model)
        self._base_in_checkpoint = True

    def _with_lora(self, model: Any) -> Any:
        from peft import LoraConfig, get_peft_model

        target: Any = self.config.lora_target
        if target != "all-linear":
            target = [t.strip() for t in target.split(",") if t.strip()]
        return get_peft_model(model, LoraConfig(
            r=self.config.lora_r, lora_alpha=self.config.lora_alpha, target_modules=target,
            lora_dropout=0.0, task_type="CAUSAL_LM"))

    # -- persistence ---------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``rlft_policy.json``, the LoRA adapter (``adapter/``) or the full model
        (``model/``), the tokenizer and the value head. An adapter added by
        :meth:`add_rl_adapter` is saved with its frozen fine-tuned base (``model/``, copied)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"policy": self.policy_type, "config": asdict(self.config),
                "base_model": self.config.model, "adapter": self.config.lora_r > 0}
        if self._base_in_checkpoint:
            meta["base"] = "model"
            if Path(self.base_path).resolve() != (directory / "model").resolve():
                shutil.copytree(self.base_path, directory / "model", dirs_exist_ok=True)
        sub = "adapter" if self.config.lora_r > 0 else "model"
        self.model.save_pretrained(str(directory / sub))
        self.tokenizer.save_pretrained(str(directory / sub))
        save_weights(self.value_head.state_dict(), directory / VALUE_HEAD)
        write_policy_meta(directory, meta)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> LMPolicy:
        """Load a policy written by :meth:`save_pretrained` (base model + adapter, or the
        full fine-tuned model)."""
        directory = Path(directory)
        meta = read_policy_meta(directory, expect=cls.policy_type)
        config = config_from_meta(LMPolicyConfig, meta, directory)
        if meta.get("adapter") and meta.get("base") == "model":  # RL adapter on a full FT
            local = LMPolicyConfig(**{**meta["config"], "model": str(directory / "model")})
            policy = cls(local, _adapter=directory / "adapter", **kwargs)
            policy.config = config
            policy._base_in_checkpoint = True
        elif meta.get("adapter"):
            policy = cls(config, _adapter=directory / "adapter", **kwargs)
        else:
            local = LMPolicyConfig(**{**meta["config"], "model": str(directory / "model")})
            policy = cls(local, **kwargs)
            policy.config = config
        policy.value_head.load_state_dict(load_weights(directory / VALUE_HEAD))
        policy.eval()
        return policy
