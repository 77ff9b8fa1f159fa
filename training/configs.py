"""Configs of the training commands: dataclasses that ``tyro`` turns into ``--help``.

Kept free of torch imports so that ``rlft --help`` stays fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


def parse_options(items: tuple[str, ...], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as keyword arguments (values read as JSON, else text)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} takes KEY=VALUE pairs, got {item!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def parse_env_kwargs(items: tuple[str, ...], *own_flags: str) -> dict[str, Any]:
    """``--env-kwargs`` ``KEY=VALUE`` pairs as env keyword arguments (:func:`parse_options`);
    a key that the command sets with a flag of its own (``own_flags``: ``split``,
    ``reward_mode``) is refused with the flag to use instead."""
    options = parse_options(items, "--env-kwargs")
    for key in own_flags:
        if key in options:
            raise ValueError(f"--env-kwargs {key}=...: this command sets {key} itself; pass "
                             f"--{key.replace('_', '-')} instead")
    return options


@dataclass
class ImitateArgs:
    """Imitation of expert demos (``rlft imitate``): behaviour cloning (choice, clip) or SFT on
    action tokens (lm). Fields left unset take the env's preset (:mod:`rlft.training.presets`)."""

    demos: Path = Path("runs/demos")
    """Directory written by ``rlft collect`` (trajectories.jsonl, meta.json)."""
    out: Path = Path("runs/il-shop")
    """Output directory: the best policy (save_pretrained), checkpoint.pt, tb/ logs,
    summary.json (written last: the stage is complete)."""
    env: str | None = None
    """Environment id the demos come from (its val split is used for validation; default: the
    env the demos were recorded on, from their meta.json)."""
    env_kwargs: tuple[str, ...] = ()
    """Keyword arguments of that env as KEY=VALUE (values read as JSON), added to (and
    overriding) those the demos were recorded with (their meta.json), e.g. ``catalog_seed=7``:
    validation then runs on the env the demos come from, not on the registered defaults."""
    policy: str = "choice"
    """Policy kind: choice (text encoder + heads, BC), lm (causal LM, SFT on action tokens),
    clip (CLIP towers + pick/place heatmaps, BC; tabletop envs), or module:Class."""
    model: str | None = None
    """Pretrained weights (HF name or local path): choice: the text encoder (default: the
    bundled all-MiniLM-L6-v2); lm: the causal LM; clip: the CLIP."""
    lora_r: int = 0
    """LoRA rank. choice: on the encoder (0: frozen encoder with cached embeddings, the fast
    default). lm: on the LM (0: full fine-tuning)."""
    policy_config: tuple[str, ...] = ()
    """Other fields of the policy's config as KEY=VALUE (values read as JSON, else text), e.g.
    ``hidden=128`` (choice), ``window=1 max_page_chars=500`` (lm), ``augment=true`` (clip)."""
    max_demos: int | None = None
    """Use at most this many demo episodes (default: all)."""
    epochs: int | None = None
    """Passes over the demos; the epoch kept is chosen by ``select_by`` (preset: 10)."""
    batch_size: int | None = None
    """Turns per gradient step (preset: 64; tabletop 16)."""
    micro_batch_size: int | None = None
    """Turns per forward/backward pass inside a batch, gradients accumulated over them (the
    same step up to float rounding, in less memory). None: the policy's
    ``update_micro_batch`` where it has one (the LM policy on a CPU: 1), else the whole batch."""
    lr: float | None = None
    """AdamW learning rate, cosine-decayed to 10% (preset: 1e-3; tabletop 2e-3)."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
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

    def policy_options(self) -> dict[str, Any]:
        """``policy_config`` (and ``lora_r``) as keyword arguments of the policy's config."""
        return {"lora_r": self.lora_r, **parse_options(self.policy_config, "--policy-config")}

    def env_options(self) -> dict[str, Any]:
        """Keyword arguments of the env: the demos' (their meta.json), then ``env_kwargs``."""
        from rlft.training.demos import demos_env_kwargs

        return {**demos_env_kwargs(self.demos), **parse_env_kwargs(self.env_kwargs, "split")}


