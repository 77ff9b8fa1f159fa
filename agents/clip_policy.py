"""``ClipPolicy``: CLIP towers -> pick and place heatmaps for tabletop envs (CLIPort, simplified).

Language grounding comes from the frozen CLIP itself. The goal is split into a pick phrase and a
place phrase (:func:`goal_phrases`: the tabletop goal templates, e.g. "put the {block} blocks in
a {bowl} bowl" -> "a {block} block", "a {bowl} bowl"; any other goal is used whole for both),
and each phrase goes through the CLIP text tower. The vision tower gives a dense grid of image
embeddings ``[P, h, w]`` in the joint space: by default (``features="dense"``) from one forward
pass over the whole heightmap, each patch token projected as the class token is (MaskCLIP's
dense features; ``rlft pretrain-clip`` trains them against the captions of the objects under
the patches) and upsampled to the heatmap (:func:`dense_image_features`); or
(``features="crops"``) by embedding a ``crop``-pixel window around every heatmap cell, one
image per cell, ~100x slower (``benchmarks/results/clip_dense.md``). The cosine similarity of
each cell to a phrase is a grounding map. The CLIP alone finds the goal block and bowl this way,
so nothing trainable has to learn which colour word means which colour: a head over the
sentence embedding memorised the colour pairs of the train split (first picks on test goals
17/30 against 27/30 on train goals).

The two maps (scaled by CLIP's temperature) join the RGB-D heightmap as input channels of a
small trainable fully-convolutional network, and are also added to the logits with a learned
weight each (so an untrained head already points at the phrase's object). The value head (PPO's
critic) reads a trunk of its own over the same inputs, so that fitting a fresh critic does not
move the imitation-trained features the heatmaps read. Optionally
(``text_gates``) a shared projection of each phrase embedding gates (multiplies) the dense
features for its head. Heads read a pick heatmap ``[h, w]`` and a place heatmap with
``rotations`` discrete angles ``[R, h, w]``. The action distribution is a softmax over pick
pixels times one over (rotation, place pixel) given the pick (with ``transport``; independent
without); pixels map back to table metres through the env's workspace.

Behaviour cloning (:meth:`ClipPolicy.imitation_loss`) uses soft targets (a Gaussian of
``target_sigma`` cells around the demonstrated pixel; one-hot at 0) and, with ``augment``,
random flips and shifts of the heightmap, its embedding grid and the action together.

PPO (:mod:`rlft.training.ppo`, the :class:`rlft.agents.rl.RLPolicy` methods): a turn's action
is the pair (pick index, place index), scored as two parts (pick, place), each clipped with the
turn's advantage; the KL to the imitation checkpoint uses the k3 estimator (the policy is a
pick categorical times a place one given it, not one ``[B, K]`` distribution).
:meth:`ClipPolicy.encode` (the input of acting, imitation and PPO alike) gives a
:class:`ClipTurn` that keeps the RGB-D on the heatmap grid and the frozen embedding grid, so
imitation and PPO epochs only run the trainable part.

The place map is conditioned on the pick (``transport``, CLIPort's place stream): a window of
key features around the pick cell, turned to each rotation, cross-correlated with query
features of the scene (:meth:`ClipPolicy.condition_place`), so the place moves with where the
object was picked. Simplifications against CLIPort: one 12.5 mm cell grid for both streams
(CLIPort's are 3.125 mm; the trunks read every pixel of a cell, ``cell_pixels``, and sub-cell
``offsets`` regress the rest); the CLIP towers are frozen (phrase embeddings and image grids
cached) and only the FCN, gates and heads are trained. Towers: any HF CLIP name or path
(``CLIPModel``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from rlft.agents.checkpoint import (
    HEAD_NAME,
    check_config,
    config_from_meta,
    load_heads,
    read_policy_meta,
    save_weights,
    write_policy_meta,
)
from rlft.agents.episode import Turn
from rlft.agents.policy import EpisodicPolicy
from rlft.agents.rl import ActionEval, RLStep, sample_index

#: How a ClipPolicy makes its embedding grid (``ClipPolicyConfig.features``).
FEATURE_KINDS = ("dense", "crops")


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
    features: str = "dense"
    """How the vision tower's embedding grid is made: ``"dense"`` (one forward pass over the
    whole heightmap; every patch token projected into the joint space, as MaskCLIP does, and
    upsampled to the heatmap: :func:`dense_image_features`) or ``"crops"`` (a ``crop``-pixel
    window around every heatmap cell through the tower, one image per cell: exact for a CLIP
    trained on crops, and ~100x slower). Checkpoints written before this field read
    ``"crops"``."""
    crop: int = 32
    """With ``features="crops"``: window (heightmap pixels) around each heatmap cell embedded
    by the CLIP vision tower (``rlft pretrain-clip`` crops 32 pixels around objects)."""
    phrases: bool = True
    """Split templated goals into pick and place phrases (:func:`goal_phrases`); False: the
    whole goal for both."""
    text_gates: bool = False
    """Also gate the dense features with a projection of each phrase's CLIP embedding."""
    target_sigma: float = 0.0
    """BC: standard deviation (heatmap cells) of the Gaussian pick and place targets (0: the
    demonstrated pixel alone)."""
    augment: bool = False
    """BC: random row/column flips and shifts of the heightmap (action transformed to match)."""
    max_shift: int = 2
    """BC: largest random shift, in heatmap cells."""
    offsets: bool = True
    """Also regress where in its heatmap cell the pick and the place fall (a sub-cell offset
    per cell, trained by behaviour cloning at the demonstrated cells; PPO leaves it as it is):
    actions then land finer than a cell, which the towers of Hanoi (a ring within 12 mm of its
    peg) and block insertion need. Checkpoints written before this field read False."""
    transport: bool = True
    """Condition the place heatmap on the pick, as CLIPort's transport does: a window of
    ``transport_crop`` cells of key features around the pick cell, turned to each of the
    ``rotations`` angles, is cross-correlated with query features of the whole scene, and the
    result is added to the place logits. Where the object goes then moves with where it was
    picked (a ring picked anywhere on its rim lands centred on the peg); an unconditioned place
    map can only aim at where the demonstrations' picks put it. With ``offsets``, the place's
    sub-cell offset is the pick's plus a regressed correction. Checkpoints written before this
    field read False."""
    transport_channels: int = 8
    """Width of the transport's key and query features."""
    transport_crop: int = 9
    """Side (heatmap cells, odd) of the window around the pick that the transport carries: it
    must hold the picked object's reference point (a ring's centre is up to 45 mm, 3.6 cells,
    from its rim)."""
    cell_pixels: bool = True
    """The trainable nets read every heightmap pixel: each heatmap cell's ``downsample``^2
    RGB-D pixels stacked as channels (space-to-depth) and mapped to 8 features per cell by a
    learned 1x1 convolution, not their average. A 40 mm block covers about three 12.5 mm
    cells, so averaged pixels hide its edges, hence its yaw (a pyramid block turned 45 degrees
    lands on its neighbour) and where in the cell it lies. Checkpoints written before this
    field read False."""
    avoid_rejected: bool = True
    """Never pick again a cell whose pick left the scene unchanged while it stays unchanged:
    the env rejected it (the table, a fixed peg), or the object went back where it was (a
    ring put back on its own peg, a block on its own spot). A greedy Markov policy would
    repeat it until the episode ends. Read from the episode's history in
    :meth:`ClipPolicy.encode`, so acting and PPO mask the same cells. "Unchanged" is
    :meth:`ClipPolicy.scene_unchanged`, within ``unchanged_height`` and ``unchanged_area``."""
    unchanged_height: float = 0.005
    """For ``avoid_rejected``: a heightmap pixel has changed when its height moved by more
    than this (metres); physics leaves sub-millimetre jitter after every put-down."""
    unchanged_area: float = 4e-4
    """For ``avoid_rejected``: a scene is unchanged while its changed pixels cover less than
    this area (m^2; 4 cm^2: a 40 mm block moved under 5 mm). An object put back on its own
    spot changes 0-1.4 cm^2 (its edge settling a millimetre off); the smallest real move
    measured, a ring to another peg, 27 cm^2."""

    def __post_init__(self) -> None:
        check_config(self, positive=("downsample", "rotations", "channels", "crop",
                                     "transport_channels", "transport_crop"),
                     non_negative=("target_sigma", "max_shift", "unchanged_height",
                                   "unchanged_area"))
        if self.features not in FEATURE_KINDS:
            raise ValueError(f"features must be one of {FEATURE_KINDS}; got {self.features!r}")
        if self.transport_crop % 2 == 0:  # (positive: check_config)
            raise ValueError(f"transport_crop must be a positive odd number of cells; got "
                             f"{self.transport_crop}")


