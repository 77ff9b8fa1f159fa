"""Shapes of tabletop objects and the surface points the heightmap is rasterised from.

Every object in the scene is described once, by a :class:`ShapeSpec`: a list of box and
cylinder primitives (blocks, bowls, boxes, rings, zones) or a triangle mesh (everyday objects
from ``pybullet_data``). The same description builds the PyBullet body
(:meth:`rlft.envs.tabletop.sim.TabletopSim.add`) and yields the surface point cloud that
:mod:`rlft.envs.tabletop.heightmap` splats into the top-down image, so what the agent sees and
what the physics simulates cannot drift apart.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RGBA = tuple[float, float, float, float]


@dataclass(frozen=True)
class Primitive:
    """A box or vertical-axis cylinder in the body frame.

    Args:
        kind: ``"box"`` or ``"cylinder"``.
        size: box half-extents ``(hx, hy, hz)``, or cylinder ``(radius, half_height, 0)``.
        pos: centre in the body frame (metres).
        yaw: rotation about the body's z axis (radians).
        rgba: colour; ``None`` uses the shape's colour.
    """

    kind: str
    size: tuple[float, float, float]
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw: float = 0.0
    rgba: RGBA | None = None


@dataclass(frozen=True)
class MeshSpec:
    """A triangle mesh from an OBJ file, already scaled, rotated and centred.

    Args:
        visual: path of the OBJ drawn and rasterised.
        collision: path of the OBJ used for contacts (convex parts).
        scale: per-axis mesh scale applied before ``rpy``.
        rpy: roll, pitch, yaw that turn the mesh upright.
        offset: translation after scaling and rotation that centres its bounding box.
    """

    visual: str
    collision: str
    scale: tuple[float, float, float]
    rpy: tuple[float, float, float]
    offset: tuple[float, float, float]


@dataclass(frozen=True)
class ShapeSpec:
    """One object: primitives or a mesh, a colour, a mass (0 = fixed) and collision on/off.

    ``collision_primitives``, when given, replace ``primitives`` for contacts only (a cheaper
    stand-in; what is drawn and rasterised stays ``primitives``).
    ``half_height`` is the distance from the body origin down to its lowest point when upright,
    so an object rests on the table at ``z = half_height``; ``radius`` bounds its footprint.
    """

    name: str
    rgba: RGBA
    primitives: tuple[Primitive, ...] = ()
    mesh: MeshSpec | None = None
    mass: float = 0.1
    collision: bool = True
    half_height: float = 0.0
    radius: float = 0.0
    friction: float = 1.0
    collision_primitives: tuple[Primitive, ...] | None = None


def rot_z(yaw: float) -> np.ndarray:
    """3x3 rotation about z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """3x3 rotation for extrinsic roll-pitch-yaw (the URDF / PyBullet convention)."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    return rot_z(yaw) @ ry @ rx


def quat_to_matrix(q: tuple[float, float, float, float] | np.ndarray) -> np.ndarray:
    """3x3 rotation matrix of an ``(x, y, z, w)`` quaternion."""
    x, y, z, w = (float(v) for v in q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    """``(x, y, z, w)`` quaternion of a rotation about z."""
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


def quat_yaw(q: tuple[float, float, float, float] | np.ndarray) -> float:
    """Yaw (rotation about z) of an ``(x, y, z, w)`` quaternion."""
    x, y, z, w = (float(v) for v in q)
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def wrap_angle(a: float) -> float:
    """``a`` wrapped into ``[-pi, pi)``."""
    return (a + math.pi) % (2 * math.pi) - math.pi


# --- surface sampling -----------------------------------------------------------------------


def _grid(lo: float, hi: float, spacing: float) -> np.ndarray:
    n = max(2, int(math.ceil((hi - lo) / spacing)) + 1)
    return np.linspace(lo, hi, n)


def _box_points(h: tuple[float, float, float], spacing: float) -> np.ndarray:
    hx, hy, hz = h
    out = []
    xs, ys, zs = _grid(-hx, hx, spacing), _grid(-hy, hy, spacing), _grid(-hz, hz, spacing)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    for z in (-hz, hz):
        out.append(np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, z)], 1))
    gx, gz = np.meshgrid(xs, zs, indexing="ij")
    for y in (-hy, hy):
        out.append(np.stack([gx.ravel(), np.full(gx.size, y), gz.ravel()], 1))
    gy, gz = np.meshgrid(ys, zs, indexing="ij")
    for x in (-hx, hx):
        out.append(np.stack([np.full(gy.size, x), gy.ravel(), gz.ravel()], 1))
    return np.concatenate(out)


def _cylinder_points(r: float, hh: float, spacing: float) -> np.ndarray:
    xs = _grid(-r, r, spacing)
    gx, gy = np.meshgrid(xs, xs, indexing="ij")
    inside = gx**2 + gy**2 <= r * r
    disk = np.stack([gx[inside], gy[inside]], 1)
    ring = max(8, int(math.ceil(2 * math.pi * r / spacing)))
    ang = np.linspace(0, 2 * math.pi, ring, endpoint=False)
    zs = _grid(-hh, hh, spacing)
    ga, gz = np.meshgrid(ang, zs, indexing="ij")
    side = np.stack([r * np.cos(ga).ravel(), r * np.sin(ga).ravel(), gz.ravel()], 1)
    caps = [np.concatenate([disk, np.full((len(disk), 1), z)], 1) for z in (-hh, hh)]
    edge = np.stack([r * np.cos(ang), r * np.sin(ang)], 1)
    caps += [np.concatenate([edge, np.full((len(edge), 1), z)], 1) for z in (-hh, hh)]
    return np.concatenate([side, *caps])


def _triangle_points(v: np.ndarray, faces: np.ndarray, spacing: float) -> np.ndarray:
    """Points on every triangle: a barycentric grid fine enough for ``spacing``."""
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    edge = np.max(
        np.stack([np.linalg.norm(b - a, axis=1), np.linalg.norm(c - b, axis=1),
                  np.linalg.norm(a - c, axis=1)], 1), axis=1)
    k = np.clip(np.ceil(edge / spacing), 1, 64).astype(int)
    out = [v]
    for kk in np.unique(k):
        sel = k == kk
        ij = [(i, j) for i in range(kk + 1) for j in range(kk + 1 - i)]
        w = np.array(ij, dtype=float) / kk  # (m, 2) barycentric weights of b and c
        pa, pb, pc = a[sel], b[sel], c[sel]
        pts = (pa[:, None, :] * (1 - w[:, 0] - w[:, 1])[None, :, None]
               + pb[:, None, :] * w[None, :, 0:1] + pc[:, None, :] * w[None, :, 1:2])
        out.append(pts.reshape(-1, 3))
    return np.concatenate(out)


@functools.lru_cache(maxsize=64)
def load_obj(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(n, 3)`` and triangle indices ``(m, 3)`` of a Wavefront OBJ file."""
    verts: list[list[float]] = []
    faces: list[list[int]] = []
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith("v "):
            verts.append([float(t) for t in line.split()[1:4]])
        elif line.startswith("f "):
            idx = []
            for tok in line.split()[1:]:
                i = int(tok.split("/")[0])
                idx.append(i - 1 if i > 0 else len(verts) + i)
            faces.extend([idx[0], idx[j], idx[j + 1]] for j in range(1, len(idx) - 1))
    return np.asarray(verts, dtype=float), np.asarray(faces, dtype=int)


