"""PPO over multi-turn episodes for every policy kind, read top to bottom like cleanrl's ``ppo.py``.

    rlft train ppo --env rlft/Shop-v1 --policy runs/il-shop --out runs/ppo-shop

One turn is one PPO step. Each env's episode so far lives in an
:class:`rlft.agents.episode.Episode` and the policy (any :class:`rlft.agents.rl.RLPolicy`:
choice, CLIP, LM) encodes its turn with ``encode``, the same input it acts on and imitation
trains on; it samples the turn's action, the env returns the turn's reward, GAE runs over
turns. An action is
made of scored parts (one for a choice, one per token for an LM); the loss is the clipped
surrogate on each part's probability ratio weighted by the turn's advantage, a clipped value
loss, an entropy bonus and a KL penalty to the frozen imitation checkpoint. The reference is the
checkpoint's own trainable tensors swapped in place (``reference_weights``): the frozen encoder
or base model is shared, never copied, and the taken actions are scored under it once per update
(``reference_scores``), not again in every epoch.

Built on ``accelerate``: ``accelerate launch --multi_gpu --num_processes 2 -m rlft.training.ppo
...`` (on GPUs or, with gloo, on CPUs) runs one rollout worker per process with gradients
averaged across them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

import rlft.envs  # noqa: F401  (registers the ids)
from rlft.agents.checkpoint import load_training_state
from rlft.agents.episode import Episode
from rlft.agents.policy import pass_size
from rlft.training.configs import PPOArgs, parse_env_kwargs
from rlft.training.presets import resolve

__all__ = ["PPOArgs", "compute_gae", "group_advantages", "load_rl_policy", "observation_key",
           "step_advantages", "train_ppo"]

if TYPE_CHECKING:
    import torch


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
                next_value: torch.Tensor, gamma: float, lam: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over turns. ``dones[t]`` marks that the episode ended AT step t (so the value after
    it is not bootstrapped); truncations are bootstrapped by the caller folding
    ``gamma * V(final_obs)`` into the reward. Returns ``(advantages, returns)``."""
    import torch

    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        nv = next_value if t == T - 1 else values[t + 1]
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * nv * nonterminal - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv, adv + values


def group_advantages(returns: torch.Tensor, kind: str, eps: float = 1e-6
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Critic-free advantages of episode returns ``[groups, G]`` (each row: ``G`` rollouts of
    one goal). ``grpo``: ``(R - mean) / (std + eps)`` with the row's sample std (GRPO,
    DeepSeekMath); ``rloo``: ``R`` minus the mean of the row's other ``G - 1`` returns (RLOO,
    Ahmadian et al. 2024). Returns ``(advantages [groups, G], informative [groups])``: a row
    whose returns are all equal has advantage 0 and ``informative`` False."""
    G = returns.shape[1]
    if G < 2:
        raise ValueError(f"a group needs at least 2 rollouts, got {G}")
    mean = returns.mean(dim=1, keepdim=True)
    informative = (returns.max(dim=1).values - returns.min(dim=1).values) > 1e-9
    if kind == "grpo":
        adv = (returns - mean) / (returns.std(dim=1, keepdim=True) + eps)
    elif kind == "rloo":
        adv = (returns - mean) * G / (G - 1)
    else:
        raise ValueError(f"unknown group advantage {kind!r}; use 'grpo' or 'rloo'")
    return adv * informative.unsqueeze(1), informative


def step_advantages(keys: Sequence[Any], returns: torch.Tensor, eps: float = 1e-6
                    ) -> torch.Tensor:
    """GiGPO's step-level advantages within one group of rollouts of a goal: turns whose
    observation is the same (equal ``keys``: an anchor state, reached in several rollouts or
    again in one) form a step group, and each turn's discounted return-to-go ``returns [n]``
    minus its step group's mean, divided by its std, is its advantage. A turn alone in its
    step group, or in one whose returns are equal, gets 0."""
    import torch

    adv = torch.zeros_like(returns)
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        r = returns[members]
        if float(r.max() - r.min()) > 1e-9:
            adv[members] = (r - r.mean()) / (r.std() + eps)
    return adv


def observation_key(obs: dict[str, Any]) -> str:
    """A digest of an observation (text fields and arrays alike) that equals another's exactly
    when every field does: the anchor-state key of :func:`step_advantages`."""
    import hashlib

    digest = hashlib.sha1()
    for name in sorted(obs):
        value = obs[name]
        digest.update(name.encode())
        if isinstance(value, np.ndarray):
            digest.update(str((value.dtype, value.shape)).encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def _split_infos(infos: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Per-env info dicts from a vector env's batched infos (the ``_key`` masks dropped)."""
    keys = [k for k in infos if not k.startswith("_") and k not in ("final_obs", "final_info")]
    return [{k: infos[k][i] for k in keys} for i in range(n)]


