"""``ClipPolicy``: CLIP towers -> pick and place heatmaps for tabletop envs (CLIPort, simplified).

The goal goes through a CLIP text tower; the top-down RGB heightmap through the CLIP vision
tower (its patch grid) and, at a finer resolution, a small trainable fully-convolutional
network over RGB-D. The goal embedding gates (multiplies) the dense features, and 1x1 heads
read a pick heatmap ``[h, w]`` and a place heatmap with ``rotations`` discrete angles
``[R, h, w]``. The action distribution is the product of a softmax over pick pixels and one over
(rotation, place pixel); pixels map back to table metres through the env's workspace.

Simplifications against CLIPort: the place map is not conditioned on a crop around the pick;
the CLIP towers are frozen (goal embeddings cached) and only the FCN, projections and heads are
trained. Towers: any HF CLIP name or path (``CLIPModel``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlft.agents.choice_policy import CONFIG_NAME, HEAD_NAME, read_policy_meta


@dataclass
class ClipPolicyConfig:
    """Hyper-parameters of a :class:`ClipPolicy` (saved with every checkpoint)."""

    clip: str
    """HF CLIP model name or local directory (text and vision towers)."""
    downsample: int = 4
    """Heatmap resolution = heightmap size / downsample."""
    rotations: int = 8
    """Discrete place rotations over [-pi, pi)."""
    channels: int = 32
    """Width of the dense features."""
    heightmap: tuple[int, int] = (160, 320)
    """The env's heightmap size (rows, columns)."""
    x_range: tuple[float, float] = (0.25, 0.75)
    """Workspace x range (rows), metres."""
    y_range: tuple[float, float] = (-0.5, 0.5)
    """Workspace y range (columns), metres."""


@dataclass
class HeatmapOutput:
    """``pick`` [B, h*w] and ``place`` [B, R*h*w] logits, ``values`` [B]."""

    pick: torch.Tensor
    place: torch.Tensor
    values: torch.Tensor

    def log_prob(self, pick_idx: torch.Tensor, place_idx: torch.Tensor) -> torch.Tensor:
        """Log-probability of (pick pixel, rotation-and-place pixel) indices [B]."""
        lp = torch.log_softmax(self.pick, -1).gather(1, pick_idx.view(-1, 1)).squeeze(1)
        return lp + torch.log_softmax(self.place, -1).gather(1, place_idx.view(-1, 1)).squeeze(1)

    def entropy(self) -> torch.Tensor:
        """Entropy of the joint (independent pick and place) distribution [B]."""
        def ent(logits: torch.Tensor) -> torch.Tensor:
            lp = torch.log_softmax(logits, -1)
            return -(lp.exp() * lp).sum(-1)

        return ent(self.pick) + ent(self.place)


