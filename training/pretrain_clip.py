"""``rlft pretrain-clip``: a small CLIP trained contrastively on tabletop simulator renders.

Real CLIP weights cannot be downloaded on an offline machine, so the suite makes its own, from
a wider world than the tasks' demos show (as a web-scale CLIP knows more than a task needs):

* **Scenes** of all six tabletop tasks (train split) are laid out; every object is located
  pixel by pixel in the top-down colour heightmap (a z-buffer over its surface points).
* **Colours beyond the tasks'**: each coloured object is repainted, with probability
  ``repaint``, in a colour drawn from the tasks' seen and *unseen* colours and a set of colours
  no task uses (``colors.json`` ``pretrain``), and captioned with it (``"a teal bowl"``). So
  the colours held out of every task's demos were seen in pretraining; the ``never`` colours
  are kept out of it, as a split nothing has seen.
* **Two objectives**, summed: CLIP's symmetric InfoNCE between crops around objects and their
  captions (``"a red block"``, ``"a duck"``), and a dense one: the vision tower runs once over
  the whole heightmap and each patch token, projected into the joint space
  (:func:`rlft.agents.clip_policy.dense_patch_features`), is classified among every caption
  (and ``"the table"``) by cosine similarity, its label being the object that covers the patch
  (object patches and table patches weigh the same in the loss).
  The dense objective is what lets the :class:`~rlft.agents.clip_policy.ClipPolicy` ground a
  phrase with one forward pass per observation instead of one per heatmap cell.

A CLIP built from a config (word-level tokenizer trained on the captions and the tasks' goals)
is trained and saved with ``save_pretrained``; ``ClipPolicy`` loads it by path.
``pretrain_summary.json`` reports, on held-out scenes, zero-shot caption retrieval of crops and
dense grounding (the most similar heatmap cell lies on the object): for the tasks' seen colours
(test split), their unseen colours (seen only in pretraining) and the never-seen colours.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import rlft.envs  # noqa: F401  (registers the ids)
from rlft.agents.tiny_models import make_tiny_clip
from rlft.training.configs import PretrainClipArgs

#: Tasks whose scenes provide the objects (blocks, bowls, zones, boxes, L-shapes, rings, pegs
#: and everyday objects).
SCENE_ENVS = ("rlft/PutBlockInBowl-v0", "rlft/PackingObjects-v0", "rlft/PlaceBlocksInZone-v0",
              "rlft/StackBlockPyramid-v0", "rlft/TowersOfHanoi-v0", "rlft/BlockInsertion-v0")
#: The caption of patches no object covers.
TABLE_CAPTION = "the table"
#: A patch is labelled with the object covering at least this fraction of it (else the table).
MIN_COVER = 0.25


@dataclass
class SceneObject:
    """An object of a scene: what it is, its colour name (None for an object whose colour
    is not named, such as a duck), its base colour and its pixel centre."""

    kind: str
    color: str | None
    rgb: tuple[int, int, int]
    center: tuple[int, int]

    def caption(self, color: str | None = None) -> str:
        """``"a {color} {kind}"`` (``color`` overrides the object's own), or ``"a {kind}"``."""
        color = color or self.color
        return f"a {color} {self.kind}" if color else f"a {self.kind}"


@dataclass
class Scene:
    """A top-down render ``image [H, W, 3]`` (uint8), the object index under every pixel
    ``labels [H, W]`` (-1: the table) and the objects."""

    image: np.ndarray
    labels: np.ndarray
    objects: list[SceneObject]
    goal: str


def task_colors() -> dict[str, tuple[float, float, float]]:
    """Every colour the tasks' shapes are painted with (seen and unseen splits)."""
    from rlft.envs.tabletop.shapes import colors

    return {**colors()["seen"], **colors()["unseen"]}


def _split_name(name: str, palette: list[str]) -> tuple[str | None, str]:
    """(colour, kind) of a shape name such as ``"red L-shaped block"``."""
    for color in palette:
        if name.startswith(color + " "):
            return color, name[len(color) + 1:]
    return None, name


def object_labels(env: Any) -> tuple[np.ndarray, list[Any]]:
    """The index of the object seen from above at every heightmap pixel (-1: the table), by a
    z-buffer over each object's surface points, and the objects in index order."""
    u = env.unwrapped
    ws = u.workspace
    px, py = ws.pixel_size
    top = np.full(ws.height * ws.width, -np.inf)
    labels = np.full(ws.height * ws.width, -1, dtype=np.int16)
    objects = [o for o in u.sim.objects.values() if not o.lost]
    for i, obj in enumerate(objects):
        pts, _ = u.sim.world_points(obj.body)
        row = np.floor((pts[:, 0] - ws.x_range[0]) / px)
        col = np.floor((pts[:, 1] - ws.y_range[0]) / py)
        keep = (row >= 0) & (row < ws.height) & (col >= 0) & (col < ws.width)
        idx = (row[keep] * ws.width + col[keep]).astype(np.int64)
        z = np.full(ws.height * ws.width, -np.inf)
        np.maximum.at(z, idx, pts[keep, 2])
        win = z > top
        top[win], labels[win] = z[win], i
    return labels.reshape(ws.height, ws.width), objects


def render_scenes(env_id: str, split: str, scenes: int, seed: int = 0) -> list[Scene]:
    """``scenes`` resets of ``env_id``'s ``split`` as :class:`Scene` records."""
    palette = sorted(task_colors(), key=len, reverse=True)
    env = gym.make(env_id, split=split)
    out = []
    try:
        for i in range(scenes):
            obs, _ = env.reset(seed=seed + i)
            labels, objects = object_labels(env)
            items = []
            for k, obj in enumerate(objects):
                rows, cols = np.nonzero(labels == k)
                color, kind = _split_name(obj.shape.name, palette)
                rgb = tuple(int(round(v * 255)) for v in obj.shape.rgba[:3])
                centre = (int(rows.mean()), int(cols.mean())) if len(rows) else (-1, -1)
                items.append(SceneObject(kind, color, rgb, centre))
            out.append(Scene(np.asarray(obs["color"]).copy(), labels, items, str(obs["goal"])))
    finally:
        env.close()
    return out


def paint(scene: Scene, colors: dict[str, tuple[float, float, float]], p: float,
          rng: random.Random) -> tuple[np.ndarray, list[str]]:
    """The scene with each coloured object repainted, with probability ``p``, in a colour drawn
    from ``colors`` (its pixels of the object's base colour take the new one; parts of other
    colours stay), and every object's caption."""
    image = scene.image.copy()
    captions = []
    names = sorted(colors)
    for k, obj in enumerate(scene.objects):
        color = obj.color
        if color is not None and p > 0 and rng.random() < p:
            color = rng.choice(names)
            mask = (scene.labels == k) & np.all(image == np.asarray(obj.rgb, np.uint8), axis=-1)
            image[mask] = np.round(np.asarray(colors[color]) * 255).astype(np.uint8)
        captions.append(obj.caption(color))
    return image, captions


def crop_at(image: np.ndarray, center: tuple[int, int], size: int) -> np.ndarray:
    """A ``size`` x ``size`` window of ``image`` around ``center`` (edges repeated)."""
    half = size // 2
    padded = np.pad(image, ((half, half), (half, half), (0, 0)), mode="edge")
    r, c = center
    return padded[r: r + size, c: c + size]


def patch_labels(labels: np.ndarray, captions: list[str], patch: int,
                 index: dict[str, int]) -> np.ndarray:
    """``[H / patch, W / patch]`` caption indices: the object covering the most of each patch
    when it covers at least :data:`MIN_COVER` of it, else :data:`TABLE_CAPTION`."""
    H, W = labels.shape
    h, w = H // patch, W // patch
    out = np.full((h, w), index[TABLE_CAPTION], dtype=np.int64)
    best = np.zeros((h, w))
    blocks = labels[: h * patch, : w * patch].reshape(h, patch, w, patch)
    for k, caption in enumerate(captions):
        cover = (blocks == k).mean(axis=(1, 3))
        win = (cover >= MIN_COVER) & (cover > best)
        out[win], best[win] = index[caption], cover[win]
    return out


def _pixels(crops: list[np.ndarray], size: int) -> torch.Tensor:
    from rlft.agents.clip_policy import normalize_pixels

    x = torch.as_tensor(np.stack(crops), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                            align_corners=False)
    return normalize_pixels(x)


def _features(out: Any) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def text_features(model: Any, tokenizer: Any, texts: list[str]) -> torch.Tensor:
    """Normalised text embeddings [N, P] (with gradients when the model trains)."""
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    t = _features(model.get_text_features(input_ids=batch["input_ids"],
                                          attention_mask=batch["attention_mask"]))
    return torch.nn.functional.normalize(t, dim=-1)


@torch.no_grad()
def retrieval_accuracy(model: Any, tokenizer: Any, crops: list[np.ndarray], captions: list[str],
                       candidates: list[str]) -> float:
    """Fraction of crops whose best-matching caption among ``candidates`` is their own."""
    if not crops:
        return float("nan")
    size = int(model.config.vision_config.image_size)
    t = text_features(model, tokenizer, candidates)
    v = torch.nn.functional.normalize(
        _features(model.get_image_features(pixel_values=_pixels(crops, size))), dim=-1)
    best = (v @ t.T).argmax(-1)
    index = {c: i for i, c in enumerate(candidates)}
    return float(np.mean([int(best[i]) == index[c] for i, c in enumerate(captions)]))


@torch.no_grad()
def grounding_accuracy(model: Any, tokenizer: Any, images: list[np.ndarray],
                       labels: list[np.ndarray], captions: list[list[str]],
                       downsample: int = 4) -> float:
    """Dense grounding, as the ClipPolicy reads it: for every object whose caption is unique in
    its scene, whether the heatmap cell (``downsample`` pixels) most similar to the caption lies
    on the object."""
    from rlft.agents.clip_policy import dense_image_features

    hits = []
    for image, lab, caps in zip(images, labels, captions, strict=True):
        rgb = torch.as_tensor(image, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
        H, W = lab.shape
        grid = dense_image_features(model, rgb, (H // downsample, W // downsample))[0]
        unique = [k for k, c in enumerate(caps) if c and caps.count(c) == 1 and (lab == k).any()]
        if not unique:
            continue
        text = text_features(model, tokenizer, [caps[k] for k in unique])
        sims = torch.einsum("kp,phw->khw", text, grid).flatten(1).argmax(-1)
        for k, cell in zip(unique, sims.tolist(), strict=True):
            hits.append(cell_on_objects(lab, [k], cell, W // downsample, downsample))
    return float(np.mean(hits)) if hits else float("nan")


def cell_on_objects(labels: np.ndarray, indices: list[int], cell: int, grid_w: int,
                    d: int) -> bool:
    """Whether heatmap cell ``cell`` (row-major on a ``grid_w``-wide grid of ``d`` x ``d``
    pixels) covers a pixel of one of the objects ``indices`` of ``labels``
    (:func:`object_labels`)."""
    r, c = divmod(cell, grid_w)
    return bool(np.isin(labels[r * d:(r + 1) * d, c * d:(c + 1) * d], indices).any())


def _held_out(scenes: list[Scene], crop: int, colors: dict[str, tuple[float, float, float]] | None,
              seed: int) -> dict[str, list]:
    """Crops, captions and dense-grounding inputs of held-out scenes (repainted entirely in
    ``colors`` when given)."""
    rng = random.Random(seed)
    out: dict[str, list] = {"crops": [], "captions": [], "images": [], "labels": [],
                            "scene_captions": []}
    for scene in scenes:
        image, caps = (paint(scene, colors, 1.0, rng) if colors else
                       (scene.image, [o.caption() for o in scene.objects]))
        if colors:  # only the repainted (coloured) objects are asked about
            caps = [c if o.color is not None else "" for o, c in zip(scene.objects, caps,
                                                                     strict=True)]
        for obj, cap in zip(scene.objects, caps, strict=True):
            if cap and obj.center[0] >= 0:
                out["crops"].append(crop_at(image, obj.center, crop))
                out["captions"].append(cap)
        out["images"].append(image)
        out["labels"].append(scene.labels)
        out["scene_captions"].append(caps)
    return out


def pretrain_clip(args: PretrainClipArgs) -> dict[str, Any]:
    """Build, train and save the CLIP; returns (and writes) a summary."""
    from rich.progress import Progress
    from transformers import AutoTokenizer, CLIPModel

    from rlft.agents.clip_policy import dense_patch_features, normalize_pixels
    from rlft.envs.tabletop.shapes import colors

    t0 = time.perf_counter()
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    extra = colors()
    # broad: every task colour and the pretraining ones; else the tasks' seen colours only
    paintable = ({**task_colors(), **extra["pretrain"]} if args.broad
                 else dict(colors()["seen"]))
    train: list[Scene] = []
    held: dict[str, list[Scene]] = {"test": [], "unseen": []}
    for env_id in SCENE_ENVS:
        train += render_scenes(env_id, "train", args.scenes, args.seed)
        if args.broad:  # the objects the task demos hold out (other layouts than evaluation's)
            train += render_scenes(env_id, "unseen", max(1, args.scenes // 4), 50_000)
        for split in held:
            held[split] += render_scenes(env_id, split, args.eval_scenes, 10_000)
    evals = {"test_seen": _held_out(held["test"], args.crop, None, args.seed),
             "unseen": _held_out(held["unseen"], args.crop, None, args.seed),
             "never": _held_out(held["test"], args.crop, extra["never"], args.seed)}
    kinds = sorted({(o.kind, o.color is not None) for s in train + held["unseen"]
                    for o in s.objects})
    all_colors = sorted({**task_colors(), **extra["pretrain"], **extra["never"]})
    vocabulary = [TABLE_CAPTION] + sorted(
        {f"a {c} {k}" for k, coloured in kinds if coloured for c in all_colors}
        | {f"a {k}" for k, coloured in kinds if not coloured})
    trainable = [TABLE_CAPTION] + sorted(
        {f"a {c} {k}" for k, coloured in kinds if coloured for c in paintable}
        | {o.caption() for s in train for o in s.objects})
    index = {c: i for i, c in enumerate(trainable)}
    goals = [s.goal for s in train]
    make_tiny_clip(out, tuple(dict.fromkeys(vocabulary + goals)), hidden=args.hidden,
                   layers=args.layers, image_size=args.image_size, patch_size=args.patch_size)
    model = CLIPModel.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    optim = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    losses, dense_losses = [], []
    model.train()
    with Progress(transient=True) as bar:
        task = bar.add_task("pretrain-clip", total=args.steps)
        for step in range(args.steps):
            batch = rng.sample(train, min(args.scene_batch, len(train)))
            crops, crop_caps, images, targets = [], [], [], []
            for scene in batch:
                image, caps = paint(scene, paintable, args.repaint, rng)
                labels = scene.labels
                if args.augment:  # flips of rows, then columns
                    if rng.random() < 0.5:
                        image, labels = image[::-1], labels[::-1]
                    if rng.random() < 0.5:
                        image, labels = image[:, ::-1], labels[:, ::-1]
                image = np.ascontiguousarray(image)
                images.append(image)
                targets.append(patch_labels(np.ascontiguousarray(labels), caps,
                                            args.patch_size, index))
                for k, cap in enumerate(caps):
                    rows, cols = np.nonzero(labels == k)
                    if len(rows) and cap not in crop_caps and len(crops) < args.batch_size:
                        crops.append(crop_at(image, (int(rows.mean()), int(cols.mean())),
                                             args.crop))
                        crop_caps.append(cap)
            # crops: CLIP's symmetric InfoNCE, one crop per caption
            pv = _pixels(crops, args.image_size)
            if args.augment:
                pv = torch.rot90(pv, k=rng.randint(0, 3), dims=(2, 3))
            tokens = tokenizer(crop_caps, padding=True, return_tensors="pt")
            loss = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                         pixel_values=pv, return_loss=True).loss
            # dense: every patch classified among the captions by cosine similarity
            rgb = torch.as_tensor(np.stack(images), dtype=torch.float32).permute(0, 3, 1, 2)
            feats = torch.nn.functional.normalize(
                dense_patch_features(model, normalize_pixels(rgb / 255.0)), dim=1)
            text = text_features(model, tokenizer, trainable)
            scale = model.logit_scale.exp().clamp(max=100.0)
            logits = scale * torch.einsum("bphw,cp->bhwc", feats, text)
            target = torch.as_tensor(np.stack(targets)).reshape(-1)
            ce = torch.nn.functional.cross_entropy(logits.reshape(-1, len(trainable)), target,
                                                   reduction="none")
            on_table = target == index[TABLE_CAPTION]
            # objects cover a few percent of the patches: their mean and the table's count alike
            dense = ce[~on_table].mean() + ce[on_table].mean() if (~on_table).any() \
                else ce.mean()
            optim.zero_grad()
            (loss + args.dense_weight * dense).backward()
            optim.step()
            losses.append(float(loss.detach()))
            dense_losses.append(float(dense.detach()))
            bar.update(task, completed=step + 1,
                       description=f"pretrain-clip loss {np.mean(losses[-20:]):.3f} "
                                   f"dense {np.mean(dense_losses[-20:]):.3f}")
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    candidates = vocabulary[1:]
    summary: dict[str, Any] = {
        "scenes": len(train), "captions": len(trainable) - 1, "steps": args.steps,
        "broad": args.broad, "repaint": args.repaint,
        "colors_trained": sorted(paintable), "colors_never_seen": sorted(extra["never"]),
        "first_loss": float(np.mean(losses[:20])), "last_loss": float(np.mean(losses[-20:])),
        "first_dense_loss": float(np.mean(dense_losses[:20])),
        "last_dense_loss": float(np.mean(dense_losses[-20:])),
        "retrieval_candidates": len(candidates), "chance": 1.0 / len(candidates),
    }
    train_eval = _held_out(train[:: max(1, len(train) // 60)], args.crop, None, args.seed)
    summary["retrieval_train"] = retrieval_accuracy(model, tokenizer, train_eval["crops"],
                                                    train_eval["captions"], candidates)
    for name, data in evals.items():
        summary[f"retrieval_{name}"] = retrieval_accuracy(model, tokenizer, data["crops"],
                                                          data["captions"], candidates)
        summary[f"grounding_{name}"] = grounding_accuracy(model, tokenizer, data["images"],
                                                          data["labels"], data["scene_captions"])
    summary["seconds"] = time.perf_counter() - t0
    (out / "pretrain_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
