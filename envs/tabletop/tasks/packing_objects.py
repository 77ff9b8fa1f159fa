"""Pack named everyday objects into the brown box, one at a time (CLIPort's packing-objects)."""

from __future__ import annotations

import math

import numpy as np

from rlft.envs.tabletop import shapes
from rlft.envs.tabletop.geometry import rot_z
from rlft.envs.tabletop.sim import TabletopSim
from rlft.envs.tabletop.tasks.base import Task, move_action, sample_goal_key, yaw_of

GOAL = "pack the {a} and the {b} in the brown box"
SUBGOAL = "pack the {obj} in the brown box"
DONE = "done: every object asked for is in the brown box"
INNER = (0.2, 0.12)  # inner size of the box: two 0.1 x 0.12 slots along its x axis
SLOTS = ((-0.05, 0.0), (0.05, 0.0))


class PackingObjects(Task):
    """Goal "pack the {a} and the {b} in the brown box", given one object per sub-goal.

    Two named everyday objects (from ``objects.json``) must go into a fixed open brown box;
    two more objects are distractors. Sub-goal: "pack the {obj} in the brown box" for the first
    object not yet in the box. Goal key: the ordered pair of names (held-out objects only in
    ``unseen``). Score: fraction of the named objects inside the box.
    """

    name = "packing-objects"
    max_steps = 8

    def build(self, sim: TabletopSim, rng: np.random.Generator) -> None:
        def draw(r: np.random.Generator, names: list[str], _held: list[str]) -> tuple:
            a, b = r.choice(len(names), size=2, replace=False)
            return (names[a], names[b])

        self.names = list(sample_goal_key(rng, self.split, draw, vocab="objects"))
        self.goal_text = GOAL.format(a=self.names[0], b=self.names[1])
        self.box = sim.place_random(rng, shapes.container("brown", INNER))
        self.objs = [sim.place_random(rng, shapes.everyday_object(n)) for n in self.names]
        pool = self.distractor_objects(self.names)
        for n in rng.choice(pool, size=2, replace=False):
            sim.place_random(rng, shapes.everyday_object(str(n)))

    def _box_frame(self, sim: TabletopSim, xy: np.ndarray) -> np.ndarray:
        pos, _ = sim.pose(self.box)
        return rot_z(-yaw_of(sim, self.box))[:2, :2] @ (xy - pos[:2])

    def _inside(self, sim: TabletopSim, body: int) -> bool:
        pos, _ = sim.pose(body)
        local = self._box_frame(sim, pos[:2])
        return bool(abs(local[0]) < INNER[0] / 2 - 0.01 and abs(local[1]) < INNER[1] / 2 - 0.01
                    and pos[2] < 0.1)

    def subgoal(self, sim: TabletopSim) -> str:
        """The first named object not yet in the box."""
        for name, body in zip(self.names, self.objs, strict=True):
            if not self._inside(sim, body):
                return SUBGOAL.format(obj=name)
        return DONE

    def score(self, sim: TabletopSim) -> float:
        """Fraction of the named objects inside the box."""
        return sum(self._inside(sim, b) for b in self.objs) / len(self.objs)

    def potential(self, sim: TabletopSim) -> float:
        """Score minus 0.1 x the mean distance (m) of the objects still outside to the box."""
        box = sim.pose(self.box)[0][:2]
        d = [math.hypot(*(sim.pose(b)[0][:2] - box)) for b in self.objs if not self._inside(sim, b)]
        return self.score(sim) - (0.1 * float(np.mean(d)) if d else 0.0)

    def oracle_action(self, sim: TabletopSim) -> np.ndarray | None:
        """Move the current sub-goal's object to a free slot of the box."""
        pos, _ = sim.pose(self.box)
        r = rot_z(yaw_of(sim, self.box))[:2, :2]
        slots = [pos[:2] + r @ np.asarray(s) for s in SLOTS]
        taken = [sim.pose(b)[0][:2] for b in sim.objects if sim.objects[b].movable]
        for body in self.objs:
            if not self._inside(sim, body):
                free = [s for s in slots if all(math.hypot(*(s - t)) > 0.04 for t in taken)]
                return move_action(sim, body, (free or slots)[0])
        return None
