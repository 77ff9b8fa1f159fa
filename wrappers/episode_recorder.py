"""``EpisodeRecorder``: pictures of episodes for people — GIF/MP4 for tabletop, screenshots for
browser episodes, text transcripts for text-backend web episodes.

What is written per episode ``i`` into the directory:

* image envs (an ``rgb_array`` render mode, or a ``color`` observation): ``episode_<i>.gif``
  (or ``.mp4`` with ``video_format="mp4"``, through the bundled ``imageio-ffmpeg``), one
  frame after reset and after every step;
* web envs on the ``browser`` backend: ``episode_<i>/step_<t>.png`` screenshots of Chromium;
* other web envs: ``episode_<i>.txt``, the goal, each page and each action.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np


class EpisodeRecorder(gym.Wrapper):
    """Record every episode as a GIF/MP4, browser screenshots or a text transcript.

    Args:
        env: the env to record.
        directory: output directory (created).
        fps: frames per second of GIF/MP4 files.
        video_format: ``"gif"`` or ``"mp4"``.
    """

    def __init__(self, env: gym.Env, directory: str | Path, fps: int = 2,
                 video_format: str = "gif"):
        super().__init__(env)
        if video_format not in ("gif", "mp4"):
            raise ValueError(f"video_format must be 'gif' or 'mp4'; got {video_format!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fps, self.video_format = fps, video_format
        self.episode = -1
        self._frames: list[np.ndarray] = []
        self._text: list[str] = []
        self._step = 0
        self.written: list[Path] = []

    # -- what kind of picture ------------------------------------------------------------
    def _screenshotter(self) -> Any:
        backend = getattr(self.env.unwrapped, "_backend", None)
        return backend if hasattr(backend, "screenshot") else None

    def _frame(self, obs: Any) -> np.ndarray | None:
        if self.env.render_mode == "rgb_array":
            frame = self.env.render()
            if isinstance(frame, np.ndarray):
                return frame
        if isinstance(obs, dict) and isinstance(obs.get("color"), np.ndarray):
            return obs["color"]
        return None

    def _capture(self, obs: Any, action: Any = None) -> None:
        shooter = self._screenshotter()
        if shooter is not None:
            import imageio.v3 as iio

            folder = self.directory / f"episode_{self.episode:06d}"
            folder.mkdir(exist_ok=True)
            path = folder / f"step_{self._step:03d}.png"
            iio.imwrite(path, shooter.screenshot())
            self.written.append(path)
            return
        frame = self._frame(obs)
        if frame is not None:
            self._frames.append(np.asarray(frame, dtype=np.uint8))
        elif isinstance(obs, dict):
            if action is not None:
                self._text.append(f"> {action}")
            if not self._text:
                self._text.append(f"Goal: {obs.get('goal', '')}")
            self._text.append(str(obs.get("page", obs)))

    def _finish(self) -> None:
        stem = self.directory / f"episode_{self.episode:06d}"
        if self._frames:
            import imageio.v2 as imageio

            path = stem.with_suffix(f".{self.video_format}")
            if self.video_format == "gif":
                imageio.mimsave(path, self._frames, duration=1000 / self.fps, loop=0)
            else:
                try:
                    imageio.mimsave(path, self._frames, fps=self.fps)
                except (ImportError, ValueError, RuntimeError) as e:
                    raise RuntimeError("writing MP4 needs an ffmpeg plugin: pip install "
                                       "imageio-ffmpeg, or use video_format='gif'") from e
            self.written.append(path)
        if self._text:
            path = stem.with_suffix(".txt")
            path.write_text("\n\n".join(self._text) + "\n")
            self.written.append(path)
        self._frames, self._text = [], []

    # -- gymnasium API -------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Finish the previous episode's file and start recording a new one."""
        if self.episode >= 0:
            self._finish()
        obs, info = self.env.reset(seed=seed, options=options)
        self.episode += 1
        self._step = 0
        self._capture(obs)
        return obs, info

    def step(self, action: Any):
        """Step and capture the result."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._step += 1
        self._capture(obs, action)
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        """Write the last episode and close the env."""
        if self.episode >= 0 and (self._frames or self._text):
            self._finish()
        super().close()