def _split_obs(obs: dict[str, Any], n: int) -> list[dict[str, Any]]:
    return [{k: v[i] for k, v in obs.items()} for i in range(n)]


SUMMARY = "summary.json"


def check_args(args: PPOArgs) -> None:
    """A ValueError naming the first setting PPO cannot run with (``args`` resolved)."""
    parse_env_kwargs(args.env_kwargs, "split", "reward_mode")
    for name in ("num_envs", "num_steps", "updates", "update_epochs", "minibatch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got "
                             f"{getattr(args, name)}")
    if args.eval_episodes < 0:
        raise ValueError(f"--eval-episodes cannot be negative, got {args.eval_episodes}")
    if args.micro_batch_size is not None and args.micro_batch_size < 1:
        raise ValueError(f"--micro-batch-size must be at least 1 (or unset), got "
                         f"{args.micro_batch_size}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ValueError(f"--max-minutes must be positive (or unset), got {args.max_minutes}")
    if not 0.0 < args.gamma <= 1.0 or not 0.0 <= args.gae_lambda <= 1.0:
        raise ValueError("--gamma must be in (0, 1] and --gae-lambda in [0, 1]")
    if args.goal_pool < 0:
        raise ValueError(f"--goal-pool must be 0 (every goal of the split) or a pool size, got "
                         f"{args.goal_pool}")
    if args.step_weight < 0:
        raise ValueError(f"--step-weight cannot be negative, got {args.step_weight}")
    for name in ("learning_rate", "clip_coef", "max_grad_norm"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got "
                             f"{getattr(args, name)}")
    for name in ("vf_coef", "kl_coef", "ent_coef"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} is a loss weight, 0 or more, got "
                             f"{getattr(args, name)}")
    if args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every is a number of updates (0: only the last), got "
                         f"{args.checkpoint_every}")
    if args.advantage != "gae":
        if args.group_size < 2:
            raise ValueError(f"--group-size must be at least 2 for --advantage "
                             f"{args.advantage}, got {args.group_size}")
        if args.num_envs % args.group_size:
            raise ValueError(f"--num-envs ({args.num_envs}) must be a multiple of --group-size "
                             f"({args.group_size}): each group of envs plays one goal")


def _env_seed(args: PPOArgs, rank: int, update: int) -> int:
    """Seed of the envs' reset at ``update``: a function of the update, so a resumed run
    restarts the episodes an uninterrupted one starts at the same checkpoint."""
    return args.seed + 1000 * rank + 100_003 * update


