"""Imitation from expert demos, one loop for every policy kind: BC (choice, clip), SFT (lm).

``rlft imitate --policy choice --env rlft/Shop-v1 --demos runs/demos --out runs/il-shop``

Every demo step is replayed as a :class:`rlft.agents.episode.Turn` (the episode so far, as the
policy would have seen it acting) and encoded by the policy's own ``encode``, the input it acts
on and PPO scores; ``policy.imitation_target`` turns the expert's action into what
``policy.imitation_loss`` trains towards (for a search: the proposed query closest to the
expert's). The loop knows no policy kind: it speaks :class:`rlft.agents.policy.TrainablePolicy`.
Validation runs on expert turns from the env's ``val`` split (fresh goals) every epoch; the
best epoch is saved with ``save_pretrained``: by validation loss, or (``select_by
val_success``) by the success of greedy rollouts on val-split episodes every few epochs.
``checkpoint.pt`` (trainable weights, optimizer, epoch, RNG) is written every epoch, so an
interrupted run resumes where it stopped; ``summary.json`` is written last. TensorBoard logs go
to ``OUT/tb``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import rlft.envs  # noqa: F401  (registers the ids)
from rlft.agents.checkpoint import load_training_state
from rlft.agents.loading import build_policy, check_pairing, default_device, policy_class
from rlft.agents.policy import pass_size
from rlft.training.configs import ImitateArgs, parse_env_kwargs
from rlft.training.demos import demo_turns, demos_env, expert_turns, load_env_demos
from rlft.training.presets import resolve

CHECKPOINT = "checkpoint.pt"
#: what ``checkpoint.pt`` must hold to resume
CHECKPOINT_KEYS = frozenset({"policy", "optim", "sched", "torch_rng", "py_rng", "epoch",
                             "best_val", "history"})
SUMMARY = "summary.json"


def encode_examples(policy: Any, examples: Sequence[tuple[Any, Any]]
                    ) -> tuple[list[Any], list[Any]]:
    """``(inputs, targets)``: each turn encoded by the policy, each expert action as its
    imitation target."""
    inputs = [policy.encode(turn) for turn, _ in examples]
    targets = [policy.imitation_target(f, action)
               for f, (_, action) in zip(inputs, examples, strict=True)]
    return inputs, targets


def make_optimizer(params: list[torch.Tensor], lr: float, weight_decay: float, total_steps: int
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``params`` and its schedule: cosine decay from ``lr`` to 10% of it over
    ``total_steps`` optimiser steps."""
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, s / max(1, total_steps)))))
    return optim, sched


def batch_gradients(policy: Any, inputs: Sequence[Any], targets: Sequence[Any],
                    micro: int) -> tuple[float, float]:
    """Add one batch's imitation-loss gradients to ``.grad`` (the caller zeroes and steps), in
    forward/backward passes of at most ``micro`` examples; returns the batch's loss and
    accuracy. ``imitation_loss`` is a mean over examples, each weighing
    ``policy.imitation_weight(target)`` (1; the LM's: its target's tokens), so a pass adds its
    mean times its share of the batch's weight and the summed gradients are one pass's."""
    weigh = getattr(policy, "imitation_weight", None)
    weights = [float(weigh(t)) if weigh is not None else 1.0 for t in targets]
    total = sum(weights) or 1.0
    loss_sum = acc_sum = 0.0
    for m in range(0, len(inputs), micro):
        w = sum(weights[m : m + micro]) / total
        loss, acc = policy.imitation_loss(inputs[m : m + micro], targets[m : m + micro])
        (w * loss).backward()
        loss_sum += w * float(loss.detach())
        acc_sum += w * float(acc.detach())
    return loss_sum, acc_sum


def train_epoch(policy: Any, inputs: Sequence[Any], targets: Sequence[Any],
                optim: torch.optim.Optimizer, sched: Any, batch_size: int,
                micro_batch_size: int | None = None) -> tuple[float, float]:
    """One pass over ``(inputs, targets)`` in a random order (Python's ``random``): a step of
    ``policy.imitation_loss`` per batch, in passes of ``micro_batch_size`` examples (None: the
    policy's ``update_micro_batch`` where it has one, else the whole batch;
    :func:`batch_gradients`), gradients clipped to norm 1; mean loss and accuracy."""
    params = [p for group in optim.param_groups for p in group["params"]]
    micro = pass_size(policy, micro_batch_size, batch_size)
    order = list(range(len(inputs)))
    random.shuffle(order)
    losses, accs = [], []
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        optim.zero_grad()
        loss, acc = batch_gradients(policy, [inputs[j] for j in idx],
                                    [targets[j] for j in idx], micro)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        sched.step()
        losses.append(loss)
        accs.append(acc)
    return float(np.mean(losses)), float(np.mean(accs))


