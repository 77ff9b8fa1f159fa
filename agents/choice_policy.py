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

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from rlft.agents.checkpoint import (
    HEAD_NAME,
    check_config,
    config_from_meta,
    load_heads,
    read_policy_meta,
    save_weights,
    write_policy_meta,
)
from rlft.agents.episode import Turn
from rlft.agents.policy import EpisodicPolicy
from rlft.agents.rl import ActionEval, RLStep, sample_index
from rlft.agents.text_encoder import DEFAULT_ENCODER, PRECISIONS, TextEncoder, resolve_precision
from rlft.wrappers.valid_actions import (
    action_label,
    candidate_context,
    content_words,
    expand_valid_actions,
    match_candidate,
    names_and_numbers,
    page_buttons,
    page_fields,
    page_quote_sources,
    price_fits,
    strip_names,
    unresolved_relation,
)

ADAPTER_DIR = "adapter"
NUM_FEATURES = 10
#: extra lexical features with ``evidence_features`` (envs where the agent collects quotes)
NUM_EVIDENCE_FEATURES = 8
#: similarity columns the head also reads with ``evidence_features`` (computed from embeddings)
NUM_EVIDENCE_SIMILARITIES = 3
#: extra lexical features with ``chain_features`` (how a candidate relates to the quotes)
NUM_CHAIN_FEATURES = 7
#: similarity columns the head also reads with ``chain_features``
NUM_CHAIN_SIMILARITIES = 1
#: similarity columns the head also reads with ``abstain_features`` (non-zero for ``abstain``)
NUM_ABSTAIN_SIMILARITIES = 3
#: similarity columns the head also reads with ``semantic_features``
NUM_SEMANTIC_SIMILARITIES = 3
#: the kinds of an answer with ``answer_type_features``: a year (3-4 digits alone), another
#: number, a name (capitalised) or words
ANSWER_KINDS = ("year", "number", "name", "words")
_YEAR = re.compile(r"^[0-9]{3,4}$")
_NUMBER = re.compile(r"^[0-9.]+$")
#: goal words that say how to ask, not what to buy (left out of the semantic match)
_REQUEST_WORDS = frozenset(
    "need find looking want buy could get price lower than less under below costs budget "
    "dollars size color flavor pack count capacity model scent".split())