#: (goal pattern, pick phrase, place phrase): the six tabletop tasks' (sub-)goal templates,
#: each object phrase written like the captions ``rlft pretrain-clip`` trains on ("a red
#: block"). A phrase of several parts joined by ``|`` is grounded with the mean of their
#: embeddings (a pyramid block goes on two blocks).
GOAL_TEMPLATES: tuple[tuple[str, str, str], ...] = (
    (r"put the (?P<a>[a-z ]+?) blocks in a (?P<b>[a-z ]+?) bowl", "a {a} block", "a {b} bowl"),
    (r"put all the (?P<a>[a-z ]+?) blocks in the (?P<b>[a-z ]+?) zone", "a {a} block",
     "a {b} zone"),
    (r"put the (?P<a>[a-z ]+?) l-shaped block on the (?P<b>[a-z ]+?) l-shaped outline",
     "a {a} l-shaped block", "a {b} l-shaped outline"),
    (r"pack the (?P<a>[a-z ]+?) in the (?P<b>[a-z ]+?) box", "a {a}", "a {b} box"),
    (r"put the (?P<a>[a-z ]+?) block on the (?P<b>lightest|middle|darkest) (?P<c>[a-z ]+?) "
     r"square", "a {a} block", "a {b} {c} square"),
    (r"put the (?P<a>[a-z ]+?) block on the (?P<b>[a-z ]+?) and (?P<c>[a-z ]+?) blocks",
     "a {a} block", "a {b} block|a {c} block"),
    (r"move the (?P<a>[a-z ]+?) ring to the (?P<b>left|middle|right) peg", "a {a} ring",
     "the {b} peg"),
)


def goal_phrases(goal: str) -> tuple[str, str]:
    """(pick phrase, place phrase) of a templated goal (:data:`GOAL_TEMPLATES`); a goal that
    matches no template is returned whole for both."""
    text = " ".join(goal.lower().split())
    for pattern, pick, place in GOAL_TEMPLATES:
        m = re.fullmatch(pattern, text)
        if m:
            return pick.format(**m.groupdict()), place.format(**m.groupdict())
    return goal, goal


#: words a left-right mirror of the workspace (a flip of the heightmap's columns: +y is left to
#: right) swaps
MIRRORED_WORDS = {"left": "right", "right": "left", "leftmost": "rightmost",
                  "rightmost": "leftmost"}


def mirror_goal(goal: str) -> str:
    """``goal`` as it reads in the left-right mirror image of its scene ("move the red ring to
    the left peg" -> "... to the right peg"): augmentation that flips the heightmap's columns
    must flip the goal's spatial words with it, or it teaches that "left" means either side."""
    return re.sub(r"\b(" + "|".join(MIRRORED_WORDS) + r")\b",
                  lambda m: MIRRORED_WORDS[m.group(1).lower()], goal, flags=re.IGNORECASE)


#: CLIP's pixel normalisation (mean and std of each RGB channel)
PIXEL_MEAN = (0.4815, 0.4578, 0.4082)
PIXEL_STD = (0.2686, 0.2613, 0.2758)


