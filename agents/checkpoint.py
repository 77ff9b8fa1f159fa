"""Checkpoint files shared by every policy kind: ``rlft_policy.json`` and safetensors weights.

A policy directory holds ``rlft_policy.json`` (``{"policy": KIND, "config": {...},
"base_model": ...}`` plus kind-specific fields) beside the policy's weight files. The JSON is
written last, so a directory with it is complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG_NAME = "rlft_policy.json"
HEAD_NAME = "head.safetensors"


def read_policy_meta(directory: str | Path, expect: str | None = None) -> dict[str, Any]:
    """The ``rlft_policy.json`` of a checkpoint, with errors that name the file and say what
    to do."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no rlft policy checkpoint at {directory} (missing {CONFIG_NAME}); train one with "
            f"`rlft imitate --env ENV --demos DEMOS --out {directory}`")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the checkpoint is damaged") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise ValueError(f"{path} is not an rlft policy description (a JSON object with "
                         f"'policy' and 'config'); the checkpoint is damaged")
    if expect is not None and meta.get("policy") != expect:
        raise ValueError(f"{directory} holds a {meta.get('policy')!r} policy, not {expect!r}; "
                         f"load it with rlft.agents.load_policy")
    return meta


def write_policy_meta(directory: str | Path, meta: dict[str, Any]) -> None:
    """Write ``rlft_policy.json`` (call it after the weight files: it marks them complete)."""
    path = Path(directory) / CONFIG_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(path)


def load_weights(path: str | Path) -> dict[str, Any]:
    """A safetensors file as a state dict, with an error naming the file when it is missing or
    damaged."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; the checkpoint is incomplete")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} cannot be read ({e}); the checkpoint is damaged") from None


def load_training_state(path: str | Path, required: frozenset[str] = frozenset()
                        ) -> dict[str, Any]:
    """A resumable training state written with ``torch.save`` (imitation's ``checkpoint.pt``,
    PPO's ``state.pt``), with an error naming the file when it is damaged or lacks a key of
    ``required``."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, weights_only=False)
    except Exception as e:  # noqa: BLE001  (torch raises many kinds on a damaged file)
        raise ValueError(f"{path} cannot be read ({type(e).__name__}): the checkpoint is "
                         f"damaged; delete it to start over") from None
    missing = sorted(required - set(state)) if isinstance(state, dict) else sorted(required)
    if not isinstance(state, dict) or missing:
        raise ValueError(f"{path} is not a checkpoint of this rlft (missing {missing}); delete "
                         f"it to start over")
    return state


def save_weights(tensors: dict[str, Any], path: str | Path) -> None:
    """Write a state dict as safetensors (contiguous CPU copies)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def config_from_meta(config_cls: type, meta: dict[str, Any], directory: str | Path) -> Any:
    """The policy config dataclass stored in ``meta["config"]`` (JSON lists back to tuples),
    with an error naming the file when its fields do not fit this rlft."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    raw = dict(meta["config"])
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(f"{Path(directory) / CONFIG_NAME} has config fields this rlft does not "
                         f"know ({', '.join(unknown)}); was it written by a newer version?")
    for name, value in raw.items():
        if isinstance(value, list):
            raw[name] = tuple(value)
    try:
        return config_cls(**raw)
    except TypeError as e:
        raise ValueError(f"{Path(directory) / CONFIG_NAME}: {e}") from None


def load_heads(module: Any, path: str | Path, frozen_prefix: str) -> None:
    """Load the trained weights at ``path`` into ``module`` (its frozen pretrained part,
    ``frozen_prefix``, is not in the file), with a ValueError naming the file when they do not
    fit: a missing or unexpected weight, or one of another shape (a checkpoint written by an
    rlft whose policy reads other features)."""
    state = load_weights(path)
    own = module.state_dict()
    shapes = [f"{k} {tuple(v.shape)} in the file, {tuple(own[k].shape)} here"
              for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if shapes:
        raise ValueError(f"{path} does not fit this {type(module).__name__} ({'; '.join(shapes[:3])}"
                         "): it was written by an rlft whose policy reads other features; "
                         "train it again with `rlft imitate`")
    missing, unexpected = module.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith(frozen_prefix)] + list(unexpected)
    if bad:
        raise ValueError(f"{path} does not fit this {type(module).__name__}: {bad[:5]}; train "
                         "it again with `rlft imitate`")
