"""Tabletop tasks, one small module each; ``TASKS`` maps a task name to its class."""

from __future__ import annotations

from rlft.envs.tabletop.tasks.base import Oracle, Task
from rlft.envs.tabletop.tasks.block_insertion import BlockInsertion
from rlft.envs.tabletop.tasks.packing_objects import PackingObjects
from rlft.envs.tabletop.tasks.place_blocks_in_zone import PlaceBlocksInZone
from rlft.envs.tabletop.tasks.put_block_in_bowl import PutBlockInBowl
from rlft.envs.tabletop.tasks.stack_block_pyramid import StackBlockPyramid
from rlft.envs.tabletop.tasks.towers_of_hanoi import TowersOfHanoi

TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        PutBlockInBowl,
        PackingObjects,
        StackBlockPyramid,
        PlaceBlocksInZone,
        TowersOfHanoi,
        BlockInsertion,
    )
}

__all__ = ["TASKS", "Oracle", "Task"]
