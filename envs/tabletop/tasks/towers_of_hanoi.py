"""Towers of Hanoi with three coloured rings on a three-peg stand, one move per sub-goal."""

from __future__ import annotations

import math

import numpy as np

from rlft.envs.tabletop import shapes
from rlft.envs.tabletop.sim import TabletopSim
from rlft.envs.tabletop.tasks.base import Task, move_action, sample_goal_key

PEGS = ("left", "middle", "right")  # along +y, i.e. left to right in the heightmap
SPACING = 0.1
OUTER = (0.045, 0.038, 0.031)  # ring sizes, largest first
THICK = 0.015
BASE_TOP = shapes.STAND_TOP
DONE = "done: the tower is on the {peg} peg"


def hanoi_moves(n: int, src: int, dst: int, aux: int) -> list[tuple[int, int]]:
    """Optimal moves ``(ring, to_peg)`` of rings ``0..n-1`` (0 largest) from ``src`` to ``dst``."""
    if n == 0:
        return []
    ring = 3 - n  # with three rings: n=3 moves ring 0 (largest) ... n=1 moves ring 2
    return hanoi_moves(n - 1, src, aux, dst) + [(ring, dst)] + hanoi_moves(n - 1, aux, dst, src)


class TowersOfHanoi(Task):
    """Goal "move the tower from the {a} peg to the {b} peg", one ring move per sub-goal.

    Sub-goals: "move the {colour} ring to the {left|middle|right} peg", the seven moves of the
    optimal solution. A sub-goal is done when every ring sits where that move leaves it. Goal
    key: ``(ring colours large to small, start peg, target peg)``. Score: moves done over seven.
    """

    name = "towers-of-hanoi"
    max_steps = 14

    def build(self, sim: TabletopSim, rng: np.random.Generator) -> None:
        def draw(r: np.random.Generator, palette: list[str], _held: list[str]) -> tuple:
            cols = tuple(palette[i] for i in r.choice(len(palette), size=3, replace=False))
            src, dst = r.choice(3, size=2, replace=False)
            return (cols, PEGS[int(src)], PEGS[int(dst)])

        cols, src, dst = sample_goal_key(rng, self.split, draw)
        self.colors = list(cols)
        s, d = PEGS.index(src), PEGS.index(dst)
        self.target_peg = d
        self.goal_text = f"move the tower from the {src} peg to the {dst} peg"
        xy = sim.sample_position(rng, SPACING + 0.06)
        self.stand = sim.add(shapes.peg_stand(SPACING), xy, 0.0)
        self.peg_body = sim.add(shapes.pegs(SPACING), xy, 0.0)
        self.pegs = [np.array([xy[0], xy[1] + (k - 1) * SPACING]) for k in range(3)]
        self.rings = [sim.add(shapes.ring(c, OUTER[i], thick=THICK), tuple(self.pegs[s]), 0.0,
                              z=BASE_TOP + THICK * (i + 0.5) + 1e-4)
                      for i, c in enumerate(self.colors)]
        for body in self.rings:  # rings collide as disks, so the pegs only guide them
            sim.client.setCollisionFilterPair(self.peg_body, body, -1, -1, 0)
        self.moves = hanoi_moves(3, s, d, 3 - s - d)
        self.configs = []
        where = [s, s, s]
        for ring, peg in self.moves:
            where = list(where)
            where[ring] = peg
            self.configs.append(where)
        self.index = 0

    def _matches(self, sim: TabletopSim, where: list[int]) -> bool:
        for i, body in enumerate(self.rings):
            pos, _ = sim.pose(body)
            level = sum(1 for j in range(i) if where[j] == where[i])
            z = BASE_TOP + THICK * (level + 0.5)
            if math.hypot(*(pos[:2] - self.pegs[where[i]])) > 0.012 or abs(pos[2] - z) > 0.008:
                return False
        return True

    def update(self, sim: TabletopSim) -> None:
        """Advance past every move whose resulting configuration now holds."""
        while self.index < len(self.configs) and self._matches(sim, self.configs[self.index]):
            self.index += 1

    def subgoal(self, sim: TabletopSim) -> str:
        """The next move of the plan."""
        if self.index >= len(self.moves):
            return DONE.format(peg=PEGS[self.target_peg])
        ring, peg = self.moves[self.index]
        return f"move the {self.colors[ring]} ring to the {PEGS[peg]} peg"

    def score(self, sim: TabletopSim) -> float:
        """Moves done over seven."""
        return self.index / len(self.moves)

    def potential(self, sim: TabletopSim) -> float:
        """Score minus 0.1 x the distance (m) of the next move's ring to its peg."""
        if self.index >= len(self.moves):
            return self.score(sim)
        ring, peg = self.moves[self.index]
        d = math.hypot(*(sim.pose(self.rings[ring])[0][:2] - self.pegs[peg]))
        return self.score(sim) - 0.1 * d

    def success(self, sim: TabletopSim) -> bool:
        """All seven moves done and the tower stands on the target peg."""
        return self.index == len(self.moves) and self._matches(sim, self.configs[-1])

    def oracle_action(self, sim: TabletopSim) -> np.ndarray | None:
        """Move the ring of the current sub-goal onto its peg."""
        if self.index >= len(self.moves):
            return None
        ring, peg = self.moves[self.index]
        return move_action(sim, self.rings[ring], self.pegs[peg])
