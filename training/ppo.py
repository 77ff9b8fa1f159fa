"""PPO over multi-turn episodes for choice policies, read top to bottom like cleanrl's ``ppo.py``.

    rlft train ppo --env rlft/Shop-v0 --policy runs/il-shop --out runs/ppo-shop

One turn is one PPO step: the policy scores the turn's candidate actions (a softmax over the
valid actions), the env returns the turn's reward, GAE runs over turns. The loss is the clipped
surrogate on the taken action's probability ratio, a clipped value loss, an entropy bonus and a
KL penalty to the frozen imitation checkpoint. The reference is the checkpoint's own trainable
weights applied with ``torch.func.functional_call``: the (frozen, shared) encoder is never copied.

Built on ``accelerate``: ``accelerate launch -m rlft.training.ppo ...`` runs one rollout worker
per process with gradients averaged across them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np

import rlft.envs  # noqa: F401  (registers the ids)

if TYPE_CHECKING:
    import torch


@dataclass
class PPOArgs:
    """PPO fine-tuning of an imitation-tuned choice policy."""

    env: str = "rlft/Shop-v0"
    """Environment id (a web env with ``info["valid_actions"]``)."""
    policy: str = "runs/il-shop"
    """Checkpoint directory of the policy to fine-tune (``rlft imitate`` writes one)."""
    out: str = "runs/ppo-shop"
    """Run directory: TensorBoard logs, checkpoints, the final policy and evaluation."""
    split: str = "train"
    """Split the rollouts use (evaluation always uses ``test``)."""
    reward_mode: str = "shaped"
    """Reward mode of the training env."""
    num_envs: int = 4
    """Parallel environments per process."""
    vectorization: Literal["sync", "async"] = "sync"
    """Gymnasium vector env mode."""
    num_steps: int = 32
    """Turns per environment per rollout."""
    updates: int = 20
    """Rollout + optimisation rounds."""
    learning_rate: float = 3e-4
    """Adam learning rate (linearly annealed to 0 when ``anneal_lr``)."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly over the updates."""
    gamma: float = 0.99
    """Discount per turn."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    update_epochs: int = 4
    """Optimisation epochs over each rollout."""
    minibatch_size: int = 32
    """Turns per minibatch."""
    clip_coef: float = 0.2
    """PPO ratio clip."""
    clip_vloss: bool = True
    """Clip the value loss around the rollout's values."""
    vf_coef: float = 0.5
    """Value loss weight."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    kl_coef: float = 0.05
    """Weight of KL(policy || imitation checkpoint)."""
    max_grad_norm: float = 0.5
    """Gradient norm clip."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    seed: int = 0
    """Seed of torch, numpy, the sampler and the environments."""
    checkpoint_every: int = 5
    """Save a resumable checkpoint every N updates (0: only at the end)."""
    resume: bool = False
    """Resume from ``out/checkpoint`` if it exists."""
    eval_episodes: int = 100
    """Test-split episodes of the final evaluation (0: skip)."""
    progress: bool = True
    """Show a progress bar."""


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
                next_value: torch.Tensor, next_done: torch.Tensor, gamma: float,
                lam: float) -> tuple[torch.Tensor, torch.Tensor]:
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
    del next_done
    return adv, adv + values


def _turn(policy_mod, obs: dict, info: dict, history: list[str]):
    from rlft.agents.choice_policy import Turn

    return policy_mod.featurize(Turn.from_env(obs, info, history))


def _unbatch(obs: dict, infos: dict, i: int) -> tuple[dict, dict]:
    return ({k: obs[k][i] for k in obs},
            {"valid_actions": list(infos["valid_actions"][i])})


