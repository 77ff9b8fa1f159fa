"""``rlft pretrain-clip``: a small CLIP trained contrastively on tabletop simulator renders.

Real CLIP weights cannot be downloaded on an offline machine, so the suite makes its own:
scenes of the tabletop tasks (train split, seen colours and objects) are laid out, and every
object gives a crop of the top-down colour heightmap around it, captioned from its shape spec
(``"a red block"``, ``"a green bowl"``, ``"a duck"``). A CLIP built from a config (word-level
tokenizer trained on the captions and the tasks' goals) is trained with CLIP's symmetric
InfoNCE loss and saved with ``save_pretrained``; ``ClipPolicy`` loads it by path.
``summary.json`` reports zero-shot caption retrieval on held-out scenes, for seen and unseen
colours.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import rlft.envs  # noqa: F401  (registers the ids)
from rlft.agents.tiny_models import make_tiny_clip
from rlft.training.configs import PretrainClipArgs

#: Tasks whose scenes provide the crops (blocks, bowls, zones, boxes and everyday objects).
SCENE_ENVS = ("rlft/PutBlockInBowl-v0", "rlft/PackingObjects-v0", "rlft/PlaceBlocksInZone-v0")


def scene_crops(env_id: str, split: str, scenes: int, crop: int, seed: int = 0
                ) -> tuple[list[np.ndarray], list[str], list[str]]:
    """(crops [crop, crop, 3] uint8, captions, goals) from ``scenes`` resets of ``env_id``."""
    env = gym.make(env_id, split=split)
    ws, crops, captions, goals = env.unwrapped.workspace, [], [], []
    half = crop // 2
    try:
        for i in range(scenes):
            obs, _ = env.reset(seed=seed + i)
            goals.append(str(obs["goal"]))
            color = np.pad(obs["color"], ((half, half), (half, half), (0, 0)), mode="edge")
            for body, so in env.unwrapped.sim.objects.items():
                if so.lost:
                    continue
                xy = env.unwrapped.sim.pose(body)[0][:2]
                if not ws.contains(float(xy[0]), float(xy[1])):
                    continue
                r, c = ws.table_to_pixel(float(xy[0]), float(xy[1]))
                crops.append(color[int(r): int(r) + crop, int(c): int(c) + crop].copy())
                captions.append(f"a {so.shape.name}")
    finally:
        env.close()
    return crops, captions, goals


def _pixels(crops: list[np.ndarray], size: int) -> torch.Tensor:
    x = torch.as_tensor(np.stack(crops), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                        align_corners=False)
    mean = torch.tensor([0.4815, 0.4578, 0.4082]).view(1, 3, 1, 1)
    std = torch.tensor([0.2686, 0.2613, 0.2758]).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def retrieval_accuracy(model: Any, tokenizer: Any, crops: list[np.ndarray], captions: list[str],
                       candidates: list[str]) -> float:
    """Fraction of crops whose best-matching caption among ``candidates`` is their own."""
    if not crops:
        return float("nan")
    size = int(model.config.vision_config.image_size)
    text = tokenizer(candidates, padding=True, return_tensors="pt")
    t = model.get_text_features(input_ids=text["input_ids"], attention_mask=text["attention_mask"])
    v = model.get_image_features(pixel_values=_pixels(crops, size))
    t = t if isinstance(t, torch.Tensor) else t.pooler_output
    v = v if isinstance(v, torch.Tensor) else v.pooler_output
    best = (torch.nn.functional.normalize(v, dim=-1)
            @ torch.nn.functional.normalize(t, dim=-1).T).argmax(-1)
    index = {c: i for i, c in enumerate(candidates)}
    return float(np.mean([int(best[i]) == index[c] for i, c in enumerate(captions)]))


def pretrain_clip(args: PretrainClipArgs) -> dict[str, Any]:
    """Build, train and save the CLIP; returns (and writes) a summary."""
    from rich.progress import Progress
    from transformers import AutoTokenizer, CLIPModel

    t0 = time.perf_counter()
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    crops, captions, goals = [], [], []
    held: dict[str, tuple[list, list]] = {}
    for env_id in SCENE_ENVS:
        c, cap, g = scene_crops(env_id, "train", args.scenes, args.crop, args.seed)
        crops += c
        captions += cap
        goals += g
        for split in ("test", "unseen"):
            hc, hcap, _ = scene_crops(env_id, split, args.eval_scenes, args.crop, 10_000)
            a, b = held.get(split, ([], []))
            held[split] = (a + hc, b + hcap)
    vocab_text = tuple(dict.fromkeys(captions + goals + held["unseen"][1] + held["test"][1]))
    make_tiny_clip(out, vocab_text, hidden=args.hidden, layers=args.layers,
                   image_size=args.image_size, patch_size=args.patch_size)
    model = CLIPModel.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    pixels = _pixels(crops, args.image_size)
    tokens = tokenizer(captions, padding=True, return_tensors="pt")
    optim = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    by_caption: dict[str, list[int]] = {}
    for i, c in enumerate(captions):
        by_caption.setdefault(c, []).append(i)
    names = list(by_caption)
    losses = []
    model.train()
    with Progress(transient=True) as bar:
        task = bar.add_task("pretrain-clip", total=args.steps)
        for step in range(args.steps):
            # one example per caption in a batch, so the contrastive targets are unambiguous
            batch_names = random.sample(names, min(args.batch_size, len(names)))
            idx = torch.tensor([random.choice(by_caption[n]) for n in batch_names])
            pv = pixels[idx]
            if args.augment:
                pv = torch.flip(pv, dims=[3]) if random.random() < 0.5 else pv
                pv = torch.rot90(pv, k=random.randint(0, 3), dims=(2, 3))
            loss = model(input_ids=tokens["input_ids"][idx],
                         attention_mask=tokens["attention_mask"][idx], pixel_values=pv,
                         return_loss=True).loss
            optim.zero_grad()
            loss.backward()
            optim.step()
            losses.append(float(loss.detach()))
            bar.update(task, completed=step + 1,
                       description=f"pretrain-clip loss {np.mean(losses[-20:]):.3f}")
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    candidates = sorted(set(captions) | set(held["unseen"][1]) | set(held["test"][1]))
    summary = {
        "crops": len(crops), "captions": len(names), "steps": args.steps,
        "first_loss": float(np.mean(losses[:20])), "last_loss": float(np.mean(losses[-20:])),
        "retrieval_train": retrieval_accuracy(model, tokenizer, crops[:500], captions[:500],
                                              candidates),
        "retrieval_test_seen": retrieval_accuracy(model, tokenizer, *held["test"], candidates),
        "retrieval_unseen": retrieval_accuracy(model, tokenizer, *held["unseen"], candidates),
        "chance": 1.0 / len(candidates), "seconds": time.perf_counter() - t0,
    }
    (out / "pretrain_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