@torch.no_grad()
def _validate(policy: Any, inputs: list[Any], targets: list[Any], batch_size: int
              ) -> tuple[float, float]:
    policy.eval()
    total_loss, total_acc = 0.0, 0.0
    for i in range(0, len(inputs), batch_size):
        loss, acc = policy.imitation_loss(inputs[i : i + batch_size], targets[i : i + batch_size])
        n = len(inputs[i : i + batch_size])
        total_loss += float(loss) * n
        total_acc += float(acc) * n
    policy.train()
    return total_loss / max(1, len(inputs)), total_acc / max(1, len(inputs))


def check_args(args: ImitateArgs) -> None:
    """A ValueError naming the first setting imitation cannot run with (``args`` resolved)."""
    parse_env_kwargs(args.env_kwargs, "split")
    if args.micro_batch_size is not None and args.micro_batch_size < 1:
        raise ValueError(f"--micro-batch-size must be at least 1 (or unset), got "
                         f"{args.micro_batch_size}")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got "
                             f"{getattr(args, name)}")
    if args.lr <= 0:
        raise ValueError(f"--lr must be positive, got {args.lr}")
    if args.val_episodes < 0 or args.eval_episodes < 0:
        raise ValueError("--val-episodes and --eval-episodes cannot be negative")
    if args.select_by not in ("val_loss", "val_success"):
        raise ValueError(f"select_by must be 'val_loss' or 'val_success', got {args.select_by!r}")
    if args.select_by == "val_success" and (args.select_episodes < 1 or args.select_every < 1):
        raise ValueError("--select-by val_success needs --select-episodes >= 1 and "
                         "--select-every >= 1")


