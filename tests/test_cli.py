"""The rlft command: envs, play, evaluate."""

from __future__ import annotations

import io
import json

import pytest

from rlft.training.cli import main
from rlft.training.play import play_text


def test_envs_lists_ids(capsys):
    main(["envs"])
    out = capsys.readouterr().out
    assert "rlft/Shop-v0" in out and "WebShop" in out


def test_play_reads_actions_and_reports_reward():
    stdin = io.StringIO("search[x]\nclick[Back to Search]\n0\nnot an action\nquit\n")
    stdout = io.StringIO()
    play_text("rlft/Shop-v0", seed=3, stdin=stdin, stdout=stdout)
    text = stdout.getvalue()
    assert "Goal: " in text and "0. search[...]" in text
    assert "Total results" in text          # the search ran
    assert "! unknown command" in text or "! malformed" in text
    assert "reward 0.000" in text


def test_play_plays_to_the_end_with_the_expert_actions():
    import gymnasium as gym

    env = gym.make("rlft/Shop-v0")
    obs, info = env.reset(seed=3)
    expert = env.unwrapped.expert()
    actions = []
    while True:
        a = expert.act(obs, info)
        actions.append(a)
        obs, r, term, trunc, info = env.step(a)
        if term or trunc:
            break
    out = io.StringIO()
    total = play_text("rlft/Shop-v0", seed=3, stdin=io.StringIO("\n".join(actions) + "\n"),
                      stdout=out)
    assert total == pytest.approx(1.0)
    assert "success True" in out.getvalue() and "Episode over" in out.getvalue()


def test_evaluate_writes_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    main(["evaluate", "--agent", "expert", "--episodes", "5", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data[0]["name"] == "expert" and data[0]["success"] == 1.0
    assert "expert" in capsys.readouterr().out


def test_unknown_subcommand_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["fly"])
    assert e.value.code != 0


def test_train_ppo_with_a_missing_checkpoint_says_what_to_do(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["train", "ppo", "--policy", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "no rlft policy checkpoint" in err and "rlft imitate" in err