def normalize_pixels(rgb: torch.Tensor) -> torch.Tensor:
    """``rgb [B, 3, H, W]`` in [0, 1] normalised as CLIP's vision tower expects."""
    mean = torch.tensor(PIXEL_MEAN, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb - mean) / std


def dense_patch_features(clip: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """Joint-space features of every patch token of the vision tower run once over whole
    images: ``pixel_values [B, 3, H, W]`` (normalised; H and W multiples of the patch size,
    position embeddings interpolated) -> ``[B, P, H / patch, W / patch]``, not normalised.

    As MaskCLIP does for dense CLIP features, each patch token takes the path the class token
    takes to the joint space (the final layer norm, then the visual projection), so a patch's
    feature is comparable with text embeddings. ``rlft pretrain-clip`` trains these features
    against the captions of the objects under the patches."""
    vision = clip.vision_model
    patch = int(clip.config.vision_config.patch_size)
    B, _, H, W = pixel_values.shape
    if H % patch or W % patch:
        raise ValueError(f"image size {H}x{W} is not a multiple of the CLIP's patch size {patch}")
    hidden = vision(pixel_values=pixel_values, interpolate_pos_encoding=True).last_hidden_state
    tokens = clip.visual_projection(vision.post_layernorm(hidden[:, 1:]))
    return tokens.transpose(1, 2).reshape(B, -1, H // patch, W // patch)


def dense_image_features(clip: Any, rgb: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Normalised dense CLIP features of ``rgb [B, 3, H, W]`` (in [0, 1]) on a ``grid``
    (rows, columns) of cells: :func:`dense_patch_features` upsampled bilinearly (cell centres
    aligned) -> ``[B, P, rows, cols]``."""
    with torch.no_grad():
        feats = dense_patch_features(clip, normalize_pixels(rgb))
        if tuple(feats.shape[-2:]) != tuple(grid):
            feats = nn.functional.interpolate(feats, size=grid, mode="bilinear",
                                              align_corners=False)
        return nn.functional.normalize(feats, dim=1)


@dataclass(eq=False)
class ClipTurn:
    """One observation as model input: the goal, the RGB-D on the heatmap grid ``[C, h, w]``
    (``C = 4 downsample^2`` with ``cell_pixels``, else 4: the cell average) and the
    frozen CLIP embedding grid ``[P, h, w]`` (so epochs do not run the towers again), plus the
    raw heightmap that imitation's augmentation transforms."""

    goal: str
    small: torch.Tensor
    vision: torch.Tensor
    color: np.ndarray
    depth: np.ndarray
    blocked: tuple[int, ...] = ()
    """Pick indices masked out (``avoid_rejected``: picks that left this same scene
    unchanged)."""


@dataclass
class HeatmapOutput:
    """``pick`` [B, h*w] and ``place`` [B, R*h*w] logits, ``values`` [B]; with
    ``config.offsets`` the sub-cell ``offsets`` [B, 4, h, w] (pick row and column, place row and
    column; in cells, clamped where an action is made). With ``config.transport`` the place
    logits are conditioned on a pick (:meth:`ClipPolicy.condition_place`); until then
    ``transport`` holds the key and query maps ``[B, t, h, w]`` and ``place`` only the
    unconditioned part."""

    pick: torch.Tensor
    place: torch.Tensor
    values: torch.Tensor
    offsets: torch.Tensor | None = None
    transport: tuple[torch.Tensor, torch.Tensor] | None = None

    def log_prob(self, pick_idx: torch.Tensor, place_idx: torch.Tensor) -> torch.Tensor:
        """Log-probability of (pick pixel, rotation-and-place pixel) indices [B]."""
        lp = torch.log_softmax(self.pick, -1).gather(1, pick_idx.view(-1, 1)).squeeze(1)
        return lp + torch.log_softmax(self.place, -1).gather(1, place_idx.view(-1, 1)).squeeze(1)

    def entropy(self) -> torch.Tensor:
        """Entropy of the joint (independent pick and place) distribution [B]."""
        def ent(logits: torch.Tensor) -> torch.Tensor:  # masked cells (-inf) add nothing
            lp = torch.log_softmax(logits, -1)
            return -(lp.exp() * torch.where(torch.isfinite(lp), lp, torch.zeros_like(lp))).sum(-1)

        return ent(self.pick) + ent(self.place)


class ClipPolicy(EpisodicPolicy, nn.Module):
    """Pick-and-place heatmaps from CLIP text and vision towers (see the module docstring).

    Args:
        config: a :class:`ClipPolicyConfig` naming the CLIP model.
        sample: sample actions instead of taking the argmax of each heatmap.
        seed: seed of the sampler.
    """

    policy_type = "clip"
    config_class: ClassVar[type] = ClipPolicyConfig
    observation_keys: ClassVar[frozenset[str]] = frozenset({"goal", "color", "depth"})
    env_kind: ClassVar[str] = "tabletop"

    def __init__(self, config: ClipPolicyConfig, *, sample: bool = False, seed: int | None = None):
        super().__init__()
        from transformers import AutoTokenizer, CLIPModel

        self.config = config
        self.clip = CLIPModel.from_pretrained(config.clip).eval().requires_grad_(False)
        self.tokenizer = AutoTokenizer.from_pretrained(config.clip)
        c = config.channels
        proj = int(self.clip.config.projection_dim)
        d = config.downsample
        if config.cell_pixels:  # a cell's pixels -> 8 learned features (1x1), for every trunk
            self.cell_embed = nn.Conv2d(4 * d * d, 8, 1)
        inputs = (8 if config.cell_pixels else 4) + 2  # RGB-D (per cell) + grounding
        self.fcn = nn.Sequential(
            nn.Conv2d(inputs, c, 5, padding=2), nn.GELU(), nn.Conv2d(c, c, 3, padding=1),
            nn.GELU(), nn.Conv2d(c, c, 3, padding=1))
        # shared: a colour learned on bowls helps blocks (used with config.text_gates)
        self.text_gate = nn.Linear(proj, c)
        self.ground_weight = nn.Parameter(torch.ones(2))  # grounding maps added to the logits
        self.pick_head = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GELU(),
                                       nn.Conv2d(c, 1, 1))
        self.place_head = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GELU(),
                                        nn.Conv2d(c, config.rotations, 1))
        if config.transport:
            t = config.transport_channels
            self.transport_key = nn.Conv2d(c, t, 3, padding=1)
            self.transport_query = nn.Conv2d(c, t, 3, padding=1)
            # zero at the start (as LoRA's B): the transport grows from the base place map. (A
            # learned scalar gain instead stayed small while the features it scaled grew large,
            # and PPO's first Adam steps on it moved the place logits by several nats.)
            nn.init.zeros_(self.transport_query.weight)
            nn.init.zeros_(self.transport_query.bias)
            # where each turned window reads the original: fixed, so made once
            self.register_buffer("_turn_grid", self._turn_grid_for(config.rotations,
                                                                   config.transport_crop),
                                 persistent=False)
        if config.offsets:
            self.offset_fcn = nn.Sequential(
                nn.Conv2d(inputs, c, 5, padding=2), nn.GELU(), nn.Conv2d(c, c, 3, padding=1),
                nn.GELU(), nn.Conv2d(c, 4, 1))
        # the critic has its own trunk: value learning starts from scratch in PPO and must
        # not move the imitation-trained features the heatmaps read
        self.value_fcn = nn.Sequential(
            nn.Conv2d(inputs, c, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.GELU())
        self.value_head = nn.Sequential(nn.Linear(2 * c, c), nn.GELU(), nn.Linear(c, 1))
        self.sample = sample
        self.generator = torch.Generator().manual_seed(int(seed or 0))
        self._text_cache: dict[str, torch.Tensor] = {}
        self.reset()

    @classmethod
    def for_env(cls, env: Any, *, model: str | None = None, seed: int = 0,
                **options: Any) -> ClipPolicy:
        """A fresh policy for a tabletop env (heatmaps sized to its heightmap): ``model`` is the
        HF CLIP (name or path); ``options`` are :class:`ClipPolicyConfig` fields."""
        if not model:
            raise ValueError("the clip policy needs --model NAME_OR_PATH (an HF CLIP model, "
                             "e.g. one made by `rlft pretrain-clip`)")
        heightmap = tuple(env.observation_space["color"].shape[:2])
        return cls(ClipPolicyConfig(clip=model, **{"heightmap": heightmap, **options}),
                   seed=seed)

    @property
    def grid(self) -> tuple[int, int]:
        """Heatmap size (rows, columns)."""
        h, w = self.config.heightmap
        return h // self.config.downsample, w // self.config.downsample

    # -- towers --------------------------------------------------------------------------
    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Normalised CLIP text embeddings (cached) [B, projection_dim]."""
        missing = sorted({t for t in texts if t not in self._text_cache})
        if missing:
            batch = self.tokenizer(missing, padding=True, truncation=True, return_tensors="pt")
            feats = self.clip.get_text_features(input_ids=batch["input_ids"],
                                                attention_mask=batch["attention_mask"])
            feats = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
            for t, f in zip(missing, nn.functional.normalize(feats, dim=-1), strict=True):
                self._text_cache[t] = f
        return torch.stack([self._text_cache[t] for t in texts])

    def embed_goals(self, goals: list[str]) -> torch.Tensor:
        """Embeddings of each goal's pick and place phrases [B, 2, projection_dim]."""
        if self.config.phrases:
            pairs = [goal_phrases(g) for g in goals]
        else:
            pairs = [(g, g) for g in goals]
        phrases = [p.split("|") for pair in pairs for p in pair]
        parts = self.embed_texts([q for p in phrases for q in p])
        flat = torch.stack([nn.functional.normalize(chunk.mean(0), dim=-1)
                            for chunk in parts.split([len(p) for p in phrases])])
        return flat.view(len(goals), 2, -1)

    @torch.no_grad()
    def embedding_grid(self, rgb: torch.Tensor) -> torch.Tensor:
        """Normalised CLIP image embeddings of every heatmap cell of ``rgb [B, 3, H, W]`` (in
        [0, 1]) -> ``[B, P, h, w]``: dense patch features (``features="dense"``) or one crop
        per cell (``"crops"``)."""
        if self.config.features == "dense":
            return dense_image_features(self.clip, rgb, self.grid)
        return self._crop_grid(rgb)

    def _crop_grid(self, rgb: torch.Tensor) -> torch.Tensor:
        """The embedding of a ``crop``-pixel window around every heatmap cell (edges
        repeated)."""
        d, k = self.config.downsample, self.config.crop
        size = int(self.clip.config.vision_config.image_size)
        lo = k // 2 - d // 2  # window of cell i: pixels [d*i + d/2 - k/2, d*i + d/2 + k/2)
        padded = nn.functional.pad(rgb, (lo, k - d - lo) * 2, mode="replicate")
        h, w = rgb.shape[-2] // d, rgb.shape[-1] // d
        out = []
        for img in padded:
            crops = nn.functional.unfold(img[None], k, stride=d)[0].T.reshape(-1, 3, k, k)
            if size != k:
                crops = nn.functional.interpolate(crops, size=(size, size), mode="bilinear",
                                                  align_corners=False)
            feats = []
            for chunk in normalize_pixels(crops).split(1024):
                f = self.clip.get_image_features(pixel_values=chunk)
                feats.append(f if isinstance(f, torch.Tensor) else f.pooler_output)
            emb = nn.functional.normalize(torch.cat(feats), dim=-1)
            out.append(emb.T.reshape(-1, h, w))
        return torch.stack(out)

    def _images(self, color: np.ndarray | torch.Tensor, depth: np.ndarray | torch.Tensor,
                grid: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        color = torch.as_tensor(np.asarray(color), dtype=torch.float32) / 255.0
        depth = torch.as_tensor(np.asarray(depth), dtype=torch.float32)
        if color.ndim == 3:
            color, depth = color[None], depth[None]
        rgb = color.permute(0, 3, 1, 2)
        rgbd = torch.cat([rgb, depth[:, None] * 10.0], dim=1)
        if self.config.cell_pixels:  # every pixel of a cell as a channel, stored half
            small = nn.functional.pixel_unshuffle(rgbd, self.config.downsample).half()
        else:
            small = nn.functional.avg_pool2d(rgbd, self.config.downsample)
        return rgb, small, self.embedding_grid(rgb) if grid else None

    def forward(self, goals: list[str], color: Any, depth: Any,
                picks: torch.Tensor | None = None) -> HeatmapOutput:
        """Pick and place logits and values for a batch of observations; with
        ``config.transport`` the place logits are those given ``picks [B]`` (pick indices;
        None: each pick heatmap's argmax)."""
        _, small, grid = self._images(color, depth)
        out = self.heads(goals, small, grid)
        return self.condition_place(out, out.pick.argmax(-1) if picks is None else picks)

    def grounding(self, goals: list[str], grid: torch.Tensor) -> torch.Tensor:
        """Pick and place grounding maps ``[B, 2, h, w]``: cosine similarity of each cell's
        image embedding to the goal's pick and place phrases, times CLIP's temperature."""
        text = self.embed_goals(goals).to(grid.dtype)
        scale = float(self.clip.logit_scale.exp().clamp(max=100.0))
        return scale * torch.einsum("bkp,bphw->bkhw", text, grid)

    def heads(self, goals: list[str], small: torch.Tensor, grid: torch.Tensor,
              offsets: bool = True) -> HeatmapOutput:
        """The trainable part: heatmaps and values from the gridded RGB-D ``[B, C, h, w]``
        and the frozen embedding grid ``[B, P, h, w]``. With ``config.transport`` the place
        logits still wait for a pick (:meth:`condition_place`)."""
        ground = self.grounding(goals, grid)
        small = small.to(ground.dtype)
        if self.config.cell_pixels:
            small = self.cell_embed(small)
        inputs = torch.cat([small, ground], dim=1)
        feats = self.fcn(inputs)
        if self.config.text_gates:
            gates = self.text_gate(self.embed_goals(goals))  # [B, 2, C]
            pick_feats = feats * gates[:, 0, :, None, None]
            place_feats = feats * gates[:, 1, :, None, None]
        else:
            pick_feats = place_feats = feats
        pick = self.pick_head(pick_feats) + self.ground_weight[0] * ground[:, :1]
        place = self.place_head(place_feats) + self.ground_weight[1] * ground[:, 1:]
        critic = self.value_fcn(inputs.detach())  # (fitting it must not move cell_embed)
        pooled = torch.cat([critic.mean((2, 3)), critic.amax((2, 3))], dim=-1)
        sub_cell = None
        if self.config.offsets and offsets:  # (PPO's updates score index pairs: not needed)
            # its own trunk on the inputs (on the heatmaps' features, which imitation keeps
            # moving, it did not settle; the inputs move only by the small cell_embed);
            # linear, as a tanh saturates and stops learning; clamped where actions are made
            sub_cell = self.offset_fcn(inputs)
        transport = None
        if self.config.transport:
            transport = (self.transport_key(place_feats), self.transport_query(place_feats))
        return HeatmapOutput(pick.flatten(1), place.flatten(1),
                             self.value_head(pooled).squeeze(-1), sub_cell, transport)

    def condition_place(self, out: HeatmapOutput, picks: torch.Tensor) -> HeatmapOutput:
        """``out`` with its place logits conditioned on the pick indices ``picks [B]``: the
        transport's logits added (CLIPort's place stream; ``config.transport``). Unchanged
        without transport or once conditioned."""
        if out.transport is None:
            return out
        key, query = out.transport
        B, t, h, w = key.shape
        k = self.config.transport_crop
        r = k // 2
        padded = nn.functional.pad(key, (r, r, r, r))
        picks = picks.view(-1).to(key.device)
        rows, cols = (picks // w).tolist(), (picks % w).tolist()
        crops = torch.stack([padded[b, :, i: i + k, j: j + k]  # the window centred on the pick
                             for b, (i, j) in enumerate(zip(rows, cols, strict=True))])
        kernels = self._rotated_windows(crops)  # [B, R, t, k, k]
        R = kernels.shape[1]
        # one grouped cross-correlation: example b's R kernels slide over its own query map
        corr = nn.functional.conv2d(query.reshape(1, B * t, h, w),
                                    kernels.reshape(B * R, t, k, k), padding=r, groups=B)
        place = out.place + corr.view(B, R * h * w) / math.sqrt(t * k * k)
        return HeatmapOutput(out.pick, place, out.values, out.offsets, None)

    def _rotated_windows(self, crops: torch.Tensor) -> torch.Tensor:
        """``crops [B, t, k, k]`` turned to every place rotation -> ``[B, R, t, k, k]``.

        Rotation ``i`` turns the held object by ``theta_i = -pi + 2 pi i / R`` about the pick
        (rows are table x, columns table y, and cells are square), so window cell ``u`` (row,
        column offsets from the centre) of the turned window reads the original at
        ``Rz(-theta_i) u``, bilinearly; what turns in from outside the window is zero."""
        B, t, k, _ = crops.shape
        R = self._turn_grid.shape[0]
        images = crops[:, None].expand(B, R, t, k, k).reshape(B * R, t, k, k)
        grid = self._turn_grid.to(crops.dtype).repeat(B, 1, 1, 1)
        turned = nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                                           align_corners=True)
        return turned.view(B, R, t, k, k)

    @staticmethod
    def _turn_grid_for(rotations: int, k: int) -> torch.Tensor:
        """The ``grid_sample`` grid ``[R, k, k, 2]`` of :meth:`_rotated_windows`: for window
        cell ``u`` of rotation ``i``, the normalised (column, row) of ``Rz(-theta_i) u``."""
        theta = -math.pi + 2 * math.pi * torch.arange(rotations, dtype=torch.float32) / rotations
        cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
        u = torch.arange(k, dtype=torch.float32) - k // 2
        du, dv = u[:, None].expand(k, k), u[None, :].expand(k, k)  # row, column offsets
        src_row, src_col = cos * du + sin * dv, -sin * du + cos * dv  # [R, k, k]
        grid = torch.stack([src_col, src_row], dim=-1) / max(k // 2, 1)  # (x=col, y=row)
        return torch.zeros_like(grid) if k == 1 else grid

    # -- actions <-> indices -------------------------------------------------------------
    def _grid_position(self, x: float, y: float) -> tuple[float, float]:
        """Table metres -> (row, column) on the heatmap, fractional, inside the grid."""
        h, w = self.grid
        (x0, x1), (y0, y1) = self.config.x_range, self.config.y_range
        return (float(np.clip((x - x0) / (x1 - x0) * h, 0, h - 1e-6)),
                float(np.clip((y - y0) / (y1 - y0) * w, 0, w - 1e-6)))

    def action_to_indices(self, action: Any) -> tuple[int, int]:
        """(pick index, place index) of a table-space action ``[px, py, qx, qy, theta]``."""
        a = np.asarray(action, dtype=np.float64)
        h, w = self.grid

        def cell(x: float, y: float) -> int:
            r, c = self._grid_position(x, y)
            return int(r) * w + int(c)

        R = self.config.rotations
        rot = int(round((a[4] + math.pi) / (2 * math.pi) * R)) % R
        return cell(a[0], a[1]), rot * h * w + cell(a[2], a[3])

    def indices_to_action(self, pick: int, place: int,
                          offsets: torch.Tensor | None = None) -> np.ndarray:
        """Table-space action of (pick index, place index): pixel centres (moved by the
        sub-cell ``offsets [4, h, w]`` at those cells, when given), rotation angle. With
        ``config.transport`` the place's offset is relative: the pick's (clamped to half a
        cell) plus the correction read at the place cell (clamped to a cell)."""
        h, w = self.grid
        (x0, x1), (y0, y1) = self.config.x_range, self.config.y_range

        def sub_cell(i: int, part: int, limit: float = 0.5) -> tuple[float, float]:
            if offsets is None:
                return 0.0, 0.0
            r, c = divmod(i, w)
            dr, dc = (min(limit, max(-limit, float(v)))
                      for v in offsets[2 * part: 2 * part + 2, r, c])
            return dr, dc

        def point(i: int, dr: float, dc: float) -> tuple[float, float]:
            r, c = divmod(i, w)
            return x0 + (r + 0.5 + dr) * (x1 - x0) / h, y0 + (c + 0.5 + dc) * (y1 - y0) / w

        rot, cell = divmod(place, h * w)
        theta = -math.pi + rot * 2 * math.pi / self.config.rotations
        pick_off = sub_cell(pick, 0)
        if self.config.transport:  # the pick's offset plus a correction (up to a cell)
            fix = sub_cell(cell, 1, limit=1.0)
            place_off = (pick_off[0] + fix[0], pick_off[1] + fix[1])
        else:
            place_off = sub_cell(cell, 1)
        return np.array([*point(pick, *pick_off), *point(cell, *place_off), theta],
                        dtype=np.float32)

    def cell_offsets(self, action: Any) -> tuple[float, float, float, float]:
        """Where a table-space action's pick and place fall inside their heatmap cells:
        (pick row, pick column, place row, place column), in cells from the centre (+-0.5)."""
        a = np.asarray(action, dtype=np.float64)
        out = []
        for x, y in ((a[0], a[1]), (a[2], a[3])):
            r, c = self._grid_position(x, y)
            out += [r - math.floor(r) - 0.5, c - math.floor(c) - 0.5]
        return tuple(out)

    # -- behaviour cloning ---------------------------------------------------------------
    def augment(self, color: np.ndarray, depth: np.ndarray, action: np.ndarray,
                generator: torch.Generator | None = None, grid: torch.Tensor | None = None,
                goal: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                         torch.Tensor | None, str]:
        """A random flip (rows, columns) and shift (up to ``max_shift`` heatmap cells, edges
        repeated) of one heightmap and its embedding ``grid [P, h, w]`` (None: none), with the
        table-space ``action`` moved to match. Returns ``(color, depth, action, grid, goal)``.

        Flips mirror the workspace about its centre lines (a mirror turns a rotation by
        ``theta`` into one by ``-theta``); a column flip mirrors left and right, so it also
        swaps them in ``goal`` ("the left peg" becomes "the right peg": :func:`mirror_goal`).
        Shifts are whole heatmap cells, so the target pixel moves exactly with the image.
        """
        def draw(n: int) -> int:
            return int(torch.randint(n, (1,), generator=generator))

        a = np.asarray(action, dtype=np.float64).copy()
        (x0, x1), (y0, y1) = self.config.x_range, self.config.y_range
        H, W = color.shape[:2]
        flips = 0
        if draw(2):
            color, depth = color[::-1], depth[::-1]
            grid = None if grid is None else grid.flip(1)
            a[[0, 2]] = x0 + x1 - a[[0, 2]]
            flips += 1
        if draw(2):
            color, depth = color[:, ::-1], depth[:, ::-1]
            grid = None if grid is None else grid.flip(2)
            a[[1, 3]] = y0 + y1 - a[[1, 3]]
            goal = mirror_goal(goal)
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
            if grid is not None:  # the same shift in whole cells, edges repeated
                gr, gc = dr // d, dc // d
                g = nn.functional.pad(grid[None], (max(gc, 0), max(-gc, 0), max(gr, 0),
                                                   max(-gr, 0)), mode="replicate")[0]
                grid = g[:, max(-gr, 0): max(-gr, 0) + grid.shape[1],
                         max(-gc, 0): max(-gc, 0) + grid.shape[2]]
            a[[0, 2]] += dr * (x1 - x0) / H
            a[[1, 3]] += dc * (y1 - y0) / W
            a[:4] = np.clip(a[:4], [x0, y0, x0, y0], [x1 - 1e-6, y1 - 1e-6, x1 - 1e-6, y1 - 1e-6])
        a[4] = (a[4] + math.pi) % (2 * math.pi) - math.pi
        return (np.ascontiguousarray(color), np.ascontiguousarray(depth), a.astype(np.float32),
                grid, goal)

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

    def imitation_target(self, features: ClipTurn, action: Any) -> np.ndarray:
        """The demonstrated table-space action ``[px, py, qx, qy, theta]`` (augmentation moves
        it with the heightmap)."""
        del features
        return np.asarray(action, dtype=np.float32)

    def imitation_loss(self, features: Sequence[ClipTurn], targets: Sequence[np.ndarray]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Behaviour-cloning loss (cross-entropy against :meth:`soft_targets`) and accuracy (both
        argmaxes on the demonstrated pixels) of table-space actions ``targets``; augmented by
        :meth:`augment` in training mode when ``config.augment``."""
        out, idx, actions = self._scored_targets(features, targets)
        pick_t, place_t = self.soft_targets(idx[:, 0], idx[:, 1])
        loss = -(pick_t * torch.log_softmax(out.pick, -1)).sum(-1) - (
            place_t * torch.log_softmax(out.place, -1)).sum(-1)
        acc = (out.pick.argmax(-1) == idx[:, 0]) & (out.place.argmax(-1) == idx[:, 1])
        loss = loss.mean()
        if out.offsets is not None:  # regress the sub-cell position at the demonstrated cells
            h, w = self.grid
            cells = torch.stack([idx[:, 0], idx[:, 1] % (h * w)], dim=1)  # [B, 2]
            flat = out.offsets.view(len(actions), 2, 2, h * w)  # [B, part, (row, col), cells]
            got = flat.gather(3, cells[:, :, None, None].expand(-1, -1, 2, 1)).squeeze(-1)
            want = torch.tensor([self.cell_offsets(a) for a in actions],
                                dtype=got.dtype).view(-1, 2, 2)
            if self.config.transport:  # the place's offset is read relative to the pick's
                want = torch.stack([want[:, 0], want[:, 1] - want[:, 0]], dim=1)
            loss = loss + nn.functional.l1_loss(got, want.to(got.device))
        return loss, acc.float().mean()

    def _scored_targets(self, features: Sequence[ClipTurn], targets: Sequence[np.ndarray]
                        ) -> tuple[HeatmapOutput, torch.Tensor, list[np.ndarray]]:
        """The heads on a batch (augmented by :meth:`augment` in training mode when
        ``config.augment``, each action moved with its image), the place conditioned on the
        target picks: ``(output, (pick, place) indices [B, 2], table-space actions)``."""
        goals = [f.goal for f in features]
        actions = list(targets)
        grids = [f.vision for f in features]
        if self.training and self.config.augment:
            colors, depths = [f.color for f in features], [f.depth for f in features]
            for i in range(len(actions)):
                colors[i], depths[i], actions[i], grids[i], goals[i] = self.augment(
                    colors[i], depths[i], actions[i], grid=grids[i], goal=goals[i])
            _, small, _ = self._images(np.stack(colors), np.stack(depths), grid=False)
        else:
            small = torch.stack([f.small for f in features])
        idx = torch.tensor([self.action_to_indices(a) for a in actions], dtype=torch.long)
        out = self.condition_place(self.heads(goals, small, torch.stack(grids)), idx[:, 0])
        return out, idx, actions

    def unlikelihood_loss(self, features: Sequence[ClipTurn], targets: Sequence[np.ndarray]
                          ) -> torch.Tensor:
        """Unlikelihood (Welleck et al. 2020) of table-space actions that failed: the mean of
        ``-log(1 - p(pick) p(place | pick))`` over the batch, the exact cells (no soft
        target), augmented as :meth:`imitation_loss` is. It lowers the probability of the
        failed (pick, rotation and place) pair; self-training's negative signal
        (``rlft train rest --unlikelihood``)."""
        out, idx, _ = self._scored_targets(features, targets)
        log_p = out.log_prob(idx[:, 0].to(out.pick.device), idx[:, 1].to(out.pick.device))
        return -torch.log1p(-log_p.exp().clamp(max=1 - 1e-6)).mean()

    def prepare_imitation(self, features: Sequence[ClipTurn],
                          progress: Callable[[int, int], None] | None = None) -> None:
        """Nothing more to precompute: :meth:`encode` ran the frozen towers."""

    # -- input, acting and PPO (rlft.agents.rl.RLPolicy) ---------------------------------
    @torch.no_grad()
    def encode(self, turn: Turn) -> ClipTurn:
        """The goal, downsampled RGB-D and frozen vision grid of the current observation (the
        policy is Markov in them: the episode's history is not used)."""
        obs = turn.observation
        color, depth = np.asarray(obs["color"]), np.asarray(obs["depth"])
        _, small, grid = self._images(color, depth)
        return ClipTurn(turn.goal, small[0], grid[0], color, depth, self._rejected_picks(turn))

    def _rejected_picks(self, turn: Turn) -> tuple[int, ...]:
        """Pick indices of the latest actions taken on this same scene (same goal, heightmap
        unchanged by :meth:`scene_unchanged`): they changed nothing, so the env rejected them
        or the object went back where it was."""
        if not self.config.avoid_rejected or len(turn.history_observations) != len(turn.history):
            return ()  # (a turn built from actions alone does not show what they changed)
        obs, out = turn.observation, []
        for before, action in zip(reversed(turn.history_observations), reversed(turn.history),
                                  strict=True):
            if (str(before.get("goal")) != str(obs.get("goal"))
                    or not self.scene_unchanged(before["depth"], obs["depth"])):
                break
            out.append(self.action_to_indices(action)[0])
        return tuple(dict.fromkeys(out))

    def scene_unchanged(self, depth_before: Any, depth_after: Any) -> bool:
        """Whether two heightmaps show the same scene: the pixels whose height moved by more
        than ``config.unchanged_height`` cover less than ``config.unchanged_area`` of the
        table. Exact equality is too strict: a put-down leaves the object a millimetre or
        less from where it was, and a greedy policy that put it back would do so again."""
        before, after = np.asarray(depth_before), np.asarray(depth_after)
        if before.shape != after.shape:
            return False
        rows, cols = before.shape[:2]
        pixel = ((self.config.x_range[1] - self.config.x_range[0]) / rows
                 * (self.config.y_range[1] - self.config.y_range[0]) / cols)
        moved = np.abs(after.astype(np.float64) - before) > self.config.unchanged_height
        return float(moved.sum()) * pixel < self.config.unchanged_area

    @torch.no_grad()
    def choose(self, features: ClipTurn) -> np.ndarray:
        """A pick-and-place action in table metres: the argmax of each heatmap (or a sample
        when ``self.sample``)."""
        generator = self.generator if self.sample else None  # None: the argmax
        out = self._rl_heads([features], offsets=True)
        pick = int(sample_index(out.pick, generator)[0, 0])
        out = self.condition_place(out, torch.tensor([pick]))
        place = int(sample_index(out.place, generator)[0, 0])
        return self.indices_to_action(pick, place,
                                      None if out.offsets is None else out.offsets[0])

    def _rl_heads(self, features: Sequence[ClipTurn], offsets: bool = False,
                  picks: torch.Tensor | None = None) -> HeatmapOutput:
        """:meth:`heads` of encoded turns, rejected picks masked; the sub-cell offsets only
        with ``offsets`` (where an action is made); the place conditioned on ``picks [B]``
        when given (:meth:`condition_place`)."""
        out = self.heads([f.goal for f in features], torch.stack([f.small for f in features]),
                         torch.stack([f.vision for f in features]), offsets=offsets)
        rows = [(b, k) for b, f in enumerate(features) for k in f.blocked]
        if rows:
            mask = torch.zeros_like(out.pick, dtype=torch.bool)
            mask[[b for b, _ in rows], [k for _, k in rows]] = True
            out = HeatmapOutput(out.pick.masked_fill(mask, float("-inf")), out.place,
                                out.values, out.offsets, out.transport)
        return out if picks is None else self.condition_place(out, picks)

    @staticmethod
    def _part_log_probs(out: HeatmapOutput, actions: torch.Tensor) -> torch.Tensor:
        """``[B, 2]`` log-probabilities of (pick index, place index) pairs ``actions [B, 2]``."""
        pick = torch.log_softmax(out.pick, -1).gather(1, actions[:, :1])
        place = torch.log_softmax(out.place, -1).gather(1, actions[:, 1:])
        return torch.cat([pick, place], dim=1)

    @torch.no_grad()
    def rl_act(self, features: Sequence[ClipTurn], generator: torch.Generator,
               temperature: float = 1.0) -> RLStep:
        """Sample a pick pixel and a (rotation, place pixel) per turn (at ``temperature``):
        two scored parts; the action kept for training is the index pair, the env gets table
        metres."""
        out = self._rl_heads(features, offsets=True)
        pick = sample_index(out.pick, generator, temperature)
        out = self.condition_place(out, pick[:, 0])
        place = sample_index(out.place, generator, temperature)
        idx = torch.cat([pick, place], dim=1)
        logp = self._part_log_probs(out, idx.to(out.pick.device)).cpu()
        pairs = [(int(p), int(q)) for p, q in idx.tolist()]
        offsets = [None] * len(pairs) if out.offsets is None else out.offsets.cpu()
        return RLStep([self.indices_to_action(p, q, o) for (p, q), o in zip(pairs, offsets,
                                                                             strict=True)],
                      pairs, logp,
                      torch.ones_like(logp), out.values.cpu())

    def rl_evaluate(self, features: Sequence[ClipTurn], actions: Sequence[tuple[int, int]]
                    ) -> ActionEval:
        """Log-probabilities ``[B, 2]`` (pick, place) of taken index pairs, the joint entropy
        and values; no ``dist_log_probs`` (a product of two categoricals: k3 KL estimate)."""
        idx = torch.as_tensor([list(a) for a in actions], dtype=torch.long).view(-1, 2)
        out = self._rl_heads(features, picks=idx[:, 0])
        idx = idx.to(out.pick.device)
        logp = self._part_log_probs(out, idx)
        return ActionEval(logp, torch.ones_like(logp), out.entropy(), out.values)

    def rl_values(self, features: Sequence[ClipTurn]) -> torch.Tensor:
        """Value estimates ``[B]``."""
        return self._rl_heads(features).values

    # -- persistence ---------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """``rlft_policy.json`` (kind, config, base CLIP) and the trained weights."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_weights({k: v for k, v in self.state_dict().items() if not k.startswith("clip.")},
                     directory / HEAD_NAME)
        write_policy_meta(directory, {"policy": self.policy_type, "config": asdict(self.config),
                                      "base_model": self.config.clip})

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> ClipPolicy:
        """Load a policy written by :meth:`save_pretrained`."""
        directory = Path(directory)
        meta = read_policy_meta(directory, expect=cls.policy_type)
        # written before dense features existed: its heads were trained on crop embeddings
        meta["config"].setdefault("features", "crops")
        meta["config"].setdefault("offsets", False)  # (no sub-cell heads before the field)
        meta["config"].setdefault("transport", False)  # (nor a pick-conditioned place)
        meta["config"].setdefault("cell_pixels", False)  # (and averaged cells)
        policy = cls(config_from_meta(ClipPolicyConfig, meta, directory), **kwargs)
        load_heads(policy, directory / HEAD_NAME, frozen_prefix="clip.")
        return policy.eval()