@dataclass
class PPOArgs:
    """PPO fine-tuning of an imitation-tuned policy (choice, CLIP or LM). Fields left unset
    take the env's preset (:mod:`rlft.training.presets`: the Shop's, or tabletop's)."""

    env: str = "rlft/Shop-v1"
    """Environment id (a web env for choice and LM policies, a tabletop env for CLIP)."""
    policy: str = "runs/il-shop"
    """Checkpoint directory of the policy to fine-tune (``rlft imitate`` writes one)."""
    out: str = "runs/ppo-shop"
    """Run directory: TensorBoard logs, checkpoints, the final policy and evaluation
    (summary.json, written last: the stage is complete)."""
    split: str = "train"
    """Split the rollouts use (evaluation always uses ``test``)."""
    reward_mode: str | None = None
    """Reward mode of the training env (preset: shaped; research sparse)."""
    env_kwargs: tuple[str, ...] = ()
    """More keyword arguments of the training env as KEY=VALUE (values read as JSON), e.g.
    ``rewards={"abstain":-0.25}`` on the research env."""
    num_envs: int | None = None
    """Parallel environments per process (preset: 4; tabletop 8; research 8)."""
    vectorization: Literal["sync", "async"] = "sync"
    """Gymnasium vector env mode."""
    num_steps: int | None = None
    """Turns per environment per rollout (preset: 32; tabletop 8)."""
    updates: int | None = None
    """Rollout + optimisation rounds (preset: 60; tabletop 64; research 30; rlft/Shop-v1 100)."""
    max_minutes: float | None = None
    """Wall-clock budget of this run: stop after the update during which it ran out, writing
    the policy and summary as a finished run does (``updates_done`` says how many ran; the
    learning rate keeps the schedule of ``updates``). None: run every update."""
    learning_rate: float | None = None
    """Adam learning rate, linearly annealed to 0 when ``anneal_lr`` (preset: 3e-4; tabletop
    1e-3; research 1e-4; rlft/Tabletop-v0 1e-4)."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly over the updates."""
    gamma: float | None = None
    """Discount per turn (preset: 0.99; tabletop 0.9)."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    update_epochs: int | None = None
    """Optimisation epochs over each rollout (preset: 4; tabletop 2)."""
    minibatch_size: int | None = None
    """Turns per minibatch (preset: 32)."""
    micro_batch_size: int | None = None
    """Turns per forward/backward pass inside a minibatch, gradients accumulated over them: the
    same update up to float rounding, in less memory (an LM's update holds every layer's
    activations for every turn of the pass). None: the policy's ``update_micro_batch`` where
    it has one (the LM policy on a CPU: 1, the fastest and smallest there), else the whole
    minibatch in one pass."""
    clip_coef: float = 0.2
    """PPO ratio clip."""
    clip_vloss: bool = True
    """Clip the value loss around the rollout's values."""
    vf_coef: float = 0.5
    """Value loss weight."""
    ent_coef: float | None = None
    """Entropy bonus weight (preset: 0.01; tabletop 0)."""
    kl_coef: float | None = None
    """Weight of KL(policy || imitation checkpoint) (preset: 0.02)."""
    max_grad_norm: float = 0.5
    """Gradient norm clip."""
    norm_adv: bool = True
    """Normalise advantages per minibatch (``gae`` only: group advantages are already
    relative)."""
    advantage: Literal["gae", "grpo", "rloo", "gigpo"] = "gae"
    """How a turn's advantage is estimated: ``gae`` (a critic, GAE over turns), or critic-free
    over groups of ``group_size`` rollouts of the same goal: ``grpo`` (the episode's return
    minus the group's mean, divided by the group's std) or ``rloo`` (minus the mean of the
    others). A group's every turn gets its episode's advantage; groups whose returns are all
    equal teach nothing and are skipped (counted as ``groups_skipped``). ``gigpo`` (GiGPO,
    Feng et al. 2025) adds step-level credit to ``grpo``'s: the group's turns that saw the
    same observation (an anchor state) form a step group, and each one's discounted
    return-to-go relative to its step group's (:func:`rlft.training.ppo.step_advantages`),
    times ``step_weight``, is added to its episode's advantage."""
    step_weight: float = 1.0
    """Weight of the step-level advantage in ``gigpo``."""
    group_size: int = 4
    """Rollouts per goal in ``grpo``/``rloo``/``gigpo`` (``num_envs`` must be a multiple of
    it). Each update runs rounds of complete episodes, every group of envs reset with one seed,
    until ``num_envs * num_steps`` turns were taken: the same turn budget as ``gae``."""
    goal_pool: int = 0
    """Train on this many fixed goals of the split (0: all of them): "few prompts, many
    epochs" (:class:`rlft.wrappers.goal_pool.GoalPool`; the pool is drawn from ``seed``)."""
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
    lora_r: int = 8
    """LoRA rank of the adapter added for RL to a policy imitated without one (an LM policy
    with all weights fine-tuned): its weights stay frozen and only the adapter (and value head)
    train, so the KL reference is the adapter's copy, not the model's. Unused otherwise."""


