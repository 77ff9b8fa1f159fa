"""Self-training (ReST): the episode filter, the turns it imitates, learning a task from a
random policy's own successes, resuming a run, and the command's errors."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from ppo_toy_env import doors_success, save_random_policy  # (registers rlft-test/Doors-v0)

from rlft.training.configs import RestArgs
from rlft.training.rest import (
    Negative,
    WithUnlikelihood,
    episode_kept,
    failed,
    failed_turns,
    imitable_turns,
    pass_turns,
    resolve_rest_args,
    task_schedule,
    train_rest,
)


def _record(step: int, action: str, reward: float, success: bool, error: str | None = None):
    return {"episode": 0, "step": step, "seed": 0, "goal": "g", "page": f"page {step}",
            "valid_actions": ["click[a]", "click[b]"], "action": action, "reward": reward,
            "terminated": success, "truncated": False, "success": success, "score": 0.0,
            "action_error": error}


def test_episode_kept_by_success_or_by_return():
    won = [_record(0, "click[a]", 0.25, False), _record(1, "click[b]", 1.0, True)]
    lost = [_record(0, "click[a]", 0.25, False), _record(1, "click[a]", 0.5, False)]
    assert episode_kept(won, None) and not episode_kept(lost, None)
    assert episode_kept(lost, 0.75) and not episode_kept(lost, 0.8)
    assert episode_kept(won, 1.25) and not episode_kept(won, 1.3)


def test_imitable_turns_skip_rejected_actions_but_keep_them_in_the_history(tmp_path):
    episode = [_record(0, "click[zzz]", 0.0, False, error="no such button"),
               _record(1, "click[a]", 0.0, False), _record(2, "click[b]", 1.0, True)]
    examples = imitable_turns(tmp_path, [episode])
    assert [a for _, a in examples] == ["click[a]", "click[b]"]
    first, second = (t for t, _ in examples)
    assert first.history == ("click[zzz]",) and first.page == "page 1"
    assert second.history == ("click[zzz]", "click[a]") and second.page == "page 2"


def test_progress_turns_are_the_rewarded_ones_of_any_episode(tmp_path):
    failed = [_record(0, "click[a]", 0.5, False), _record(1, "click[zzz]", 0.7, False, "no"),
              _record(2, "click[b]", 0.0, False)]
    won = [_record(0, "click[b]", 0.0, False), _record(1, "click[a]", 1.0, True)]
    examples = imitable_turns(tmp_path, [failed, won], progress_only=True)
    assert [(t.page, a) for t, a in examples] == [("page 0", "click[a]"), ("page 1", "click[a]")]


def test_the_tabletop_preset_keeps_rewarded_turns_unless_a_return_filter_is_given():
    tabletop = resolve_rest_args(RestArgs(env="rlft/Tabletop-v0"))
    assert (tabletop.keep, tabletop.rounds, tabletop.episodes) == ("progress", 11, 300)
    assert resolve_rest_args(RestArgs(env="rlft/Shop-v1")).keep == "episodes"
    assert resolve_rest_args(RestArgs(env="rlft/Tabletop-v0", min_return=0.5)).keep == "episodes"
    with pytest.raises(ValueError, match="give one of them"):
        resolve_rest_args(RestArgs(env="rlft/Tabletop-v0", keep="progress", min_return=0.5))


@pytest.fixture(scope="module")
def random_policy(tmp_path_factory):
    return save_random_policy(tmp_path_factory.mktemp("policy"))


def test_rest_learns_the_doors_task_from_a_random_policys_successes(random_policy, tmp_path):
    # A random choice of 4 doors then 4 buttons succeeds 1 time in 16: the first round keeps a
    # handful of episodes, each later round more, as the policy trained on them improves.
    summary = train_rest(RestArgs(env="rlft-test/Doors-v0", policy=random_policy, out=tmp_path,
                                  rounds=3, episodes=120, epochs=20, lr=1e-3, batch_size=16,
                                  val_episodes=20))
    before, after = doors_success(random_policy), doors_success(str(tmp_path / "policy"))
    assert before < 0.3
    assert after >= 0.9, (before, after, summary["history"])
    rounds = [r for r in summary["history"] if r["round"] > 0]
    assert [r["round"] for r in summary["history"]] == [0, 1, 2, 3]
    assert 0 < rounds[0]["kept_rate"] < 0.3 and rounds[-1]["kept_rate"] > 0.5
    for r in rounds:  # every kept episode is two imitable turns (no demos mixed in)
        assert r["train_turns"] == 2 * sum(x["kept"] for x in rounds[: r["round"]])
    meta = json.loads((tmp_path / "round-1" / "samples" / "meta.json").read_text())
    assert meta["episodes"] == 120 and meta["agent"] == "SamplingAgent"
    assert json.loads((tmp_path / "summary.json").read_text())["rounds"] == 3


def test_rest_resumes_at_the_first_unfinished_round(random_policy, tmp_path):
    common = dict(env="rlft-test/Doors-v0", policy=random_policy, out=tmp_path, episodes=40,
                  epochs=2, lr=1e-3, batch_size=16, val_episodes=0)
    train_rest(RestArgs(rounds=1, **common))
    first = (tmp_path / "round-1" / "round.json").read_text()
    def written():  # every file of round 1's policy, with when it was written
        return {p.name: p.stat().st_mtime_ns for p in (tmp_path / "round-1" / "policy").iterdir()}

    weights = written()
    summary = train_rest(RestArgs(rounds=2, **common))
    assert (tmp_path / "round-1" / "round.json").read_text() == first  # reused, not redone
    assert written() == weights and weights
    assert [r["round"] for r in summary["history"]] == [1, 2]
    assert summary["history"][0] == json.loads(first)
    # round 2 trains on round 1's kept episodes and its own
    assert summary["history"][1]["train_turns"] == 2 * sum(r["kept"] for r in summary["history"])


def test_each_turn_is_encoded_once_however_many_rounds_clone_it(random_policy, tmp_path,
                                                               monkeypatch):
    """A round clones every kept episode so far; the turns of earlier rounds keep their
    encoded features (and cached embeddings) instead of being encoded again."""
    import rlft.training.rest as rest

    encoded = []

    def counting(policy, examples):
        encoded.append(len(examples))
        return real(policy, examples)

    real = rest.encode_examples
    monkeypatch.setattr(rest, "encode_examples", counting)
    summary = train_rest(RestArgs(env="rlft-test/Doors-v0", policy=random_policy, out=tmp_path,
                                  rounds=3, episodes=80, epochs=2, lr=1e-3, batch_size=16,
                                  val_episodes=0))
    turns = [r["train_turns"] for r in summary["history"]]
    assert 0 < turns[0] < turns[-1]  # the later rounds clone more
    assert sum(encoded) == turns[-1]  # yet every turn was encoded once


def test_rest_shows_each_rounds_sampling_and_training(random_policy, tmp_path, capsys,
                                                     monkeypatch):
    from contextlib import contextmanager

    from rlft.training import rest

    bars, real = [], rest._bar

    @contextmanager
    def spy(enabled, total, desc, unit):
        with real(enabled, total, desc, unit) as bar:
            yield bar
        bars.append((desc, total, None if bar is None else bar.n))

    monkeypatch.setattr(rest, "_bar", spy)
    common = dict(env="rlft-test/Doors-v0", policy=random_policy, rounds=1, episodes=8,
                  epochs=2, lr=1e-3, batch_size=16, val_episodes=0, min_return=-1e9)
    train_rest(RestArgs(out=tmp_path / "a", **common))  # (every episode kept: 2 turns each)
    # each bar ran to its total: every episode sampled, every epoch trained
    assert bars == [("round 1/1: sampling", 8, 8), ("round 1/1: training on 16 turns", 2, 2)]
    assert "round 1/1: sampling" in capsys.readouterr().err
    bars.clear()
    train_rest(RestArgs(out=tmp_path / "b", progress=False, **common))
    assert [n for *_, n in bars] == [None, None]
    assert "round 1/1" not in capsys.readouterr().err


def test_rest_command_errors_are_one_line(random_policy, tmp_path, capsys):
    from rlft.training.cli import main

    for argv, needle in (
            (["--rounds", "0"], "--rounds must be at least 1"),
            (["--lr", "-1"], "--lr must be positive"),
            (["--demos", str(tmp_path / "none")], "no demos at"),
            (["--policy", str(tmp_path / "missing")], "missing")):
        base = ["train", "rest", "--env", "rlft-test/Doors-v0", "--policy", random_policy,
                "--out", str(tmp_path / "out")]
        with pytest.raises(SystemExit) as e:
            main(base + argv)
        assert e.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]  # (after any loading bars)
        assert last.startswith("rlft: error:") and needle in last, last


def test_sample_index_temperature_sharpens_and_zero_is_greedy():
    from rlft.agents.rl import sample_index

    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1, 0.0]]))  # the last can never be drawn
    g = torch.Generator().manual_seed(0)
    assert int(sample_index(logits, g, 0.0)) == 0 and int(sample_index(logits, None)) == 0

    def freq(t: float) -> torch.Tensor:
        draws = torch.cat([sample_index(logits.expand(1000, -1), g, t) for _ in range(4)])
        return torch.bincount(draws[:, 0], minlength=4).float() / len(draws)

    at_one, at_half = freq(1.0), freq(0.5)
    torch.testing.assert_close(at_one, torch.tensor([0.6, 0.3, 0.1, 0.0]), atol=0.03, rtol=0)
    # p ** 2 renormalised: 0.36 / 0.46, 0.09 / 0.46, 0.01 / 0.46
    torch.testing.assert_close(at_half, torch.tensor([0.783, 0.196, 0.022, 0.0]), atol=0.03,
                               rtol=0)


def test_a_greedy_sampling_agent_plays_as_the_policy_does(random_policy):
    import gymnasium as gym

    from rlft.agents.choice_policy import ChoicePolicy
    from rlft.agents.episode import rollout
    from rlft.agents.rl import SamplingAgent

    policy = ChoicePolicy.from_pretrained(random_policy)
    env = gym.make("rlft-test/Doors-v0")
    greedy = SamplingAgent(policy, torch.Generator().manual_seed(0), temperature=0.0)
    for seed in range(5):
        assert ([s.action for s in rollout(env, greedy, seed=seed)]
                == [s.action for s in rollout(env, policy, seed=seed)])


def test_a_round_that_keeps_nothing_leaves_the_policy_unchanged(random_policy, tmp_path):
    from pathlib import Path

    from safetensors.torch import load_file

    summary = train_rest(RestArgs(env="rlft-test/Doors-v0", policy=random_policy, out=tmp_path,
                                  rounds=1, episodes=10, min_return=5.0, val_episodes=0))
    row = summary["history"][0]
    assert row["kept"] == 0 and row["train_turns"] == 0
    heads = sorted(p.name for p in (tmp_path / "policy").glob("*.safetensors"))
    assert heads == sorted(p.name for p in Path(random_policy).glob("*.safetensors")) != []
    for name in heads:
        before, after = load_file(str(Path(random_policy) / name)), load_file(
            str(tmp_path / "policy" / name))
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before)


def test_rest_trains_an_lm_policy_on_its_kept_episodes(tmp_path):
    # every policy kind self-trains through the same protocol: here a tiny causal LM, with
    # every sampled episode kept (return >= -1), so each round trains on 2 turns per episode
    from tiny_models import make_tiny_llama

    from rlft.agents import LMPolicy, LMPolicyConfig, load_policy

    start = tmp_path / "start"
    LMPolicy(LMPolicyConfig(model=str(make_tiny_llama(tmp_path / "lm")), lora_r=4)
             ).save_pretrained(start)
    summary = train_rest(RestArgs(env="rlft-test/Doors-v0", policy=str(start),
                                  out=tmp_path / "out", rounds=1, episodes=6, min_return=-1.0,
                                  epochs=1, batch_size=4, val_episodes=0, temperature=0.7))
    row = summary["history"][0]
    assert row["kept"] == 6 and row["train_turns"] == 12 and row["train_loss"] > 0
    assert isinstance(load_policy(tmp_path / "out" / "policy"), LMPolicy)
    # the LM policy has no unlikelihood_loss: asking for the negative term says so up front
    with pytest.raises(ValueError, match="push an action down.*lm policy"):
        train_rest(RestArgs(env="rlft-test/Doors-v0", policy=str(start), out=tmp_path / "ul",
                            rounds=1, episodes=6, unlikelihood=1.0, val_episodes=0))
    assert not (tmp_path / "ul").exists()


def test_lm_generation_at_temperature_zero_is_greedy(tmp_path):
    from tiny_models import make_tiny_llama

    from rlft.agents import LMPolicy, LMPolicyConfig

    policy = LMPolicy(LMPolicyConfig(model=str(make_tiny_llama(tmp_path / "lm")), lora_r=0,
                                     constrained=False, max_action_tokens=6)).eval()
    prompt = policy.tokenizer("Goal: press the red button\n")["input_ids"]
    with torch.no_grad():
        greedy = policy._generate(prompt, None)
        assert policy._generate(prompt, torch.Generator().manual_seed(1), 0.0) == greedy


def test_a_rerun_with_other_settings_is_refused_not_mixed(random_policy, tmp_path):
    common = dict(env="rlft-test/Doors-v0", policy=random_policy, out=tmp_path, episodes=10,
                  epochs=1, val_episodes=0)
    train_rest(RestArgs(rounds=1, **common))
    with pytest.raises(ValueError, match=r"other settings \(--temperature 1.0 -> 0.5\)"):
        train_rest(RestArgs(rounds=2, temperature=0.5, **common))
    assert not (tmp_path / "round-2").exists()  # refused before sampling anything
    # more rounds with the same settings continue the run
    assert [r["round"] for r in train_rest(RestArgs(rounds=2, **common))["history"]] == [1, 2]


def test_keep_progress_imitates_the_sub_goals_of_failed_episodes_too(random_policy, tmp_path):
    # "subgoals": each right click pays 0.5. A random policy picks the right door 1 time in 4
    # and mostly fails after it: those first turns are imitated as well
    from rlft.training.demos import load_demos

    summary = train_rest(RestArgs(env="rlft-test/Doors-v0", policy=random_policy, out=tmp_path,
                                  rounds=1, episodes=40, keep="progress", reward_mode="subgoals",
                                  epochs=1, val_episodes=0))
    _, sampled = load_demos(tmp_path / "round-1" / "samples")
    rewarded = [(ep[0]["goal"], r["action"]) for ep in sampled for r in ep if r["reward"] > 0]
    assert any(not ep[-1]["success"] and any(r["reward"] > 0 for r in ep) for ep in sampled)
    row = summary["history"][0]
    assert row["train_turns"] == len(rewarded) > 2 * sum(ep[-1]["success"] for ep in sampled)
    assert row["kept"] == sum(any(r["reward"] > 0 for r in ep) for ep in sampled)
    assert row["sampled_success"] == sum(ep[-1]["success"] for ep in sampled) / 40
    for goal, action in rewarded:  # each one a click the goal asked for
        assert action.removeprefix("click[").split()[0] in goal
    with pytest.raises(ValueError, match="give one of them"):
        train_rest(RestArgs(env="rlft-test/Doors-v0", policy=random_policy, out=tmp_path / "x",
                            keep="progress", min_return=0.5))


def test_the_task_schedule_gives_the_focused_share_by_failure_rate():
    # half spread evenly (10 each), half by failure rates 0 : 0.5 : 1 (0, 10, 20)
    schedule = task_schedule({"a": 1.0, "b": 0.5, "c": 0.0}, 60, 0.5)
    assert Counter(schedule) == {"a": 10, "b": 20, "c": 30}
    assert set(schedule[:3]) == {"a", "b", "c"}  # spread through the list, not in blocks
    assert Counter(task_schedule({"a": 1.0, "b": 0.0}, 10, 0.0)) == {"a": 5, "b": 5}
    assert Counter(task_schedule({"a": 1.0, "b": 1.0}, 10, 1.0)) == {"a": 5, "b": 5}
    odd = Counter(task_schedule({"a": 0.2, "b": 0.3, "c": 0.9}, 7, 0.7))
    assert sum(odd.values()) == 7 and odd["a"] >= odd["b"] > odd["c"]


def test_task_focus_samples_more_of_the_task_the_last_round_failed(random_policy, tmp_path,
                                                                    capsys):
    # "free" takes any click, so a random policy always succeeds there; "match" it fails about
    # 15 times in 16. Round 1 plays both evenly, round 2 gives "match" the focused half too.
    from rlft.training.demos import collect, load_demos

    summary = train_rest(RestArgs(env="rlft-test/TwoDoors-v0", policy=random_policy,
                                  out=tmp_path, rounds=2, episodes=40, task_focus=0.5,
                                  epochs=1, val_episodes=0))
    first, second = summary["history"]
    assert first["sampled_by_task"] == {"free": 20, "match": 20}
    assert first["sampled_success_by_task"]["free"] == 1.0
    assert first["sampled_success_by_task"]["match"] < 1.0
    assert second["sampled_by_task"] == {"free": 10, "match": 30}
    meta, sampled = load_demos(tmp_path / "round-2" / "samples")
    assert meta["tasks"] == {"free": 10, "match": 30}
    assert Counter(ep[-1]["task"] for ep in sampled) == {"free": 10, "match": 30}
    with pytest.raises(ValueError, match="1 episodes' tasks for 2 episodes"):
        collect("rlft-test/TwoDoors-v0", 2, tmp_path / "y", tasks=["free"])
    train_rest(RestArgs(env="rlft-test/Doors-v0", policy=random_policy, out=tmp_path / "one",
                        rounds=1, episodes=4, task_focus=0.5, epochs=1, val_episodes=0))
    assert "--task-focus 0.5 has nothing to focus on" in capsys.readouterr().out
    with pytest.raises(ValueError, match="from 0 to 1"):
        train_rest(RestArgs(env="rlft-test/TwoDoors-v0", policy=random_policy,
                            out=tmp_path / "x", task_focus=1.5))


def test_failed_turns_are_the_unrewarded_ones_or_under_episodes_the_penalised_ones(tmp_path):
    episode = [_record(0, "click[a]", 0.5, False), _record(1, "click[zzz]", 0.0, False, "no"),
               _record(2, "click[b]", 0.0, False), _record(3, "click[a]", -1.0, False)]
    assert [failed(r, True) for r in episode] == [False, False, True, True]
    assert [failed(r, False) for r in episode] == [False, False, False, True]
    assert [(t.page, a) for t, a in failed_turns(tmp_path, [episode], True)] == [
        ("page 2", "click[b]"), ("page 3", "click[a]")]


def test_the_signed_objective_weighs_each_part_by_its_share_of_the_batch(random_policy):
    from ppo_toy_env import DoorsEnv

    from rlft.agents import Turn, load_policy

    policy = load_policy(random_policy)
    env = DoorsEnv()
    obs, info = env.reset(seed=0)
    turn = policy.encode(Turn.from_env(obs, info))
    pos, neg = 0, 1  # candidate indices
    with torch.no_grad():
        plain, _ = policy.imitation_loss([turn], [pos])
        push = policy.unlikelihood_loss([turn], [neg])
        both, _ = WithUnlikelihood(policy, 0.5).imitation_loss([turn, turn], [pos, Negative(neg)])
        p = torch.softmax(policy([turn]).logits, -1)[0, neg]
    assert torch.isclose(push, -torch.log1p(-p))
    assert torch.isclose(both, 0.5 * plain + 0.5 * 0.5 * push)


def test_unlikelihood_pushes_the_sampled_mistakes_down_beside_the_cloning(random_policy,
                                                                           tmp_path):
    # the same samples (same policy, same seed) trained with and without the negative term:
    # the wrong clicks end less likely with it, and every wrong click is counted
    from rlft.agents import load_policy
    from rlft.training.demos import load_demos

    common = dict(env="rlft-test/Doors-v0", policy=random_policy, rounds=1, episodes=40,
                  keep="progress", reward_mode="subgoals", epochs=10, lr=3e-3,
                  batch_size=16, val_episodes=0)
    plain = train_rest(RestArgs(out=tmp_path / "plain", **common))["history"][0]
    pushed = train_rest(RestArgs(out=tmp_path / "pushed", unlikelihood=1.0, **common))
    row = pushed["history"][0]
    _, sampled = load_demos(tmp_path / "pushed" / "round-1" / "samples")
    wrong = failed_turns(tmp_path / "pushed" / "round-1" / "samples", sampled, True)
    assert row["negative_turns"] == len(wrong) == sum(r["reward"] <= 0 for ep in sampled
                                                      for r in ep) > 0
    assert row["train_turns"] == plain["train_turns"] and plain["negative_turns"] == 0

    def mean_prob(directory) -> float:
        policy = load_policy(directory).eval()
        feats = [policy.encode(t) for t, _ in wrong]
        with torch.no_grad():
            probs = torch.softmax(policy(feats).logits, -1)
        return float(torch.stack([probs[i, policy.imitation_target(f, a)] for i, (f, (_, a))
                                  in enumerate(zip(feats, wrong, strict=True))]).mean())

    assert mean_prob(tmp_path / "pushed" / "policy") < 0.5 * mean_prob(tmp_path / "plain" /
                                                                         "policy")
    with pytest.raises(ValueError, match="0 or more"):
        train_rest(RestArgs(out=tmp_path / "x", unlikelihood=-1.0, **common))


def test_a_capped_pass_takes_every_wrong_turn_then_a_fresh_draw_of_the_rest():
    # --epoch-turns: the turns the policy gets wrong are in every pass, the others drawn
    # without replacement up to the cap, afresh each pass
    import random

    random.seed(0)
    wrong = [3, 17, 40]
    passes = [pass_turns(50, wrong, 10) for _ in range(2)]
    for p in passes:
        assert len(p) == len(set(p)) == 10 and set(wrong) <= set(p)
        assert all(0 <= i < 50 for i in p)
    assert set(passes[0]) != set(passes[1])
    many = list(range(20))  # more wrong turns than the cap: a draw of them
    p = pass_turns(50, many, 10)
    assert len(set(p)) == 10 and set(p) <= set(many)
    assert sorted(pass_turns(5, [1], 10)) == [0, 1, 2, 3, 4]  # a pool under the cap: all


def test_rest_epoch_turns_caps_each_rounds_cloning_and_is_checked(random_policy, tmp_path,
                                                                  monkeypatch):
    import rlft.training.rest as rest

    calls = []  # each pass's (pool, the turns it must hold, cap) and the turns it took

    def spy(n, first, limit):
        turns = pass_turns(n, first, limit)
        calls.append((n, list(first), limit, turns))
        return turns

    monkeypatch.setattr(rest, "pass_turns", spy)
    summary = train_rest(RestArgs(env="rlft-test/Doors-v0", policy=random_policy, out=tmp_path,
                                  rounds=2, episodes=10, min_return=-1e9, epochs=2,
                                  epoch_turns=15, val_episodes=0))
    rows = [r for r in summary["history"] if r["round"] > 0]
    assert [r["train_turns"] for r in rows] == [20, 40]  # every kept turn stays in the pool
    assert [r["epoch_turns"] for r in rows] == [15, 15]
    # two passes a round over the whole pool, each holding the turns the policy got wrong as
    # the round began (a random policy's sampled turns: some of them)
    assert [(n, limit) for n, _, limit, _ in calls] == [(20, 15)] * 2 + [(40, 15)] * 2
    for (_, first, limit, turns), row in zip(calls, [rows[0]] * 2 + [rows[1]] * 2,
                                             strict=True):
        assert len(first) == row["wrong_turns"] > 0
        # all of them while they fit, else a draw of the cap from them alone
        assert set(first) <= set(turns) if len(first) < limit else set(turns) <= set(first)
    assert rows[0]["wrong_turns"] < 15 < rows[1]["wrong_turns"]  # both cases ran
    assert resolve_rest_args(RestArgs(env="rlft/Research-v0")).epoch_turns == 6000
    assert resolve_rest_args(RestArgs(env="rlft/Shop-v1")).epoch_turns == 0
    with pytest.raises(ValueError, match="--epoch-turns caps"):
        resolve_rest_args(RestArgs(env="rlft/Shop-v1", epoch_turns=-1))
