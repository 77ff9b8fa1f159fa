"""The task contract: a task samples a goal and builds the scene, then scores the state and
knows how to solve it (its oracle). The environment (:mod:`rlft.envs.tabletop.env`) is only the
physics shell around it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rlft.envs.tabletop.geometry import quat_yaw, wrap_angle
from rlft.envs.tabletop.shapes import color_names, object_names
from rlft.envs.tabletop.sim import TabletopSim

if TYPE_CHECKING:
    from rlft.envs.tabletop.env import TabletopEnv

SPLITS = ("train", "val", "test", "unseen")


def split_of(key: Sequence[Any]) -> str:
    """The split (``train`` 70% / ``val`` 15% / ``test`` 15%) a seen goal key belongs to.

    A stable hash of the key, so the partition is the same in every process and version.
    """
    h = zlib.crc32(repr(tuple(key)).encode()) % 100
    return "train" if h < 70 else ("val" if h < 85 else "test")


def sample_goal_key(rng: np.random.Generator, split: str,
                    draw: Callable[[np.random.Generator, list[str], list[str]], tuple],
                    vocab: str = "colors") -> tuple:
    """Draw goal keys with ``draw(rng, seen, held_out)`` until one belongs to ``split``.

    ``vocab`` is ``"colors"`` or ``"objects"``. For ``train``/``val``/``test`` ``draw`` gets the
    seen vocabulary only and the key's hash picks the split; for ``unseen`` it gets both lists
    and the key must use at least one held-out word (a colour or object never in train).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    names = color_names if vocab == "colors" else object_names
    seen, held = names("seen"), names("unseen")
    for _ in range(10_000):
        if split == "unseen":
            key = draw(rng, seen + held, held)
            if any(word in held for word in _words(key)):
                return key
        else:
            key = draw(rng, seen, [])
            if split_of(key) == split:
                return key
    raise RuntimeError(f"no goal found for split {split!r}")


def _words(key: Sequence[Any]) -> list[str]:
    out: list[str] = []
    for k in key:
        out.extend(_words(k) if isinstance(k, (tuple, list)) else [str(k)])
    return out


class Task:
    """Base class of tabletop tasks.

    Subclasses set ``name`` and ``max_steps`` and implement :meth:`build` (sample a goal with
    the episode's generator and add the objects), :meth:`score` (how much of the goal holds now,
    in [0, 1]) and :meth:`oracle_action`. Sequential tasks override :meth:`subgoal` and
    :meth:`update`. All randomness comes from the generator passed to :meth:`reset`.
    """

    name: str = "task"
    max_steps: int = 10

    def __init__(self, split: str = "train"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.split = split
        self.goal_text = ""

    def distractor_colors(self, exclude: Sequence[str]) -> list[str]:
        """Colours for distractors: seen colours only, plus held-out ones in ``unseen``."""
        pool = color_names("seen") + (color_names("unseen") if self.split == "unseen" else [])
        return [c for c in pool if c not in exclude]

    def distractor_objects(self, exclude: Sequence[str]) -> list[str]:
        """Object names for distractors: seen only, plus held-out ones in ``unseen``."""
        pool = object_names("seen") + (object_names("unseen") if self.split == "unseen" else [])
        return [c for c in pool if c not in exclude]

    def reset(self, sim: TabletopSim, rng: np.random.Generator) -> None:
        """Start an episode: sample the goal and build the scene into ``sim``."""
        self.build(sim, rng)

    def build(self, sim: TabletopSim, rng: np.random.Generator) -> None:
        """Sample the goal (set ``self.goal_text``) and add objects."""
        raise NotImplementedError

    def goal(self) -> str:
        """The whole instruction."""
        return self.goal_text

    def subgoal(self, sim: TabletopSim) -> str:
        """The instruction for the current step (the whole goal for one-shot tasks)."""
        return self.goal_text

    def update(self, sim: TabletopSim) -> None:
        """Called after every executed pick-and-place (sequential tasks advance here)."""

    def score(self, sim: TabletopSim) -> float:
        """Fraction of the goal achieved now, in [0, 1]."""
        raise NotImplementedError

    def success(self, sim: TabletopSim) -> bool:
        """Whether the whole goal holds."""
        return self.score(sim) >= 1.0 - 1e-9

    def potential(self, sim: TabletopSim) -> float:
        """Potential for the dense reward: the score minus a small distance-to-go term."""
        return self.score(sim)

    def oracle_action(self, sim: TabletopSim) -> np.ndarray | None:
        """The expert's next action from privileged state (``None`` when nothing is left)."""
        raise NotImplementedError

    def oracle(self, env: TabletopEnv) -> Oracle:
        """The scripted expert agent for this task in ``env``."""
        return Oracle(env)


class Oracle:
    """Scripted expert: reads the simulator state (privileged) and returns the next action."""

    def __init__(self, env: TabletopEnv):
        self.env = env

    def reset(self) -> None:
        """Nothing to forget: the oracle is stateless."""

    def act(self, obs: dict, info: dict) -> np.ndarray:
        """Next pick-and-place action ``[px, py, qx, qy, theta]``."""
        env = self.env.unwrapped
        action = env.task.oracle_action(env.sim)
        if action is None:  # goal already met: pick whatever is at the centre, put it back
            cx, cy = env.workspace.center
            action = np.array([cx, cy, cx, cy, 0.0])
        return np.asarray(action, dtype=np.float32)


# --- helpers tasks share ------------------------------------------------------------------


def pick_point(sim: TabletopSim, body: int) -> np.ndarray:
    """A table ``xy`` near the top centre of ``body`` where a downward ray hits ``body`` first,
    and still does 2 mm to either side (so float32 rounding cannot slip off an edge)."""
    pts, _ = sim.world_points(body)
    pos, _ = sim.pose(body)
    top = pts[pts[:, 2] >= pts[:, 2].max() - 0.003]
    cands = np.concatenate([pos[None, :2], top[:, :2]])
    order = np.argsort(np.hypot(cands[:, 0] - pos[0], cands[:, 1] - pos[1]), kind="stable")
    offsets = np.array([[0, 0], [0.002, 0], [-0.002, 0], [0, 0.002], [0, -0.002]])
    for i in order[:: max(1, len(order) // 200)]:
        xy = cands[i]
        if all(sim.body_under(float(x), float(y))[0] == body for x, y in xy + offsets):
            return xy.copy()
    return pos[:2].copy()


def move_action(sim: TabletopSim, body: int, target_xy: Sequence[float], theta: float = 0.0) -> np.ndarray:
    """The action that picks ``body`` and lands its origin on ``target_xy`` turned by ``theta``."""
    pick = pick_point(sim, body)
    pos, _ = sim.pose(body)
    rz = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    place = np.asarray(target_xy) - rz @ (pos[:2] - pick)
    return np.array([pick[0], pick[1], place[0], place[1], wrap_angle(theta)])


def yaw_of(sim: TabletopSim, body: int) -> float:
    """Yaw of ``body`` in radians."""
    return quat_yaw(sim.pose(body)[1])


def symmetric_turn(current: float, target: float, symmetry: float) -> float:
    """Smallest rotation taking yaw ``current`` to ``target`` modulo ``symmetry`` radians."""
    d = (target - current) % symmetry
    return d - symmetry if d > symmetry / 2 else d
