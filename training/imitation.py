"""Behaviour cloning of a :class:`~rlft.agents.choice_policy.ChoicePolicy` from expert demos.

``rlft imitate --policy choice --env rlft/Shop-v0 --demos runs/demos --out runs/il-shop``

Each demo step becomes a :class:`Turn` (goal, page, valid actions, the episode's previous
actions) whose target is the candidate standing for the expert's action (for a search: the
proposed query closest to the expert's). The loss is cross-entropy over the candidates.
Validation runs on expert turns from the env's ``val`` split (fresh goals) every epoch; the
best epoch by validation loss is saved with ``save_pretrained``. ``checkpoint.pt`` (heads,
optimizer, epoch, RNG) is written every epoch, so an interrupted run resumes where it stopped.
TensorBoard logs go to ``OUT/tb``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import rlft.envs  # noqa: F401  (registers the ids)
from rlft.agents.choice_policy import ChoicePolicy, ChoicePolicyConfig, Turn, TurnFeatures
from rlft.training.configs import ImitateArgs
from rlft.training.demos import load_demos

CHECKPOINT = "checkpoint.pt"


def demo_turns(episodes: Sequence[Sequence[dict[str, Any]]]) -> list[tuple[Turn, str]]:
    """(turn, expert action) pairs from recorded episodes (history = earlier actions)."""
    pairs = []
    for ep in episodes:
        history: list[str] = []
        for rec in ep:
            if "page" not in rec or "valid_actions" not in rec:
                raise ValueError("these demos have no page/valid_actions: the choice policy "
                                 "imitates web-env demos (rlft collect --env rlft/Shop-v0)")
            pairs.append((Turn(rec["goal"], rec["page"], tuple(rec["valid_actions"]),
                               tuple(history), len(history)), str(rec["action"])))
            history.append(str(rec["action"]))
    return pairs


def expert_turns(env_id: str, split: str, episodes: int, seed: int = 0) -> list[tuple[Turn, str]]:
    """(turn, expert action) pairs from fresh expert episodes on ``split`` (not written)."""
    env = gym.make(env_id, split=split)
    expert = env.unwrapped.expert()
    pairs: list[tuple[Turn, str]] = []
    try:
        for i in range(episodes):
            obs, info = env.reset(seed=seed + i)
            history: list[str] = []
            while True:
                action = expert.act(obs, info)
                pairs.append((Turn.from_env(obs, info, history), action))
                history.append(action)
                obs, _, term, trunc, info = env.step(action)
                if term or trunc:
                    break
    finally:
        env.close()
    return pairs


def check_web_env(env_id: str, policy: str) -> None:
    """Raise a ValueError that says what to do when ``policy`` cannot act in ``env_id``."""
    env = gym.make(env_id)
    try:
        space = env.observation_space
        if not isinstance(space, gym.spaces.Dict) or "page" not in space.spaces:
            raise ValueError(f"the {policy!r} policy acts in web envs (goal + page text); "
                             f"{env_id} is not one — use a web env such as rlft/Shop-v0, or a "
                             f"policy made for this env")
    finally:
        env.close()


def _prepare(policy: ChoicePolicy, pairs: list[tuple[Turn, str]]
             ) -> tuple[list[TurnFeatures], torch.Tensor]:
    feats = [policy.featurize(t) for t, _ in pairs]
    targets = torch.tensor([policy.target_index(f.candidates, a)
                            for f, (_, a) in zip(feats, pairs, strict=True)])
    return feats, targets


@torch.no_grad()
def _validate(policy: ChoicePolicy, feats: list[TurnFeatures], targets: torch.Tensor,
              batch_size: int) -> tuple[float, float]:
    policy.eval()
    total_loss, total_acc = 0.0, 0.0
    for i in range(0, len(feats), batch_size):
        loss, acc = policy.bc_loss(feats[i : i + batch_size], targets[i : i + batch_size])
        n = len(feats[i : i + batch_size])
        total_loss += float(loss) * n
        total_acc += float(acc) * n
    policy.train()
    return total_loss / max(1, len(feats)), total_acc / max(1, len(feats))


def _warm_cache(policy: ChoicePolicy, feats: Sequence[TurnFeatures], bar: Any) -> None:
    texts = sorted({t for f in feats for t in [f.goal, *f.candidate_texts, *f.history_texts]},
                   key=len)
    task = bar.add_task("encode texts", total=len(texts))
    step = policy.encoder.batch_size * 4
    for i in range(0, len(texts), step):
        policy.encoder(texts[i : i + step])
        bar.update(task, completed=min(len(texts), i + step))


def imitate(args: ImitateArgs) -> dict[str, Any]:
    """Train a policy by behaviour cloning; returns a summary (also written to OUT/summary.json)."""
    from rich.progress import Progress
    from torch.utils.tensorboard import SummaryWriter

    t_start = time.perf_counter()
    check_web_env(args.env, args.policy)
    meta, episodes = load_demos(args.demos, args.max_demos)
    if meta.get("env_id") not in (None, args.env):
        raise ValueError(f"the demos in {args.demos} were recorded on {meta['env_id']}, not "
                         f"{args.env}; pass --env {meta['env_id']} or other demos")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    config = ChoicePolicyConfig(encoder=args.encoder, hidden=args.hidden, lora_r=args.lora_r)
    policy = ChoicePolicy(config, seed=args.seed)
    train_pairs = demo_turns(episodes)
    val_pairs = expert_turns(args.env, "val", args.val_episodes, seed=args.seed) \
        if args.val_episodes > 0 else []
    train_feats, train_targets = _prepare(policy, train_pairs)
    val_feats, val_targets = _prepare(policy, val_pairs)

    params = [p for p in policy.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = max(1, -(-len(train_feats) // args.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, s / (
            args.epochs * steps_per_epoch)))))
    start_epoch, best_val, history = 0, float("inf"), []
    ckpt_path = out / CHECKPOINT
    if args.resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, weights_only=False)
        policy.load_state_dict(ckpt["policy"], strict=False)
        optim.load_state_dict(ckpt["optim"])
        sched.load_state_dict(ckpt["sched"])
        torch.set_rng_state(ckpt["torch_rng"])
        random.setstate(ckpt["py_rng"])
        start_epoch, best_val, history = ckpt["epoch"] + 1, ckpt["best_val"], ckpt["history"]

    writer = SummaryWriter(str(out / "tb"))
    policy.train()
    with Progress(transient=True) as bar:
        if policy.encoder.frozen:
            _warm_cache(policy, train_feats + val_feats, bar)
        t_train = time.perf_counter()
        task = bar.add_task("imitate", total=args.epochs, completed=start_epoch)
        for epoch in range(start_epoch, args.epochs):
            order = list(range(len(train_feats)))
            random.shuffle(order)
            losses, accs = [], []
            for i in range(0, len(order), args.batch_size):
                idx = order[i : i + args.batch_size]
                loss, acc = policy.bc_loss([train_feats[j] for j in idx], train_targets[idx])
                optim.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optim.step()
                sched.step()
                losses.append(float(loss.detach()))
                accs.append(float(acc.detach()))
            row = {"epoch": epoch, "train_loss": float(np.mean(losses)),
                   "train_acc": float(np.mean(accs))}
            if val_feats:
                row["val_loss"], row["val_acc"] = _validate(policy, val_feats, val_targets,
                                                            args.batch_size)
            for k, v in row.items():
                if k != "epoch":
                    writer.add_scalar(f"imitate/{k}", v, epoch)
            history.append(row)
            metric = row.get("val_loss", row["train_loss"])
            if metric < best_val:
                best_val = metric
                policy.save_pretrained(out)
            torch.save({"policy": policy.trainable_state_dict() if policy.encoder.frozen
                        else policy.state_dict(), "optim": optim.state_dict(),
                        "sched": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                        "py_rng": random.getstate(), "epoch": epoch, "best_val": best_val,
                        "history": history}, ckpt_path)
            bar.update(task, completed=epoch + 1,
                       description=f"imitate loss {row['train_loss']:.3f} "
                                   f"val {row.get('val_loss', float('nan')):.3f}")
    writer.flush()
    summary: dict[str, Any] = {
        "env_id": args.env, "policy": args.policy, "demo_episodes": len(episodes),
        "train_turns": len(train_feats), "val_turns": len(val_feats),
        "best_val_loss": best_val, "history": history,
        "train_seconds": time.perf_counter() - t_start,
        "optimise_seconds": time.perf_counter() - t_train, "args": _jsonable(asdict(args)),
    }
    if args.eval_episodes > 0:
        from rlft.training.evaluate import evaluate

        best = ChoicePolicy.from_pretrained(out)
        env = gym.make(args.env, split="val")
        summary["val_eval"] = evaluate(env, best, args.eval_episodes, seed=args.seed,
                                       name="il").to_dict()
        env.close()
        writer.add_scalar("imitate/val_success", summary["val_eval"]["success"], args.epochs)
    writer.close()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}