@dataclass
class RestArgs:
    """Self-training from reward (ReST, Gulcehre et al. 2023; also called expert iteration or
    rejection-sampling fine-tuning): rounds of *grow* (sample episodes on the training split
    with the policy) and *improve* (behaviour cloning on the episodes whose outcome passed the
    filter, with the demos the policy imitated). Fields left unset take the env's preset."""

    env: str = "rlft/Shop-v1"
    """Environment id."""
    policy: str = "runs/il-shop"
    """Checkpoint directory of the policy to start from (``rlft imitate`` writes one)."""
    out: Path = Path("runs/rest-shop")
    """Run directory: ``round-K/samples`` (the sampled episodes, as demos), ``round-K/policy``,
    ``policy`` (the last round's), tb/ logs, summary.json (written last)."""
    demos: Path | None = None
    """Demos mixed into every round's training set (the ones the policy imitated; default:
    none, only the policy's own kept episodes)."""
    max_demos: int | None = None
    """Use at most this many of ``demos``' episodes."""
    rounds: int | None = None
    """Grow-and-improve rounds (preset: 3; tabletop 11, where 7 reached the 100-demo clone on
    2 tasks of 6 and 11 on 4; each round trains on everything kept so far, so later rounds
    take longer: rounds 8-11 about 45-50 min each on a 2-core CPU)."""
    episodes: int | None = None
    """Episodes sampled per round (preset: 200; tabletop 300)."""
    temperature: float | None = None
    """Of the sampling: 1 samples the policy's own distribution, lower sharpens it, 0 is
    greedy (preset: 1; tabletop 0.5)."""
    sampler: Literal["sample", "deviate"] | None = None
    """How a round's episodes are played: ``sample``, the policy samples each action at
    ``temperature``; ``deviate``, the policy plays greedily and, where its episode fails, the
    episode is replayed with one turn changed to one of the policy's next ``deviations``
    likeliest actions (the latest turn first), completed greedily, until one succeeds: exact
    per-turn credit, for envs that replay an episode from its seed and actions (the web envs'
    text backends) and policies that rank candidates (choice; constrained LM)
    (:mod:`rlft.training.deviation`) (preset: sample; research deviate: six rounds took a clone
    from 0.675 to 0.785 test success, 0.825 cloning every kept turn (0.565 to 0.745 before the
    answer kinds), where sampling had taken an older one from 0.610 to 0.635)."""
    deviations: int = 2
    """With ``--sampler deviate``: how many of the policy's next likeliest actions are tried
    at each turn (each costs a greedy completion)."""
    search_envs: int = 16
    """With ``--sampler deviate``: how many searches run side by side, each on its own copy of
    the env, with the policy scoring their turns in one batch (the results do not depend on
    it; on the research env 16 search 3.4 times as fast as one did before batching)."""
    min_return: float | None = None
    """Keep a sampled episode when its return is at least this (default: when it succeeds)."""
    keep: Literal["episodes", "progress"] | None = None
    """What of the samples is imitated: ``episodes``, every turn of an episode that passed
    the filter (success, or ``min_return``); ``progress``, every turn of any sampled episode
    whose reward was positive, i.e. the sub-goals reached on the way, failed episodes included
    (for envs whose shaped reward pays each sub-goal: the tabletop's pays each object placed,
    so a pyramid that topples at its fifth block still teaches its first four) (preset:
    episodes; tabletop progress)."""
    task_focus: float | None = None
    """On a multi-task env (``rlft/Tabletop-v0``), the share of each round's episodes given to
    the tasks in proportion to how often the previous round's samples failed them; the rest
    are spread evenly over the tasks, and the first round is all even. 0: every task gets
    its even share every round (preset: 0; at 0.5 the tabletop found more of its hard tasks'
    successes but no better policy, docs/training.md)."""
    lesson_weight: int = 1
    """How many times a turn of a kept sampled episode counts in a round's cloning where the
    policy, as the round starts, would act otherwise: the turn the search changed (``--sampler
    deviate``), a sampled action that paid off, a lesson of an earlier round not yet learned.
    1: like every other turn; the policy's own agreeing turns and the demos dominate a round
    otherwise (165 changed turns among 9,282 in the research main job's first round). Needs a
    policy that ranks candidates (choice; constrained LM) (default 1: on the research wiki one
    round at 5 reached 0.680 val success against 0.645-0.655 at 1, but the two-round main job
    ended level, 0.695 test success either way, and lower on unseen question kinds, 0.200
    against 0.300; docs/training.md)."""
    unlikelihood: float | None = None
    """Weight of a negative signal beside the cloning: an unlikelihood term
    ``-log(1 - p(action))`` on every turn of the round's samples that failed, the env accepting
    its action
    (``--keep progress``: a turn that earned nothing, reward <= 0; ``--keep episodes``: a turn
    the env penalised, reward < 0, such as a wrong answer), so what the policy got wrong is
    pushed down as well as what it got right pulled up (policies with ``unlikelihood_loss``:
    choice and CLIP). Under ``--sampler deviate`` also each action the search replaced: the
    greedy action at the turn where a one-turn deviation then succeeded, which completed
    greedily failed (exact per-turn credit for what went wrong, where the episode's own turns
    hold only the successful deviation). With ``--epoch-turns`` every pushed-down turn is in
    every pass (preset: 0, none)."""
    epochs: int | None = None
    """Behaviour-cloning passes over the kept episodes (and demos) per round (preset: 5;
    tabletop 10)."""
    epoch_turns: int | None = None
    """At most this many turns per cloning pass; 0: every turn kept so far and the demos. Each
    round continues from the previous round's policy, so the earlier rounds' turns are a
    replay: a capped pass takes every turn the policy gets wrong as the round begins (the
    round's lessons among them; a policy that ranks candidates: choice, constrained LM) and
    fills up with a fresh uniform draw of the others, so a round's cloning stops growing with
    the rounds (preset: 0; research 6,000: uncapped, the six rounds' cloning grew from 70 to
    146 s a round, half the job's time)."""
    batch_size: int | None = None
    """Turns per gradient step (preset: 64; tabletop 16)."""
    lr: float | None = None
    """AdamW learning rate, cosine-decayed to 10% within each round (preset: 3e-4; tabletop
    1e-3)."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    split: str = "train"
    """Split the sampled episodes come from."""
    reward_mode: str | None = None
    """Reward mode of the sampling env (preset: shaped; research sparse)."""
    env_kwargs: tuple[str, ...] = ()
    """More keyword arguments of the sampling env as KEY=VALUE (values read as JSON)."""
    val_episodes: int = 20
    """Greedy val-split episodes rolled out after each round (and before the first): the
    learning curve (0: none)."""
    eval_episodes: int = 0
    """Test-split episodes of the final evaluation, start and result on the same goals (0:
    skip)."""
    seed: int = 0
    """Seed of the samples, the env seeds and the shuffling."""
    progress: bool = True
    """Show a progress bar of each round's sampling (episodes) and training (epochs)."""


