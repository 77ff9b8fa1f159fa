"""CLIPort / Ravens-style language-conditioned pick-and-place in PyBullet.

``TabletopEnv`` (in :mod:`rlft.envs.tabletop.env`) is the physics shell; each task in
:mod:`rlft.envs.tabletop.tasks` owns its goals, reward, success test and oracle.
"""