def mesh_vertices(mesh: MeshSpec, which: str = "visual") -> tuple[np.ndarray, np.ndarray]:
    """Vertices of ``mesh`` in the body frame (scaled, rotated, centred) and its faces."""
    v, f = load_obj(mesh.visual if which == "visual" else mesh.collision)
    v = (v * np.asarray(mesh.scale)) @ rot_rpy(*mesh.rpy).T + np.asarray(mesh.offset)
    return v, f


@functools.lru_cache(maxsize=256)
def surface_points(shape: ShapeSpec, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Surface points ``(n, 3)`` in the body frame and their colours ``(n, 3)`` uint8.

    The points are at most ``spacing`` apart, so splatting them into a heightmap with pixels
    larger than ``spacing * sqrt(2)`` leaves no holes. Cached: shapes are immutable.
    """
    pts: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    base = np.asarray(shape.rgba[:3]) * 255
    if shape.mesh is not None:
        v, f = mesh_vertices(shape.mesh)
        p = _triangle_points(v, f, spacing)
        pts.append(p)
        cols.append(np.repeat(base[None], len(p), 0))
    for prim in shape.primitives:
        if prim.kind == "box":
            p = _box_points(prim.size, spacing)
        else:
            p = _cylinder_points(prim.size[0], prim.size[1], spacing)
        p = p @ rot_z(prim.yaw).T + np.asarray(prim.pos)
        pts.append(p)
        rgb = base if prim.rgba is None else np.asarray(prim.rgba[:3]) * 255
        cols.append(np.repeat(rgb[None], len(p), 0))
    points = np.concatenate(pts).astype(np.float64)
    colors = np.concatenate(cols).round().astype(np.uint8)
    # keep one point per (spacing / 2)-voxel: fine meshes give many coincident points
    voxel = np.floor(points / (spacing / 2)).astype(np.int64)
    voxel -= voxel.min(0)
    dims = voxel.max(0) + 1
    key = (voxel[:, 0] * dims[1] + voxel[:, 1]) * dims[2] + voxel[:, 2]
    _, keep = np.unique(key, return_index=True)
    keep.sort()
    points, colors = points[keep], colors[keep]
    points.setflags(write=False)
    colors.setflags(write=False)
    return points, colors