@dataclass
class BenchmarkArgs:
    """Benchmark agents on environments (``rlft benchmark``)."""

    agents: tuple[str, ...] = ("random", "expert")
    """Agents: expert, random, or a checkpoint directory (optionally NAME=PATH)."""
    envs: tuple[str, ...] = ("rlft/Shop-v1",)
    """Environment ids."""
    episodes: int = 100
    """Episodes per (agent, env)."""
    split: str = "test"
    """Goal split to evaluate on."""
    seed: int = 0
    """Seed of the first episode (the same episodes for every agent)."""
    concurrency: int = 1
    """Episodes a trainable policy plays side by side, its turns decided together (on a GPU,
    the LM policy then scores them in a few batched forward passes); 1: one at a time."""
    out: Path | None = Path("benchmarks/results/agents")
    """Output prefix: writes OUT.md, OUT.json and OUT.png (none when omitted)."""
    note: str = ""
    """A line added under the markdown table (e.g. how the agents were trained)."""
    env_kwargs: tuple[str, ...] = ()
    """Keyword arguments of every env as KEY=VALUE (values read as JSON), e.g.
    ``catalog_seed=7`` (another store catalog) or ``corpus_seed=3`` (another wiki)."""


@dataclass
class PretrainClipArgs:
    """Pretrain a small CLIP on tabletop renders (``rlft pretrain-clip``)."""

    out: Path = Path("runs/clip")
    """Output directory (a CLIP saved with save_pretrained, plus its tokenizer)."""
    scenes: int = 100
    """Scenes per task of the train split (with ``broad``, a quarter as many again of the
    unseen split, for its objects)."""
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
    steps: int = 2000
    """Optimiser steps (2,000: about 6 minutes on 2 cores; held-out retrieval 0.72 against
    0.54 after 600)."""
    batch_size: int = 48
    """At most this many crops per step (one per caption)."""
    scene_batch: int = 8
    """Scenes per step: their objects give the crops, their patches the dense objective."""
    dense_weight: float = 1.0
    """Weight of the dense (patch-caption) loss beside the crop-caption InfoNCE."""
    broad: bool = True
    """Pretrain on a wider world than the task demos: repaint objects in every task colour
    (unseen included) and in colours no task uses, and add scenes of the unseen split for
    its objects. False: the tasks' train scenes and seen colours only."""
    repaint: float = 0.5
    """Probability that a coloured object is repainted in a random trained colour."""
    lr: float = 1e-3
    """AdamW learning rate."""
    augment: bool = True
    """Random flips and 90-degree rotations of the crops (top-down views have no up)."""
    seed: int = 0
    """Seed of scenes and training."""
