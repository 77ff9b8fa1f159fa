"""Per-env presets: unset settings take the env family's values, given ones always win."""

from __future__ import annotations

import ast
import inspect
import re

import pytest

from rlft.training import configs
from rlft.training.configs import ImitateArgs, PPOArgs
from rlft.training.presets import BASE, ENV_PRESETS, PRESETS, env_family, resolve
from rlft.training.presets import preset as preset_for


def test_env_families():
    assert env_family("rlft/Shop-v0") == "web" and env_family("rlft/Research-v0") == "research"
    assert env_family("rlft/PutBlockInBowl-v0") == "tabletop"
    assert env_family("rlft/TowersOfHanoi-v0") == "tabletop"
    with pytest.raises(ValueError, match="Nope"):
        env_family("rlft/Nope-v0")


def test_unset_fields_take_the_preset_and_given_ones_win():
    shop = resolve(PPOArgs(env="rlft/Shop-v0"))
    assert (shop.gamma, shop.learning_rate, shop.num_envs, shop.num_steps) == (0.99, 3e-4, 4, 32)
    table = resolve(PPOArgs(env="rlft/PackingObjects-v0", gamma=0.95))
    assert (table.gamma, table.learning_rate, table.num_envs, table.num_steps) == (0.95, 1e-3, 8, 8)
    multi = resolve(PPOArgs(env="rlft/Tabletop-v0"))  # the env id's own preset over its family's
    assert (multi.learning_rate, multi.gamma, multi.num_envs) == (1e-4, 0.9, 8)
    il = resolve(ImitateArgs(env="rlft/PutBlockInBowl-v0", epochs=40))
    assert (il.epochs, il.batch_size, il.lr) == (40, 16, 2e-3)
    assert resolve(shop) == shop  # idempotent


def _field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring, read from the class source (what tyro shows in --help)."""
    body = ast.parse(inspect.getsource(cls)).body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr):
            docs[node.target.id] = nxt.value.value
    return docs


@pytest.mark.parametrize("cls", [PPOArgs, ImitateArgs])
def test_help_states_the_preset_values(cls):
    """--help quotes the presets; this keeps the quotes true when presets.py changes."""
    docs = _field_docs(getattr(configs, cls.__name__))
    for name, base in BASE[cls.__name__].items():
        assert getattr(cls(), name) is None, name  # a preset field defaults to None
        doc = " ".join(docs[name].split())
        if isinstance(base, str):
            assert f"preset: {base}" in doc, (name, doc)
        else:
            preset = re.search(r"preset: ([0-9.e-]+)", doc)
            assert preset and float(preset.group(1)) == base, (name, doc)
        for family in ("tabletop", "research"):
            value = PRESETS[family].get(cls.__name__, {}).get(name)
            if value is not None and value != base:
                quoted = re.search(rf"{family} ([0-9.e-]+|[a-z]+)", doc)
                assert quoted, (name, family, doc)
                got = quoted.group(1)
                assert (got == value) if isinstance(value, str) else float(got) == value, (
                    name, family, doc)
        for env_id, by_cls in ENV_PRESETS.items():
            value = by_cls.get(cls.__name__, {}).get(name)
            if value is not None:
                quoted = re.search(rf"{re.escape(env_id)} ([0-9.e-]+|[a-z]+)", doc)
                assert quoted, (name, env_id, doc)
                got = quoted.group(1)
                assert (got == value) if isinstance(value, str) else float(got) == value, (
                    name, env_id, doc)
                assert preset_for(cls, env_id)[name] == value