@dataclass
class ChoicePolicyConfig:
    """Hyper-parameters of a :class:`ChoicePolicy` (saved with every checkpoint)."""

    encoder: str = DEFAULT_ENCODER
    """HF encoder name or local path; ``all-MiniLM-L6-v2`` is the bundled MiniLM."""
    max_length: int = 64
    """Tokens per embedded text (goal, candidate with context, history action)."""
    encoder_precision: str = "auto"
    """What the encoder's matrix products run in: ``float32`` or ``bfloat16`` (autocast;
    embeddings within cosine 0.9999 of float32's, 1.5-2 times as fast on a CPU with native
    bfloat16 such as AVX512-BF16, slower on one without). ``auto``, the default, becomes
    bfloat16 where the machine computes it natively and float32 elsewhere when the config is
    made, so a checkpoint records, and acts in, the precision it was trained in (one written
    before this field: float32)."""
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
    evidence_features: bool = False
    """More features for envs where the agent collects evidence (the research env): the
    candidate's argument occurs in a collected quote; quotes exist and how many; how nested
    the question is (its "of"s); whether the candidate quotes, answers, abstains or scrolls;
    and embedding similarities: goal vs candidate, and for quotes the *relation* similarity
    (goal and sentence with their names and numbers removed, so "What is the population of
    X?" meets "The last census counted N inhabitants in X.") with its margin to the turn's
    best."""

    chain_features: bool = True
    """With ``evidence_features``: how a candidate relates to the evidence already collected,
    which is what tells the next link of a multi-hop chain from a fact already used. For a
    quote: whether its names all occur in one earlier quote (it restates a collected fact, as
    the reverse sentence "Y is the birthplace of X" on Y's page restates "X was born in Y"),
    whether it names something neither the goal nor the quotes name (it leads on), and the
    highest relation similarity to a collected quote (the relation already followed). For an
    answer: whether the newest quote holds it, in how many quotes it occurs (a chain's middle
    entity occurs in two), whether it is a quoted page's own title (the subject, not the
    fact), and whether it is a number or a name. And a learned relation matcher: the head
    reads the relation text's embedding and its product with the goal's (not only their
    cosine), which picks the expert's quote among the sentences in view 0.93 of the time on
    val questions against 0.76 for the cosine. Checkpoints written before this field read
    False."""

    abstain_features: bool = True
    """With ``evidence_features``: what the ``abstain`` candidate reads of the page, which is
    how a policy can tell "the article that should state the fact does not" from "not found
    yet". An article lists its facts as labelled fields (an infobox: "Population: 732,600");
    the question's *unresolved* relation is its text without names and numbers, less the
    words the collected quotes already use (:func:`~rlft.wrappers.valid_actions.unresolved_relation`:
    "How many people live in the birthplace of the mayor of X?" with the mayor and the
    birthplace quoted leaves "how many people live"). For ``abstain``: whether fields are
    in view, the best cosine of a field label to the unresolved relation and to the whole
    relation, and a learned match: the unresolved relation's embedding times the best field's
    (zeros for other candidates and where no field is in view). Checkpoints written before
    this field read False."""

    answer_type_features: bool = True
    """With ``evidence_features``: what kind of answer the question asks for against what kind
    an ``answer`` candidate is. Its label is a year, another number, a name or words
    (:data:`ANSWER_KINDS`), and the head reads the goal's relation embedding in the columns of
    that kind (zeros for other candidates), so it can learn that "When was X born?" is not
    answered by a town nor "In which region ..." by a population: the answers that a quote of
    the wrong relation offers, 26 of the 42 wrong answers of the research main job's policy
    before this field (9 of 24 with it; docs/research.md section 20). Checkpoints written
    before this field read False."""

    semantic_features: bool = False
    """Similarity columns that match the goal to a candidate beyond shared words (for stores
    whose goals say things in other words than the products: ``rlft/Shop-v1``). Only the
    words each side has that the other lacks are compared: the candidate's (a result's title,
    an option's label, without numbers) against the goal's (without the request and price
    words), as whole phrases (cosine of their embeddings) and word by word (the best pair, and
    the mean over the candidate's words of their best match), so *Onyx* meets *black* and a
    title's *Waterproof* meets *that keep the rain out*."""

    def __post_init__(self) -> None:
        check_config(self, positive=("max_length", "hidden", "max_steps", "lora_layers"),
                     non_negative=("history", "lora_r"), unit=("dropout",))
        if self.encoder_precision not in PRECISIONS:
            raise ValueError(f"encoder_precision must be one of {', '.join(PRECISIONS)}; got "
                             f"{self.encoder_precision!r}")
        self.encoder_precision = resolve_precision(self.encoder_precision)

    @property
    def num_features(self) -> int:
        """Lexical features per candidate."""
        return (NUM_FEATURES + (NUM_EVIDENCE_FEATURES if self.evidence_features else 0)
                + (NUM_CHAIN_FEATURES if self.chains else 0))

    @property
    def chains(self) -> bool:
        """Whether the chain features are on (they need ``evidence_features``)."""
        return self.evidence_features and self.chain_features

    @property
    def abstains(self) -> bool:
        """Whether the abstain features are on (they need ``evidence_features``)."""
        return self.evidence_features and self.abstain_features

    @property
    def answer_types(self) -> bool:
        """Whether the answer-type features are on (they need ``evidence_features``)."""
        return self.evidence_features and self.answer_type_features

    @property
    def num_similarities(self) -> int:
        """Embedding-similarity columns per candidate."""
        return (NUM_EVIDENCE_SIMILARITIES * int(self.evidence_features)
                + NUM_CHAIN_SIMILARITIES * int(self.chains)
                + NUM_ABSTAIN_SIMILARITIES * int(self.abstains)
                + NUM_SEMANTIC_SIMILARITIES * int(self.semantic_features))


@dataclass
class TurnFeatures:
    """A turn prepared for scoring: concrete candidates, the texts to embed, lexical features."""

    candidates: list[str]
    candidate_texts: list[str]
    goal: str
    history_texts: list[str]
    features: torch.Tensor  # [K, config.num_features]
    step: float
    extra: dict[str, Any] = field(default_factory=dict)
    relation_goal: str = ""
    """With ``evidence_features``: the goal without its names and numbers."""
    relation_texts: list[str] = field(default_factory=list)
    """With ``evidence_features``: per candidate, a quote's sentence without its names and
    numbers ("" for other candidates)."""
    quoted_relations: list[str] = field(default_factory=list)
    """With ``chain_features``: the collected quotes without their names and numbers."""
    fields: list[str] = field(default_factory=list)
    """With ``abstain_features``: the labels of the fields in view (empty without an
    ``abstain`` candidate)."""
    unresolved: str = ""
    """With ``abstain_features``: the goal's relation the collected quotes do not state."""
    residual_words: list[tuple[list[str], list[str]]] = field(default_factory=list)
    """With ``semantic_features``: per candidate, (its words the goal lacks, the goal's words
    it lacks)."""


