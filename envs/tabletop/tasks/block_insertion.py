"""Put an L-shaped block onto the matching L-shaped outline: position and rotation matter."""

from __future__ import annotations

import math

import numpy as np

from rlft.envs.tabletop import shapes
from rlft.envs.tabletop.geometry import wrap_angle
from rlft.envs.tabletop.sim import TabletopSim
from rlft.envs.tabletop.tasks.base import Task, move_action, sample_goal_key, yaw_of

TEMPLATE = "put the {block} L-shaped block on the {outline} L-shaped outline"
POS_TOL = 0.01
YAW_TOL = math.radians(10)


class BlockInsertion(Task):
    """Goal "put the {block} L-shaped block on the {outline} L-shaped outline".

    One L-shaped block and two flat L-shaped outlines (the goal colour and a distractor), all
    at random rotations; the L has no rotational symmetry, so ``theta`` must be right. Goal key:
    ``(block colour, outline colour)``. Score 1 when the block is within 1 cm and 10 degrees of
    the goal outline, else 0.
    """

    name = "block-insertion"
    max_steps = 4

    def build(self, sim: TabletopSim, rng: np.random.Generator) -> None:
        def draw(r: np.random.Generator, palette: list[str], _held: list[str]) -> tuple:
            a, b = r.choice(len(palette), size=2, replace=False)
            return (palette[a], palette[b])

        block_c, outline_c = sample_goal_key(rng, self.split, draw)
        self.goal_text = TEMPLATE.format(block=block_c, outline=outline_c)
        self.outline = sim.place_random(rng, shapes.l_outline(outline_c))
        other = rng.choice(self.distractor_colors((block_c, outline_c)))
        sim.place_random(rng, shapes.l_outline(str(other)))
        self.block = sim.place_random(rng, shapes.l_block(block_c))

    def errors(self, sim: TabletopSim) -> tuple[float, float]:
        """How far the block is from its outline: centre distance (m) and yaw error (rad,
        0 to pi), the two quantities success is judged on (1 cm, 10 degrees)."""
        pos, _ = sim.pose(self.block)
        opos, _ = sim.pose(self.outline)
        d = math.hypot(*(pos[:2] - opos[:2]))
        return d, abs(wrap_angle(yaw_of(sim, self.block) - yaw_of(sim, self.outline)))

    def score(self, sim: TabletopSim) -> float:
        """1 when the block lies on the goal outline (position and rotation), else 0."""
        d, a = self.errors(sim)
        z = sim.pose(self.block)[0][2]
        return 1.0 if d < POS_TOL and a < YAW_TOL and z < 0.03 else 0.0

    def potential(self, sim: TabletopSim) -> float:
        """Score minus 0.1 x distance (m) minus 0.02 x angle error (rad)."""
        d, a = self.errors(sim)
        return self.score(sim) - (0.1 * d + 0.02 * a if self.score(sim) < 1 else 0.0)

    def oracle_action(self, sim: TabletopSim) -> np.ndarray | None:
        """Pick the block and place it on the outline, turned to the outline's yaw."""
        turn = wrap_angle(yaw_of(sim, self.outline) - yaw_of(sim, self.block))
        return move_action(sim, self.block, sim.pose(self.outline)[0][:2], turn)