def minibatch_gradients(policy: Any, feats: Sequence[Any], actions: Sequence[Any],
                        old_log_probs: Sequence[torch.Tensor],
                        ref_rows: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
                        advantages: torch.Tensor, returns: torch.Tensor | None,
                        old_values: torch.Tensor | None, args: PPOArgs, micro: int
                        ) -> dict[str, float]:
    """Add one minibatch's PPO loss gradients to ``.grad`` (the caller zeroes and steps), in
    forward/backward passes of at most ``micro`` turns; returns the minibatch's losses and
    ``clipfrac``. Each term is a mean over the minibatch's action parts (surrogate, k3 KL) or
    turns (value, entropy, exact KL): a pass adds its own mean times its share, so the summed
    gradients are those of one pass over the minibatch. ``returns`` None: critic-free (the
    value head neither trained nor used)."""
    import torch

    from rlft.agents.rl import masked_mean, stack_parts, stack_reference

    parts = np.array([len(lp) for lp in old_log_probs], dtype=np.float64)
    total_parts, n = max(1.0, float(parts.sum())), len(feats)
    sums = dict.fromkeys(("policy_loss", "value_loss", "entropy", "kl_ref", "approx_kl",
                          "clipfrac"), 0.0)
    for m in range(0, n, micro):
        sub = slice(m, m + micro)
        w_parts, w_turns = float(parts[sub].sum()) / total_parts, len(feats[sub]) / n
        ev = policy.rl_evaluate(feats[sub], actions[sub])
        old, _ = stack_parts(old_log_probs[sub], width=ev.log_probs.shape[1])
        logratio = ev.log_probs - old.to(ev.log_probs.device)
        ratio = logratio.exp()
        with torch.no_grad():
            sums["approx_kl"] += w_parts * masked_mean((ratio - 1) - logratio, ev.mask).item()
            sums["clipfrac"] += w_parts * masked_mean(
                ((ratio - 1.0).abs() > args.clip_coef).float(), ev.mask).item()
        adv = advantages[sub].to(ratio.device).unsqueeze(1)  # the turn's, for each part
        pg_loss = masked_mean(torch.max(
            -adv * ratio, -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)), ev.mask)
        if returns is None:
            v_loss = torch.zeros((), device=ratio.device)
        else:
            v = ev.values
            ret, val = returns[sub].to(v.device), old_values[sub].to(v.device)
            if args.clip_vloss:
                v_clipped = val + (v - val).clamp(-args.clip_coef, args.clip_coef)
                v_loss = 0.5 * torch.max((v - ret) ** 2, (v_clipped - ret) ** 2).mean()
            else:
                v_loss = 0.5 * ((v - ret) ** 2).mean()
        entropy = ev.entropy.mean()
        ref = stack_reference(ref_rows[sub], ev)
        kl = ev.kl(ref)  # logged even when kl_coef is 0
        w_kl = w_turns if ev.kl_per_turn(ref) else w_parts
        loss = (w_parts * pg_loss - args.ent_coef * w_turns * entropy
                + args.vf_coef * w_turns * v_loss + args.kl_coef * w_kl * kl)
        loss.backward()
        for key, w, x in (("policy_loss", w_parts, pg_loss), ("value_loss", w_turns, v_loss),
                          ("entropy", w_turns, entropy), ("kl_ref", w_kl, kl)):
            sums[key] += w * x.item()
    return sums


def load_rl_policy(path: str | Path, env_id: str, lora_r: int | None = 8,
                   method: str = "PPO") -> Any:
    """A saved policy that implements :class:`rlft.agents.rl.RLPolicy` and can act in ``env_id``,
    with errors that say what to do (naming the training ``method``). Unless ``lora_r`` is
    None, a policy with an ``add_rl_adapter(lora_r)`` hook gets the chance to add a LoRA adapter
    (see ``PPOArgs.lora_r``)."""
    from rlft.agents.loading import check_pairing, load_policy
    from rlft.agents.policy import TrainablePolicy as RLPolicy

    policy = load_policy(path)
    if not isinstance(policy, RLPolicy):
        raise ValueError(f"the {policy.policy_type!r} policy at {path} cannot be trained with "
                         f"{method} (it lacks the rl_* methods of rlft.agents.rl.RLPolicy)")
    probe = gym.make(env_id)
    try:
        check_pairing(policy, probe)
    finally:
        probe.close()
    if lora_r is not None and hasattr(policy, "add_rl_adapter"):
        policy.add_rl_adapter(lora_r)
    if not any(p.requires_grad for p in policy.parameters()):
        raise ValueError(f"the policy at {path} has no trainable weights")
    return policy


