"""``TabletopEnv``: the Gymnasium shell around a tabletop task (physics, observation, reward)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlft.envs.spaces import UnicodeText
from rlft.envs.tabletop.heightmap import HeightmapRenderer, Workspace
from rlft.envs.tabletop.shapes import TABLE_RGB
from rlft.envs.tabletop.sim import TabletopSim
from rlft.envs.tabletop.tasks import TASKS
from rlft.envs.tabletop.tasks.base import Oracle, Task

REWARD_MODES = ("sparse", "shaped", "dense")


def _short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, or its type when ``repr`` itself fails."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TabletopEnv(gym.Env):
    """Language-conditioned pick-and-place on a table (CLIPort / Ravens style), in PyBullet.

    A task (``task=`` one of :data:`rlft.envs.tabletop.tasks.TASKS`) samples a goal such as
    "put the red blocks in a green bowl" and lays out blocks, bowls, boxes or everyday objects
    on a 0.5 x 1.0 m workspace. The agent sees a top-down heightmap and the goal text and moves
    one object per step with a suction pick-and-place. No arm is simulated: a floating suction
    cup attaches the topmost object under the pick point, carries it clear of the scene, lowers
    it over the place point until it touches what lies below and releases it; physics then runs
    until everything rests (at most ``settle_steps`` steps, never a wall-clock timeout).

    ## Action Space

    ``Box(5)`` float32: ``[pick_x, pick_y, place_x, place_y, theta]``, table metres and
    radians. ``pick`` and ``place`` must lie in the workspace (x in [0.25, 0.75], y in
    [-0.5, 0.5] by default); ``theta`` in [-pi, pi] turns the held object about the suction
    axis, and the picked point lands on ``place``. Convert with :meth:`pixel_to_table` and
    :meth:`table_to_pixel`. Malformed actions (wrong shape, NaN/inf, out of range) and picks of
    empty space or fixed objects are rejected: the step counts, the state is unchanged, the
    reward is 0 and ``info["action_error"]`` says why.

    ## Observation Space

    ``Dict(goal=UnicodeText(256), color=Box(0, 255, (H, W, 3), uint8), depth=Box(0, 0.3, (H, W),
    float32))``: the current (sub-)goal text and an orthographic top-down heightmap of the
    workspace, rows along x and columns along y; ``depth`` is the height above the table in
    metres. Default ``H, W = 160, 320`` (3.125 mm per pixel). ``render_mode="rgb_array"`` gives a
    perspective picture for people.

    ## Rewards

    ``reward_mode="sparse"``: 1 on the step that completes the goal, else 0. ``"shaped"``:
    Ravens-style partial credit, the increase of the best task score so far (per object placed,
    per sub-goal done), which sums to exactly 1 over an episode that succeeds. ``"dense"``:
    potential-based ``phi(s') - phi(s)`` with ``phi`` = score minus a small distance-to-go term
    (optimal policies unchanged). ``info`` always has ``success``, ``score`` (task measure in
    [0, 1]), ``subgoal``, ``goal``, ``action_error`` and ``sim_error`` (``""`` when none).

    ## Episode End

    Terminates on success, or when an object fell off the table or exploded
    (``info["sim_error"]`` names it). Truncation is the registered ``max_episode_steps``.

    ## Arguments

    * ``task``: task name (see ``TASKS``), e.g. ``"put-block-in-bowl"``; or several (a list, or
      ``"all"`` for every task: ``rlft/Tabletop-v0``, CLIPort's multi-task setting, where the
      goal says the task). With several, each reset plays one: ``options={"task": name}``, else
      ``tasks[seed % len(tasks)]`` for a seeded reset (so seeds ``0..n-1`` cover the tasks
      evenly), else one drawn from the env's generator; the env then truncates an episode at
      that task's own ``max_steps`` itself. ``info["task"]`` names the task played.
    * ``split``: ``"train" | "val" | "test"`` (disjoint goals over seen colours / objects) or
      ``"unseen"`` (goals using colours / objects never in train).
    * ``reward_mode``: ``"sparse" | "shaped" | "dense"``.
    * ``image_size``: heightmap ``(H, W)``, default ``(160, 320)``.
    * ``render_mode``: ``None`` or ``"rgb_array"``.
    * ``settle_steps``: physics-step budget per release (default 240 = 1 s simulated).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(self, task: str | Sequence[str] = "put-block-in-bowl", *, split: str = "train",
                 reward_mode: str = "sparse", image_size: tuple[int, int] = (160, 320),
                 render_mode: str | None = None, settle_steps: int = 240):
        names = list(TASKS) if task == "all" else [task] if isinstance(task, str) else list(task)
        unknown = [t for t in names if t not in TASKS]
        if unknown or not names:
            raise ValueError(f"unknown task {unknown[0] if unknown else task!r}; choose from "
                             f"{sorted(TASKS)} (or 'all', or a list of them)")
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        h, w = (int(v) for v in image_size)
        self.workspace = Workspace(height=h, width=w)
        self.tasks: dict[str, Task] = {t: TASKS[t](split) for t in dict.fromkeys(names)}
        self.task: Task = next(iter(self.tasks.values()))
        """The task being played (with several, the current episode's)."""
        self._steps = 0
        self.reward_mode = reward_mode
        self.render_mode = render_mode
        self.sim = TabletopSim(self.workspace, visuals=render_mode is not None,
                               settle_steps=settle_steps)
        self.renderer = HeightmapRenderer(self.workspace, TABLE_RGB)
        ws = self.workspace
        (x0, x1), (y0, y1) = ws.x_range, ws.y_range
        self.action_space = spaces.Box(
            low=np.array([x0, y0, x0, y0, -math.pi], dtype=np.float32),
            high=np.array([x1, y1, x1, y1, math.pi], dtype=np.float32),
            dtype=np.float32,
        )
        self.observation_space = spaces.Dict({
            "goal": UnicodeText(256),
            "color": spaces.Box(0, 255, (h, w, 3), dtype=np.uint8),
            "depth": spaces.Box(0.0, ws.max_height, (h, w), dtype=np.float32),
        })
        self._obs: dict[str, Any] | None = None
        self._best = 0.0
        self._potential = 0.0
        self._done = False

    # --- helpers ----------------------------------------------------------------------------

    def pixel_to_table(self, row: float, col: float) -> tuple[float, float]:
        """Table ``(x, y)`` (metres) of the centre of heightmap pixel ``(row, col)``."""
        x, y = self.workspace.pixel_to_table(row, col)
        return float(x), float(y)

    def table_to_pixel(self, x: float, y: float) -> tuple[int, int]:
        """Heightmap pixel ``(row, col)`` containing table ``(x, y)``."""
        r, c = self.workspace.table_to_pixel(x, y)
        return int(r), int(c)

    def expert(self) -> Oracle:
        """The task's scripted expert (privileged state): ``reset()``, ``act(obs, info)``."""
        return self.task.oracle(self)

    def _observe(self) -> dict[str, Any]:
        color, depth = self.renderer.render(*self.sim.points(movable=True))
        return {"goal": self.task.subgoal(self.sim), "color": color, "depth": depth}

    def _fresh_obs(self) -> dict[str, Any]:
        # a rejected action leaves the state unchanged; callers still get arrays of their own
        assert self._obs is not None
        return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in self._obs.items()}

    def _info(self, action_error: str = "", sim_error: str = "") -> dict[str, Any]:
        return {
            "success": bool(self.task.success(self.sim)),
            "score": float(self.task.score(self.sim)),
            "goal": self.task.goal(),
            "subgoal": self.task.subgoal(self.sim),
            "action_error": action_error,
            "sim_error": sim_error,
            "task": self.task.name,
        }

    def _check_action(self, action: Any) -> tuple[np.ndarray | None, str]:
        try:
            a = np.asarray(action, dtype=np.float64)
        except Exception:  # noqa: BLE001  (whatever the object raises: big ints, grad tensors...)
            return None, ("action must be 5 numbers [pick_x, pick_y, place_x, place_y, theta], "
                          f"got {_short_repr(action)}")
        if a.shape != (5,):
            return None, f"action must have shape (5,) [pick_x, pick_y, place_x, place_y, theta], got shape {a.shape}"
        if not np.all(np.isfinite(a)):
            return None, f"action has NaN or infinite values: {a.tolist()}"
        lo, hi = self.action_space.low.astype(np.float64), self.action_space.high.astype(np.float64)
        names = ("pick_x", "pick_y", "place_x", "place_y", "theta")
        bad = [f"{n}={v:.3f} not in [{low:.3f}, {high:.3f}]"
               for n, v, low, high in zip(names, a, lo, hi, strict=True)
               if not (low - 1e-6 <= v <= high + 1e-6)]
        if bad:
            return None, "action out of range (off the workspace): " + "; ".join(bad)
        return a, ""

    # --- gym API ----------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode; the layout and goal come only from ``seed`` (via ``np_random``)."""
        super().reset(seed=seed)
        self.task = self._pick_task(seed, options)
        self._steps = 0
        self.sim.reset()
        self.task.reset(self.sim, self.np_random)
        self.sim.color_visuals()
        self.renderer.set_background(*self.sim.points(movable=False))
        self._best = self.task.score(self.sim)
        self._potential = self.task.potential(self.sim)
        self._obs = self._observe()
        return self._fresh_obs(), self._info()

    @property
    def multi_task(self) -> bool:
        """Whether this env plays several tasks (then it truncates episodes itself)."""
        return len(self.tasks) > 1

    def _pick_task(self, seed: int | None, options: dict[str, Any] | None) -> Task:
        names = list(self.tasks)
        chosen = (options or {}).get("task")
        if chosen is not None:
            if chosen not in self.tasks:
                raise ValueError(f"options['task'] must be one of this env's tasks {names}; "
                                 f"got {chosen!r}")
            return self.tasks[chosen]
        if len(names) == 1:
            return self.task
        if seed is not None:
            return self.tasks[names[int(seed) % len(names)]]
        return self.tasks[names[int(self.np_random.integers(len(names)))]]

    def step(self, action: Any):
        """Execute one pick-and-place; never raises on bad actions (see ``action_error``)."""
        if self._obs is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        a, error = self._check_action(action)
        sim_error = ""
        if a is not None:
            error = self.sim.pick_place((a[0], a[1]), (a[2], a[3]), float(a[4]))
        if not error:
            sim_error = "; ".join(self.sim.check_lost())
            self.task.update(self.sim)
            self._obs = self._observe()
        info = self._info(error, sim_error)
        score, success = info["score"], info["success"]
        reward = 0.0
        if not error:
            if self.reward_mode == "sparse":
                reward = 1.0 if success else 0.0
            elif self.reward_mode == "shaped":
                reward = max(0.0, score - self._best)
            else:
                phi = self.task.potential(self.sim)
                reward = phi - self._potential
                self._potential = phi
        self._best = max(self._best, score)
        terminated = bool(success or sim_error)
        self._steps += 1
        truncated = self.multi_task and not terminated and self._steps >= self.task.max_steps
        return self._fresh_obs(), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """A perspective RGB image (``render_mode="rgb_array"``), else ``None``."""
        if self.render_mode == "rgb_array":
            return self.sim.render_perspective()
        return None

    def close(self) -> None:
        """Disconnect the PyBullet client."""
        self.sim.close()
        super().close()

    def __deepcopy__(self, memo: dict[int, Any]) -> TabletopEnv:
        raise TypeError("a TabletopEnv cannot be copied: the copy would share (and close) its "
                        "PyBullet client; make another with gym.make(...) and reset it with the "
                        "same seed")

    def __reduce__(self) -> Any:
        raise TypeError("a TabletopEnv cannot be pickled: its PyBullet client lives in this "
                        "process; pass the env id and kwargs instead (gym.make_vec(..., "
                        "vectorization_mode='async') does)")
