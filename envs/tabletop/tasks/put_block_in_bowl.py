"""Put the blocks of one colour in a bowl of another colour (CLIPort's put-block-in-bowl)."""

from __future__ import annotations

import math

import numpy as np

from rlft.envs.tabletop import shapes
from rlft.envs.tabletop.sim import TabletopSim
from rlft.envs.tabletop.tasks.base import Task, move_action, sample_goal_key

TEMPLATE = "put the {block} blocks in a {bowl} bowl"
INSIDE = 0.045  # a block counts as in a bowl when its centre is this close to the bowl's axis


class PutBlockInBowl(Task):
    """Goal "put the {block} blocks in a {bowl} bowl".

    One or two blocks of the goal colour, as many bowls of the goal colour, and distractor
    blocks and bowls of other colours. Goal key: ``(block colour, bowl colour)``. Score: the
    fraction of goal-colour blocks resting inside goal-colour bowls; success when all are.
    """

    name = "put-block-in-bowl"
    max_steps = 8

    def build(self, sim: TabletopSim, rng: np.random.Generator) -> None:
        def draw(r: np.random.Generator, palette: list[str], _held: list[str]) -> tuple:
            a, b = r.choice(len(palette), size=2, replace=False)
            return (palette[a], palette[b])

        block_c, bowl_c = sample_goal_key(rng, self.split, draw)
        self.goal_text = TEMPLATE.format(block=block_c, bowl=bowl_c)
        n = int(rng.integers(1, 3))
        others = self.distractor_colors((block_c, bowl_c))
        self.bowls = [sim.place_random(rng, shapes.bowl(bowl_c), 0.0) for _ in range(n)]
        for c in rng.choice(others, size=int(rng.integers(1, 3)), replace=False):
            sim.place_random(rng, shapes.bowl(str(c)), 0.0)
        self.blocks = [sim.place_random(rng, shapes.block(block_c)) for _ in range(n)]
        for c in rng.choice(others, size=int(rng.integers(1, 4)), replace=False):
            sim.place_random(rng, shapes.block(str(c)))

    def _bowl_of(self, sim: TabletopSim, block: int) -> int | None:
        pos, _ = sim.pose(block)
        for bowl in self.bowls:
            bp, _ = sim.pose(bowl)
            if math.hypot(*(pos[:2] - bp[:2])) < INSIDE and pos[2] < 0.08:
                return bowl
        return None

    def score(self, sim: TabletopSim) -> float:
        """Fraction of goal blocks inside goal bowls."""
        return sum(self._bowl_of(sim, b) is not None for b in self.blocks) / len(self.blocks)

    def potential(self, sim: TabletopSim) -> float:
        """Score minus 0.1 x the mean distance (m) of unplaced blocks to the nearest goal bowl."""
        left = [b for b in self.blocks if self._bowl_of(sim, b) is None]
        if not left:
            return self.score(sim)
        d = [min(math.hypot(*(sim.pose(b)[0][:2] - sim.pose(w)[0][:2])) for w in self.bowls) for b in left]
        return self.score(sim) - 0.1 * float(np.mean(d))

    def oracle_action(self, sim: TabletopSim) -> np.ndarray | None:
        """Move the first block not in a bowl to an empty goal bowl."""
        used = {self._bowl_of(sim, b) for b in self.blocks}
        for block in self.blocks:
            if self._bowl_of(sim, block) is None:
                free = [w for w in self.bowls if w not in used] or self.bowls
                return move_action(sim, block, sim.pose(free[0])[0][:2])
        return None
