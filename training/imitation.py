"""Imitation from expert demos: behaviour cloning of a ChoicePolicy, SFT of an LMPolicy.

``rlft imitate --policy choice --env rlft/Shop-v0 --demos runs/demos --out runs/il-shop``

Each demo step becomes a :class:`Turn` (goal, page, valid actions, the episode's previous
actions) whose target is the candidate standing for the expert's action (for a search: the
proposed query closest to the expert's). Choice policy: cross-entropy over the candidates.
LM policy (``--policy lm --model PATH``): SFT, the negative log-likelihood of the target
action's tokens after the chat prompt, with the prompt tokens masked out of the loss.
Validation runs on expert turns from the env's ``val`` split (fresh goals) every epoch; the
best epoch is saved with ``save_pretrained``: by validation loss, or (``select_by
val_success``) by the success of greedy rollouts on val-split episodes every few epochs. ``checkpoint.pt`` (heads,
optimizer, epoch, RNG) is written every epoch, so an interrupted run resumes where it stopped.
TensorBoard logs go to ``OUT/tb``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
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


@dataclass
class Example:
    """One imitation example: the turn, the expert's action, the pages of earlier turns."""

    turn: Turn
    action: str
    history_pages: tuple[str, ...] = ()


def demo_turns(episodes: Sequence[Sequence[dict[str, Any]]]) -> list[Example]:
    """Examples from recorded episodes (history = the episode's earlier actions and pages)."""
    examples = []
    for ep in episodes:
        history: list[str] = []
        pages: list[str] = []
        for rec in ep:
            if "page" not in rec or "valid_actions" not in rec:
                raise ValueError("these demos have no page/valid_actions: the choice and LM "
                                 "policies imitate web-env demos (rlft collect --env "
                                 "rlft/Shop-v0)")
            examples.append(Example(Turn(rec["goal"], rec["page"], tuple(rec["valid_actions"]),
                                         tuple(history), len(history)),
                                    str(rec["action"]), tuple(pages)))
            history.append(str(rec["action"]))
            pages.append(rec["page"])
    return examples


def expert_steps(env_id: str, split: str, episodes: int, seed: int = 0
                 ) -> Iterator[tuple[dict[str, Any], dict[str, Any], Any, bool]]:
    """``(obs, info, expert action, first turn of its episode)`` for every turn of ``episodes``
    fresh expert episodes on ``split`` (episode ``i`` reset with ``seed + i``); the env is
    closed when the generator ends or is dropped."""
    env = gym.make(env_id, split=split)
    expert = env.unwrapped.expert()
    try:
        for i in range(episodes):
            obs, info = env.reset(seed=seed + i)
            if hasattr(expert, "reset"):
                expert.reset()
            first = True
            while True:
                action = expert.act(obs, info)
                yield obs, info, action, first
                first = False
                obs, _, term, trunc, info = env.step(action)
                if term or trunc:
                    break
    finally:
        env.close()


def expert_turns(env_id: str, split: str, episodes: int, seed: int = 0) -> list[Example]:
    """Examples from fresh expert episodes on ``split`` (not written to disk)."""
    examples: list[Example] = []
    history: list[str] = []
    pages: list[str] = []
    for obs, info, action, first in expert_steps(env_id, split, episodes, seed):
        if first:
            history, pages = [], []
        examples.append(Example(Turn.from_env(obs, info, history), action, tuple(pages)))
        history.append(action)
        pages.append(obs["page"])
    return examples


def check_env_kind(env_id: str, policy: str) -> tuple[int, int] | None:
    """Raise a ValueError that says what to do when ``policy`` cannot act in ``env_id``;
    returns the heightmap size of a tabletop env (None for web envs)."""
    env = gym.make(env_id)
    try:
        space = env.observation_space
        keys = set(space.spaces) if isinstance(space, gym.spaces.Dict) else set()
        if policy in ("choice", "lm") and "page" not in keys:
            raise ValueError(f"the {policy!r} policy acts in web envs (goal + page text); "
                             f"{env_id} is not one — use a web env such as rlft/Shop-v0, or "
                             f"--policy clip for tabletop envs")
        if policy == "clip":
            if "color" not in keys:
                raise ValueError(f"the 'clip' policy acts in tabletop envs; {env_id} is not "
                                 f"one — use e.g. rlft/PutBlockInBowl-v0, or --policy choice "
                                 f"for web envs")
            return tuple(space.spaces["color"].shape[:2])
        return None
    finally:
        env.close()


@dataclass
class ImageExample:
    """One tabletop imitation example: goal, heightmap and the expert's action."""

    goal: str
    color: np.ndarray
    depth: np.ndarray
    action: np.ndarray


