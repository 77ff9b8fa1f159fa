"""The shell shared by the text-browser environments: actions, errors, observations, info.

Subclasses (one per site) define the goal, what a command does and the reward; this class owns
the contract every web env keeps:

* the observation is ``{"goal": str, "page": str}``, the page as text or HTML;
* bad input never raises from :meth:`step`: the state is unchanged, the step counts, the reward
  is 0, ``info["action_error"]`` says what was wrong and the page shows that line;
* ``info`` always carries ``success``, ``score``, ``valid_actions``, ``url`` and
  ``action_error`` (None when the action was accepted);
* a failure of the backend itself (the browser crashed, a page hung past its timeout) ends the
  step with ``truncated=True`` and ``info["error"]``; the next ``reset`` recovers.

Observation modes per backend: ``text`` and ``html`` everywhere; ``axtree`` (accessibility
tree text) and ``screenshot`` (``uint8`` RGB array of the viewport) need ``backend="browser"``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlft.envs.spaces import UnicodeText
from rlft.envs.web.actions import MAX_ACTION_LENGTH, ActionError, ParsedAction, parse_action
from rlft.envs.web.site import BackendError, Site, TextBackend

OBSERVATION_MODES = ("text", "html", "axtree", "screenshot")
#: The observation modes each backend can produce.
BACKEND_OBSERVATION_MODES: dict[str, tuple[str, ...]] = {
    "text": ("text", "html"),
    "browser": OBSERVATION_MODES,
}
REWARD_MODES = ("sparse", "shaped")
MAX_GOAL_CHARS = 2_000
MAX_PAGE_CHARS = 200_000


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError naming them."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def make_backend(name: str, site: Site, **options: Any):
    """The backend called ``name`` browsing ``site``: ``"text"`` (in-process) or ``"browser"``."""
    if name == "text":
        if options:
            raise ValueError(f"the text backend takes no backend_options; got {sorted(options)}")
        return TextBackend(site)
    if name == "browser":
        from rlft.envs.web.browser import BrowserBackend  # imports Playwright only when used

        return BrowserBackend(site, **options)
    raise ValueError(f"backend must be one of 'text', 'browser'; got {name!r}")


class WebEnv(gym.Env[dict, str]):
    """Base class of the text-browser environments (see the module docstring).

    Subclasses set ``commands`` and implement :meth:`_new_episode`, :meth:`_execute` and
    :meth:`_valid_actions`; they may extend :meth:`_page_text` and :meth:`_extra_info`.
    """

    metadata = {"render_modes": ["ansi", "human", "rgb_array"], "render_fps": 4}
    commands: frozenset[str] = frozenset()

    def __init__(self, site: Site, *, observation_mode: str = "text", render_mode: str | None = None,
                 backend: str = "text", backend_options: dict[str, Any] | None = None):
        self.observation_mode = check_choice("observation_mode", observation_mode,
                                             OBSERVATION_MODES)
        check_choice("backend", backend, tuple(BACKEND_OBSERVATION_MODES))
        if observation_mode not in BACKEND_OBSERVATION_MODES[backend]:
            raise ValueError(f"observation_mode={observation_mode!r} needs backend='browser' "
                             f"(backend={backend!r} gives only "
                             f"{', '.join(map(repr, BACKEND_OBSERVATION_MODES[backend]))})")
        if render_mode is not None:
            check_choice("render_mode", render_mode, tuple(self.metadata["render_modes"]))
            if render_mode == "rgb_array" and backend != "browser":
                raise ValueError("render_mode='rgb_array' needs backend='browser'")
        self.render_mode = render_mode
        if backend != "browser":  # what this instance can render (gymnasium's check_env reads it)
            self.metadata = {**self.metadata, "render_modes": ["ansi", "human"]}
        self.site = site
        self.backend_name = backend
        self._backend = make_backend(backend, site, **(backend_options or {}))
        if observation_mode == "screenshot":
            width, height = self._backend.viewport
            page_space: spaces.Space = spaces.Box(0, 255, (height, width, 3), np.uint8)
        else:
            page_space = UnicodeText(MAX_PAGE_CHARS)
        self.observation_space = spaces.Dict({"goal": UnicodeText(MAX_GOAL_CHARS),
                                              "page": page_space})
        self.action_space = UnicodeText(MAX_ACTION_LENGTH)
        self.goal_text = ""
        self._done = False
        self._reset_error: str | None = None
        self._success = False
        self._score = 0.0

    # -- subclass hooks ------------------------------------------------------------------
    def _new_episode(self, options: dict[str, Any]) -> str:
        """Pick the episode's goal with ``self.np_random``; return the instruction."""
        raise NotImplementedError

    def _execute(self, action: ParsedAction) -> tuple[float, bool]:
        """Carry out a parsed action; return ``(reward, terminated)`` or raise ActionError."""
        raise NotImplementedError

    def _valid_actions(self) -> list[str]:
        """Every action that can change the state now."""
        raise NotImplementedError

    def _page_text(self) -> str:
        """The page part of the observation in the text-like modes (text, html, axtree)."""
        if self.observation_mode == "text":
            return self._backend.page.text
        if self.observation_mode == "axtree":
            return self._backend.axtree()
        return self._backend.html

    def _extra_info(self) -> dict[str, Any]:
        """Env-specific entries added to ``info``."""
        return {}

    # -- gymnasium API -------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode on the site's home page with a goal drawn from the split."""
        super().reset(seed=seed)
        self.goal_text = self._new_episode(dict(options or {}))
        self._success, self._score = False, 0.0
        self._reset_error = None
        try:
            self._backend.goto(self.site.home_url)
        except BackendError as e:
            # The browser could not show the home page (overloaded, or it failed twice): the
            # episode starts over, so a training loop goes on; its first step truncates and
            # the next reset tries again.
            self._reset_error = f"the episode could not start ({e}); reset() tries again"
        self._done = self._reset_error is not None
        obs, info = self._obs(self._reset_error), self._info(None)
        if self._reset_error is not None:
            info["error"] = self._reset_error
        return obs, info

    def step(self, action: str):
        """Apply ``action``; malformed or impossible actions set ``info["action_error"]``."""
        error = failure = None
        reward, terminated = 0.0, False
        if self._done and self._reset_error is not None:
            failure, self._reset_error = self._reset_error, None  # it never started: end it
        elif self._done:
            error = "the episode is over; call reset() to start a new one"
        else:
            try:
                reward, terminated = self._execute(parse_action(action, self.commands))
            except ActionError as e:
                error = str(e)
            except BackendError as e:
                failure = str(e)
        self._done = self._done or terminated or failure is not None
        obs, info = self._obs(error or failure), self._info(error)
        if failure is not None:
            info["error"] = failure
        if self.render_mode == "human":
            self.render()
        return obs, float(reward), terminated, failure is not None, info

    def render(self) -> str | np.ndarray | None:
        """``ansi``: the goal and the page as text; ``human``: print that; ``rgb_array``: a
        screenshot of the browser's viewport (browser backend only)."""
        if self.render_mode is None:
            gym.logger.warn("render() needs a render_mode: gym.make(..., render_mode='ansi')")
            return None
        if self.render_mode == "rgb_array":
            return self._backend.screenshot()
        text = f"Goal: {self.goal_text}\n\n{self._backend.page.text}"
        if self.render_mode == "human":
            print(text + "\n")
            return None
        return text

    def close(self) -> None:
        """Release the backend (a browser context for the browser backend)."""
        self._backend.close()

    # -- helpers -------------------------------------------------------------------------
    def _obs(self, error: str | None) -> dict[str, Any]:
        if self.observation_mode == "screenshot":
            try:
                shot = self._backend.screenshot()
            except BackendError:  # no page to show (the browser failed): a blank one
                shot = np.zeros(self.observation_space["page"].shape, dtype=np.uint8)
            return {"goal": self.goal_text, "page": shot}
        try:
            page = self._page_text()
        except BackendError:  # the browser failed and shows no page (an axtree needs one)
            page = ""
        if error is not None:
            page = f"Error: {error}\n{page}"
        return {"goal": self.goal_text, "page": page}

    def _info(self, error: str | None) -> dict[str, Any]:
        return {
            "success": self._success,
            "score": self._score,
            "valid_actions": [] if self._done else self._valid_actions(),
            "url": self._backend.url,
            "action_error": error,
            **self._extra_info(),
        }


def option_index(options: dict[str, Any], key: str, size: int, split: str) -> int | None:
    """``options[key]`` as an index in ``[0, size)`` (any integer type, numpy's too; not a bool),
    None when absent; a ValueError saying what is allowed otherwise."""
    import numbers

    index = options.get(key)
    if index is None:
        return None
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, numbers.Integral) \
            or not 0 <= int(index) < size:
        raise ValueError(f"{key} must be an int in [0, {size}) for split {split!r}; got "
                         f"{index!r}")
    return int(index)
