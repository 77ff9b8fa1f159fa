"""Tabletop assets: the colour palette and the catalogue of everyday objects (JSON).

Blocks, bowls, boxes, zones, rings and pegs are built procedurally from box and cylinder
primitives (see ``rlft.envs.tabletop.shapes``); everyday objects use meshes shipped with
``pybullet_data``, described in ``objects.json``.
"""
