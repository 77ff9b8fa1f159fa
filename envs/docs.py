"""The environment reference pages, ``docs/envs/*.md``, made from the env docstrings.

    python -m rlft.envs.docs            # rewrite docs/envs/ (run after editing a docstring)

An env's class docstring is its documentation (``## Action Space``, ``## Observation Space``,
``## Rewards``, ``## Episode End``, ``## Arguments``), as in Gymnasium; a tabletop task's module
docstring describes its goals. ``tests/test_docs.py`` fails when the pages are stale.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import gymnasium as gym

from rlft.envs import ENV_DESCRIPTIONS

PAGES = {"rlft.envs.web.shop.env:ShopEnv": "shop.md",
         "rlft.envs.web.research.env:ResearchEnv": "research.md",
         "rlft.envs.tabletop.env:TabletopEnv": "tabletop.md"}


def _load(entry_point: str) -> type:
    module, name = entry_point.split(":")
    return getattr(importlib.import_module(module), name)


def render_pages() -> dict[str, str]:
    """``{file name: markdown}`` of every page of ``docs/envs/``."""
    by_class: dict[str, list[str]] = {}
    for env_id in ENV_DESCRIPTIONS:
        by_class.setdefault(gym.spec(env_id).entry_point, []).append(env_id)
    pages = {}
    for entry, ids in by_class.items():
        cls = _load(entry)
        lines = [f"# {cls.__name__}", "",
                 f"Made by `python -m rlft.envs.docs` from the docstrings of `{entry}`; "
                 f"edit those, not this file.", "",
                 "| id | description | max steps | kwargs |", "|---|---|---:|---|"]
        for env_id in ids:
            spec = gym.spec(env_id)
            kwargs = ", ".join(f"`{k}={v!r}`" for k, v in spec.kwargs.items()) or "-"
            lines.append(f"| `{env_id}` | {ENV_DESCRIPTIONS[env_id]} | "
                         f"{spec.max_episode_steps} | {kwargs} |")
        lines += ["", _markdown(inspect.getdoc(cls) or "", level=0)]
        if "task" in gym.spec(ids[0]).kwargs:
            from rlft.envs.tabletop.tasks import TASKS

            lines += ["", "## Tasks"]
            for env_id in ids:
                if gym.spec(env_id).kwargs["task"] not in TASKS:  # several tasks in one env
                    continue
                task = TASKS[gym.spec(env_id).kwargs["task"]]
                doc = inspect.getdoc(sys.modules[task.__module__]) or inspect.getdoc(task) or ""
                lines += ["", f"### `{env_id}`", "", _markdown(doc, level=2)]
        pages[PAGES.get(entry, f"{cls.__name__.lower()}.md")] = "\n".join(lines).rstrip() + "\n"
    return pages


def _markdown(doc: str, level: int) -> str:
    """A docstring as markdown, its headings ``level`` deeper (nested under the page's)."""
    out = []
    for line in doc.splitlines():
        if line.startswith("#"):
            line = "#" * level + line
        out.append(line)
    return "\n".join(out)


def main(directory: str | Path = "docs/envs") -> None:
    """Write the pages to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in render_pages().items():
        (directory / name).write_text(text)
        print(f"wrote {directory / name}")


if __name__ == "__main__":
    main(*sys.argv[1:])