# -- the runner -----------------------------------------------------------------------------
def train_ppo(args: PPOArgs) -> dict[str, Any]:
    """Run PPO as configured; returns the final summary (also written to ``out/summary.json``)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import gather_object
    from gymnasium.vector import AutoresetMode
    from torch.utils.tensorboard import SummaryWriter

    from rlft.agents.rl import reference_scores

    args = resolve(args)
    check_args(args)
    env_kwargs = parse_env_kwargs(args.env_kwargs, "split", "reward_mode")
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    rank, world = accelerator.process_index, accelerator.num_processes
    out = Path(args.out)
    ckpt_dir = out / "checkpoint"

    seed = args.seed + 1000 * rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    policy = load_rl_policy(args.policy, args.env, args.lora_r).to(accelerator.device)
    # Dropout off in rollouts and updates alike, so the first epoch's ratio is exactly 1.
    policy.eval()
    trainable = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    if world > 1:  # freshly initialised weights (a new LoRA adapter, critic) differ per rank
        _broadcast_weights(list(trainable.values()))
    reference = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer = torch.optim.Adam(trainable.values(), lr=args.learning_rate, eps=1e-5)
    sampler = torch.Generator().manual_seed(seed)

    start_update, global_step = 0, 0
    history: list[dict[str, float]] = []  # per update: the learning curve
    # per finished episode; "task" names the task played where the env says (info["task"]:
    # the six-task tabletop env), else ""
    episodes: dict[str, list[Any]] = {"return": [], "success": [], "score": [], "task": []}
    if args.resume and accelerator.is_main_process:
        recover_checkpoint(ckpt_dir)
    accelerator.wait_for_everyone()
    if args.resume and (ckpt_dir / "state.pt").exists():
        state = load_training_state(ckpt_dir / "state.pt", STATE_KEYS)
        if len(state["rng"]) != world:
            raise ValueError(f"{ckpt_dir} was written by {len(state['rng'])} processes; resume "
                             f"it with as many (this run has {world})")
        policy.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        reference = state["reference"]
        start_update, global_step = state["update"], state["global_step"]
        history, episodes = state["history"], state["episodes"][rank]
        episodes.setdefault("task", [""] * len(episodes["success"]))  # (written before tasks)
        rng = state["rng"][rank]
        if accelerator.is_main_process and start_update < args.updates:
            print(f"{out} holds an interrupted PPO run: resuming at update {start_update + 1}")
        sampler.set_state(rng["sampler"])
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])

    wrappers = []
    if args.goal_pool:  # "few prompts, many epochs": every episode from the same few goals
        from rlft.wrappers.goal_pool import GoalPool

        wrappers = [lambda env: GoalPool(env, args.goal_pool, pool_seed=args.seed)]
    envs = gym.make_vec(args.env, num_envs=args.num_envs, vectorization_mode=args.vectorization,
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                        wrappers=wrappers,
                        split=args.split, reward_mode=args.reward_mode, **env_kwargs)
    N, T = args.num_envs, args.num_steps
    writer = SummaryWriter(str(out / "tb")) if accelerator.is_main_process else None
    if writer is not None:
        writer.add_text("args", json.dumps(asdict(args), indent=2))
    bar = None
    if args.progress and accelerator.is_main_process:
        from tqdm.auto import tqdm

        bar = tqdm(total=args.updates, initial=start_update, desc="ppo", unit="update")
    t_start, steps_at_start = time.perf_counter(), global_step
    next_obs = None
    updates_done, stopped = start_update, None

    grouped = args.advantage != "gae"
    for update in range(start_update, args.updates):
        if not grouped and (next_obs is None
                            or (args.checkpoint_every and update % args.checkpoint_every == 0)):
            # (Re)start every episode at checkpoint boundaries: what a resumed run does too.
            obs, infos = envs.reset(seed=_env_seed(args, rank, update))
            next_obs = _split_obs(obs, N), _split_infos(infos, N)
            episodes_so_far = [Episode() for _ in range(N)]
            running = np.zeros(N)
        if args.anneal_lr:
            for g in optimizer.param_groups:
                g["lr"] = args.learning_rate * (1.0 - update / args.updates)

        # ---- rollout: T turns in each of N envs ----------------------------------------
        group_stats: dict[str, float] = {}
        if grouped:  # complete episodes, G per goal; every turn gets its episode's advantage
            feats, actions, logprobs, b_adv, taken, group_stats = _group_rollout(
                envs, policy, args, sampler, _env_seed(args, rank, update), episodes)
            global_step += taken * world
            b_ret = b_val = None
        else:
            feats: list[Any] = []          # time-major: turn t of env i is at t * N + i
            actions: list[Any] = []
            logprobs: list[torch.Tensor] = []  # per turn: log-probs of the action's parts
            values, rewards, dones = torch.zeros(T, N), torch.zeros(T, N), torch.zeros(T, N)
            for t in range(T):
                obs_list, info_list = next_obs
                for i in range(N):
                    episodes_so_far[i].observe(obs_list[i], info_list[i])
                turn = [policy.encode(episodes_so_far[i].turn()) for i in range(N)]
                with torch.no_grad():
                    step = policy.rl_act(turn, sampler)
                obs, reward, term, trunc, infos = envs.step(step.env_actions)
                global_step += N * world
                reward_t = torch.as_tensor(reward, dtype=torch.float32)
                final_infos = (_split_infos(infos["final_info"], N) if "final_info" in infos
                               else None)
                for i in range(N):
                    episodes_so_far[i].record(step.env_actions[i])
                    running[i] += reward[i]
                    if trunc[i] and not term[i]:  # bootstrap the cut-off episode's value
                        episodes_so_far[i].observe(infos["final_obs"][i], final_infos[i])
                        with torch.no_grad():
                            v = policy.rl_values([policy.encode(episodes_so_far[i].turn())])
                        reward_t[i] += args.gamma * float(v[0])
                    if term[i] or trunc[i]:
                        _record_episode(episodes, float(running[i]), infos["final_info"], i)
                        running[i] = 0.0
                        episodes_so_far[i].reset()
                feats.extend(turn)
                actions.extend(step.actions)
                logprobs.extend(step.log_probs[i][step.mask[i] > 0].cpu() for i in range(N))
                values[t] = step.values.cpu()
                rewards[t] = reward_t
                dones[t] = torch.as_tensor(term | trunc, dtype=torch.float32)
                next_obs = _split_obs(obs, N), _split_infos(infos, N)
            with torch.no_grad():
                for i in range(N):
                    episodes_so_far[i].observe(next_obs[0][i], next_obs[1][i])
                last = [policy.encode(episodes_so_far[i].turn()) for i in range(N)]
                next_value = policy.rl_values(last).cpu()
            advantages, returns = compute_gae(rewards, values, dones, next_value, args.gamma,
                                              args.gae_lambda)
            b_adv, b_ret, b_val = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)
        # ---- optimisation: clipped surrogate per action part ---------------------------
        # the frozen reference's scores of the taken actions: once per update, not per epoch
        micro = pass_size(policy, args.micro_batch_size, args.minibatch_size)
        ref_rows = reference_scores(policy, reference, feats, actions, micro)
        order = np.arange(len(feats))
        clipfracs, stats = [], {}
        for _epoch in range(args.update_epochs):
            np.random.shuffle(order)
            for s in range(0, len(order), args.minibatch_size):
                mb = order[s : s + args.minibatch_size]
                adv_mb = b_adv[mb]
                if args.norm_adv and not grouped and len(mb) > 1:
                    adv_mb = (adv_mb - adv_mb.mean()) / (adv_mb.std() + 1e-8)
                optimizer.zero_grad()
                sums = minibatch_gradients(policy, [feats[j] for j in mb],
                                           [actions[j] for j in mb], [logprobs[j] for j in mb],
                                           [ref_rows[j] for j in mb], adv_mb,
                                           None if grouped else b_ret[mb],
                                           None if grouped else b_val[mb], args, micro)
                clipfracs.append(sums.pop("clipfrac"))
                if world > 1:
                    _average_gradients(accelerator, list(trainable.values()))
                torch.nn.utils.clip_grad_norm_(list(trainable.values()), args.max_grad_norm)
                optimizer.step()
                stats = sums

        # ---- logging and checkpoints ---------------------------------------------------
        explained = float("nan")
        if not grouped and b_ret.var() > 0:
            explained = float(1 - (b_ret - b_val).var() / b_ret.var())
        recent = slice(-max(1, 4 * N), None)
        mine = {k: v[recent] for k, v in episodes.items()}
        everyone = gather_object([mine]) if world > 1 else [mine]
        recent_eps = {k: [x for part in everyone for x in part[k]] for k in mine}
        by_task = success_by_task(recent_eps)
        elapsed = max(1e-9, time.perf_counter() - t_start)
        if writer is not None:
            for k, v in stats.items():
                writer.add_scalar(f"losses/{k}", v, global_step)
            writer.add_scalar("losses/clipfrac", float(np.mean(clipfracs)) if clipfracs
                              else float("nan"), global_step)
            for k, v in group_stats.items():
                writer.add_scalar(f"groups/{k}", v, global_step)
            writer.add_scalar("losses/explained_variance", explained, global_step)
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            writer.add_scalar("charts/samples_per_s", (global_step - steps_at_start) / elapsed,
                              global_step)
            if recent_eps["success"]:
                writer.add_scalar("charts/episodic_return", float(np.mean(recent_eps["return"])),
                                  global_step)
                writer.add_scalar("charts/success", float(np.mean(recent_eps["success"])),
                                  global_step)
                writer.add_scalar("charts/score", float(np.mean(recent_eps["score"])), global_step)
                for task, rate in by_task.items():
                    writer.add_scalar(f"charts/success/{task}", rate, global_step)
        if recent_eps["success"]:
            history.append({"update": update + 1, "global_step": global_step,
                            "success": float(np.mean(recent_eps["success"])),
                            "score": float(np.mean(recent_eps["score"])),
                            "kl_ref": stats.get("kl_ref", 0.0), **group_stats})
            if by_task:
                history[-1]["success_by_task"] = by_task
        if bar is not None:
            bar.update(1)
            if recent_eps["success"]:
                bar.set_postfix(success=f"{np.mean(recent_eps['success']):.2f}",
                                kl=f"{stats.get('kl_ref', 0):.3f}")
        if args.checkpoint_every and (update + 1) % args.checkpoint_every == 0:
            rng = {"sampler": sampler.get_state(), "torch": torch.get_rng_state(),
                   "numpy": np.random.get_state(), "python": random.getstate()}
            per_rank = gather_object([(rng, episodes)]) if world > 1 else [(rng, episodes)]
            if accelerator.is_main_process:
                _save_checkpoint(ckpt_dir, {
                    "model": {k: v for k, v in policy.state_dict().items() if k in trainable},
                    "optimizer": optimizer.state_dict(), "reference": reference,
                    "update": update + 1, "global_step": global_step, "history": history,
                    "rng": [r for r, _ in per_rank], "episodes": [e for _, e in per_rank]})
            accelerator.wait_for_everyone()
        updates_done = update + 1
        if args.max_minutes is not None:
            spent = (time.perf_counter() - t_start) / 60.0
            # every process stops at the same update: the slowest one's clock decides
            if max(gather_object([spent]) if world > 1 else [spent]) >= args.max_minutes:
                stopped = f"--max-minutes {args.max_minutes:g} ran out after update {updates_done}"
                break
    envs.close()
    if bar is not None:
        bar.close()
    if stopped and accelerator.is_main_process:
        print(stopped)

    checksum = float(sum(p.detach().double().sum() for p in trainable.values()))
    checksums = gather_object([checksum]) if world > 1 else [checksum]
    summary: dict[str, Any] = {
        "updates": args.updates, "updates_done": updates_done, "stopped_early": stopped,
        "global_step": global_step, "processes": world,
        "weights_in_sync": bool(np.allclose(checksums, checksums[0], rtol=1e-6, atol=1e-6)),
        "samples_per_s": (global_step - steps_at_start) / max(1e-9, time.perf_counter() - t_start),
        "train_success_last": history[-1]["success"] if history else None,
        "history": history}
    if accelerator.is_main_process:
        policy.save_pretrained(out / "policy")
        if args.eval_episodes:  # the starting checkpoint and the result on the same goals
            from rlft.training.benchmark import start_and_result

            summary.update(start_and_result(args.env, args.policy, "ppo", str(out / "policy"),
                                            args.eval_episodes, reward_mode=args.reward_mode,
                                            **env_kwargs))
        (out / SUMMARY).write_text(json.dumps(summary, indent=2))  # last: the stage is done
        if writer is not None:
            writer.close()
    accelerator.wait_for_everyone()
    return summary


def _record_episode(episodes: dict[str, list[Any]], ret: float, final_info: dict[str, Any],
                    i: int) -> None:
    """Append env ``i``'s finished episode (its return, and success, score and task from the
    vector env's batched ``final_info``) to the running statistics, keeping the last 1,000."""
    episodes["return"].append(ret)
    episodes["success"].append(float(final_info["success"][i]))
    episodes["score"].append(float(final_info["score"][i]))
    episodes["task"].append(str(final_info["task"][i]) if "task" in final_info else "")
    for key in episodes:
        del episodes[key][:-1000]