def imitate(args: ImitateArgs) -> dict[str, Any]:
    """Train a policy by behaviour cloning; returns a summary (also written to OUT/summary.json)."""
    from rich.progress import Progress
    from torch.utils.tensorboard import SummaryWriter

    if args.env is None:
        args = replace(args, env=demos_env(args.demos))
    args = resolve(args)
    check_args(args)
    env_kwargs = args.env_options()
    t_start = time.perf_counter()
    probe = gym.make(args.env, **env_kwargs)
    try:
        check_pairing(policy_class(args.policy), probe)
        episodes = load_env_demos(args.demos, args.env, args.max_demos)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        random.seed(args.seed)
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        policy = build_policy(args.policy, probe, model=args.model, seed=args.seed,
                              **args.policy_options()).to(default_device())
    finally:
        probe.close()
    train_inputs, train_targets = encode_examples(policy, demo_turns(args.demos, episodes))
    val_inputs, val_targets = encode_examples(policy, list(
        expert_turns(args.env, "val", args.val_episodes, seed=args.seed, **env_kwargs)))

    trainable = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    optim, sched = make_optimizer(list(trainable.values()), args.lr, args.weight_decay,
                                  args.epochs * max(1, -(-len(train_inputs) // args.batch_size)))
    start_epoch, best_val, history = 0, None, []
    ckpt_path = out / CHECKPOINT
    if args.resume and ckpt_path.is_file():
        ckpt = load_training_state(ckpt_path, CHECKPOINT_KEYS)
        policy.load_state_dict(ckpt["policy"], strict=False)
        optim.load_state_dict(ckpt["optim"])
        sched.load_state_dict(ckpt["sched"])
        torch.set_rng_state(ckpt["torch_rng"])
        random.setstate(ckpt["py_rng"])
        start_epoch, best_val, history = ckpt["epoch"] + 1, ckpt["best_val"], ckpt["history"]
        t_start -= ckpt.get("elapsed", 0.0)  # count the interrupted run's time too
        if start_epoch < args.epochs and not (out / SUMMARY).exists():
            print(f"{out} holds an interrupted imitation: resuming at epoch {start_epoch + 1}")

    writer = SummaryWriter(str(out / "tb"))
    policy.train()
    with Progress(transient=True) as bar:
        prep = bar.add_task("prepare inputs", total=None)
        policy.prepare_imitation(train_inputs + val_inputs,
                                 lambda n, total: bar.update(prep, completed=n, total=total))
        t_train = time.perf_counter()
        task = bar.add_task("imitate", total=args.epochs, completed=start_epoch)
        for epoch in range(start_epoch, args.epochs):
            train_loss, train_acc = train_epoch(policy, train_inputs, train_targets, optim,
                                                sched, args.batch_size, args.micro_batch_size)
            row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc}
            if val_inputs:
                row["val_loss"], row["val_acc"] = _validate(policy, val_inputs, val_targets,
                                                            args.batch_size)
            for k, v in row.items():
                if k != "epoch":
                    writer.add_scalar(f"imitate/{k}", v, epoch)
            if args.select_by == "val_success" and (
                    (epoch + 1) % args.select_every == 0 or epoch + 1 == args.epochs):
                roll = rollout_success(policy, args.env, args.select_episodes,
                                       seed=args.seed + 10_000, **env_kwargs)
                row["val_success"], row["val_score"] = roll["success"], roll["score"]
                writer.add_scalar("imitate/val_success", row["val_success"], epoch)
            history.append(row)
            metric = selection_key(row, args.select_by)
            if metric is not None and (best_val is None or metric < best_val):
                best_val = metric
                row["saved"] = True
                policy.save_pretrained(out)
            save_atomic({"policy": {k: v.detach() for k, v in trainable.items()},
                        "optim": optim.state_dict(),
                        "sched": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                        "py_rng": random.getstate(), "epoch": epoch, "best_val": best_val,
                        "history": history, "elapsed": time.perf_counter() - t_start},
                        ckpt_path)
            bar.update(task, completed=epoch + 1,
                       description=f"imitate loss {row['train_loss']:.3f} "
                                   f"val {row.get('val_loss', float('nan')):.3f}")
    writer.flush()
    best = next((r for r in reversed(history) if r.get("saved")), None)
    summary: dict[str, Any] = {
        "env_id": args.env, "policy": args.policy, "demo_episodes": len(episodes),
        "train_turns": len(train_inputs), "val_turns": len(val_inputs),
        "select_by": args.select_by, "best_epoch": best["epoch"] if best else None,
        "best_val_loss": best.get("val_loss", best["train_loss"]) if best else None,
        "best_val_success": best.get("val_success") if best else None, "history": history,
        "train_seconds": time.perf_counter() - t_start,
        "optimise_seconds": time.perf_counter() - t_train, "args": _jsonable(asdict(args)),
    }
    if args.eval_episodes > 0:
        from rlft.agents.loading import load_policy
        from rlft.training.evaluate import evaluate

        best = load_policy(out)
        env = gym.make(args.env, split="val", **env_kwargs)
        summary["val_eval"] = evaluate(env, best, args.eval_episodes, seed=args.seed,
                                       name="il").to_dict()
        env.close()
        writer.add_scalar("imitate/val_success", summary["val_eval"]["success"], args.epochs)
    writer.close()
    (out / SUMMARY).write_text(json.dumps(summary, indent=2))  # last: the stage is complete
    return summary


def selection_key(row: dict[str, Any], select_by: str) -> tuple[float, ...] | None:
    """Sort key of an epoch's history row (lower is better; None: not a candidate): val loss
    (train loss without validation), or for ``val_success`` (success, score, -val loss) negated,
    only on epochs with rollouts."""
    loss = row.get("val_loss", row["train_loss"])
    if select_by == "val_loss":
        return (loss,)
    if "val_success" not in row:
        return None
    return (-row["val_success"], -row["val_score"], loss)


@torch.no_grad()
def rollout_success(policy: Any, env_id: str, episodes: int, seed: int = 0,
                    concurrency: int = 1, **env_kwargs: Any) -> dict[str, float]:
    """Greedy rollouts of ``policy`` (eval mode) on ``episodes`` val-split episodes seeded
    ``seed, seed + 1, ...`` (the env made with ``env_kwargs``): mean success and score. With
    ``concurrency`` > 1 and a policy that decides turns together (``act_many``), that many
    episodes are played side by side (:func:`rlft.training.evaluate.evaluate_side_by_side`:
    the same results, their turns scored in one batch)."""
    from rlft.training.evaluate import evaluate_side_by_side

    was = policy.training
    policy.eval()
    env = gym.make(env_id, split="val", **env_kwargs)
    try:
        res = evaluate_side_by_side(env, policy, episodes, concurrency=concurrency, seed=seed,
                                    name="select").to_dict()
    finally:
        env.close()
        policy.train(was)
    return {"success": float(res["success"]), "score": float(res["score"])}


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file renamed over ``path``: a kill mid-write leaves the
    previous checkpoint whole."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