def tabletop_demo_examples(episodes: Sequence[Sequence[dict[str, Any]]], directory: Path
                           ) -> list[ImageExample]:
    """Examples from recorded tabletop episodes (heightmaps read from their npz files)."""
    out, cache = [], {}
    for ep in episodes:
        for rec in ep:
            ref = rec.get("arrays")
            if ref is None:
                raise ValueError("these demos have no image observations: the clip policy "
                                 "imitates tabletop demos (rlft collect --env "
                                 "rlft/PutBlockInBowl-v0)")
            if ref["file"] not in cache:
                with np.load(directory / ref["file"]) as z:
                    cache = {ref["file"]: {k: z[k] for k in z.files}}
            arrays = cache[ref["file"]]
            out.append(ImageExample(rec["goal"], arrays["color"][ref["index"]["color"]],
                                    arrays["depth"][ref["index"]["depth"]],
                                    np.asarray(rec["action"], dtype=np.float32)))
    return out


def tabletop_expert_examples(env_id: str, split: str, episodes: int, seed: int = 0
                             ) -> list[ImageExample]:
    """Examples from fresh expert episodes of a tabletop env (not written to disk)."""
    return [ImageExample(obs["goal"], obs["color"], obs["depth"],
                         np.asarray(action, dtype=np.float32))
            for obs, _, action, _ in expert_steps(env_id, split, episodes, seed)]


def make_policy(args: ImitateArgs, heightmap: tuple[int, int] | None = None) -> Any:
    """A fresh policy of the kind ``args.policy`` names."""
    if args.policy == "clip":
        from rlft.agents.clip_policy import ClipPolicy, ClipPolicyConfig

        if args.model is None:
            raise ValueError("--policy clip needs --model NAME_OR_PATH (an HF CLIP model)")
        return ClipPolicy(ClipPolicyConfig(clip=args.model, heightmap=heightmap or (160, 320)),
                          seed=args.seed)
    if args.policy == "lm":
        from rlft.agents.lm_policy import LMPolicy, LMPolicyConfig

        if args.model is None:
            raise ValueError("--policy lm needs --model NAME_OR_PATH (an HF causal LM)")
        return LMPolicy(LMPolicyConfig(model=args.model, lora_r=args.lora_r,
                                       window=args.lm_window,
                                       max_page_chars=args.lm_max_page_chars), seed=args.seed)
    return ChoicePolicy(ChoicePolicyConfig(encoder=args.encoder, hidden=args.hidden,
                                           lora_r=args.lora_r), seed=args.seed)


def _prepare(policy: Any, examples: list[Example]) -> tuple[list[Any], Any]:
    """(inputs, targets) for :func:`_loss`: featurised turns and candidate indices for the
    choice policy; prompts and the target candidate's text for the LM policy."""
    if getattr(policy, "policy_type", None) == "clip":
        return list(examples), [e.action for e in examples]
    if isinstance(policy, ChoicePolicy):
        feats = [policy.featurize(e.turn) for e in examples]
        targets = torch.tensor([policy.target_index(f.candidates, e.action)
                                for f, e in zip(feats, examples, strict=True)])
        return feats, targets
    prompts, actions = [], []
    for e in examples:
        cands = policy.candidates(e.turn)
        prompts.append(policy.prompt(e.turn, e.history_pages))
        actions.append(cands[ChoicePolicy.target_index(cands, e.action)])
    return prompts, actions


