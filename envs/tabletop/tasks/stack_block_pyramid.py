"""Build a 3-2-1 block pyramid on three brown squares, one named block per sub-goal."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rlft.envs.tabletop import shapes
from rlft.envs.tabletop.geometry import rot_z
from rlft.envs.tabletop.sim import TabletopSim
from rlft.envs.tabletop.tasks.base import Task, move_action, sample_goal_key, symmetric_turn, yaw_of

SHADES = (("lightest", (0.80, 0.65, 0.50)), ("middle", (0.62, 0.46, 0.33)),
          ("darkest", (0.42, 0.29, 0.20)))
TILE_T = 0.004
B = shapes.BLOCK_SIZE
# Target centres in the base frame: bottom row on the tiles, then two, then one on top.
TARGETS = (
    (0.0, -0.05, TILE_T + B / 2), (0.0, 0.0, TILE_T + B / 2), (0.0, 0.05, TILE_T + B / 2),
    (0.0, -0.025, TILE_T + 1.5 * B), (0.0, 0.025, TILE_T + 1.5 * B),
    (0.0, 0.0, TILE_T + 2.5 * B),
)
DONE = "done: the pyramid is built"
#: the two positions each upper position rests on (bridges: "on the a and b blocks")
SUPPORTS = {3: (0, 1), 4: (1, 2), 5: (3, 4)}


class StackBlockPyramid(Task):
    """Sequential goal: build a pyramid of six coloured blocks, bottom row first.

    Sub-goals: "put the {c} block on the {lightest|middle|darkest} brown square" (bottom row),
    then "put the {c} block on the {a} and {b} blocks" (middle row and top). Goal key: the six
    colours in pyramid order. Score: the number of pyramid positions filled correctly in order,
    over six; success when all six blocks stand at their positions.
    """

    name = "stack-block-pyramid"
    max_steps = 12

    def build(self, sim: TabletopSim, rng: np.random.Generator) -> None:
        def draw(r: np.random.Generator, palette: list[str], _held: list[str]) -> tuple:
            return tuple(palette[i] for i in r.choice(len(palette), size=6, replace=False))

        self.colors = list(sample_goal_key(rng, self.split, draw))
        c = self.colors
        self.goal_text = (f"build a pyramid: the {c[0]}, {c[1]} and {c[2]} blocks on the lightest, "
                          f"middle and darkest brown squares, the {c[3]} and {c[4]} blocks on "
                          f"them, and the {c[5]} block on top")
        self.base_xy = np.asarray(sim.sample_position(rng, 0.09))
        self.base_yaw = float(rng.uniform(-math.pi, math.pi))
        r = rot_z(self.base_yaw)
        for k, (shade, rgb) in enumerate(SHADES):
            xy = self.base_xy + r[:2, :2] @ np.asarray(TARGETS[k][:2])
            sim.add(shapes.tile(rgb, f"{shade} brown square", B + 0.005, TILE_T), tuple(xy), self.base_yaw)
        self.blocks = [sim.place_random(rng, shapes.block(col)) for col in c]
        self.targets = [np.concatenate([self.base_xy + r[:2, :2] @ np.asarray(t[:2]), [t[2]]])
                        for t in TARGETS]

    def _placed(self, sim: TabletopSim, k: int) -> bool:
        pos, _ = sim.pose(self.blocks[k])
        t = self.targets[k]
        return bool(math.hypot(*(pos[:2] - t[:2])) < 0.015 and abs(pos[2] - t[2]) < 0.01)

    def next_position(self, sim: TabletopSim) -> int:
        """Index (0-5, pyramid order) of the first position not yet filled; 6 when built."""
        for k in range(6):
            if not self._placed(sim, k):
                return k
        return 6

    def subgoal(self, sim: TabletopSim) -> str:
        """The instruction for the first pyramid position not yet filled."""
        k = self.next_position(sim)
        c = self.colors
        if k == 6:
            return DONE
        if k < 3:
            return f"put the {c[k]} block on the {SHADES[k][0]} brown square"
        below = SUPPORTS[k]
        return f"put the {c[k]} block on the {c[below[0]]} and {c[below[1]]} blocks"

    def aim_errors(self, sim: TabletopSim, k: int, place_xy: Any) -> dict[str, float]:
        """How far a place at ``place_xy`` (table metres) is from where position ``k``'s block
        belongs: ``target`` (m), the distance to the position's fixed target, which success is
        judged on (within 15 mm); for the upper positions (bridges, ``k >= 3``) also
        ``midpoint`` (m), the distance to the midpoint of the two blocks it should rest on as
        they stand now, and ``support`` (m), the distance to the nearer of their centres (small:
        the place is on one block, not across two)."""
        xy = np.asarray(place_xy, dtype=float)[:2]
        out = {"target": float(np.linalg.norm(xy - self.targets[k][:2]))}
        if k in SUPPORTS:
            centres = [np.asarray(sim.pose(self.blocks[i])[0][:2]) for i in SUPPORTS[k]]
            out["midpoint"] = float(np.linalg.norm(xy - (centres[0] + centres[1]) / 2))
            out["support"] = float(min(np.linalg.norm(xy - c) for c in centres))
        return out

    def score(self, sim: TabletopSim) -> float:
        """Positions filled correctly, in order, over six."""
        return self.next_position(sim) / 6

    def potential(self, sim: TabletopSim) -> float:
        """Score minus 0.1 x the distance (m) of the next block to its position."""
        k = self.next_position(sim)
        if k == 6:
            return 1.0
        d = float(np.linalg.norm(sim.pose(self.blocks[k])[0] - self.targets[k]))
        return k / 6 - 0.1 * d

    def oracle_action(self, sim: TabletopSim) -> np.ndarray | None:
        """Place the next block on its position, squared up with the base."""
        k = self.next_position(sim)
        if k == 6:
            return None
        body = self.blocks[k]
        turn = symmetric_turn(yaw_of(sim, body), self.base_yaw, math.pi / 2)
        return move_action(sim, body, self.targets[k][:2], turn)
