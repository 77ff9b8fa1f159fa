"""The evaluation statistics (rlft.training.evaluate) against hand-computed values, and
concurrent evaluation against sequential."""

from __future__ import annotations

import math

import gymnasium as gym
import pytest
import torch

import rlft.envs  # noqa: F401
from rlft.agents.policy import EpisodicPolicy
from rlft.agents.rule_agent import LexicalRuleAgent
from rlft.training.evaluate import (
    evaluate,
    evaluate_concurrent,
    mcnemar_p,
    paired_difference,
    run_episode,
    wilson_interval,
)


def test_wilson_interval_by_hand():
    lo, hi = wilson_interval(8, 10)
    # p = 0.8, z^2 = 3.8416: centre (0.8 + 0.19208) / 1.38416, half 1.96 sqrt(0.016 + 0.0096)
    centre = (0.8 + 3.8416 / 20) / (1 + 3.8416 / 10)
    half = 1.96 * math.sqrt(0.8 * 0.2 / 10 + 3.8416 / 400) / (1 + 3.8416 / 10)
    assert (lo, hi) == pytest.approx((centre - half, centre + half))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] < 1.0


def test_mcnemar_exact_p_by_hand():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(0, 5) == pytest.approx(2 / 32)  # 2 * P(X <= 0), X ~ Bin(5, 1/2)
    assert mcnemar_p(5, 0) == mcnemar_p(0, 5)
    assert mcnemar_p(1, 9) == pytest.approx(2 * (1 + 10) / 1024)
    assert mcnemar_p(3, 3) == 1.0  # 2 * 42/64 > 1: capped
    with pytest.raises(ValueError, match="negative"):
        mcnemar_p(-1, 2)


def test_paired_difference_counts_the_games_only_one_agent_won():
    a = [True, True, False, True, False, True]
    b = [True, False, False, False, True, True]
    pair = paired_difference(a, b)
    d = [0, 1, 0, 1, -1, 0]
    mean = sum(d) / 6
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 5)
    assert pair["difference"] == pytest.approx(1 / 6)
    assert pair["ci"] == pytest.approx((mean - 1.96 * sd / math.sqrt(6),
                                        mean + 1.96 * sd / math.sqrt(6)))
    assert (pair["only_a"], pair["only_b"]) == (2, 1)
    assert pair["p"] == pytest.approx(1.0)
    # the same games won by both: no difference and an interval of width 0
    same = paired_difference(a, a)
    assert same["difference"] == 0 and same["ci"] == (0.0, 0.0) and same["p"] == 1.0
    # few games: the normal interval would pass -1; it is clipped there
    assert paired_difference([False, False, True], [True, True, True])["ci"][0] == -1.0
    with pytest.raises(ValueError, match="same, non-zero number"):
        paired_difference(a, b[:3])
    with pytest.raises(ValueError, match="same, non-zero number"):
        paired_difference([], [])


class _RulePolicy(EpisodicPolicy, torch.nn.Module):
    """The store's lexical rule as an episodic policy (deterministic; episodes differ in
    length and outcome), recording how many turns each decision round held."""

    observation_keys = frozenset({"goal", "page"})
    env_kind = "web"

    def __init__(self) -> None:
        super().__init__()
        self.rule, self.rounds = LexicalRuleAgent("overlap"), []
        self.reset()

    def encode(self, turn):
        return turn

    def choose(self, turn):
        return self.rule.act(dict(turn.observation), {"valid_actions": list(turn.valid_actions)})

    def choose_many(self, features):
        self.rounds.append(len(features))
        return super().choose_many(features)


