"""Self-training's deviation search (``rlft train rest --sampler deviate``): the ranked
actions it tries, the successes it finds (checked against the doors task's own rule), the
agent that records them, and learning the task from a random policy."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch
from ppo_toy_env import doors_success, save_random_policy  # (registers rlft-test/Doors-v0)

from rlft.agents.choice_policy import ChoicePolicy
from rlft.agents.episode import Episode, rollout
from rlft.training.configs import RestArgs
from rlft.training.deviation import DeviationAgent, play, search_episode, search_episodes
from rlft.training.rest import resolve_rest_args, train_rest


@pytest.fixture(scope="module")
def random_policy(tmp_path_factory):
    return save_random_policy(tmp_path_factory.mktemp("policy"))


def test_ranked_actions_start_with_the_greedy_choice_and_cover_the_candidates(random_policy):
    policy = ChoicePolicy.from_pretrained(random_policy).eval()
    env = gym.make("rlft-test/Doors-v0")
    obs, info = env.reset(seed=3)
    episode = Episode()
    episode.observe(obs, info)
    features = policy.encode(episode.turn())
    ranked = policy.ranked_actions(features, 10)
    assert sorted(ranked) == sorted(info["valid_actions"])  # 4 doors, no more than there are
    assert ranked[0] == policy.choose(features)
    logp = policy([features]).log_probs()[0]
    by_action = dict(zip(features.candidates, logp.tolist(), strict=True))
    assert [by_action[a] for a in ranked] == sorted(by_action.values(), reverse=True)
    assert policy.ranked_actions(features, 2) == ranked[:2]


def test_the_search_finds_exactly_the_one_turn_changes_that_succeed(random_policy):
    # On the doors task only (the goal's door, the goal's button) succeeds. Trying every other
    # door and button (3 deviations), the latest turn first, a failed greedy episode is turned
    # at the button when its door was right, else at the door when the policy's greedy button
    # behind the right door is the goal's, else not at all.
    policy = ChoicePolicy.from_pretrained(random_policy).eval()
    env = gym.make("rlft-test/Doors-v0")
    found = set()
    for seed in range(24):
        env.reset(seed=seed)
        door, button = (f"click[{env.unwrapped.shape} door]",
                        f"click[{env.unwrapped.color} button]")
        _, greedy, _, _ = play(env, policy, seed, [], 1)
        _, behind_right_door, _, _ = play(env, policy, seed, [door], 1)
        result = search_episode(env, policy, seed, deviations=3)
        if greedy == [door, button]:
            assert (result.found, result.actions, result.completions) == ("greedy", greedy, 1)
        elif greedy[0] == door:
            assert (result.found, result.turn, result.actions) == ("deviated", 1, [door, button])
            assert result.replaced == greedy[1] != button  # the greedy button it replaced
        elif behind_right_door[1] == button:
            assert (result.found, result.turn, result.actions) == ("deviated", 0, [door, button])
            assert result.replaced == greedy[0] != door
        else:
            assert (result.found, result.actions, result.completions) == ("failed", greedy, 7)
        found.add(result.found)
    assert found >= {"deviated", "failed"}
    # with one deviation a turn, only the policy's second choice is tried
    assert search_episode(env, policy, 0, deviations=1).completions <= 3


def test_searches_side_by_side_find_what_one_at_a_time_does(random_policy):
    # 3 envs over 20 seeds: searches finish at different times and the envs are refilled, the
    # policy scoring the pending turns of all three in one batch
    policy = ChoicePolicy.from_pretrained(random_policy).eval()
    env = gym.make("rlft-test/Doors-v0")
    alone = [search_episode(env, policy, s, deviations=3) for s in range(20)]
    together = search_episodes([gym.make("rlft-test/Doors-v0") for _ in range(3)], policy,
                               list(range(20)), deviations=3)
    assert [(r.found, r.turn, r.actions, r.completions, r.observations) for r in together] == \
        [(r.found, r.turn, r.actions, r.completions, r.observations) for r in alone]
    assert {r.found for r in together} >= {"deviated", "failed"}
    with pytest.raises(ValueError, match="at least one env"):
        search_episodes([], policy, [0], 1)


class _SeedLog(gym.Wrapper):
    """Records the seed of every reset (which episodes a search played)."""

    def __init__(self, env, log):
        super().__init__(env)
        self.log = log

    def reset(self, *, seed=None, options=None):
        self.log.append(seed)
        return self.env.reset(seed=seed, options=options)


def test_the_agent_searches_ahead_but_not_past_its_episodes(random_policy):
    policy = ChoicePolicy.from_pretrained(random_policy).eval()
    env = gym.make("rlft-test/Doors-v0")
    played: list[int] = []
    agent = DeviationAgent(policy, [_SeedLog(gym.make("rlft-test/Doors-v0"), played)
                                    for _ in range(2)],
                           first_seed=10, deviations=3, episodes=3)
    actions = [s.action for s in rollout(env, agent, seed=10)]
    assert set(played) == {10, 11, 12}  # all three searched at the first reset, none beyond
    assert actions == search_episode(env, policy, 10, 3).actions
    for seed in (11, 12):
        actions = [s.action for s in rollout(env, agent, seed=seed)]
        assert actions == search_episode(env, policy, seed, 3).actions
    assert set(played) == {10, 11, 12}  # and not searched again
    assert sum(agent.counts[k] for k in ("greedy", "deviated", "failed")) == 3
    expected = sum(search_episode(env, policy, s, 3).completions for s in (10, 11, 12))
    assert agent.counts["completions"] == expected == len(played)


def test_the_agent_replays_what_the_search_found_and_acts_greedily_off_it(random_policy):
    policy = ChoicePolicy.from_pretrained(random_policy).eval()
    env = gym.make("rlft-test/Doors-v0")
    agent = DeviationAgent(policy, [gym.make("rlft-test/Doors-v0")], first_seed=5, deviations=3)
    for seed in (5, 6, 7):
        actions = [s.action for s in rollout(env, agent, seed=seed)]
        assert actions == search_episode(env, policy, seed, 3).actions
    assert agent.counts["diverged"] == 0
    assert sum(agent.counts[k] for k in ("greedy", "deviated", "failed")) == 3
    # an episode that is not the one searched (seed 100 where the agent expects 8): the agent
    # notices at the first observation and plays the policy's own greedy episode
    env.reset(seed=8)
    other = next(s for s in range(100, 200)
                 if env.reset(seed=s)[0] != env.reset(seed=8)[0])
    actions = [s.action for s in rollout(env, agent, seed=other)]
    assert agent.counts["diverged"] == 1
    assert actions == [s.action for s in rollout(env, policy, seed=other)]


def test_rest_with_the_deviation_search_learns_the_doors_task_in_two_rounds(random_policy,
                                                                             tmp_path):
    # Sampling, a random policy succeeds 1 time in 16; the search keeps every episode that one
    # changed turn turns into a success, and the second round plays the task greedily.
    summary = train_rest(RestArgs(env="rlft-test/Doors-v0", policy=random_policy, out=tmp_path,
                                  rounds=2, episodes=40, epochs=20, lr=1e-3, batch_size=16,
                                  val_episodes=20, sampler="deviate", deviations=3,
                                  progress=False))
    first, second = summary["history"][1:]
    for row in (first, second):
        searched = row["searched"]
        assert row["kept"] == searched["greedy"] + searched["deviated"]
        assert searched["greedy"] + searched["deviated"] + searched["failed"] == 40
        assert searched["diverged"] == 0 and row["greedy_success"] == searched["greedy"] / 40
        assert row["sampled_success"] == row["kept_rate"]  # what was found, it recorded
    assert first["searched"]["deviated"] > 4 * first["searched"]["greedy"]
    assert second["greedy_success"] > first["greedy_success"]
    assert doors_success(random_policy) < 0.1 and doors_success(str(tmp_path / "policy")) >= 0.9
    meta = json.loads((tmp_path / "round-1" / "samples" / "meta.json").read_text())
    assert meta["agent"] == "DeviationAgent"
    # a round resumed after its search (samples complete, no round.json) reports the counts
    (tmp_path / "round-2" / "round.json").unlink()
    resumed = train_rest(RestArgs(env="rlft-test/Doors-v0", policy=random_policy, out=tmp_path,
                                  rounds=2, episodes=40, epochs=20, lr=1e-3, batch_size=16,
                                  val_episodes=0, sampler="deviate", deviations=3,
                                  progress=False))
    assert resumed["history"][1]["searched"] == second["searched"]
    settings = json.loads((tmp_path / "rest_settings.json").read_text())
    assert (settings["sampler"], settings["deviations"]) == ("deviate", 3)


def test_the_changed_turns_are_the_lessons_a_round_counts_lesson_weight_times(random_policy,
                                                                              tmp_path):
    """A greedy episode repeats the policy; a deviated one differs from it at exactly the turn
    the search changed. With --lesson-weight W those turns count W times in the round."""
    summary = train_rest(RestArgs(env="rlft-test/Doors-v0", policy=random_policy, out=tmp_path,
                                  rounds=1, episodes=40, epochs=1, batch_size=16, val_episodes=0,
                                  sampler="deviate", deviations=3, lesson_weight=3,
                                  progress=False))
    row = summary["history"][-1]
    assert row["searched"]["deviated"] > 0
    assert row["lesson_turns"] == row["searched"]["deviated"]
    kept_turns = sum(len(ep) for ep in _kept(tmp_path / "round-1" / "samples"))
    assert row["train_turns"] == kept_turns + 2 * row["lesson_turns"]


def test_unlikelihood_pushes_down_the_actions_the_search_replaced(random_policy, tmp_path,
                                                                  monkeypatch):
    """Under --sampler deviate the negatives are the greedy actions the search replaced (each a
    turn of a kept episode with the action that failed there) and the failed episodes' wrong
    turns; with --epoch-turns they are in every pass."""
    import rlft.training.rest as rest
    from rlft.training.demos import load_demos
    from rlft.training.rest import REPLACED_FILE, pass_turns, replaced_turns

    firsts = []  # the turns each capped pass must hold

    def spy(n, first, limit):
        firsts.append((n, list(first)))
        return pass_turns(n, first, limit)

    monkeypatch.setattr(rest, "pass_turns", spy)

    summary = train_rest(RestArgs(env="rlft-test/Doors-v0", policy=random_policy, out=tmp_path,
                                  rounds=1, episodes=40, epochs=1, batch_size=16, val_episodes=0,
                                  sampler="deviate", deviations=3, unlikelihood=1.0,
                                  epoch_turns=20, reward_mode="sparse", progress=False))
    row = summary["history"][-1]
    samples = tmp_path / "round-1" / "samples"
    replaced = json.loads((samples / REPLACED_FILE).read_text())
    assert len(replaced) == row["searched"]["deviated"] > 0
    _, episodes = load_demos(samples)
    negatives = replaced_turns(samples, episodes, replaced)
    assert len(negatives) == len(replaced)
    for (ep, t, action), (turn, negative) in zip(replaced, negatives, strict=True):
        kept = episodes[ep]
        assert kept[-1]["success"] and negative == action != kept[t]["action"]
        assert turn.history == tuple(r["action"] for r in kept[:t])  # the kept episode's turn
    failed = sum(r["reward"] < 0 for ep in episodes for r in ep)
    assert row["negative_turns"] == len(negatives) + failed
    assert row["epoch_turns"] == 20
    # the pushed-down turns come last in the pool (after the kept ones) and are in the pass
    (n, first), = firsts
    assert n == row["train_turns"] + row["negative_turns"]
    assert set(range(row["train_turns"], n)) <= set(first)
    assert len(first) == row["wrong_turns"] + row["negative_turns"]


def _kept(samples):
    from rlft.training.demos import load_demos

    return [ep for ep in load_demos(samples)[1] if ep[-1].get("success")]


def test_disagreements_are_the_turns_whose_target_the_policy_would_not_choose(random_policy):
    from rlft.training.rest import disagreements

    policy = ChoicePolicy.from_pretrained(random_policy).eval()
    env = gym.make("rlft-test/Doors-v0")
    inputs = []
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        episode = Episode()
        episode.observe(obs, info)
        inputs.append(policy.encode(episode.turn()))
    top = [f.candidates.index(policy.ranked_actions(f, 1)[0]) for f in inputs]
    targets = [t if i % 2 else (t + 1) % len(f.candidates)
               for i, (t, f) in enumerate(zip(top, inputs, strict=True))]
    assert disagreements(policy, inputs, targets) == [0, 2, 4]
    assert disagreements(policy, inputs, top) == []


def test_the_deviation_search_refuses_what_it_cannot_do(random_policy, tmp_path, capsys):
    from tiny_models import make_tiny_llama

    from rlft.agents import LMPolicy, LMPolicyConfig
    from rlft.training.cli import main

    with pytest.raises(ValueError, match="--deviations must be at least 1"):
        resolve_rest_args(RestArgs(env="rlft-test/Doors-v0", sampler="deviate", deviations=0))
    with pytest.raises(ValueError, match="--lesson-weight counts a turn that many times"):
        resolve_rest_args(RestArgs(env="rlft-test/Doors-v0", lesson_weight=0))
    with pytest.raises(ValueError, match="give one of them"):
        resolve_rest_args(RestArgs(env="rlft-test/Doors-v0", sampler="deviate",
                                   task_focus=0.5))
    with pytest.raises(ValueError, match="--search-envs must be at least 1, got 0"):
        resolve_rest_args(RestArgs(env="rlft-test/Doors-v0", sampler="deviate",
                                   search_envs=0))
    # an LM policy that generates freely has no candidates to rank: one line, nothing written
    free = tmp_path / "free"
    LMPolicy(LMPolicyConfig(model=str(make_tiny_llama(tmp_path / "lm")), lora_r=0,
                            constrained=False)).save_pretrained(free)
    with pytest.raises(SystemExit) as e:
        main(["train", "rest", "--env", "rlft-test/Doors-v0", "--policy", str(free),
              "--out", str(tmp_path / "out"), "--sampler", "deviate"])
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("rlft: error:") and "--sampler sample" in last, last
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as e:
        main(["train", "rest", "--env", "rlft-test/Doors-v0", "--policy", str(free),
              "--out", str(tmp_path / "out"), "--lesson-weight", "2"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and "--lesson-weight 1" in last, last
    assert not (tmp_path / "out").exists()


def test_a_constrained_lm_policy_ranks_its_candidates_as_it_chooses(tmp_path):
    from tiny_models import make_tiny_llama

    from rlft.agents import LMPolicy, LMPolicyConfig

    torch.manual_seed(0)
    policy = LMPolicy(LMPolicyConfig(model=str(make_tiny_llama(tmp_path / "lm")),
                                     lora_r=0)).eval()
    env = gym.make("rlft-test/Doors-v0")
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        episode = Episode()
        episode.observe(obs, info)
        features = policy.encode(episode.turn())
        ranked = policy.ranked_actions(features, 4)
        assert sorted(ranked) == sorted(info["valid_actions"])
        assert ranked[0] == policy.choose(features)
