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


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the simple type ``hint`` (bool, int, float, str, tuples and
    ``X | None`` of them); a type not among those is not checked."""
    import types
    import typing

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(map(_fits, value, args))
    return True


def check_config(config: Any, *, positive: tuple[str, ...] = (), non_negative: tuple[str, ...] = (),
                 unit: tuple[str, ...] = ()) -> None:
    """Refuse a policy config whose fields are of the wrong type (``hidden="x"``, ``lora_r=1.5``)
    or out of range: ``positive`` fields must be > 0, ``non_negative`` >= 0, ``unit`` in
    [0, 1). Every config's ``__post_init__`` calls it, so ``--policy-config`` and a damaged
    ``rlft_policy.json`` get a ValueError naming the field, not an error from inside torch."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in hints and not _fits(value, hints[f.name]):
            raise ValueError(f"{f.name} must be {_type_name(hints[f.name])}; got {value!r}")
    for name in positive:
        if getattr(config, name) is not None and getattr(config, name) <= 0:
            raise ValueError(f"{name} must be > 0; got {getattr(config, name)!r}")
    for name in non_negative:
        if getattr(config, name) is not None and getattr(config, name) < 0:
            raise ValueError(f"{name} must be >= 0; got {getattr(config, name)!r}")
    for name in unit:
        if not 0 <= getattr(config, name) < 1:
            raise ValueError(f"{name} must be in [0, 1); got {getattr(config, name)!r}")


def _type_name(hint: Any) -> str:
    import typing

    if typing.get_origin(hint) is None and hasattr(hint, "__name__"):
        return hint.__name__
    return str(hint).replace("typing.", "")


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
    except (TypeError, ValueError) as e:  # a missing field; a value of the wrong type or range
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