def success_by_task(episodes: dict[str, list[Any]]) -> dict[str, float]:
    """Success rate per task of the episodes in ``episodes`` (parallel ``"task"`` and
    ``"success"`` lists); ``{}`` where no episode names a task. In a multi-task env the
    overall rate of a short window mixes the tasks as they happen to finish (the first
    update's finished episodes are the short tasks'), so it is no learning curve alone."""
    rates: dict[str, list[float]] = {}
    for task, success in zip(episodes["task"], episodes["success"], strict=True):
        if task:
            rates.setdefault(task, []).append(float(success))
    return {task: float(np.mean(v)) for task, v in sorted(rates.items())}


def _group_rollout(envs: Any, policy: Any, args: PPOArgs, sampler: torch.Generator,
                   seed: int, episodes: dict[str, list[float]]
                   ) -> tuple[list[Any], list[Any], list[torch.Tensor], torch.Tensor, int,
                              dict[str, float]]:
    """One update's rollouts for ``grpo``/``rloo``: rounds of complete episodes, the envs in
    each group of ``group_size`` reset with one seed (so they play one goal), until
    ``num_envs * num_steps`` turns were taken. An env whose episode has ended waits for the
    round's last one (the vector env steps every env: it gets one of the live envs' actions,
    and what it returns is unused). Returns the turns' features, actions, part log-probs and
    advantages (every turn its episode's), the turns taken, and group counts for logging."""
    import torch

    N, G = args.num_envs, args.group_size
    feats: list[Any] = []
    actions: list[Any] = []
    logprobs: list[torch.Tensor] = []
    advantages: list[torch.Tensor] = []
    taken = rounds = skipped = anchored = 0
    while taken < N * args.num_steps:
        obs, infos = envs.reset(seed=[seed + rounds * N + i // G for i in range(N)])
        next_obs = _split_obs(obs, N), _split_infos(infos, N)
        so_far = [Episode() for _ in range(N)]
        played: list[list[tuple[Any, Any, torch.Tensor]]] = [[] for _ in range(N)]
        keys: list[list[str]] = [[] for _ in range(N)]  # per turn: its observation's digest
        rewards: list[list[float]] = [[] for _ in range(N)]  # per turn: the env's reward
        active = np.ones(N, dtype=bool)
        while active.any():
            live = np.flatnonzero(active)
            for i in live:
                so_far[i].observe(next_obs[0][i], next_obs[1][i])
                if args.advantage == "gigpo":
                    keys[i].append(observation_key(next_obs[0][i]))
            turn = [policy.encode(so_far[i].turn()) for i in live]
            with torch.no_grad():
                step = policy.rl_act(turn, sampler)
            env_actions = [step.env_actions[0]] * N
            for k, i in enumerate(live):
                env_actions[i] = step.env_actions[k]
            obs, reward, term, trunc, infos = envs.step(env_actions)
            for k, i in enumerate(live):
                so_far[i].record(step.env_actions[k])
                played[i].append((turn[k], step.actions[k],
                                  step.log_probs[k][step.mask[k] > 0].cpu()))
                rewards[i].append(float(reward[i]))
                if term[i] or trunc[i]:
                    active[i] = False
                    _record_episode(episodes, sum(rewards[i]), infos["final_info"], i)
            taken += len(live)
            next_obs = _split_obs(obs, N), _split_infos(infos, N)
        returns = torch.tensor([sum(r) for r in rewards])
        adv, informative = group_advantages(
            returns.view(N // G, G), "grpo" if args.advantage == "gigpo" else args.advantage)
        turn_adv = [adv.view(-1)[i].expand(len(played[i])) for i in range(N)]
        if args.advantage == "gigpo":
            for g in range(N // G):
                members = range(g * G, (g + 1) * G)
                # discounted return-to-go of each turn: GAE with lambda 1 and no critic
                togo = torch.cat([compute_gae(torch.tensor(rewards[i])[:, None],
                                              *torch.zeros(2, len(rewards[i]), 1),
                                              torch.zeros(1), args.gamma, 1.0)[1][:, 0]
                                  for i in members])
                group_keys = [k for i in members for k in keys[i]]
                step = args.step_weight * step_advantages(group_keys, togo)
                counts = Counter(group_keys)
                anchored += sum(counts[k] > 1 for k in group_keys)
                informative[g] |= bool(step.abs().max() > 0)
                for i, part in zip(members, step.split([len(played[i]) for i in members]),
                                   strict=True):
                    turn_adv[i] = turn_adv[i] + part
        for i in range(N):
            if informative[i // G]:  # equal returns: a zero advantage would only cost compute
                for (feat, action, logprob), a in zip(played[i], turn_adv[i], strict=True):
                    feats.append(feat)
                    actions.append(action)
                    logprobs.append(logprob)
                    advantages.append(a)
        rounds += 1
        skipped += int((~informative).sum())
    stats = {"groups": float(rounds * (N // G)), "groups_skipped": float(skipped),
             "rounds": float(rounds)}
    if args.advantage == "gigpo":  # the share of turns that met another at an anchor state
        stats["anchored"] = anchored / max(1, taken)
    return (feats, actions, logprobs, torch.stack(advantages) if advantages else torch.zeros(0),
            taken, stats)


def _average_gradients(accelerator: Any, params: list[torch.Tensor]) -> None:
    """All-reduce (mean) the gradients of ``params`` across processes in one flat tensor, as
    cleanrl's multi-GPU PPO does; a parameter without a gradient contributes zeros."""
    import torch

    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                      for p in params])
    flat = accelerator.reduce(flat, reduction="mean")
    i = 0
    for p in params:
        n = p.numel()
        p.grad = flat[i : i + n].view_as(p).clone()
        i += n


def _broadcast_weights(params: list[torch.Tensor]) -> None:
    """Give every process rank 0's values of ``params`` (in one flat tensor), as DDP does at
    start: weights a policy initialises when it loads differ per rank (each has its seed)."""
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        flat = torch.cat([p.detach().flatten() for p in params])
        dist.broadcast(flat, src=0)
        i = 0
        for p in params:
            p.copy_(flat[i : i + p.numel()].view_as(p))
            i += p.numel()


COMPLETE = "COMPLETE"


def _save_checkpoint(directory: Path, state: dict[str, Any]) -> None:
    """Write the resumable state so that a kill at any point leaves a complete checkpoint: into
    ``checkpoint.tmp`` (``state.pt``, then the ``COMPLETE`` marker), the old one moved aside to
    ``checkpoint.old``, the new one renamed into place, the old one removed.
    :func:`recover_checkpoint` finishes or undoes an interrupted write."""
    import torch

    recover_checkpoint(directory, quiet=True)
    tmp = directory.with_name(directory.name + ".tmp")
    tmp.mkdir(parents=True)
    torch.save(state, tmp / "state.pt")
    (tmp / COMPLETE).write_text("")
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def recover_checkpoint(directory: Path, quiet: bool = False) -> str | None:
    """Leave ``directory`` as the last complete checkpoint after an interrupted
    :func:`_save_checkpoint`, and remove its leftovers; returns a line saying what was found
    (None when nothing was amiss). A complete ``checkpoint.tmp`` is newer than everything else;
    a ``checkpoint.old`` is the previous complete one."""
    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    found = None
    if (tmp / COMPLETE).is_file():  # the newest complete one, wherever the write stopped
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(tmp, directory)
        found = f"{directory}: recovered the checkpoint being put in place ({tmp.name})"
    elif not directory.exists() and (old / "state.pt").is_file():
        os.replace(old, directory)
        found = f"{directory}: restored the previous checkpoint ({old.name})"
    elif tmp.exists() or old.exists():
        found = (f"{directory}: removed the leftovers of an interrupted checkpoint write "
                 f"({', '.join(d.name for d in (tmp, old) if d.exists())})")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    if found and not quiet:
        print(found)
    return found


#: what a PPO ``state.pt`` must hold to resume
STATE_KEYS = frozenset({"model", "optimizer", "reference", "update", "global_step", "history",
                        "rng", "episodes"})

if __name__ == "__main__":
    import tyro

    train_ppo(tyro.cli(PPOArgs))
