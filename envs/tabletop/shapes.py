"""Procedural shapes (blocks, bowls, boxes, zones, rings, pegs) and the everyday-object catalogue.

All sizes are metres. Colours and the object catalogue are package data in
``rlft/assets/tabletop`` (``colors.json``, ``objects.json``); meshes come from ``pybullet_data``.
"""

from __future__ import annotations

import functools
import json
import math
from importlib import resources

import numpy as np
import pybullet_data

from rlft.envs.tabletop.geometry import RGBA, MeshSpec, Primitive, ShapeSpec, load_obj, rot_rpy

BLOCK_SIZE = 0.04
TABLE_RGB = (0.47, 0.45, 0.42)


def _asset_json(name: str) -> dict:
    return json.loads(resources.files("rlft.assets.tabletop").joinpath(name).read_text())


@functools.cache
def colors() -> dict[str, dict[str, tuple[float, float, float]]]:
    """``{group: {name: rgb}}``: CLIPort's held-out split, ``"seen"`` and ``"unseen"``, and
    colours no task uses: ``"pretrain"`` (``rlft pretrain-clip`` paints objects with them) and
    ``"never"`` (kept out of everything but a retrieval check)."""
    data = _asset_json("colors.json")
    return {k: {n: tuple(v) for n, v in group.items()} for k, group in data.items()
            if not k.startswith("_")}


def color_names(split: str) -> list[str]:
    """Colour names of ``"seen"`` or ``"unseen"`` (sorted, stable)."""
    return sorted(colors()[split])


def rgba(name: str, alpha: float = 1.0) -> RGBA:
    """RGBA of a named colour from either split."""
    table = {**colors()["seen"], **colors()["unseen"]}
    r, g, b = table[name]
    return (r, g, b, alpha)


def block(color: str, size: float = BLOCK_SIZE) -> ShapeSpec:
    """A cube block of side ``size``."""
    h = size / 2
    return ShapeSpec(f"{color} block", rgba(color), (Primitive("box", (h, h, h)),),
                     mass=0.1, half_height=h, radius=h * math.sqrt(2))


def l_block(color: str, arm: float = 0.07, width: float = 0.03, height: float = 0.03) -> ShapeSpec:
    """An L-shaped block: two bars meeting at the body origin's corner square."""
    h, w = height / 2, width / 2
    prims = (
        Primitive("box", (arm / 2, w, h), pos=(arm / 2 - w, 0.0, 0.0)),
        Primitive("box", (w, (arm - width) / 2, h), pos=(0.0, arm / 2, 0.0)),
    )
    return ShapeSpec(f"{color} L-shaped block", rgba(color), prims, mass=0.1, half_height=h,
                     radius=arm * 1.05)


def l_outline(color: str, arm: float = 0.07, width: float = 0.03, margin: float = 0.004) -> ShapeSpec:
    """A flat L-shaped target mark (no collision) matching :func:`l_block`, slightly larger."""
    w = width / 2 + margin
    t = 0.001
    prims = (
        Primitive("box", (arm / 2 + margin, w, t), pos=(arm / 2 - width / 2, 0.0, 0.0)),
        Primitive("box", (w, (arm - width) / 2 + margin / 2, t), pos=(0.0, arm / 2 + margin / 2, 0.0)),
    )
    return ShapeSpec(f"{color} L-shaped outline", rgba(color), prims, mass=0.0, collision=False,
                     half_height=t, radius=arm * 1.1)


def bowl(color: str, inner_radius: float = 0.055, wall: float = 0.006, height: float = 0.03,
         segments: int = 16) -> ShapeSpec:
    """A fixed open bowl: a floor disk and a ring of wall boxes."""
    floor = 0.003
    prims = [Primitive("cylinder", (inner_radius + wall, floor / 2, 0.0), pos=(0, 0, floor / 2))]
    r_mid = inner_radius + wall / 2
    half_len = r_mid * math.tan(math.pi / segments) + wall / 2
    for i in range(segments):
        a = 2 * math.pi * i / segments
        prims.append(Primitive("box", (wall / 2, half_len, height / 2),
                               pos=(r_mid * math.cos(a), r_mid * math.sin(a), height / 2), yaw=a))
    return ShapeSpec(f"{color} bowl", rgba(color), tuple(prims), mass=0.0, half_height=0.0,
                     radius=inner_radius + wall, friction=0.5)


def container(color: str, inner: tuple[float, float], height: float = 0.05, wall: float = 0.008) -> ShapeSpec:
    """A fixed open box (floor and four walls) with inner size ``inner`` = (x, y)."""
    ix, iy = inner[0] / 2, inner[1] / 2
    floor = 0.004
    prims = (
        Primitive("box", (ix + wall, iy + wall, floor / 2), pos=(0, 0, floor / 2)),
        Primitive("box", (wall / 2, iy + wall, height / 2), pos=(ix + wall / 2, 0, height / 2)),
        Primitive("box", (wall / 2, iy + wall, height / 2), pos=(-ix - wall / 2, 0, height / 2)),
        Primitive("box", (ix, wall / 2, height / 2), pos=(0, iy + wall / 2, height / 2)),
        Primitive("box", (ix, wall / 2, height / 2), pos=(0, -iy - wall / 2, height / 2)),
    )
    return ShapeSpec(f"{color} box", rgba(color), prims, mass=0.0, half_height=0.0,
                     radius=math.hypot(ix + wall, iy + wall), friction=0.5)