class ClipPolicy(nn.Module):
    """Pick-and-place heatmaps from CLIP text and vision towers (see the module docstring).

    Args:
        config: a :class:`ClipPolicyConfig` naming the CLIP model.
        sample: sample actions instead of taking the argmax of each heatmap.
        seed: seed of the sampler.
    """

    policy_type = "clip"

    def __init__(self, config: ClipPolicyConfig, *, sample: bool = False, seed: int | None = None):
        super().__init__()
        from transformers import AutoTokenizer, CLIPModel

        self.config = config
        self.clip = CLIPModel.from_pretrained(config.clip).eval().requires_grad_(False)
        self.tokenizer = AutoTokenizer.from_pretrained(config.clip)
        c = config.channels
        text_dim = int(self.clip.config.projection_dim)
        vis_dim = int(self.clip.config.vision_config.hidden_size)
        self.fcn = nn.Sequential(
            nn.Conv2d(4, c, 5, padding=2), nn.GELU(), nn.Conv2d(c, c, 3, padding=1), nn.GELU(),
            nn.Conv2d(c, c, 3, padding=1))
        self.vis_proj = nn.Conv2d(vis_dim, c, 1)
        self.text_proj = nn.Linear(text_dim, 2 * c)
        self.pick_head = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GELU(),
                                       nn.Conv2d(c, 1, 1))
        self.place_head = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GELU(),
                                        nn.Conv2d(c, config.rotations, 1))
        self.value_head = nn.Sequential(nn.Linear(2 * c, c), nn.GELU(), nn.Linear(c, 1))
        self.sample = sample
        self.generator = torch.Generator().manual_seed(int(seed or 0))
        self._text_cache: dict[str, torch.Tensor] = {}

    @property
    def grid(self) -> tuple[int, int]:
        """Heatmap size (rows, columns)."""
        h, w = self.config.heightmap
        return h // self.config.downsample, w // self.config.downsample

    # -- towers --------------------------------------------------------------------------
    @torch.no_grad()
    def embed_goals(self, goals: list[str]) -> torch.Tensor:
        """CLIP text embeddings of ``goals`` (cached) [B, projection_dim]."""
        missing = sorted({g for g in goals if g not in self._text_cache})
        if missing:
            batch = self.tokenizer(missing, padding=True, truncation=True, return_tensors="pt")
            feats = self.clip.get_text_features(input_ids=batch["input_ids"],
                                                attention_mask=batch["attention_mask"])
            if not isinstance(feats, torch.Tensor):  # transformers 5 may return an output
                feats = feats.pooler_output
            for g, f in zip(missing, nn.functional.normalize(feats, dim=-1), strict=True):
                self._text_cache[g] = f
        return torch.stack([self._text_cache[g] for g in goals])

    @torch.no_grad()
    def _vision_grid(self, rgb: torch.Tensor) -> torch.Tensor:
        size = int(self.clip.config.vision_config.image_size)
        x = nn.functional.interpolate(rgb, size=(size, size), mode="bilinear",
                                      align_corners=False)
        mean = torch.tensor([0.4815, 0.4578, 0.4082]).view(1, 3, 1, 1)
        std = torch.tensor([0.2686, 0.2613, 0.2758]).view(1, 3, 1, 1)
        tokens = self.clip.vision_model(pixel_values=(x - mean) / std).last_hidden_state[:, 1:]
        g = int(math.isqrt(tokens.shape[1]))
        return tokens.transpose(1, 2).reshape(len(rgb), -1, g, g)

    def _images(self, color: np.ndarray | torch.Tensor, depth: np.ndarray | torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        color = torch.as_tensor(np.asarray(color), dtype=torch.float32) / 255.0
        depth = torch.as_tensor(np.asarray(depth), dtype=torch.float32)
        if color.ndim == 3:
            color, depth = color[None], depth[None]
        rgb = color.permute(0, 3, 1, 2)
        rgbd = torch.cat([rgb, depth[:, None] * 10.0], dim=1)
        small = nn.functional.avg_pool2d(rgbd, self.config.downsample)
        return rgb, small

    def forward(self, goals: list[str], color: Any, depth: Any) -> HeatmapOutput:
        """Pick and place logits and values for a batch of observations."""
        rgb, small = self._images(color, depth)
        h, w = small.shape[-2:]
        feats = self.fcn(small)
        vis = self.vis_proj(self._vision_grid(rgb))
        feats = feats + nn.functional.interpolate(vis, size=(h, w), mode="bilinear",
                                                  align_corners=False)
        gate_pick, gate_place = self.text_proj(self.embed_goals(goals)).chunk(2, dim=-1)
        pick = self.pick_head(feats * gate_pick[:, :, None, None]).flatten(1)
        place = self.place_head(feats * gate_place[:, :, None, None]).flatten(1)
        pooled = torch.cat([(feats * gate_pick[:, :, None, None]).mean((2, 3)),
                            (feats * gate_place[:, :, None, None]).mean((2, 3))], dim=-1)
        return HeatmapOutput(pick, place, self.value_head(pooled).squeeze(-1))

    # -- actions <-> indices -------------------------------------------------------------
    def action_to_indices(self, action: Any) -> tuple[int, int]:
        """(pick index, place index) of a table-space action ``[px, py, qx, qy, theta]``."""
        a = np.asarray(action, dtype=np.float64)
        h, w = self.grid
        (x0, x1), (y0, y1) = self.config.x_range, self.config.y_range

        def cell(x: float, y: float) -> int:
            r = int(np.clip((x - x0) / (x1 - x0) * h, 0, h - 1))
            c = int(np.clip((y - y0) / (y1 - y0) * w, 0, w - 1))
            return r * w + c

        R = self.config.rotations
        rot = int(round((a[4] + math.pi) / (2 * math.pi) * R)) % R
        return cell(a[0], a[1]), rot * h * w + cell(a[2], a[3])

    def indices_to_action(self, pick: int, place: int) -> np.ndarray:
        """Table-space action of (pick index, place index): pixel centres, rotation angle."""
        h, w = self.grid
        (x0, x1), (y0, y1) = self.config.x_range, self.config.y_range

        def point(i: int) -> tuple[float, float]:
            r, c = divmod(i, w)
            return x0 + (r + 0.5) * (x1 - x0) / h, y0 + (c + 0.5) * (y1 - y0) / w

        rot, cell = divmod(place, h * w)
        theta = -math.pi + rot * 2 * math.pi / self.config.rotations
        return np.array([*point(pick), *point(cell), theta], dtype=np.float32)

    def evaluate_actions(self, goals: list[str], color: Any, depth: Any, actions: Any
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_prob [B], entropy [B], value [B])`` of table-space ``actions`` [B, 5]."""
        out = self(goals, color, depth)
        idx = [self.action_to_indices(a) for a in np.asarray(actions)]
        pick = torch.tensor([i for i, _ in idx])
        place = torch.tensor([j for _, j in idx])
        return out.log_prob(pick, place), out.entropy(), out.values

    # -- agent protocol ------------------------------------------------------------------
    def reset(self) -> None:
        """Nothing to forget: the policy is Markov in the heightmap and goal."""

    @torch.no_grad()
    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        """A pick-and-place action in table metres."""
        if not isinstance(obs, dict) or "color" not in obs:
            raise TypeError("ClipPolicy acts in tabletop envs (observation with 'color' and "
                            "'depth'); use the choice or LM policy for web envs")
        was = self.training
        self.eval()
        out = self([str(obs["goal"])], obs["color"], obs["depth"])
        self.train(was)
        if self.sample:
            pick = int(torch.multinomial(out.pick.softmax(-1)[0], 1, generator=self.generator))
            place = int(torch.multinomial(out.place.softmax(-1)[0], 1,
                                          generator=self.generator))
        else:
            pick, place = int(out.pick[0].argmax()), int(out.place[0].argmax())
        return self.indices_to_action(pick, place)

    # -- persistence ---------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """``rlft_policy.json`` (kind, config, base CLIP) and the trained weights."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"policy": self.policy_type, "config": asdict(self.config),
                "base_model": self.config.clip}
        (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()
                   if not k.startswith("clip.")}, str(directory / HEAD_NAME))

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> ClipPolicy:
        """Load a policy written by :meth:`save_pretrained`."""
        from safetensors.torch import load_file

        directory = Path(directory)
        meta = read_policy_meta(directory, expect=cls.policy_type)
        cfg = dict(meta["config"])
        for k in ("heightmap", "x_range", "y_range"):
            cfg[k] = tuple(cfg[k])
        policy = cls(ClipPolicyConfig(**cfg), **kwargs)
        policy.load_state_dict(load_file(str(directory / HEAD_NAME)), strict=False)
        return policy.eval()
