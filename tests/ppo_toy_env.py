"""A two-turn text task made for testing PPO: pick the door, then the button, the goal names."""

from __future__ import annotations

import gymnasium as gym

from rlft.envs.spaces import UnicodeText

SHAPES = ("circle", "square", "triangle", "star")
COLORS = ("red", "green", "blue", "yellow")


class DoorsEnv(gym.Env):
    """Turn 1: ``click[<shape> door]``; turn 2: ``click[<color> button]``. Reward 1 only if both
    match the goal (``reward_mode="zero"``: always 0, for the KL test; ``"subgoals"``: 0.5 for
    each right click, as a sub-goal reached). With several ``tasks`` (``rlft-test/TwoDoors-v0``)
    each episode plays one, as the six-task tabletop env does (``options["task"]``, else
    ``tasks[seed % len(tasks)]``; ``info["task"]`` names it): ``"match"`` is the task above,
    ``"free"`` counts any click as right."""

    metadata = {"render_modes": []}

    def __init__(self, split: str = "train", reward_mode: str = "sparse",
                 tasks: tuple[str, ...] = ("match",)):
        self.reward_mode = reward_mode
        self.tasks, self.task = tuple(tasks), tasks[0]
        self.observation_space = gym.spaces.Dict({"goal": UnicodeText(200), "page": UnicodeText(2000)})
        self.action_space = UnicodeText(100)

    def _page(self):
        if self.stage == 0:
            labels = [f"{s} door" for s in self.order]
        else:
            labels = [f"{c} button" for c in self.order]
        page = "\n".join(f"[button] {lab} [button_]" for lab in labels)
        info = {"valid_actions": [f"click[{x}]" for x in labels], "success": self.success,
                "score": float(self.success)}
        if len(self.tasks) > 1:
            info["task"] = self.task
        return {"goal": self.goal, "page": page}, info

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if len(self.tasks) > 1:
            self.task = (options or {}).get("task") or self.tasks[
                (seed if seed is not None else int(self.np_random.integers(1000))) % len(self.tasks)]
        self.shape = SHAPES[self.np_random.integers(4)]
        self.color = COLORS[self.np_random.integers(4)]
        self.goal = f"go through the {self.shape} door and press the {self.color} button"
        self.stage, self.right, self.success = 0, True, False
        self.order = [SHAPES[i] for i in self.np_random.permutation(4)]
        return self._page()

    def step(self, action):
        want = f"click[{self.shape} door]" if self.stage == 0 else f"click[{self.color} button]"
        self.right = self.right and (action == want or self.task == "free")
        self.stage += 1
        shaped = 0.5 * float(action == want) if self.reward_mode == "subgoals" else 0.0
        if self.stage == 2:
            self.success = self.right
            obs, info = self._page()
            reward = shaped if self.reward_mode in ("zero", "subgoals") else float(self.success)
            return obs, reward, True, False, info
        self.order = [COLORS[i] for i in self.np_random.permutation(4)]
        obs, info = self._page()
        return obs, shaped, False, False, info


def save_random_policy(path) -> str:
    """An untrained ChoicePolicy for the doors task (seeded), saved in ``path``."""
    import torch

    from rlft.agents.choice_policy import ChoicePolicy, ChoicePolicyConfig

    torch.manual_seed(0)
    ChoicePolicy(ChoicePolicyConfig(max_steps=2, history=1)).save_pretrained(path)
    return str(path)


def doors_success(policy_dir: str, episodes: int = 60) -> float:
    """Greedy success of the ChoicePolicy in ``policy_dir`` on the same doors episodes."""
    from rlft.agents.choice_policy import ChoicePolicy
    from rlft.training.evaluate import evaluate

    return evaluate(gym.make("rlft-test/Doors-v0"), ChoicePolicy.from_pretrained(policy_dir),
                    episodes, seed=123).success


if "rlft-test/Doors-v0" not in gym.registry:
    gym.register("rlft-test/Doors-v0", entry_point="ppo_toy_env:DoorsEnv", max_episode_steps=2)
    gym.register("rlft-test/TwoDoors-v0", entry_point="ppo_toy_env:DoorsEnv", max_episode_steps=2,
                 kwargs={"tasks": ("match", "free")})


def assert_micro_batches_match(policy, feats, micro: int = 3) -> None:
    """:func:`rlft.training.ppo.minibatch_gradients` over ``feats`` in passes of ``micro``
    turns adds the same gradients and reports the same losses as one pass (a reference away
    from the policy, so the KL term is non-zero; random advantages, returns and old values)."""
    import torch

    from rlft.agents.rl import reference_scores
    from rlft.training.ppo import PPOArgs, minibatch_gradients

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        step = policy.rl_act(feats, g)
    actions = step.actions
    old = [step.log_probs[i][step.mask[i] > 0] - 0.1 * i / len(feats) for i in range(len(feats))]
    trainable = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    reference = {n: p.detach() + 0.05 * torch.randn(p.shape, generator=g) for n, p in
                 trainable.items()}
    ref_rows = reference_scores(policy, reference, feats, actions, len(feats))
    n = len(feats)
    adv, ret, val = (torch.randn(n, generator=g) for _ in range(3))
    args = PPOArgs(ent_coef=0.01, kl_coef=0.5, vf_coef=0.5)
    results = []
    for size in (n, micro):
        policy.zero_grad()
        stats = minibatch_gradients(policy, feats, actions, old, ref_rows, adv, ret, val, args,
                                    size)
        results.append((stats, {k: p.grad.clone() for k, p in trainable.items()
                                if p.grad is not None}))
    (whole, g_whole), (split, g_split) = results
    assert g_whole and set(g_whole) == set(g_split)
    assert any(v.abs().max() > 0 for v in g_whole.values())
    for k in g_whole:
        assert torch.allclose(g_whole[k], g_split[k], rtol=1e-4, atol=1e-7), k
    assert whole["kl_ref"] > 0
    for k in whole:
        assert abs(whole[k] - split[k]) <= 1e-5 + 1e-4 * abs(whole[k]), (k, whole, split)