def _loss(policy: Any, inputs: Sequence[Any], targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if getattr(policy, "policy_type", None) == "clip":
        return policy.bc_loss([e.goal for e in inputs], [e.color for e in inputs],
                              [e.depth for e in inputs], targets)
    if isinstance(policy, ChoicePolicy):
        return policy.bc_loss(inputs, targets)
    return policy.sft_loss(inputs, targets)


def _take(targets: Any, idx: list[int]) -> Any:
    return targets[idx] if isinstance(targets, torch.Tensor) else [targets[i] for i in idx]


@torch.no_grad()
def _validate(policy: Any, feats: list[Any], targets: Any, batch_size: int
              ) -> tuple[float, float]:
    policy.eval()
    total_loss, total_acc = 0.0, 0.0
    for i in range(0, len(feats), batch_size):
        loss, acc = _loss(policy, feats[i : i + batch_size], targets[i : i + batch_size])
        n = len(feats[i : i + batch_size])
        total_loss += float(loss) * n
        total_acc += float(acc) * n
    policy.train()
    return total_loss / max(1, len(feats)), total_acc / max(1, len(feats))


def _warm_cache(policy: ChoicePolicy, feats: Sequence[TurnFeatures], bar: Any) -> None:
    texts = sorted({t for f in feats for t in [f.goal, *f.candidate_texts, *f.history_texts]},
                   key=lambda t: (len(t), t))  # not the hash seed's order: reproducible batches
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
    heightmap = check_env_kind(args.env, args.policy)
    meta, episodes = load_demos(args.demos, args.max_demos)
    if meta.get("env_id") not in (None, args.env):
        raise ValueError(f"the demos in {args.demos} were recorded on {meta['env_id']}, not "
                         f"{args.env}; pass --env {meta['env_id']} or other demos")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    policy = make_policy(args, heightmap)
    if args.policy == "clip":
        train_pairs: list[Any] = tabletop_demo_examples(episodes, Path(args.demos))
        val_pairs: list[Any] = tabletop_expert_examples(
            args.env, "val", args.val_episodes, seed=args.seed)
    else:
        train_pairs = demo_turns(episodes)
        val_pairs = expert_turns(args.env, "val", args.val_episodes, seed=args.seed)
    train_feats, train_targets = _prepare(policy, train_pairs)
    val_feats, val_targets = _prepare(policy, val_pairs)

    params = [p for p in policy.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = max(1, -(-len(train_feats) // args.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, s / (
            args.epochs * steps_per_epoch)))))
    if args.select_by not in ("val_loss", "val_success"):
        raise ValueError(f"select_by must be 'val_loss' or 'val_success', got {args.select_by!r}")
    if args.select_by == "val_success" and (args.select_episodes < 1 or args.select_every < 1):
        raise ValueError("--select-by val_success needs --select-episodes >= 1 and "
                         "--select-every >= 1")
    start_epoch, best_val, history = 0, None, []
    ckpt_path = out / CHECKPOINT
    if args.resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, weights_only=False)
        policy.load_state_dict(ckpt["policy"], strict=False)
        optim.load_state_dict(ckpt["optim"])
        sched.load_state_dict(ckpt["sched"])
        torch.set_rng_state(ckpt["torch_rng"])
        random.setstate(ckpt["py_rng"])
        start_epoch, best_val, history = ckpt["epoch"] + 1, ckpt["best_val"], ckpt["history"]
        if isinstance(best_val, float):  # written before select_by: a val loss
            best_val = (best_val,)
        t_start -= ckpt.get("elapsed", 0.0)  # count the interrupted run's time too

    writer = SummaryWriter(str(out / "tb"))
    policy.train()
    with Progress(transient=True) as bar:
        if isinstance(policy, ChoicePolicy) and policy.encoder.frozen:
            _warm_cache(policy, train_feats + val_feats, bar)
        t_train = time.perf_counter()
        task = bar.add_task("imitate", total=args.epochs, completed=start_epoch)
        for epoch in range(start_epoch, args.epochs):
            order = list(range(len(train_feats)))
            random.shuffle(order)
            losses, accs = [], []
            for i in range(0, len(order), args.batch_size):
                idx = order[i : i + args.batch_size]
                loss, acc = _loss(policy, [train_feats[j] for j in idx],
                                  _take(train_targets, idx))
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
            if args.select_by == "val_success" and (
                    (epoch + 1) % args.select_every == 0 or epoch + 1 == args.epochs):
                roll = rollout_success(policy, args.env, args.select_episodes,
                                       seed=args.seed + 10_000)
                row["val_success"], row["val_score"] = roll["success"], roll["score"]
                writer.add_scalar("imitate/val_success", row["val_success"], epoch)
            history.append(row)
            metric = selection_key(row, args.select_by)
            if metric is not None and (best_val is None or metric < best_val):
                best_val = metric
                row["saved"] = True
                policy.save_pretrained(out)
            torch.save({"policy": {k: v for k, v in policy.state_dict().items()
                                   if not _frozen_key(policy, k)}, "optim": optim.state_dict(),
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
        "train_turns": len(train_feats), "val_turns": len(val_feats),
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
        env = gym.make(args.env, split="val")
        summary["val_eval"] = evaluate(env, best, args.eval_episodes, seed=args.seed,
                                       name="il").to_dict()
        env.close()
        writer.add_scalar("imitate/val_success", summary["val_eval"]["success"], args.epochs)
    writer.close()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
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
def rollout_success(policy: Any, env_id: str, episodes: int, seed: int = 0) -> dict[str, float]:
    """Greedy rollouts of ``policy`` (eval mode) on ``episodes`` val-split episodes seeded
    ``seed, seed + 1, ...``: mean success and score."""
    from rlft.training.evaluate import evaluate

    was = policy.training
    policy.eval()
    env = gym.make(env_id, split="val")
    try:
        res = evaluate(env, policy, episodes, seed=seed, name="select").to_dict()
    finally:
        env.close()
        policy.train(was)
    return {"success": float(res["success"]), "score": float(res["score"])}


def _frozen_key(policy: Any, key: str) -> bool:
    """Whether ``key`` names a weight that imitation does not change (the frozen encoder)."""
    return isinstance(policy, ChoicePolicy) and policy.encoder.frozen and key.startswith(
        "encoder.")


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}
