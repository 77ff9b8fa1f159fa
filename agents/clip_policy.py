"""``ClipPolicy``: CLIP towers -> pick and place heatmaps for tabletop envs (CLIPort, simplified).

The goal goes through a CLIP text tower; the top-down RGB heightmap through the CLIP vision
tower (its patch grid) and, at a finer resolution, a small trainable fully-convolutional
network over RGB-D. Text conditioning: for each of pick and place, an attention-pooled mix of
the text tower's token states (a learned score per token, so the pick reads the block's words
and the place the bowl's; the sentence embedding blurs which colour is which, and a head over it
memorises the colour pairs seen in training). One projection turns both pooled vectors into
gates, so a colour word learned as a bowl colour also selects blocks of that colour: test goals
pair colours unseen together in training, and separate projections confused green with gray and
yellow blocks there. These gate (multiply) the dense features, and small heads read a pick heatmap
``[h, w]`` and a place heatmap with ``rotations`` discrete angles ``[R, h, w]``. The action
distribution is the product of a softmax over pick pixels and one over (rotation, place pixel);
pixels map back to table metres through the env's workspace.

Behaviour cloning (:meth:`ClipPolicy.bc_loss`) uses CLIPort-like soft targets (a Gaussian of
``target_sigma`` cells around the demonstrated pixel) and augments each example with random
flips and shifts of the heightmap, the action transformed to match.

PPO (:mod:`rlft.training.ppo`, the :class:`rlft.agents.rl.RLPolicy` methods): a turn's action
is the pair (pick index, place index), scored as two parts (pick, place), each clipped with the
turn's advantage; the KL to the imitation checkpoint uses the k3 estimator (the policy is a
product of two categoricals, not one ``[B, K]`` distribution). :class:`ClipTurn` keeps the
downsampled RGB-D and the frozen vision-tower grid, so PPO epochs only run the trainable part.

Simplifications against CLIPort: the place map is not conditioned on a crop around the pick;
the CLIP towers are frozen (goal embeddings cached) and only the FCN, projections and heads are
trained. Towers: any HF CLIP name or path (``CLIPModel``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlft.agents.choice_policy import CONFIG_NAME, HEAD_NAME, read_policy_meta
from rlft.agents.rl import ActionEval, RLStep


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
    target_sigma: float = 1.0
    """BC: standard deviation (heatmap cells) of the Gaussian pick and place targets (0: the
    demonstrated pixel alone)."""
    augment: bool = True
    """BC: random row/column flips and shifts of the heightmap (action transformed to match)."""
    max_shift: int = 2
    """BC: largest random shift, in heatmap cells."""


@dataclass
class ClipTurn:
    """One observation prepared for scoring: the goal, the downsampled RGB-D ``[4, h, w]`` and
    the frozen CLIP vision grid ``[D, g, g]`` (so PPO epochs do not run the towers again)."""

    goal: str
    small: torch.Tensor
    vision: torch.Tensor


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
        vis_dim = int(self.clip.config.vision_config.hidden_size)
        self.fcn = nn.Sequential(
            nn.Conv2d(4, c, 5, padding=2), nn.GELU(), nn.Conv2d(c, c, 3, padding=1), nn.GELU(),
            nn.Conv2d(c, c, 3, padding=1))
        tok_dim = int(self.clip.config.text_config.hidden_size)
        self.vis_proj = nn.Conv2d(vis_dim, c, 1)
        self.token_score = nn.Linear(tok_dim, 2)  # per token: (pick, place) attention logits
        self.text_gate = nn.Linear(tok_dim, c)  # shared: a colour learned on bowls helps blocks
        self.pick_head = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GELU(),
                                       nn.Conv2d(c, 1, 1))
        self.place_head = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GELU(),
                                        nn.Conv2d(c, config.rotations, 1))
        self.value_head = nn.Sequential(nn.Linear(2 * c, c), nn.GELU(), nn.Linear(c, 1))
        self.sample = sample
        self.generator = torch.Generator().manual_seed(int(seed or 0))
        self._text_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def grid(self) -> tuple[int, int]:
        """Heatmap size (rows, columns)."""
        h, w = self.config.heightmap
        return h // self.config.downsample, w // self.config.downsample

    # -- towers --------------------------------------------------------------------------
    @torch.no_grad()
    def embed_goals(self, goals: list[str]) -> torch.Tensor:
        """CLIP text embeddings of ``goals`` (cached) [B, projection_dim]."""
        return torch.stack([e for e, _ in self._goal_features(goals)])

    @torch.no_grad()
    def _goal_features(self, goals: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per goal (cached): the normalised sentence embedding and the token states [T, D]."""
        missing = sorted({g for g in goals if g not in self._text_cache})
        if missing:
            batch = self.tokenizer(missing, padding=True, truncation=True, return_tensors="pt")
            out = self.clip.text_model(input_ids=batch["input_ids"],
                                       attention_mask=batch["attention_mask"])
            feats = nn.functional.normalize(self.clip.text_projection(out.pooler_output), dim=-1)
            for i, g in enumerate(missing):
                n = int(batch["attention_mask"][i].sum())
                self._text_cache[g] = (feats[i], out.last_hidden_state[i, :n].clone())
        return [self._text_cache[g] for g in goals]

    def _text_gates(self, goals: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pick and place gates [B, C] from attention-pooled token states (not the sentence
        embedding: a linear read of it memorises the train split's colour pairs instead of
        composing them; measured on val/test goals)."""
        feats = self._goal_features(goals)
        tokens = nn.utils.rnn.pad_sequence([t for _, t in feats], batch_first=True)
        lengths = torch.tensor([len(t) for _, t in feats])
        pad = torch.arange(tokens.shape[1])[None, :] >= lengths[:, None]
        scores = self.token_score(tokens).masked_fill(pad[:, :, None], float("-inf"))
        pooled = torch.einsum("btk,btd->bkd", scores.softmax(1), tokens)  # [B, 2, D]
        gates = self.text_gate(pooled)
        return gates[:, 0], gates[:, 1]

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
        return self.heads(goals, small, self._vision_grid(rgb))

    def heads(self, goals: list[str], small: torch.Tensor, vision: torch.Tensor
              ) -> HeatmapOutput:
        """The trainable part: heatmaps and values from the downsampled RGB-D ``[B, 4, h, w]``
        and the frozen vision grid ``[B, D, g, g]``."""
        h, w = small.shape[-2:]
        feats = self.fcn(small)
        vis = self.vis_proj(vision)
        feats = feats + nn.functional.interpolate(vis, size=(h, w), mode="bilinear",
                                                  align_corners=False)
        gate_pick, gate_place = self._text_gates(goals)
        pick_feats = feats * gate_pick[:, :, None, None]
        place_feats = feats * gate_place[:, :, None, None]
        pick = self.pick_head(pick_feats).flatten(1)
        place = self.place_head(place_feats).flatten(1)
        pooled = torch.cat([pick_feats.mean((2, 3)), place_feats.mean((2, 3))], dim=-1)
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

    # -- behaviour cloning ---------------------------------------------------------------
    def augment(self, color: np.ndarray, depth: np.ndarray, action: np.ndarray,
                generator: torch.Generator | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A random flip (rows, columns) and shift (up to ``max_shift`` heatmap cells, edges
        repeated) of one heightmap, with the table-space ``action`` moved to match.

        Flips mirror the workspace about its centre lines (a mirror turns a rotation by
        ``theta`` into one by ``-theta``); shifts are whole heatmap cells, so the target pixel
        moves exactly with the image.
        """
        def draw(n: int) -> int:
            return int(torch.randint(n, (1,), generator=generator))

        a = np.asarray(action, dtype=np.float64).copy()
        (x0, x1), (y0, y1) = self.config.x_range, self.config.y_range
        H, W = color.shape[:2]
        flips = 0
        if draw(2):
            color, depth = color[::-1], depth[::-1]
            a[[0, 2]] = x0 + x1 - a[[0, 2]]
            flips += 1
        if draw(2):
            color, depth = color[:, ::-1], depth[:, ::-1]
            a[[1, 3]] = y0 + y1 - a[[1, 3]]
            flips += 1
        if flips == 1:
            a[4] = -a[4]
        k, d = self.config.max_shift, self.config.downsample
        dr, dc = (draw(2 * k + 1) - k) * d, (draw(2 * k + 1) - k) * d
        if dr or dc:
            def shift(img: np.ndarray) -> np.ndarray:
                pad = [(max(dr, 0), max(-dr, 0)), (max(dc, 0), max(-dc, 0))]
                padded = np.pad(img, pad + [(0, 0)] * (img.ndim - 2), mode="edge")
                return padded[max(-dr, 0): max(-dr, 0) + H, max(-dc, 0): max(-dc, 0) + W]

            color, depth = shift(color), shift(depth)
            a[[0, 2]] += dr * (x1 - x0) / H
            a[[1, 3]] += dc * (y1 - y0) / W
            a[:4] = np.clip(a[:4], [x0, y0, x0, y0], [x1 - 1e-6, y1 - 1e-6, x1 - 1e-6, y1 - 1e-6])
        a[4] = (a[4] + math.pi) % (2 * math.pi) - math.pi
        return np.ascontiguousarray(color), np.ascontiguousarray(depth), a.astype(np.float32)

    def soft_targets(self, pick: torch.Tensor, place: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Target distributions ``[B, h*w]`` and ``[B, R*h*w]``: a Gaussian of ``target_sigma``
        cells around each index (the place's rotation kept exact); one-hot when sigma is 0."""
        h, w = self.grid
        R, sigma = self.config.rotations, self.config.target_sigma
        rows = torch.arange(h, dtype=torch.float32)[:, None]
        cols = torch.arange(w, dtype=torch.float32)[None, :]

        def blob(cell: torch.Tensor) -> torch.Tensor:
            r, c = (cell // w).float(), (cell % w).float()
            if sigma <= 0:
                return nn.functional.one_hot(cell, h * w).float()
            d2 = (rows[None] - r[:, None, None]) ** 2 + (cols[None] - c[:, None, None]) ** 2
            g = torch.exp(-d2 / (2 * sigma**2)).flatten(1)
            return g / g.sum(-1, keepdim=True)

        pick_t = blob(pick)
        rot, cell = place // (h * w), place % (h * w)
        place_t = nn.functional.one_hot(rot, R).float()[:, :, None] * blob(cell)[:, None, :]
        return pick_t, place_t.flatten(1)

    def bc_loss(self, goals: list[str], colors: Sequence[np.ndarray],
                depths: Sequence[np.ndarray], actions: Sequence[np.ndarray]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Behaviour-cloning loss (cross-entropy against :meth:`soft_targets`) and accuracy (both
        argmaxes on the demonstrated pixels) of table-space ``actions``; augmented by
        :meth:`augment` in training mode when ``config.augment``."""
        colors, depths, actions = list(colors), list(depths), list(actions)
        if self.training and self.config.augment:
            for i in range(len(actions)):
                colors[i], depths[i], actions[i] = self.augment(colors[i], depths[i], actions[i])
        idx = torch.tensor([self.action_to_indices(a) for a in actions], dtype=torch.long)
        out = self(goals, np.stack(colors), np.stack(depths))
        pick_t, place_t = self.soft_targets(idx[:, 0], idx[:, 1])
        loss = -(pick_t * torch.log_softmax(out.pick, -1)).sum(-1) - (
            place_t * torch.log_softmax(out.place, -1)).sum(-1)
        acc = (out.pick.argmax(-1) == idx[:, 0]) & (out.place.argmax(-1) == idx[:, 1])
        return loss.mean(), acc.float().mean()

    # -- PPO (rlft.agents.rl.RLPolicy) ---------------------------------------------------
    @torch.no_grad()
    def rl_features(self, obs: dict[str, Any], info: dict[str, Any], history: Sequence[Any]
                    ) -> ClipTurn:
        """The goal, downsampled RGB-D and frozen vision grid of one observation (the policy is
        Markov in them: ``info`` and ``history`` are not used)."""
        del info, history
        rgb, small = self._images(obs["color"], obs["depth"])
        return ClipTurn(str(obs["goal"]), small[0], self._vision_grid(rgb)[0])

    def _rl_heads(self, features: Sequence[ClipTurn]) -> HeatmapOutput:
        return self.heads([f.goal for f in features], torch.stack([f.small for f in features]),
                          torch.stack([f.vision for f in features]))

    @staticmethod
    def _part_log_probs(out: HeatmapOutput, actions: torch.Tensor) -> torch.Tensor:
        """``[B, 2]`` log-probabilities of (pick index, place index) pairs ``actions [B, 2]``."""
        pick = torch.log_softmax(out.pick, -1).gather(1, actions[:, :1])
        place = torch.log_softmax(out.place, -1).gather(1, actions[:, 1:])
        return torch.cat([pick, place], dim=1)

    @torch.no_grad()
    def rl_act(self, features: Sequence[ClipTurn], generator: torch.Generator) -> RLStep:
        """Sample a pick pixel and a (rotation, place pixel) per turn: two scored parts; the
        action kept for training is the index pair, the env gets table metres."""
        out = self._rl_heads(features)
        pick = torch.multinomial(out.pick.softmax(-1).cpu(), 1, generator=generator)
        place = torch.multinomial(out.place.softmax(-1).cpu(), 1, generator=generator)
        idx = torch.cat([pick, place], dim=1)
        logp = self._part_log_probs(out, idx.to(out.pick.device)).cpu()
        pairs = [(int(p), int(q)) for p, q in idx.tolist()]
        return RLStep([self.indices_to_action(p, q) for p, q in pairs], pairs, logp,
                      torch.ones_like(logp), out.values.cpu())

    def rl_evaluate(self, features: Sequence[ClipTurn], actions: Sequence[tuple[int, int]]
                    ) -> ActionEval:
        """Log-probabilities ``[B, 2]`` (pick, place) of taken index pairs, the joint entropy
        and values; no ``dist_log_probs`` (a product of two categoricals: k3 KL estimate)."""
        out = self._rl_heads(features)
        idx = torch.as_tensor([list(a) for a in actions], dtype=torch.long,
                              device=out.pick.device).view(-1, 2)
        logp = self._part_log_probs(out, idx)
        return ActionEval(logp, torch.ones_like(logp), out.entropy(), out.values)

    def rl_values(self, features: Sequence[ClipTurn]) -> torch.Tensor:
        """Value estimates ``[B]``."""
        return self._rl_heads(features).values

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
        missing, unexpected = policy.load_state_dict(load_file(str(directory / HEAD_NAME)),
                                                     strict=False)
        bad = [k for k in missing if not k.startswith("clip.")] + list(unexpected)
        if bad:
            raise ValueError(f"{directory / HEAD_NAME} does not fit this ClipPolicy (written by "
                             f"an older version?): {bad[:5]}; train it again with rlft imitate")
        return policy.eval()
