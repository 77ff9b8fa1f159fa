"""The physics shell: one PyBullet client, a table, bodies built from shapes, and the suction
pick-and-place primitive.

No arm is simulated. The end effector is a floating suction cup: a pick attaches the topmost
object under the cup (a ray cast straight down); the held object is carried clear of everything
(kinematically) and lowered over the place point until it would touch what lies under its
footprint; then it is released and the scene is simulated until it comes to rest. Arm inverse
kinematics and motion dominate Ravens' step time (~1.9 s per step on a CPU) and add nothing to
the language-grounding problem, so they are left out; the cost is that reachability and
collisions during transit are not modelled. Every motion uses a simulation-step budget; nothing
depends on wall-clock time.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pybullet as p
from pybullet_utils.bullet_client import BulletClient

from rlft.envs.tabletop.geometry import (
    Primitive,
    ShapeSpec,
    quat_to_matrix,
    surface_points,
    yaw_quat,
)
from rlft.envs.tabletop.heightmap import Workspace
from rlft.envs.tabletop.shapes import TABLE_RGB

TIME_STEP = 1.0 / 240.0
# The table top (z = 0) extends this far beyond the workspace; objects pushed past it fall off.
TABLE_MARGIN = 0.1


def _quat_mul(a: np.ndarray | tuple, b: np.ndarray | tuple) -> tuple[float, float, float, float]:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


def _primitive_arrays(prims: tuple[Primitive, ...]) -> tuple[list, ...]:
    """PyBullet's parallel shape arrays (types, half extents, radii, lengths, poses)."""
    kinds, halves, radii, lengths, poss, orns = [], [], [], [], [], []
    for prim in prims:
        kinds.append(p.GEOM_BOX if prim.kind == "box" else p.GEOM_CYLINDER)
        halves.append(prim.size if prim.kind == "box" else (0, 0, 0))
        radii.append(prim.size[0] if prim.kind == "cylinder" else 0)
        lengths.append(2 * prim.size[1] if prim.kind == "cylinder" else 0)
        poss.append(prim.pos)
        orns.append(yaw_quat(prim.yaw))
    return kinds, halves, radii, lengths, poss, orns


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence the C-level ``argv[0]=`` line PyBullet prints on connect (it would corrupt
    machine-readable output of programs that create environments)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


@dataclass
class SceneObject:
    """A body in the scene and the shape it was built from."""

    body: int
    shape: ShapeSpec
    movable: bool
    lost: bool = False


