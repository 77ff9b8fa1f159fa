"""The distribution installs one import package, rlft, whose subpackages are the card's folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"envs": "rlft.envs", "agents": "rlft.agents", "wrappers": "rlft.wrappers",
           "training": "rlft.training", "assets": "rlft.assets"}


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *rel)))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "pyproject lists packages that have no __init__.py"


def test_imports_from_any_directory_without_generic_top_level_names(tmp_path):
    code = ("import importlib.util, rlft.envs, rlft.agents, rlft.training, rlft.wrappers, rlft.assets;"
            "import rlft.envs.web.shop.env;"
            "print(rlft.envs.__file__);"
            "print(importlib.util.find_spec('envs') is None, importlib.util.find_spec('agents') is None)")
    for cwd in (tmp_path, ROOT):
        out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.split("\n")
        assert Path(lines[0]).resolve() == ROOT / "envs" / "__init__.py"
        if cwd == tmp_path:  # no generic top-level names are installed
            assert lines[1].split() == ["True", "True"]


def test_console_script_lists_envs():
    exe = Path(sys.executable).with_name("rlft")
    out = subprocess.run([str(exe), "envs"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "rlft/Shop-v0" in out.stdout
