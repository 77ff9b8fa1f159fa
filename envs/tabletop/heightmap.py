"""The top-down orthographic heightmap and the conversions between pixels and table metres.

Ravens renders three cameras and fuses their point clouds into a heightmap (several TinyRenderer
images per step). Here every object's surface points are known in its own frame
(:func:`rlft.envs.tabletop.geometry.surface_points`), so the heightmap is rasterised directly:
transform the points by the body poses, keep the highest point per pixel (a z-buffer). Fixed
bodies (bowls, boxes, zones) are rasterised once per episode into a background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Workspace:
    """The table area the heightmap covers: rows run along x, columns along y.

    Pixel ``(row, col)`` covers ``x in [x0 + row * px, x0 + (row + 1) * px)`` and
    ``y in [y0 + col * py, y0 + (col + 1) * py)``; its centre is what :meth:`pixel_to_table`
    returns. Defaults: a 0.5 x 1.0 m area at 160 x 320 pixels (3.125 mm per pixel, as Ravens).
    """

    x_range: tuple[float, float] = (0.25, 0.75)
    y_range: tuple[float, float] = (-0.5, 0.5)
    height: int = 160
    width: int = 320
    max_height: float = 0.3

    @property
    def pixel_size(self) -> tuple[float, float]:
        """Metres per pixel along x (rows) and y (columns)."""
        return ((self.x_range[1] - self.x_range[0]) / self.height,
                (self.y_range[1] - self.y_range[0]) / self.width)

    @property
    def center(self) -> tuple[float, float]:
        """Centre of the workspace in table coordinates."""
        return (sum(self.x_range) / 2, sum(self.y_range) / 2)

    def pixel_to_table(self, row: float | np.ndarray, col: float | np.ndarray) -> tuple:
        """Table ``(x, y)`` in metres of the centre of pixel ``(row, col)`` (vectorised)."""
        px, py = self.pixel_size
        return (self.x_range[0] + (np.asarray(row) + 0.5) * px,
                self.y_range[0] + (np.asarray(col) + 0.5) * py)

    def table_to_pixel(self, x: float | np.ndarray, y: float | np.ndarray) -> tuple:
        """Pixel ``(row, col)`` (integers, clipped into the image) containing table ``(x, y)``."""
        px, py = self.pixel_size
        row = np.clip(np.floor((np.asarray(x) - self.x_range[0]) / px), 0, self.height - 1)
        col = np.clip(np.floor((np.asarray(y) - self.y_range[0]) / py), 0, self.width - 1)
        return row.astype(int), col.astype(int)

    def contains(self, x: float, y: float) -> bool:
        """Whether table ``(x, y)`` lies inside the workspace."""
        return (self.x_range[0] <= x <= self.x_range[1]) and (self.y_range[0] <= y <= self.y_range[1])

    @property
    def point_spacing(self) -> float:
        """Surface-point spacing that leaves no holes at this resolution."""
        return 0.7 * min(self.pixel_size)


class HeightmapRenderer:
    """Z-buffer rasteriser of world-frame surface points into ``color`` and ``depth`` images.

    ``depth`` is the height above the table in metres (0 = table), clipped to
    ``[0, workspace.max_height]``, as in Ravens/CLIPort heightmaps.
    """

    def __init__(self, workspace: Workspace, table_rgb: tuple[float, float, float]):
        self.ws = workspace
        n = workspace.height * workspace.width
        self._table_color = np.tile(np.round(np.asarray(table_rgb) * 255).astype(np.uint8), (n, 1))
        self._bg_depth = np.zeros(n, dtype=np.float64)
        self._bg_color = self._table_color.copy()

    def _flat_index(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ws = self.ws
        px, py = ws.pixel_size
        row = np.floor((pts[:, 0] - ws.x_range[0]) / px)
        col = np.floor((pts[:, 1] - ws.y_range[0]) / py)
        keep = (row >= 0) & (row < ws.height) & (col >= 0) & (col < ws.width) & (pts[:, 2] > -0.005)
        return (row[keep] * ws.width + col[keep]).astype(np.int64), keep

    def _splat(self, depth: np.ndarray, color: np.ndarray, pts: np.ndarray, cols: np.ndarray) -> None:
        if len(pts) == 0:
            return
        idx, keep = self._flat_index(pts)
        z = pts[keep, 2]
        np.maximum.at(depth, idx, z)
        win = z >= depth[idx]
        color[idx[win]] = cols[keep][win]

    def set_background(self, pts: np.ndarray, cols: np.ndarray) -> None:
        """Rasterise the fixed bodies (world-frame points and colours) once per episode."""
        self._bg_depth = np.zeros_like(self._bg_depth)
        self._bg_color = self._table_color.copy()
        self._splat(self._bg_depth, self._bg_color, pts, cols)

    def render(self, pts: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(color uint8[H, W, 3], depth float32[H, W])`` of the moving bodies over the background."""
        depth = self._bg_depth.copy()
        color = self._bg_color.copy()
        self._splat(depth, color, pts, cols)
        ws = self.ws
        depth = np.clip(depth, 0.0, ws.max_height).astype(np.float32)
        return color.reshape(ws.height, ws.width, 3), depth.reshape(ws.height, ws.width)
