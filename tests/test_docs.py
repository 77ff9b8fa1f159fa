"""The docs that are made from code stay in step with it."""

from __future__ import annotations

from pathlib import Path

from rlft.envs.docs import render_pages

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_env_pages_match_the_env_docstrings():
    pages = render_pages()
    assert set(pages) == {"shop.md", "research.md", "tabletop.md"}
    for name, text in pages.items():
        assert "## Action Space" in text and "## Rewards" in text, name
        assert (DOCS / "envs" / name).read_text() == text, (
            f"docs/envs/{name} is stale: run `python -m rlft.envs.docs`")


def test_every_registered_env_has_a_page():
    import gymnasium as gym

    from rlft.envs import ENV_DESCRIPTIONS

    text = "".join(render_pages().values())
    for env_id in ENV_DESCRIPTIONS:
        assert f"`{env_id}`" in text
        assert gym.spec(env_id).max_episode_steps is not None