@dataclass
class KindBlock:
    """The answer-type block of the score head's input (``answer_type_features``) as what it
    is made of: for answer row ``i`` (at place ``rows[i]``), the goal relation embedding of its
    turn ``goals[turns[i]]`` in the ``d`` columns of its kind ``kinds[i]``, zeros in the
    others. :meth:`ChoicePolicy._score` multiplies each turn's goal by each kind's weights
    once ([turns, kinds, hidden]) and adds the row's, instead of multiplying ``4 d`` columns
    per answer row."""

    goals: torch.Tensor  # [T, d]
    turns: torch.Tensor  # [M] long, into goals
    kinds: torch.Tensor  # [M] long, into ANSWER_KINDS
    rows: torch.Tensor  # [M] long, the places among the rows


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


class ChoicePolicy(EpisodicPolicy, nn.Module):
    """Softmax over the valid actions of a web env, scored with a pretrained text encoder.

    A :class:`rlft.agents.policy.TrainablePolicy`: :meth:`encode` turns a :class:`Turn` into
    candidates and features (for acting, imitation and PPO alike), :meth:`forward` scores a
    batch, :meth:`imitation_loss` is the behaviour-cloning loss, the ``rl_*`` methods serve PPO.
    Agent protocol: ``reset`` and ``act`` (greedy unless ``sample=True``).

    Args:
        config: a :class:`ChoicePolicyConfig` (default: bundled MiniLM, frozen, head only).
        sample: act by sampling instead of taking the most likely action.
        seed: seed of the sampler.
    """

    policy_type = "choice"
    config_class: ClassVar[type] = ChoicePolicyConfig
    observation_keys: ClassVar[frozenset[str]] = frozenset({"goal", "page"})
    env_kind: ClassVar[str] = "web"

    def __init__(self, config: ChoicePolicyConfig | None = None, *, sample: bool = False,
                 seed: int | None = None):
        super().__init__()
        self.config = config = config or ChoicePolicyConfig()
        self.encoder = TextEncoder(config.encoder, max_length=config.max_length,
                                   precision=config.encoder_precision)
        if config.lora_r > 0:
            self._add_lora()
        d, h = self.encoder.dim, config.hidden
        self.score_head = nn.Sequential(
            nn.Linear((4 + 2 * int(config.chains) + int(config.abstains)
                       + len(ANSWER_KINDS) * int(config.answer_types)) * d
                      + config.num_features
                      + config.num_similarities, h),
            nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))
        self.value_head = nn.Sequential(
            nn.Linear(3 * d + 1, h), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(h, 1))
        self.sample = sample
        self.generator = torch.Generator().manual_seed(int(seed or 0))
        self.reset()

    @classmethod
    def for_env(cls, env: Any, *, model: str | None = None, seed: int = 0,
                **options: Any) -> ChoicePolicy:
        """A fresh policy for a web env: ``model`` is the encoder (default: the bundled
        MiniLM); ``options`` are :class:`ChoicePolicyConfig` fields. ``evidence_features``
        defaults to whether the env has a ``quote`` command, ``semantic_features`` to whether
        its goals are phrased in other words than its pages (an env attribute
        ``paraphrased_goals``, true for the hard store)."""
        options.setdefault("evidence_features",
                           "quote" in getattr(env.unwrapped, "commands", ()))
        options.setdefault("semantic_features",
                           bool(getattr(env.unwrapped, "paraphrased_goals", False)))
        return cls(ChoicePolicyConfig(**({"encoder": model} if model else {}), **options),
                   seed=seed)

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
    def encode(self, turn: Turn) -> TurnFeatures:
        """Concrete candidates of ``turn`` with their texts and lexical features: the model
        input of acting, imitation and PPO alike."""
        candidates = expand_valid_actions(turn.goal, turn.valid_actions, page=turn.page)
        if not candidates:
            raise ValueError("no valid actions to choose from (is the episode over? "
                             "call env.reset())")
        buttons = page_buttons(turn.page)
        goal_words = set(content_words(turn.goal))
        goal_lower = f" {' '.join(content_words(turn.goal))} "
        recent = turn.history[-self.config.history:] if self.config.history else ()
        evidence = self.config.evidence_features
        sourced = page_quote_sources(turn.page) if evidence else []
        quoted = [q for _, q in sourced]
        chains = self.config.chains
        if chains:
            quote_names = [names_and_numbers(q) for q in quoted]
            known = set(names_and_numbers(turn.goal)).union(*quote_names)
            sources = {s.casefold() for s, _ in sourced}
        quotes = " ".join(quoted).casefold()
        nesting = min(1.0, f" {turn.goal.casefold()} ".count(" of ") / 3.0)
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
            if evidence:
                command = action.split("[", 1)[0].strip()
                feats[-1] += [float(bool(label) and label.casefold() in quotes),
                              float(bool(quoted)), min(1.0, len(quoted) / 3.0), nesting,
                              float(command == "quote"), float(command == "answer"),
                              float(command == "abstain"),
                              float(command in ("scroll", "top", "find"))]
            if chains:
                feats[-1] += self._chain_features(command, label, quoted, quote_names, known,
                                                  sources)
            texts.append(text)
        relation_texts = [self._relation_text(a, quoted) for a in candidates] if evidence \
            else []
        residual = []
        if self.config.semantic_features:
            asked = [w for w in dict.fromkeys(content_words(turn.goal))
                     if not _NUMBER.match(w) and w not in _REQUEST_WORDS]
            residual = [self._residual_words(a, asked, buttons) for a in candidates]
        fields = page_fields(turn.page) if self.config.abstains and "abstain" in candidates \
            else []
        return TurnFeatures(candidates, texts, turn.goal, list(recent),
                            torch.tensor(feats, dtype=torch.float32),
                            min(1.0, turn.step / max(1, self.config.max_steps)),
                            relation_goal=strip_names(turn.goal) if evidence else "",
                            relation_texts=relation_texts, residual_words=residual,
                            fields=fields,
                            unresolved=unresolved_relation(turn.goal, quoted) if fields else "",
                            quoted_relations=[strip_names(q) for q in quoted] if chains else [])

    @staticmethod
    def _chain_features(command: str, label: str, quoted: Sequence[str],
                        quote_names: Sequence[set[str]], known: set[str],
                        sources: set[str]) -> list[float]:
        """The :attr:`ChoicePolicyConfig.chain_features` of one candidate (zeros for commands
        other than ``quote`` and ``answer``)."""
        out = [0.0] * NUM_CHAIN_FEATURES
        if command == "quote":
            names = names_and_numbers(label)
            out[0] = float(bool(names) and any(names <= q for q in quote_names))
            out[1] = float(bool(names - known))
        elif command == "answer" and label:
            low = label.casefold()
            holding = [low in q.casefold() for q in quoted]
            out[2] = float(bool(holding) and holding[-1])
            out[3] = min(3, sum(holding)) / 3.0
            out[4] = float(low in sources)
            out[5] = float(any(c.isdigit() for c in label))
            out[6] = float(label[:1].isupper())
        return out

    @staticmethod
    def _residual_words(action: str, goal_words: list[str],
                        buttons: dict[str, tuple[str, bool]]) -> tuple[list[str], list[str]]:
        """(the candidate's words the goal lacks, the goal's words the candidate lacks);
        ``goal_words`` are the goal's, without numbers and request words. A candidate is its
        label, or for a label that names no words (a product id) the text after its button."""
        label = action_label(action)
        if not action.startswith("click["):
            return [], []
        if not any(c.islower() for c in label) and any(c.isdigit() for c in label):
            label = buttons.get(label.casefold(), ("", False))[0]
        words = [w for w in dict.fromkeys(content_words(label)) if not _NUMBER.match(w)]
        mine = [w for w in words if w not in goal_words]
        return mine, [w for w in goal_words if w not in words]

    # -- scoring -------------------------------------------------------------------------
    def forward(self, turns: Sequence[Turn | TurnFeatures]) -> PolicyOutput:
        """Score every candidate of every turn: logits [B, K] (-inf padding) and values [B].

        The head reads the candidates of all turns as one list of rows (no padding); what a
        turn contributes that does not depend on the head's weights (its embeddings, their
        similarities) is computed once per turn while the encoder is frozen and kept on its
        features, so the epochs of imitation and PPO score a turn without recomputing it."""
        feats = [t if isinstance(t, TurnFeatures) else self.encode(t) for t in turns]
        sizes = [len(f.candidates) for f in feats]
        enc = self.encoder
        frozen = enc.frozen
        dev = self.device
        B, K, d = len(feats), max(sizes), enc.dim
        if frozen:  # embeddings are constants: keep them on the features for the epochs
            self._embed_new(feats)
            for f in feats:
                self._cached(f, "emb", lambda f=f: (enc(f.candidate_texts), enc([f.goal])[0],
                                                    self._mean(enc(f.history_texts), d)), frozen)
            cand = torch.cat([f.extra["emb"][0] for f in feats]).to(dev)
            goals = torch.stack([f.extra["emb"][1] for f in feats]).to(dev)
            hist = torch.stack([f.extra["emb"][2] for f in feats]).to(dev)
        else:
            cand = enc([t for f in feats for t in f.candidate_texts]).to(dev)
            goals = enc([f.goal for f in feats]).to(dev)
            hist_all = enc([t for f in feats for t in f.history_texts]).to(dev)
            counts = [len(f.history_texts) for f in feats]
            hist = torch.stack([self._mean(h, d) for h in torch.split(hist_all, counts)])
        turn_of = torch.repeat_interleave(torch.arange(B, device=dev),
                                          torch.tensor(sizes, device=dev))
        n_rows = torch.tensor(sizes, device=dev, dtype=cand.dtype).unsqueeze(1)
        page = torch.zeros(B, d, device=dev, dtype=cand.dtype).index_add(0, turn_of, cand) \
            / n_rows
        g = goals[turn_of]
        # The head's input, block by block in the order of its first layer's columns: a dense
        # block [N, w] with None, or a sparse one as its non-zero rows [M, w] with their
        # places [M] (the relation embeddings exist for quotes and answers only, the abstain
        # match for one candidate a turn), multiplied in for those rows alone (:meth:`_score`).
        parts: list[tuple[torch.Tensor, torch.Tensor | None] | KindBlock] = [
            (cand, None), (g * cand, None), (hist[turn_of] * cand, None),
            (page[turn_of] * cand, None),
            (torch.cat([f.features for f in feats]).to(dev), None)]
        N = cand.shape[0]
        starts = [0]
        for n in sizes[:-1]:
            starts.append(starts[-1] + n)
        if self.config.evidence_features:
            rel_cols = [self._cached(f, "rel", lambda f=f: self._relation_columns(f), frozen)
                        for f in feats]
            at = torch.tensor([s + k for s, (idx, *_) in zip(starts, rel_cols, strict=True)
                               for k in idx], dtype=torch.long, device=dev)
            columns = torch.zeros(N, 3, device=dev)  # relation cosine, its margin, to quotes
            rel = torch.zeros(0, d, device=dev)
            rel_goal = torch.zeros(0, d, device=dev)
            if len(at):
                pieces = [c for c in rel_cols if c[0]]
                columns[at] = torch.cat([c[1] for c in pieces]).to(dev)
                rel = torch.cat([c[2] for c in pieces]).to(dev)
                rel_goal = torch.cat([c[3].expand(len(c[0]), d) for c in pieces]).to(dev)
            parts += [(nn.functional.cosine_similarity(g, cand, dim=-1).unsqueeze(-1), None),
                      (columns[:, :2], None)]
        if self.config.chains:
            parts += [(columns[:, 2:], None), (torch.cat([rel, rel * rel_goal], dim=-1), at)]
        if self.config.abstains:
            sims = torch.zeros(N, NUM_ABSTAIN_SIMILARITIES, device=dev)
            abstains = []  # (place among the rows, [3], [d]) of each turn with fields in view
            for s, f in zip(starts, feats, strict=True):
                c = self._cached(f, "fields", lambda f=f: self._abstain_columns(f), frozen)
                if c is not None:
                    abstains.append((s + c[0], c[1], c[2]))
            where = torch.tensor([a[0] for a in abstains], dtype=torch.long, device=dev)
            match = torch.zeros(0, d, device=dev)
            if abstains:
                sims[where] = torch.stack([a[1] for a in abstains]).to(dev)
                match = torch.stack([a[2] for a in abstains]).to(dev)
            parts += [(sims, None), (match, where)]
        if self.config.answer_types:
            kinds = [self._cached(f, "kinds", lambda f=f: self._answer_kinds(f), frozen)
                     for f in feats]
            with_answers = [(s, c) for s, c in zip(starts, kinds, strict=True) if c[0]]
            parts.append(KindBlock(
                goals=torch.stack([c[2] for _, c in with_answers]).to(dev) if with_answers
                else torch.zeros(0, d, device=dev),
                turns=torch.tensor([t for t, (_, c) in enumerate(with_answers) for _ in c[0]],
                                   dtype=torch.long, device=dev),
                kinds=torch.tensor([k for _, c in with_answers for k in c[1]],
                                   dtype=torch.long, device=dev),
                rows=torch.tensor([s + k for s, c in with_answers for k in c[0]],
                                  dtype=torch.long, device=dev)))
        if self.config.semantic_features:
            parts.append((torch.cat([self._cached(f, "sem", lambda f=f: self._semantic_rows(f),
                                                  frozen) for f in feats]).to(dev), None))
        scores = self._score(parts)
        mask = torch.arange(K, device=dev).unsqueeze(0) < torch.tensor(sizes, device=dev
                                                                        ).unsqueeze(1)
        logits = torch.full((B, K), float("-inf"), device=dev,
                            dtype=scores.dtype).masked_scatter(mask, scores)
        steps = torch.tensor([[f.step] for f in feats], device=dev)
        values = self.value_head(torch.cat([goals, page, hist, steps], dim=-1)).squeeze(-1)
        return PolicyOutput(logits, values, [f.candidates for f in feats])

    @staticmethod
    def _mean(rows: torch.Tensor, d: int) -> torch.Tensor:
        """The mean of ``rows`` [n, d] (zeros [d] when there are none: no history yet)."""
        return rows.mean(0) if len(rows) else torch.zeros(d, dtype=rows.dtype,
                                                           device=rows.device)

    def _score(self, parts: Sequence[tuple[torch.Tensor, torch.Tensor | None] | KindBlock]
               ) -> torch.Tensor:
        """The score head on the candidate rows, given its input as ``parts`` in the order of
        the first layer's columns: a dense block [N, w] with None, or a sparse one as its
        non-zero rows [M, w] with their places [M], or a :class:`KindBlock`. The first layer is
        the one ``nn.Linear`` over all columns, computed as the dense blocks' product plus each
        sparse block's for its rows only: the same sums without multiplying the zeros (on the
        research env the three 384-wide relation and abstain blocks are non-zero on a quarter
        of the rows and a thirtieth; the answer-type block has one non-zero 384-wide quarter
        per answer row). Returns the scores [N]."""
        first = self.score_head[0]
        weight = first.weight
        dense, dense_weights, sparse, start = [], [], [], 0
        typed: list[tuple[torch.Tensor, KindBlock]] = []
        for part in parts:
            if isinstance(part, KindBlock):
                width = len(ANSWER_KINDS) * part.goals.shape[-1]
                typed.append((weight[:, start : start + width], part))
                start += width
                continue
            block, rows = part
            columns = weight[:, start : start + block.shape[-1]]  # a view: the block's weights
            start += block.shape[-1]
            if rows is None:
                dense.append(block)
                dense_weights.append(columns)
            else:
                sparse.append((columns, block, rows))
        if start != first.in_features:
            raise RuntimeError(f"the score head reads {first.in_features} columns; the "
                               f"features make {start}")
        hidden = nn.functional.linear(torch.cat(dense, dim=-1), torch.cat(dense_weights, dim=1),
                                      first.bias)
        for columns, block, rows in sparse:
            if len(rows):
                hidden = hidden.index_add(0, rows, block @ columns.T)
        for columns, kb in typed:
            if len(kb.rows):  # each turn's goal through each kind's columns, once: [T, kinds, h]
                per_kind = torch.einsum("td,hkd->tkh", kb.goals,
                                        columns.view(columns.shape[0], len(ANSWER_KINDS), -1))
                hidden = hidden.index_add(0, kb.rows, per_kind[kb.turns, kb.kinds])
        return self.score_head[1:](hidden).squeeze(-1)

    @staticmethod
    def _relation_text(action: str, quoted: Sequence[str]) -> str:
        """What a candidate says about the goal's relation: a quote's sentence, or for an answer
        the newest quote it comes from, without names and numbers ("" otherwise)."""
        label = action_label(action)
        if action.startswith("quote["):
            return strip_names(label)
        if action.startswith("answer[") and label:
            source = next((q for q in reversed(quoted) if label.casefold() in q.casefold()), "")
            return strip_names(source)
        return ""

    def _relation_columns(self, f: TurnFeatures) -> tuple[list[int], torch.Tensor,
                                                           torch.Tensor, torch.Tensor]:
        """One turn's relation inputs, for its candidates with a relation text (quotes and
        quoted answers), at places ``idx``: ``[m, 3]`` the cosine of the relation text to the
        goal's, its margin to the turn's best, and (with ``chain_features``) the highest cosine
        to a collected quote's relation (0 without quotes); ``[m, d]`` the relation texts'
        embeddings and ``[d]`` the goal's. ``idx`` is empty for a turn without relation texts."""
        enc = self.encoder
        idx = [k for k, t in enumerate(f.relation_texts) if t]
        if not idx:
            empty = torch.zeros(0, enc.dim)
            return [], torch.zeros(0, 3), empty, torch.zeros(enc.dim)
        goal = enc([f.relation_goal])[0]
        texts = enc([f.relation_texts[k] for k in idx])
        cos = nn.functional.cosine_similarity(texts, goal[None], dim=-1)
        quoted = torch.zeros_like(cos)
        if self.config.chains and f.quoted_relations:
            q = nn.functional.normalize(enc(f.quoted_relations), dim=-1)
            quoted = (nn.functional.normalize(texts, dim=-1) @ q.T).max(dim=1).values
        return idx, torch.stack([cos, cos - cos.max(), quoted], dim=1), texts, goal

    def _abstain_columns(self, f: TurnFeatures
                         ) -> tuple[int, torch.Tensor, torch.Tensor] | None:
        """The :attr:`ChoicePolicyConfig.abstain_features` of one turn: the place of its
        ``abstain`` candidate, ``[3]`` (fields in view, the best cosine of a field label to the
        unresolved relation and to the goal's whole relation) and ``[d]`` (the unresolved
        relation's embedding times the best field's); None without fields in view (the
        columns are then zero)."""
        if not f.fields:
            return None
        emb = self.encoder([f.unresolved or f.relation_goal, f.relation_goal, *f.fields])
        cos = emb[2:] @ emb[:2].T  # [fields, 2]: unit vectors
        best = int(cos[:, 0].argmax())
        sims = torch.stack([torch.ones(()), cos[:, 0].max(), cos[:, 1].max()])
        return f.candidates.index("abstain"), sims, emb[0] * emb[2 + best]

    def _answer_kinds(self, f: TurnFeatures) -> tuple[list[int], list[int], torch.Tensor]:
        """The :attr:`ChoicePolicyConfig.answer_type_features` of one turn: the places of its
        ``answer`` candidates, each one's kind (its index in :data:`ANSWER_KINDS`) and the
        goal's relation embedding ``[d]`` (the places empty for a turn without answers)."""
        idx = [k for k, a in enumerate(f.candidates) if a.startswith("answer[")]
        kinds = [ANSWER_KINDS.index(self.answer_kind(action_label(f.candidates[k])))
                 for k in idx]
        goal = self.encoder([f.relation_goal])[0] if idx else torch.zeros(self.encoder.dim)
        return idx, kinds, goal

    @staticmethod
    def answer_kind(label: str) -> str:
        """An answer's kind (:data:`ANSWER_KINDS`): ``year`` for 3-4 digits alone ("1848"),
        ``number`` for another with digits ("327,700", "40 years"), ``name`` for a capitalised
        label ("Ommouth"), ``words`` otherwise ("glass blower")."""
        label = label.strip()
        if _YEAR.match(label):
            return "year"
        if any(c.isdigit() for c in label):
            return "number"
        return "name" if label[:1].isupper() else "words"

    def _semantic_rows(self, f: TurnFeatures) -> torch.Tensor:
        """One turn's ``[K, 3]`` semantic columns (``semantic_features``): per candidate, the
        cosine of its residual words (as one phrase) to the goal's, the best word-to-word
        cosine, and the mean over its words of their best match (zeros where a side has no
        residual words)."""
        enc = self.encoder
        rows = torch.zeros(len(f.candidates), NUM_SEMANTIC_SIMILARITIES)
        idx = [k for k, (mine, theirs) in enumerate(f.residual_words) if mine and theirs]
        if not idx:
            return rows
        words = list(dict.fromkeys(w for k in idx for side in f.residual_words[k] for w in side))
        pos = {w: i for i, w in enumerate(words)}
        word_emb = enc(words).to(self.device)
        phrases = enc([" ".join(side) for k in idx for side in f.residual_words[k]])
        phrases = phrases.to(self.device).view(len(idx), 2, -1)
        for j, k in enumerate(idx):
            mine, theirs = f.residual_words[k]
            sim = word_emb[[pos[w] for w in mine]] @ word_emb[[pos[w] for w in theirs]].T
            best = sim.max(dim=1).values
            rows[k, 0] = (phrases[j, 0] * phrases[j, 1]).sum().cpu()
            rows[k, 1] = best.max().cpu()
            rows[k, 2] = best.mean().cpu()
        return rows

    def _cached(self, f: TurnFeatures, key: str, compute: Callable[[], Any],
                frozen: bool | None = None) -> Any:
        """``compute()``, kept on the turn's features under ``key`` while the encoder is frozen
        (``frozen``: whether it is, when the caller knows): its outputs are then constants, and
        imitation and PPO score a turn again in every epoch."""
        if not (self.encoder.frozen if frozen is None else frozen):
            return compute()
        if key not in f.extra:
            f.extra[key] = compute()
        return f.extra[key]

    # -- imitation (rlft.agents.policy.TrainablePolicy) ----------------------------------
    def imitation_target(self, features: TurnFeatures, action: str) -> int:
        """Index of the candidate standing for the demonstrated ``action``."""
        return match_candidate(features.candidates, action)

    def imitation_loss(self, features: Sequence[Turn | TurnFeatures], targets: Sequence[int]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Behaviour-cloning cross-entropy and accuracy of choosing ``targets`` (indices)."""
        out = self(features)
        targets = torch.as_tensor(list(targets), dtype=torch.long, device=self.device)
        loss = nn.functional.cross_entropy(out.logits, targets)
        acc = (out.logits.argmax(-1) == targets).float().mean()
        return loss, acc

    def unlikelihood_loss(self, features: Sequence[Turn | TurnFeatures], targets: Sequence[int]
                          ) -> torch.Tensor:
        """Unlikelihood (Welleck et al. 2020) of candidates that failed: the mean of
        ``-log(1 - p(target))``; self-training's negative signal (``rlft train rest
        --unlikelihood``)."""
        out = self(features)
        targets = torch.as_tensor(list(targets), dtype=torch.long, device=self.device)
        p = torch.softmax(out.logits, -1).gather(1, targets[:, None]).squeeze(1)
        return -torch.log1p(-p.clamp(max=1 - 1e-6)).mean()

    def prepare_imitation(self, features: Sequence[TurnFeatures],
                          progress: Callable[[int, int], None] | None = None) -> None:
        """With a frozen encoder, embed every distinct text once (the epochs then reuse the
        memo; an embedding does not depend on the batch it is made in)."""
        if not self.encoder.frozen:
            return
        # (a turn already scored has had its texts embedded: a ReST round's earlier turns)
        texts = list(dict.fromkeys(t for f in features if "emb" not in f.extra
                                   for t in self._texts(f)))
        step = self.encoder.batch_size * 4
        for i in range(0, len(texts), step):
            self.encoder.memoise(texts[i : i + step])
            if progress is not None:
                progress(min(len(texts), i + step), len(texts))

    @staticmethod
    def _texts(f: TurnFeatures) -> list[str]:
        """Every text :meth:`forward` embeds for the turn ``f`` (with repeats and blanks)."""
        texts = [f.goal, *f.candidate_texts, *f.history_texts, f.relation_goal,
                 *f.relation_texts, *f.quoted_relations]
        if f.fields:
            texts += [f.unresolved, *f.fields]
        for mine, theirs in f.residual_words:
            if mine and theirs:
                texts += [*mine, *theirs, " ".join(mine), " ".join(theirs)]
        return texts

    def _embed_new(self, feats: Sequence[TurnFeatures]) -> None:
        """With a frozen encoder, embed the texts of ``feats`` it has not seen in one call, so
        a batch of turns (concurrent episodes) costs one encoder pass over their new texts, not
        one per turn and kind of text."""
        if self.encoder.frozen:
            self.encoder.memoise([t for f in feats if "emb" not in f.extra
                                  for t in self._texts(f) if t])

    # -- acting and reinforcement learning (rlft.agents.rl.RLPolicy) -----------------------
    def choose(self, features: TurnFeatures) -> str:
        """The most likely candidate (or a sample when ``self.sample``)."""
        return self.choose_many([features])[0]

    def choose_many(self, features: Sequence[TurnFeatures]) -> list[str]:
        """:meth:`choose` for the turns of concurrent episodes, scored in one batch (the
        encoder embeds their new texts together)."""
        out = self(features)
        idx = sample_index(out.log_probs(), self.generator if self.sample else None)
        return [out.candidates[i][int(k)] for i, k in enumerate(idx[:, 0])]

    #: it has a finite candidate list to rank (:meth:`ranked_actions`)
    ranks_actions: ClassVar[bool] = True

    @torch.no_grad()
    def ranked_actions(self, features: TurnFeatures, n: int) -> list[str]:
        """The ``n`` likeliest candidates of an encoded turn, most likely first (self-training's
        deviation search, :mod:`rlft.training.deviation`)."""
        return self.ranked_actions_many([features], n)[0]

    @torch.no_grad()
    def ranked_actions_many(self, features: Sequence[TurnFeatures], n: int) -> list[list[str]]:
        """:meth:`ranked_actions` for the turns of concurrent episodes, scored in one batch."""
        logp = self(features).log_probs().cpu()
        order = torch.argsort(logp, dim=-1, descending=True, stable=True)[:, :n]
        return [[f.candidates[int(i)] for i in row if torch.isfinite(lp[i])]
                for f, row, lp in zip(features, order, logp, strict=True)]

    @torch.no_grad()
    def rl_act(self, features: Sequence[TurnFeatures], generator: torch.Generator,
               temperature: float = 1.0) -> RLStep:
        """Sample a candidate per turn (at ``temperature``); the action kept for training is
        its index."""
        out = self(features)
        logp = out.log_probs().cpu()
        idx = sample_index(logp, generator, temperature)
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

    # -- persistence ---------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The head weights (the encoder is saved as its base name plus PEFT adapters)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``rlft_policy.json`` (type and config, including the base encoder), the heads
        as safetensors and, with LoRA, the PEFT adapter in ``adapter/``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_weights(self.trainable_state_dict(), directory / HEAD_NAME)
        if self.config.lora_r > 0:
            self.encoder.model.save_pretrained(str(directory / ADAPTER_DIR))
        write_policy_meta(directory, {"policy": self.policy_type, "config": asdict(self.config),
                                      "base_model": self.config.encoder})

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> ChoicePolicy:
        """Load a policy written by :meth:`save_pretrained` (base encoder + adapters + heads)."""
        directory = Path(directory)
        meta = read_policy_meta(directory, expect=cls.policy_type)
        # written before the chain features existed: its head reads none
        meta["config"].setdefault("chain_features", False)
        meta["config"].setdefault("abstain_features", False)  # nor before the abstain ones
        meta["config"].setdefault("answer_type_features", False)  # nor the answer kinds
        meta["config"].setdefault("encoder_precision", "float32")  # and its encoder's precision
        config = config_from_meta(ChoicePolicyConfig, meta, directory)
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
        load_heads(policy, directory / HEAD_NAME, frozen_prefix="encoder.")
        policy.eval()
        return policy