def test_concurrent_evaluation_plays_the_same_episodes_as_sequential():
    policy = _RulePolicy()
    envs = [gym.make("rlft/Shop-v0", split="test") for _ in range(3)]
    seen: list[int] = []
    try:
        sequential = evaluate(envs[0], policy, 12, seed=7)
        assert set(policy.rounds) == {1}
        policy.rounds.clear()
        ended: dict[int, tuple[str, bool, int]] = {}

        def on_end(i, env, info, action):  # before the env starts another episode
            ended[i] = (action, info["success"], env.unwrapped.goal_index)

        together = evaluate_concurrent(envs, policy, 12, seed=7, progress=seen.append,
                                       on_end=on_end)
        again = [run_episode(envs[0], policy, seed=7 + i) for i in range(12)]
        goals = [envs[0].reset(seed=7 + i) and envs[0].unwrapped.goal_index for i in range(12)]
    finally:
        for env in envs:
            env.close()
    assert max(policy.rounds) == 3 and min(policy.rounds) >= 1  # the tail plays fewer
    assert seen == list(range(1, 13))
    assert sorted(ended) == list(range(12))
    for i, (action, success, goal) in ended.items():  # each episode's own end, in its state
        assert success == again[i].success and goal == goals[i] and action.startswith("click[")
    assert 0 < sequential.success < 1  # episodes differ, so a mixed-up seed would show
    assert together.to_dict() == sequential.to_dict()


def test_side_by_side_plays_copies_of_the_env_and_closes_only_them(monkeypatch):
    from rlft.training.evaluate import evaluate_side_by_side

    made: list[gym.Env] = []
    closed: list[gym.Env] = []
    real_make = gym.make

    def make(*args, **kwargs):
        env = real_make(*args, **kwargs)
        real_close = env.close
        env.close = lambda: (closed.append(env), real_close())[1]
        made.append(env)
        return env

    policy = _RulePolicy()
    env = gym.make("rlft/Shop-v0", split="test")
    sequential = evaluate(env, policy, 9, seed=3)
    policy.rounds.clear()
    monkeypatch.setattr(gym, "make", make)
    together = evaluate_side_by_side(env, policy, 9, concurrency=4, seed=3)
    assert max(policy.rounds) == 4 and len(made) == 3  # the env and three copies of its spec
    assert all(copy.unwrapped.split == "test" for copy in made)
    assert closed == made  # the copies are closed; the caller's env is not
    assert together.to_dict() == sequential.to_dict()
    # an agent without act_many (here the policy behind TimedAgent's act alone): one at a
    # time on the caller's env, no copies
    from rlft.training.benchmark import TimedAgent

    class ActsAlone:
        def __init__(self, inner):
            self.inner = inner

        def reset(self):
            self.inner.reset()

        def act(self, obs, info):
            return self.inner.act(obs, info)

    made.clear()
    policy.rounds.clear()
    timed = TimedAgent(ActsAlone(policy))
    assert not hasattr(timed, "act_many") and hasattr(TimedAgent(policy), "act_many")
    alone = evaluate_side_by_side(env, timed, 9, concurrency=4, seed=3)
    assert made == [] and set(policy.rounds) <= {1}
    assert timed.actions == round(alone.episodes * alone.mean_steps)
    assert alone.to_dict() == sequential.to_dict()
    env.close()


def test_a_metric_no_episode_qualified_for_shows_a_dash_and_is_null_in_json():
    """always-abstain never answers correctly: "quoted before correct" has no episodes (NaN),
    which a table shows as "-", not "nan", and ``evaluate --out`` writes as ``null`` (strict
    JSON parsers refuse ``NaN``)."""
    import json

    from rlft.training.evaluate import EvalResult, table_cells

    row = EvalResult(name="a", episodes=2, success=0.5, success_ci=(0.1, 0.9), score=0.5,
                     score_ci=(0.1, 0.9), mean_steps=1.0, mean_return=0.0,
                     metrics={"abstains answerable": 1.0, "quoted before correct": float("nan")})
    header, cells = table_cells([row])
    assert cells[0][header.index("abstains answerable")] == "1.00"
    assert cells[0][header.index("quoted before correct")] == "-"
    d = row.to_dict()
    assert d["metrics"] == {"abstains answerable": 1.0, "quoted before correct": None}
    assert json.loads(json.dumps(d, allow_nan=False))["metrics"]["quoted before correct"] is None
    header2, cells2 = table_cells([d])  # a row read back from JSON renders the same
    assert (header2, cells2) == (header, cells)