def zone(color: str, size: float = 0.12) -> ShapeSpec:
    """A flat square target zone painted on the table (no collision)."""
    h = size / 2
    return ShapeSpec(f"{color} zone", rgba(color), (Primitive("box", (h, h, 0.0005)),), mass=0.0,
                     collision=False, half_height=0.0005, radius=h * math.sqrt(2))


def tile(rgb: tuple[float, float, float], name: str, size: float = 0.05, thick: float = 0.004) -> ShapeSpec:
    """A thin fixed square tile (a base square of the pyramid)."""
    h = size / 2
    return ShapeSpec(name, (*rgb, 1.0), (Primitive("box", (h, h, thick / 2)),), mass=0.0,
                     half_height=thick / 2, radius=h * math.sqrt(2))


def ring(color: str, outer: float, inner: float = 0.016, thick: float = 0.015, segments: int = 12) -> ShapeSpec:
    """A flat ring (a towers-of-Hanoi disk): ``segments`` boxes around a hole.

    For contacts the ring is a solid disk: a stack of 12-box rings makes hundreds of contact
    points (~8 ms per physics step), a stack of disks a handful. The pegs therefore do not
    collide with rings (see :func:`pegs`); they are guides the rings are centred on.
    """
    r_mid = (outer + inner) / 2
    half_len = r_mid * math.tan(math.pi / segments) + 0.001
    prims = tuple(
        Primitive("box", ((outer - inner) / 2, half_len, thick / 2),
                  pos=(r_mid * math.cos(a), r_mid * math.sin(a), 0.0), yaw=a)
        for a in (2 * math.pi * i / segments for i in range(segments))
    )
    return ShapeSpec(f"{color} ring", rgba(color), prims, mass=0.05, half_height=thick / 2,
                     radius=outer, friction=0.8,
                     collision_primitives=(Primitive("cylinder", (outer, thick / 2, 0.0)),))


STAND_TOP = 0.01
WOOD = (0.55, 0.4, 0.28, 1.0)


def peg_stand(spacing: float) -> ShapeSpec:
    """The fixed base of the towers-of-Hanoi stand (its top at ``STAND_TOP``)."""
    h = STAND_TOP / 2
    return ShapeSpec("peg stand", WOOD, (Primitive("box", (0.055, spacing + 0.055, h), pos=(0, 0, h)),),
                     mass=0.0, half_height=0.0, radius=spacing + 0.08, friction=0.5)


def pegs(spacing: float, peg_radius: float = 0.006, peg_height: float = 0.07) -> ShapeSpec:
    """Three fixed vertical pegs along y, ``spacing`` apart, standing on the stand's top."""
    prims = tuple(Primitive("cylinder", (peg_radius, peg_height / 2, 0.0),
                            pos=(0, k * spacing, STAND_TOP + peg_height / 2)) for k in (-1, 0, 1))
    return ShapeSpec("peg", WOOD, prims, mass=0.0, half_height=0.0, radius=spacing + 0.01)


# --- everyday objects ------------------------------------------------------------------------


@functools.cache
def object_catalog() -> dict[str, dict]:
    """The everyday objects of ``objects.json`` by name."""
    return _asset_json("objects.json")["objects"]


def object_names(split: str) -> list[str]:
    """Names of the ``"seen"`` or ``"unseen"`` everyday objects (sorted, stable)."""
    return sorted(n for n, o in object_catalog().items() if o["split"] == split)


@functools.cache
def everyday_object(name: str) -> ShapeSpec:
    """The mesh object ``name`` from the catalogue, scaled to its size and centred."""
    entry = object_catalog()[name]
    root = pybullet_data.getDataPath()
    visual = f"{root}/{entry['visual']}"
    collision = f"{root}/{entry['collision']}"
    base = np.asarray(entry.get("base_scale", [1.0, 1.0, 1.0]))
    v, _ = load_obj(visual)
    v = (v * base) @ rot_rpy(*entry["rpy"]).T
    extent = v.max(0) - v.min(0)
    k = entry["size"] / float(extent.max())
    v = v * k
    centre = (v.max(0) + v.min(0)) / 2
    mesh = MeshSpec(visual, collision, tuple(float(s) for s in base * k),
                    tuple(float(a) for a in entry["rpy"]), tuple(float(c) for c in -centre))
    half = (v.max(0) - v.min(0)) / 2
    return ShapeSpec(name, (*entry["rgb"], 1.0), mesh=mesh, mass=0.1, half_height=float(half[2]),
                     radius=float(np.hypot(half[0], half[1])), friction=1.0)
