"""EpisodeRecorder: GIFs of tabletop episodes, transcripts of text web episodes."""

from __future__ import annotations

import gymnasium as gym
import imageio.v2 as imageio
import pytest

import rlft.envs  # noqa: F401
from rlft.wrappers.episode_recorder import EpisodeRecorder


@pytest.mark.parametrize("video_format", ["gif", "mp4"])
def test_tabletop_episode_becomes_a_video(tmp_path, video_format):
    env = EpisodeRecorder(gym.make("rlft/PutBlockInBowl-v0"), tmp_path, video_format=video_format)
    obs, info = env.reset(seed=0)
    expert = env.unwrapped.expert()
    steps = 0
    for _ in range(2):
        obs, _, term, trunc, info = env.step(expert.act(obs, info))
        steps += 1
        if term or trunc:
            break
    env.close()
    video = tmp_path / f"episode_000000.{video_format}"
    frames = imageio.mimread(video)
    assert len(frames) == steps + 1
    assert frames[0].shape[:2] == obs["color"].shape[:2]


def test_text_web_episode_becomes_a_transcript(tmp_path):
    env = EpisodeRecorder(gym.make("rlft/Shop-v0"), tmp_path)
    obs, _ = env.reset(seed=0)
    env.step("search[boots]")
    env.reset(seed=1)  # finishes episode 0
    env.close()
    text = (tmp_path / "episode_000000.txt").read_text()
    assert text.startswith(f"Goal: {obs['goal']}") and "> search[boots]" in text
    assert "Total results" in text
    assert (tmp_path / "episode_000001.txt").exists()


def test_bad_video_format_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="gif"):
        EpisodeRecorder(gym.make("rlft/Shop-v0"), tmp_path, video_format="avi")


def test_browser_episode_becomes_screenshots(tmp_path):
    env = EpisodeRecorder(gym.make("rlft/Shop-v0", backend="browser"), tmp_path)
    env.reset(seed=0)
    env.step("search[boots]")
    env.close()
    shots = sorted((tmp_path / "episode_000000").glob("step_*.png"))
    assert [p.name for p in shots] == ["step_000.png", "step_001.png"]
    a, b = imageio.imread(shots[0]), imageio.imread(shots[1])
    assert a.ndim == 3 and a.shape == b.shape and (a != b).any()