# -- the runner -----------------------------------------------------------------------------
def train_ppo(args: PPOArgs) -> dict[str, Any]:
    """Run PPO as configured; returns the final summary (also written to ``out/summary.json``)."""
    import torch
    from accelerate import Accelerator
    from gymnasium.vector import AutoresetMode
    from torch.utils.tensorboard import SummaryWriter

    from rlft.agents.choice_policy import ChoicePolicy, read_policy_meta

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    rank, world = accelerator.process_index, accelerator.num_processes
    out = Path(args.out)
    ckpt_dir = out / "checkpoint"
    read_policy_meta(args.policy, expect="choice")

    seed = args.seed + 1000 * rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    policy = ChoicePolicy.from_pretrained(args.policy)
    policy.train()
    trainable = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    reference = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer = torch.optim.Adam(trainable.values(), lr=args.learning_rate, eps=1e-5)
    model, optimizer = accelerator.prepare(policy, optimizer)
    sampler = torch.Generator().manual_seed(seed)

    start_update, global_step = 0, 0
    env_seed = seed
    history: list[dict[str, float]] = []  # per update: the learning curve
    if args.resume and (ckpt_dir / "state.pt").exists():
        state = torch.load(ckpt_dir / "state.pt", weights_only=False)
        policy.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        reference = state["reference"]
        start_update, global_step, env_seed = state["update"], state["global_step"], state["env_seed"]
        sampler.set_state(state["sampler"])
        history = state["history"]
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])

    envs = gym.make_vec(args.env, num_envs=args.num_envs, vectorization_mode=args.vectorization,
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                        split=args.split, reward_mode=args.reward_mode)
    obs, infos = envs.reset(seed=env_seed)
    histories: list[list[str]] = [[] for _ in range(args.num_envs)]
    writer = SummaryWriter(str(out / "tb")) if accelerator.is_main_process else None
    if writer is not None:
        writer.add_text("args", json.dumps(asdict(args), indent=2))

    N, T = args.num_envs, args.num_steps
    ep_returns, ep_success, ep_score = [], [], []
    running = np.zeros(N)
    bar = None
    if args.progress and accelerator.is_main_process:
        from tqdm.auto import tqdm

        bar = tqdm(total=args.updates, initial=start_update, desc="ppo", unit="update")
    t_start = time.perf_counter()

    for update in range(start_update, args.updates):
        if args.anneal_lr:
            for g in optimizer.param_groups:
                g["lr"] = args.learning_rate * (1.0 - update / args.updates)
        # ---- rollout -------------------------------------------------------------------
        feats = [[None] * N for _ in range(T)]
        actions = torch.zeros(T, N, dtype=torch.long)
        logprobs, values = torch.zeros(T, N), torch.zeros(T, N)
        rewards, dones = torch.zeros(T, N), torch.zeros(T, N)
        policy.eval()
        for t in range(T):
            turn_feats = [_turn(policy, *_unbatch(obs, infos, i), histories[i]) for i in range(N)]
            with torch.no_grad():
                o = policy(turn_feats)
                dist = o.log_probs().exp()
                idx = torch.multinomial(dist, 1, generator=sampler).squeeze(1)
                lp = o.log_probs().gather(1, idx.view(-1, 1)).squeeze(1)
            chosen = [o.candidates[i][int(idx[i])] for i in range(N)]
            obs, reward, term, trunc, infos = envs.step(chosen)
            global_step += N * world
            reward_t = torch.as_tensor(reward, dtype=torch.float32)
            for i in range(N):
                histories[i].append(chosen[i])
                running[i] += reward[i]
                if trunc[i] and not term[i]:  # bootstrap the cut-off episode's value
                    fo = infos["final_obs"][i]
                    fi = {"valid_actions": list(infos["final_info"]["valid_actions"][i])}
                    if fi["valid_actions"]:
                        with torch.no_grad():
                            v = policy([_turn(policy, fo, fi, histories[i])]).values[0]
                        reward_t[i] += args.gamma * float(v)
                if term[i] or trunc[i]:
                    fin = infos["final_info"]
                    ep_returns.append(running[i])
                    ep_success.append(float(fin["success"][i]))
                    ep_score.append(float(fin["score"][i]))
                    running[i] = 0.0
                    histories[i] = []
            feats[t] = turn_feats
            actions[t], logprobs[t], values[t] = idx, lp, o.values
            rewards[t], dones[t] = reward_t, torch.as_tensor(term | trunc, dtype=torch.float32)
        with torch.no_grad():
            nf = [_turn(policy, *_unbatch(obs, infos, i), histories[i]) for i in range(N)]
            next_value = policy(nf).values
        advantages, returns = compute_gae(rewards, values, dones, next_value, dones[-1],
                                          args.gamma, args.gae_lambda)

        # ---- optimisation --------------------------------------------------------------
        policy.train()
        b_feats = [f for row in feats for f in row]
        b_act, b_logp = actions.reshape(-1), logprobs.reshape(-1)
        b_adv, b_ret, b_val = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)
        order = np.arange(len(b_feats))
        clipfracs, stats = [], {}
        for _epoch in range(args.update_epochs):
            np.random.shuffle(order)
            for s in range(0, len(order), args.minibatch_size):
                mb = order[s : s + args.minibatch_size]
                mb_feats = [b_feats[j] for j in mb]
                out_mb = model(mb_feats)
                logp_all = out_mb.log_probs()
                new_logp = logp_all.gather(1, b_act[mb].view(-1, 1)).squeeze(1)
                logratio = new_logp - b_logp[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean().item())
                adv = b_adv[mb]
                if args.norm_adv and len(mb) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = torch.max(-adv * ratio,
                                    -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)).mean()
                v = out_mb.values
                if args.clip_vloss:
                    v_clipped = b_val[mb] + (v - b_val[mb]).clamp(-args.clip_coef, args.clip_coef)
                    v_loss = 0.5 * torch.max((v - b_ret[mb]) ** 2,
                                             (v_clipped - b_ret[mb]) ** 2).mean()
                else:
                    v_loss = 0.5 * ((v - b_ret[mb]) ** 2).mean()
                entropy = out_mb.entropy().mean()
                with torch.no_grad():
                    ref_logp = torch.func.functional_call(policy, reference, (mb_feats,)).log_probs()
                p = logp_all.exp()
                finite = torch.isfinite(logp_all)
                kl = (p * torch.where(finite, logp_all - ref_logp, torch.zeros_like(p))).sum(-1).mean()
                loss = pg_loss - args.ent_coef * entropy + args.vf_coef * v_loss + args.kl_coef * kl
                optimizer.zero_grad()
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(list(trainable.values()), args.max_grad_norm)
                optimizer.step()
                stats = {"policy_loss": pg_loss.item(), "value_loss": v_loss.item(),
                         "entropy": entropy.item(), "kl_ref": kl.item(),
                         "approx_kl": approx_kl.item()}

        # ---- logging and checkpoints ---------------------------------------------------
        var_y = b_ret.var()
        explained = float("nan") if var_y == 0 else float(1 - (b_ret - b_val).var() / var_y)
        recent = slice(-max(1, 4 * N), None)
        if writer is not None:
            for k, v in stats.items():
                writer.add_scalar(f"losses/{k}", v, global_step)
            writer.add_scalar("losses/clipfrac", float(np.mean(clipfracs)), global_step)
            writer.add_scalar("losses/explained_variance", explained, global_step)
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            writer.add_scalar("charts/samples_per_s",
                              global_step / max(1e-9, time.perf_counter() - t_start), global_step)
            if ep_returns:
                writer.add_scalar("charts/episodic_return", float(np.mean(ep_returns[recent])), global_step)
                writer.add_scalar("charts/success", float(np.mean(ep_success[recent])), global_step)
                writer.add_scalar("charts/score", float(np.mean(ep_score[recent])), global_step)
        if ep_success:
            history.append({"update": update + 1, "global_step": global_step,
                            "success": float(np.mean(ep_success[recent])),
                            "score": float(np.mean(ep_score[recent]))})
        if bar is not None:
            bar.update(1)
            if ep_success:
                bar.set_postfix(success=f"{np.mean(ep_success[recent]):.2f}",
                                kl=f"{stats.get('kl_ref', 0):.3f}")
        env_seed += 1
        if (accelerator.is_main_process and args.checkpoint_every
                and (update + 1) % args.checkpoint_every == 0):
            _save_checkpoint(ckpt_dir, policy, optimizer, reference, update + 1, global_step,
                             env_seed, sampler, history)
    envs.close()
    if bar is not None:
        bar.close()

    summary: dict[str, Any] = {"updates": args.updates, "global_step": global_step,
                               "train_success_last": float(np.mean(ep_success[-4 * N:])) if ep_success else None,
                               "history": history}
    if accelerator.is_main_process:
        policy.save_pretrained(out / "policy")
        if args.eval_episodes:
            from rlft.training.evaluate import evaluate

            policy.eval()
            policy.sample = False
            env = gym.make(args.env, split="test", reward_mode=args.reward_mode)
            res = evaluate(env, policy, args.eval_episodes, seed=10_000, name="il+rl")
            env.close()
            summary["test"] = res.to_dict()
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        if writer is not None:
            writer.close()
    accelerator.wait_for_everyone()
    return summary


def _save_checkpoint(directory: Path, policy, optimizer, reference, update: int, global_step: int,
                     env_seed: int, sampler: torch.Generator, history: list) -> None:
    """Write the resumable state atomically: to a temporary folder, then rename over the old."""
    import torch

    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({"model": policy.state_dict(), "optimizer": optimizer.state_dict(),
                "reference": reference, "update": update, "global_step": global_step,
                "env_seed": env_seed, "sampler": sampler.get_state(), "history": history,
                "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
                "python_rng": random.getstate()}, tmp / "state.pt")
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


if __name__ == "__main__":
    import tyro

    train_ppo(tyro.cli(PPOArgs))
