"""Configs of the training commands: dataclasses that ``tyro`` turns into ``--help``.

Kept free of torch imports so that ``rlft --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rlft.agents.defaults import DEFAULT_ENCODER


@dataclass
class ImitateArgs:
    """Behaviour cloning from expert demos (``rlft imitate``)."""

    demos: Path
    """Directory written by ``rlft collect`` (trajectories.jsonl)."""
    out: Path
    """Output directory: the best policy (save_pretrained), checkpoint.pt, tb/ logs."""
    env: str = "rlft/Shop-v0"
    """Environment id the demos come from (its val split is used for validation)."""
    policy: Literal["choice", "lm", "clip"] = "choice"
    """Policy kind: choice (text encoder + heads, BC), lm (causal LM, SFT on action tokens) or
    clip (CLIP towers + pick/place heatmaps, BC; tabletop envs)."""
    model: str | None = None
    """For --policy lm: the HF causal LM; for --policy clip: the HF CLIP model (name or path)."""
    encoder: str = DEFAULT_ENCODER
    """Text encoder: HF name or local path (default: the bundled all-MiniLM-L6-v2)."""
    max_demos: int | None = None
    """Use at most this many demo episodes (default: all)."""
    epochs: int = 10
    """Passes over the demos (the epoch kept is chosen by ``select_by``)."""
    batch_size: int = 64
    """Turns per gradient step."""
    lr: float = 1e-3
    """AdamW learning rate (cosine-decayed to 10%)."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    hidden: int = 256
    """Width of the policy's heads."""
    lora_r: int = 0
    """LoRA rank. choice: on the encoder (0: frozen encoder with cached embeddings, the fast
    default). lm: on the LM (0: full fine-tuning)."""
    lm_window: int = 2
    """For --policy lm: past (page, action) turns in the prompt."""
    lm_max_page_chars: int = 1000
    """For --policy lm: characters of the current page in the prompt."""
    val_episodes: int = 50
    """Expert episodes of the val split used for validation loss/accuracy (0: none)."""
    select_by: Literal["val_loss", "val_success"] = "val_loss"
    """Which epoch is saved: the lowest val loss, or the highest success (then score, then
    lower val loss) of greedy rollouts on ``select_episodes`` val-split episodes, run every
    ``select_every`` epochs and after the last (the same episodes each time). Val loss can
    bottom out long before the policy acts best (tabletop BC: epoch 15 of 40 by loss, while the
    last epoch succeeded twice as often)."""
    select_episodes: int = 10
    """With ``select_by val_success``: val-split episodes rolled out per check."""
    select_every: int = 5
    """With ``select_by val_success``: epochs between checks."""
    eval_episodes: int = 0
    """After training, roll the best policy out on this many val episodes (success, score)."""
    seed: int = 0
    """Seed of initialisation and shuffling."""
    resume: bool = True
    """Resume from OUT/checkpoint.pt when it exists."""



@dataclass
class BenchmarkArgs:
    """Benchmark agents on environments (``rlft benchmark``)."""

    agents: tuple[str, ...] = ("random", "expert")
    """Agents: expert, random, or a checkpoint directory (optionally NAME=PATH)."""
    envs: tuple[str, ...] = ("rlft/Shop-v0",)
    """Environment ids."""
    episodes: int = 100
    """Episodes per (agent, env)."""
    split: str = "test"
    """Goal split to evaluate on."""
    seed: int = 0
    """Seed of the first episode (the same episodes for every agent)."""
    out: Path | None = Path("benchmarks/results/agents")
    """Output prefix: writes OUT.md, OUT.json and OUT.png (none when omitted)."""
    note: str = ""
    """A line added under the markdown table (e.g. how the agents were trained)."""


@dataclass
class PretrainClipArgs:
    """Pretrain a small CLIP on tabletop renders (``rlft pretrain-clip``)."""

    out: Path = Path("runs/clip")
    """Output directory (a CLIP saved with save_pretrained, plus its tokenizer)."""
    scenes: int = 100
    """Scenes per task of the train split (each object in a scene gives one crop)."""
    eval_scenes: int = 10
    """Held-out scenes per task for the retrieval check (test and unseen splits)."""
    crop: int = 32
    """Crop size around each object, in heightmap pixels (3.125 mm each by default)."""
    image_size: int = 32
    """CLIP vision input size (crops are resized to it)."""
    patch_size: int = 8
    """Vision transformer patch size."""
    hidden: int = 64
    """Width of both towers and of the joint embedding."""
    layers: int = 2
    """Transformer layers per tower."""
    steps: int = 600
    """Optimiser steps."""
    batch_size: int = 48
    """Crops per step (one per caption)."""
    lr: float = 1e-3
    """AdamW learning rate."""
    augment: bool = True
    """Random flips and 90-degree rotations of the crops (top-down views have no up)."""
    seed: int = 0
    """Seed of scenes and training."""
