"""The main job (`rlft demo`) end to end at tiny sizes: every stage writes what it promises."""

from __future__ import annotations

import json

import pytest

from rlft.agents.tiny_models import make_tiny_bert
from rlft.training.cli import main


def test_demo_runs_demos_imitation_ppo_and_the_table(tmp_path, capsys):
    encoder = make_tiny_bert(tmp_path / "bert")
    out = tmp_path / "run"
    main(["demo", "--out", str(out), "--model", str(encoder), "--demos", "3",
          "--imitate.epochs", "1", "--ppo.updates", "2", "--ppo.num-envs", "2",
          "--ppo.num-steps", "3", "--eval-episodes", "4"])
    results = json.loads((out / "results.json").read_text())
    names = [r["name"] for r in results["results"]]
    assert names == ["random", "IL", "IL+RL", "expert"]
    assert all(r["episodes"] == 4 for r in results["results"])
    assert results["results"][-1]["success"] == 1.0  # the expert
    assert results["rl"] == "ppo" and len(results["rl_history"]) <= 2  # the store's preset
    for path in ("demos/trajectories.jsonl", "il/rlft_policy.json", "ppo/policy/rlft_policy.json",
                 "ppo/summary.json", "results.md", "learning_curve.png"):
        assert (out / path).is_file(), path
    assert "IL+RL" in (out / "results.md").read_text()
    assert "IL+RL" in capsys.readouterr().out

    # a rerun with other settings into the same directory stops before touching it
    before = (out / "il" / "rlft_policy.json").read_bytes()
    with pytest.raises(SystemExit) as e:
        main(["demo", "--out", str(out), "--model", str(encoder), "--demos", "5"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "demos=3 there, 5 now" in err and "--out" in err
    assert (out / "il" / "rlft_policy.json").read_bytes() == before
    assert json.loads((out / "job.json").read_text())["demos"] == 3


def _no_nan(name: str) -> float:
    raise AssertionError(f"results.json holds {name}: not strict JSON")


def test_research_demo_self_trains_and_adds_the_abstention_columns(tmp_path):
    """The research preset's RL stage is self-training on one-turn deviations, with the demos
    mixed in; the table gains always-abstain and the abstention rates."""
    encoder = make_tiny_bert(tmp_path / "bert")
    out = tmp_path / "research"
    main(["demo", "--env", "rlft/Research-v0", "--out", str(out), "--model", str(encoder),
          "--demos", "3", "--imitate.epochs", "1", "--rest.rounds", "1", "--rest.episodes", "3",
          "--rest.epochs", "1", "--rest.val-episodes", "2", "--eval-episodes", "6"])
    results = json.loads((out / "results.json").read_text(), parse_constant=_no_nan)
    args = results["args"]
    assert results["rl"] == "rest" and args["rl"] == "rest"
    assert args["rest.sampler"] == "deviate" and args["rest.reward_mode"] == "sparse"
    assert args["rest.demos"] == str(out / "demos") and args["rest.policy"] == str(out / "il")
    assert not any(k.startswith("ppo.") for k in args)  # only the stage that ran is recorded
    history = results["rl_history"]
    assert [h["round"] for h in history] == [0, 1]
    assert history[1]["sampled"] == 3 and set(history[1]["searched"]) >= {"greedy", "deviated"}
    assert (out / "rest" / "policy" / "rlft_policy.json").is_file()
    assert (out / "learning_curve.png").is_file()
    rows = {r["name"]: r for r in results["results"]}
    assert list(rows) == ["random", "always-abstain", "IL", "IL+RL", "expert"]
    assert rows["always-abstain"]["metrics"]["quoted before correct"] is None  # null, not NaN
    abstain, expert = rows["always-abstain"], rows["expert"]
    assert abstain["metrics"]["abstains answerable"] == 1.0
    assert abstain["mean_return"] == abstain["success"]  # right exactly when unanswerable
    assert expert["success"] == 1.0 and expert["metrics"]["quoted before correct"] == 1.0
    table = (out / "results.md").read_text()
    assert "answers unanswerable" in table and "always-abstain" in table
    # the hallucination rate measured on unanswerable test questions alone
    unanswerable = {r["name"]: r for r in results["held_out"]["unanswerable"]}
    assert list(unanswerable) == ["IL", "IL+RL"]
    for name, row in unanswerable.items():
        m = row["metrics"]
        assert m["answerable accuracy"] is None and m["abstains answerable"] is None  # none asked
        assert 0 <= m["answers unanswerable"] <= 1 - row["success"] + 1e-9  # success: abstained
        assert f"{name} {m['answers unanswerable']:.2f} [" in table
    assert "unanswerable questions alone (6 episodes)" in table


def test_a_run_made_before_a_setting_existed_is_still_reused(tmp_path):
    """job.json of a run made by an older rlft lacks the settings added since; while they keep
    their defaults the run is the same job, and a changed one is still refused."""
    import json

    import pytest

    from rlft.training.main_job import SETTINGS_FILE, MainJobArgs, check_settings

    args = MainJobArgs(out=str(tmp_path))
    assert check_settings(tmp_path, args) is False
    recorded = json.loads((tmp_path / SETTINGS_FILE).read_text())
    del recorded["ppo.advantage"], recorded["ppo.goal_pool"], recorded["rl"]
    (tmp_path / SETTINGS_FILE).write_text(json.dumps(recorded))
    assert check_settings(tmp_path, args) is True  # before --rl, the RL stage was PPO
    from dataclasses import replace

    changed = replace(args, ppo=replace(args.ppo, advantage="grpo"))
    with pytest.raises(ValueError, match="ppo.advantage=None there, 'grpo' now"):
        check_settings(tmp_path, changed)

    # a research run made with PPO, before self-training became its preset, is not reused
    research = tmp_path / "research"
    args = MainJobArgs(env="rlft/Research-v0", out=str(research))
    assert check_settings(research, args) is False
    recorded = json.loads((research / SETTINGS_FILE).read_text())
    del recorded["rl"]
    (research / SETTINGS_FILE).write_text(json.dumps(recorded))
    with pytest.raises(ValueError, match="rl='ppo' there, 'rest' now"):
        check_settings(research, args)
    # a research run that cloned every kept turn, before --rest.epoch-turns: not the capped job
    recorded["rl"] = "rest"
    del recorded["rest.epoch_turns"]
    (research / SETTINGS_FILE).write_text(json.dumps(recorded))
    with pytest.raises(ValueError, match="rest.epoch_turns=0 there, 6000 now"):
        check_settings(research, args)
    uncapped = replace(args, rest=replace(args.rest, epoch_turns=0))
    assert check_settings(research, uncapped) is True


@pytest.mark.parametrize("argv, message", [
    (["--ppo.updates", "0"], "ppo stage (--ppo.*): --updates must be at least 1, got 0"),
    (["--rl", "rest", "--rest.rounds", "0"],
     "rest stage (--rest.*): --rounds must be at least 1, got 0"),
    (["--imitate.lr", "0"], "imitate stage (--imitate.*): --lr must be positive"),
    (["--ppo.env-kwargs", "split=val"], "pass --split instead"),
])
def test_a_bad_stage_setting_is_refused_before_any_stage_runs(tmp_path, argv, message, capsys):
    """Not after the demos and imitation have run: nothing is written."""
    out = tmp_path / "job"
    with pytest.raises(SystemExit) as e:
        main(["demo", "--out", str(out), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_the_learning_curve_draws_self_training_rounds_with_or_without_val(tmp_path):
    """Per round for self-training (no round 0 when it ran without val questions), per update
    for PPO."""
    from types import SimpleNamespace

    from rlft.training.main_job import plot_learning_curve

    results = [SimpleNamespace(name="IL", success=0.4), SimpleNamespace(name="IL+RL", success=0.5)]
    rounds = [{"round": k, "sampled": 10, "sampled_success": 0.1 * k} for k in (1, 2, 3)]
    with_val = [{"round": 0, "val_success": 0.3}] + [dict(r, val_success=0.4) for r in rounds]
    ppo = [{"global_step": 64 * k, "success": 0.1 * k} for k in range(1, 8)]
    for name, history in (("no_val", rounds), ("val", with_val), ("ppo", ppo)):
        path = tmp_path / f"{name}.png"
        plot_learning_curve(history, results, path, 20)
        assert path.stat().st_size > 10_000, name