class TabletopSim:
    """One PyBullet DIRECT client holding the table and the task's objects.

    Args:
        workspace: the table area (also the valid pick and place region).
        visuals: build visual shapes (needed only for the perspective ``render()``).
        settle_steps: the most physics steps a release is simulated for.
    """

    def __init__(self, workspace: Workspace, *, visuals: bool = False, settle_steps: int = 240):
        self.ws = workspace
        self.visuals = visuals
        self.settle_steps = int(settle_steps)
        with _quiet_stdout():
            self.client = BulletClient(connection_mode=p.DIRECT)
        self.objects: dict[int, SceneObject] = {}
        self._footprints: list[tuple[float, float, float]] = []
        self.physics_steps = 0

    # --- scene -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Empty the world and build the table (same calls every time: deterministic)."""
        c = self.client
        c.resetSimulation()
        c.setPhysicsEngineParameter(deterministicOverlappingPairs=1, fixedTimeStep=TIME_STEP,
                                    numSolverIterations=30)
        c.setGravity(0, 0, -9.8)
        self.objects = {}
        self._footprints = []
        (x0, x1), (y0, y1) = self.ws.x_range, self.ws.y_range
        half = ((x1 - x0) / 2 + TABLE_MARGIN, (y1 - y0) / 2 + TABLE_MARGIN, 0.025)
        col = c.createCollisionShape(p.GEOM_BOX, halfExtents=half)
        vis = -1
        if self.visuals:
            vis = c.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=(*TABLE_RGB, 1))
        self.table = c.createMultiBody(0, col, vis, basePosition=((x0 + x1) / 2, (y0 + y1) / 2, -0.025))
        c.changeDynamics(self.table, -1, lateralFriction=0.8)

    def add(self, shape: ShapeSpec, xy: tuple[float, float], yaw: float = 0.0, z: float | None = None) -> int:
        """Build ``shape`` resting upright at table ``xy`` with ``yaw``; returns the body id."""
        c = self.client
        col = self._collision(shape) if shape.collision else -1
        vis = self._visual(shape) if self.visuals else -1
        zz = shape.half_height + 1e-4 if z is None else z
        body = c.createMultiBody(shape.mass, col, vis, basePosition=(xy[0], xy[1], zz),
                                 baseOrientation=yaw_quat(yaw))
        if shape.collision:
            c.changeDynamics(body, -1, lateralFriction=shape.friction, rollingFriction=0.001,
                             spinningFriction=0.001)
        self.objects[body] = SceneObject(body, shape, movable=shape.mass > 0)
        return body

    def _collision(self, shape: ShapeSpec) -> int:
        c = self.client
        if shape.mesh is not None:
            m = shape.mesh
            return c.createCollisionShape(p.GEOM_MESH, fileName=m.collision, meshScale=m.scale,
                                          collisionFramePosition=m.offset,
                                          collisionFrameOrientation=p.getQuaternionFromEuler(m.rpy))
        prims = shape.collision_primitives or shape.primitives
        kinds, halves, radii, lengths, poss, orns = _primitive_arrays(prims)
        return c.createCollisionShapeArray(kinds, radii=radii, halfExtents=halves, lengths=lengths,
                                           collisionFramePositions=poss,
                                           collisionFrameOrientations=orns)

    def _visual(self, shape: ShapeSpec) -> int:
        c = self.client
        if shape.mesh is not None:
            m = shape.mesh
            return c.createVisualShape(p.GEOM_MESH, fileName=m.visual, meshScale=m.scale,
                                       visualFramePosition=m.offset, rgbaColor=shape.rgba,
                                       visualFrameOrientation=p.getQuaternionFromEuler(m.rpy))
        kinds, halves, radii, lengths, poss, orns = _primitive_arrays(shape.primitives)
        vis = c.createVisualShapeArray(kinds, radii=radii, halfExtents=halves, lengths=lengths,
                                       visualFramePositions=poss, visualFrameOrientations=orns)
        return vis

    def color_visuals(self) -> None:
        """Apply each shape's colour to its visual (PyBullet's array visuals have no colour)."""
        if self.visuals:
            for obj in self.objects.values():
                self.client.changeVisualShape(obj.body, -1, rgbaColor=obj.shape.rgba)

    def sample_position(self, rng: np.random.Generator, radius: float, margin: float = 0.01,
                        tries: int = 2000) -> tuple[float, float]:
        """A random table ``xy`` whose disk of ``radius`` is inside the workspace and clear of
        every footprint already taken; the disk is then taken. Raises if none is found."""
        (x0, x1), (y0, y1) = self.ws.x_range, self.ws.y_range
        for _ in range(tries):
            x = float(rng.uniform(x0 + radius + margin, x1 - radius - margin))
            y = float(rng.uniform(y0 + radius + margin, y1 - radius - margin))
            if all(math.hypot(x - fx, y - fy) >= radius + fr + margin for fx, fy, fr in self._footprints):
                self._footprints.append((x, y, radius))
                return x, y
        raise RuntimeError(f"could not place an object of radius {radius:.3f} m: workspace too full")

    def place_random(self, rng: np.random.Generator, shape: ShapeSpec, yaw: float | None = None) -> int:
        """Add ``shape`` at a free random position with a random (or given) yaw."""
        xy = self.sample_position(rng, shape.radius)
        if yaw is None:
            yaw = float(rng.uniform(-math.pi, math.pi))
        return self.add(shape, xy, yaw)

    # --- state -------------------------------------------------------------------------------

    def pose(self, body: int) -> tuple[np.ndarray, np.ndarray]:
        """Position ``(3,)`` and ``(x, y, z, w)`` orientation ``(4,)`` of ``body``."""
        pos, orn = self.client.getBasePositionAndOrientation(body)
        return np.asarray(pos), np.asarray(orn)

    def world_points(self, body: int) -> tuple[np.ndarray, np.ndarray]:
        """Surface points of ``body`` in the world frame and their colours."""
        obj = self.objects[body]
        pts, cols = surface_points(obj.shape, self.ws.point_spacing)
        pos, orn = self.pose(body)
        return pts @ quat_to_matrix(orn).T + pos, cols

    def points(self, movable: bool) -> tuple[np.ndarray, np.ndarray]:
        """World-frame surface points and colours of all movable (or all fixed) bodies."""
        pts, cols = [], []
        for obj in self.objects.values():
            if obj.movable == movable and not obj.lost:
                wp, wc = self.world_points(obj.body)
                pts.append(wp)
                cols.append(wc)
        if not pts:
            return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.uint8)
        return np.concatenate(pts), np.concatenate(cols)

    def body_under(self, x: float, y: float) -> tuple[int, np.ndarray]:
        """The first body a ray straight down through ``(x, y)`` hits, and the hit point."""
        hit = self.client.rayTest((x, y, 1.0), (x, y, -0.01))[0]
        return int(hit[0]), np.asarray(hit[3])

    # --- pick and place ----------------------------------------------------------------------

    def pick_place(self, pick: tuple[float, float], place: tuple[float, float], theta: float) -> str:
        """Suction pick at ``pick``, place at ``place`` turned by ``theta`` about the cup's axis.

        The held object keeps its offset from the cup, so the point picked ends up over
        ``place``. Returns ``""`` on success or a reason the action was rejected (state
        unchanged).
        """
        body, hit = self.body_under(*pick)
        obj = self.objects.get(body)
        if obj is None or body == self.table:
            return f"nothing to pick at ({pick[0]:.3f}, {pick[1]:.3f}): the suction cup touched the table"
        if not obj.movable:
            return f"nothing to pick at ({pick[0]:.3f}, {pick[1]:.3f}): the {obj.shape.name} is fixed"
        c = self.client
        pos, orn = self.pose(body)
        rz = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        new_xy = np.asarray(place) + rz @ (pos[:2] - np.asarray(pick))
        new_orn = _quat_mul(yaw_quat(theta), orn)
        # Lift the object out of the way, then find the height at which it clears everything
        # under its footprint: one downward ray per 5 mm cell, against the lowest object point.
        c.resetBasePositionAndOrientation(body, (pos[0], pos[1], 5.0), orn)
        pts, _ = surface_points(obj.shape, self.ws.point_spacing)
        rel = pts @ quat_to_matrix(new_orn).T
        cell = np.floor(rel[:, :2] / 0.005).astype(np.int64)
        key = (cell[:, 0] - cell[:, 0].min()) * 100003 + (cell[:, 1] - cell[:, 1].min())
        uniq, inv = np.unique(key, return_inverse=True)
        low = np.full(len(uniq), np.inf)
        np.minimum.at(low, inv, rel[:, 2])
        first = np.zeros(len(uniq), dtype=np.int64)
        first[inv[::-1]] = np.arange(len(inv))[::-1]
        xy = rel[first, :2] + new_xy
        rays = c.rayTestBatch([(x, y, 1.0) for x, y in xy], [(x, y, -0.2) for x, y in xy])
        support = np.array([r[3][2] if r[0] >= 0 else -np.inf for r in rays])
        z = float(np.max(support - low)) + 0.002
        if not np.isfinite(z):
            z = float(-low.min()) + 0.002
        c.resetBasePositionAndOrientation(body, (float(new_xy[0]), float(new_xy[1]), z), new_orn)
        c.resetBaseVelocity(body, (0, 0, 0), (0, 0, 0))
        self.settle()
        return ""

    def settle(self, budget: int | None = None) -> int:
        """Step physics until every movable body is at rest or ``budget`` steps ran."""
        c = self.client
        budget = self.settle_steps if budget is None else budget
        movable = [o.body for o in self.objects.values() if o.movable and not o.lost]
        steps = calm = 0
        while steps < budget:
            for _ in range(8):
                c.stepSimulation()
            steps += 8
            rest = True
            for b in movable:
                lin, ang = c.getBaseVelocity(b)
                if math.hypot(*lin) > 0.01 or math.hypot(*ang) > 0.2:
                    rest = False
                    break
            # at rest on two checks in a row: a body at the top of a bounce is not at rest
            calm = calm + 1 if rest else 0
            if calm >= 2:
                break
        self.physics_steps += steps
        return steps

    def check_lost(self) -> list[str]:
        """Find objects that fell off the table or exploded; park them (fixed, far below).

        Returns a human-readable line per newly lost object.
        """
        c = self.client
        lines = []
        for obj in self.objects.values():
            if not obj.movable or obj.lost:
                continue
            pos, _ = self.pose(obj.body)
            lin, _ = c.getBaseVelocity(obj.body)
            reason = ""
            if not np.all(np.isfinite(pos)) or not np.all(np.isfinite(lin)):
                reason = "exploded (non-finite state)"
            elif pos[2] < -0.05:
                reason = "fell off the table"
            elif math.hypot(*lin) > 20.0 or pos[2] > 2.0:
                reason = "exploded (runaway velocity or height)"
            if reason:
                obj.lost = True
                c.changeDynamics(obj.body, -1, mass=0)
                c.resetBasePositionAndOrientation(obj.body, (0, 0, -10), (0, 0, 0, 1))
                c.resetBaseVelocity(obj.body, (0, 0, 0), (0, 0, 0))
                lines.append(f"the {obj.shape.name} {reason}")
        return lines

    def render_perspective(self, width: int = 320, height: int = 240) -> np.ndarray:
        """A perspective RGB image of the table for people (TinyRenderer)."""
        cx, cy = self.ws.center
        view = self.client.computeViewMatrix((cx - 0.75, cy, 0.65), (cx, cy, 0.0), (1, 0, 0))
        proj = self.client.computeProjectionMatrixFOV(60, width / height, 0.05, 5.0)
        img = self.client.getCameraImage(width, height, view, proj, renderer=p.ER_TINY_RENDERER)[2]
        return np.asarray(img, dtype=np.uint8).reshape(height, width, 4)[:, :, :3].copy()

    def close(self) -> None:
        """Disconnect the client (idempotent)."""
        try:
            self.client.disconnect()
        except p.error:
            pass

