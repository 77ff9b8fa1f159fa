"""Separate blocks by colour: put every block of one colour in a zone of another colour."""

from __future__ import annotations

import math

import numpy as np

from rlft.envs.tabletop import shapes
from rlft.envs.tabletop.geometry import rot_z
from rlft.envs.tabletop.sim import TabletopSim
from rlft.envs.tabletop.tasks.base import Task, move_action, sample_goal_key, symmetric_turn, yaw_of

TEMPLATE = "put all the {block} blocks in the {zone} zone"
ZONE = 0.12
SLOTS = ((-0.03, -0.03), (-0.03, 0.03), (0.03, -0.03), (0.03, 0.03))


class PlaceBlocksInZone(Task):
    """Goal "put all the {block} blocks in the {zone} zone" (separating blocks by colour).

    Two or three blocks of the goal colour and two distractor blocks lie around three flat
    square zones of different colours. Goal key: ``(block colour, zone colour)``. Score: goal
    blocks inside the goal zone divided by (goal blocks + other blocks inside it), so a
    distractor dropped in the zone costs credit; success when the zone holds exactly the goal
    blocks.
    """

    name = "place-blocks-in-zone"
    max_steps = 10

    def build(self, sim: TabletopSim, rng: np.random.Generator) -> None:
        def draw(r: np.random.Generator, palette: list[str], _held: list[str]) -> tuple:
            a, b = r.choice(len(palette), size=2, replace=False)
            return (palette[a], palette[b])

        block_c, zone_c = sample_goal_key(rng, self.split, draw)
        self.goal_text = TEMPLATE.format(block=block_c, zone=zone_c)
        others = self.distractor_colors((block_c, zone_c))
        self.zone = sim.place_random(rng, shapes.zone(zone_c, ZONE))
        for c in rng.choice(others, size=2, replace=False):
            sim.place_random(rng, shapes.zone(str(c), ZONE))
        self.targets = [sim.place_random(rng, shapes.block(block_c)) for _ in range(int(rng.integers(2, 4)))]
        self.distractors = [sim.place_random(rng, shapes.block(str(c)))
                            for c in rng.choice(others + [zone_c], size=2, replace=False)]

    def _in_zone(self, sim: TabletopSim, body: int) -> bool:
        pos, _ = sim.pose(body)
        zpos, _ = sim.pose(self.zone)
        local = rot_z(-yaw_of(sim, self.zone))[:2, :2] @ (pos[:2] - zpos[:2])
        return bool(np.all(np.abs(local) < ZONE / 2 - 0.01) and pos[2] < 0.1)

    def score(self, sim: TabletopSim) -> float:
        """Goal blocks in the zone / (goal blocks + intruding other blocks)."""
        good = sum(self._in_zone(sim, b) for b in self.targets)
        bad = sum(self._in_zone(sim, b) for b in self.distractors)
        return good / (len(self.targets) + bad)

    def potential(self, sim: TabletopSim) -> float:
        """Score minus 0.1 x the mean distance (m) of goal blocks outside the zone to it."""
        z = sim.pose(self.zone)[0][:2]
        d = [math.hypot(*(sim.pose(b)[0][:2] - z)) for b in self.targets if not self._in_zone(sim, b)]
        return self.score(sim) - (0.1 * float(np.mean(d)) if d else 0.0)

    def oracle_action(self, sim: TabletopSim) -> np.ndarray | None:
        """Move a goal block outside the zone to a free slot, squared up with the zone."""
        zpos, _ = sim.pose(self.zone)
        zyaw = yaw_of(sim, self.zone)
        slots = [zpos[:2] + rot_z(zyaw)[:2, :2] @ np.asarray(s) for s in SLOTS]
        taken = [sim.pose(b)[0][:2] for b in self.targets + self.distractors]
        for body in self.targets:
            if not self._in_zone(sim, body):
                free = [s for s in slots if all(math.hypot(*(s - t)) > 0.03 for t in taken)]
                turn = symmetric_turn(yaw_of(sim, body), zyaw, math.pi / 2)
                return move_action(sim, body, (free or slots)[0], turn)
        return None
