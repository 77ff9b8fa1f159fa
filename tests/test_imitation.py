"""Demos, behaviour cloning, evaluation and benchmark commands (tiny sizes)."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from tiny_models import make_tiny_bert

import rlft.envs  # noqa: F401
from rlft.training.cli import main
from rlft.training.configs import ImitateArgs
from rlft.training.demos import collect, demo_turns, load_demos
from rlft.training.imitation import imitate
from rlft.wrappers.recorder import TrajectoryRecorder


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    return str(make_tiny_bert(tmp_path_factory.mktemp("tiny-bert")))


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos")
    collect("rlft/Shop-v0", 30, out, seed=0)
    return out


def test_collect_writes_documented_records(demos):
    meta, episodes = load_demos(demos)
    assert meta["env_id"] == "rlft/Shop-v0" and meta["episodes"] == 30
    assert meta["expert_success"] == 1.0 and len(episodes) == 30
    assert sum(len(e) for e in episodes) == meta["steps"]
    first = episodes[0][0]
    assert first["step"] == 0 and first["seed"] == 0 and first["valid_actions"] == ["search[...]"]
    assert first["action"].startswith("search[") and first["goal"] and first["page"]
    last = episodes[0][-1]
    assert last["terminated"] and last["success"] and last["reward"] == 1.0
    assert last["action"] == "click[Buy Now]"
    with pytest.raises(FileExistsError):
        collect("rlft/Shop-v0", 1, demos)


class _ImageEnv(gym.Env):
    """A tiny env with an image observation, to test npz recording."""

    observation_space = spaces.Dict({"goal": spaces.Text(20),
                                     "color": spaces.Box(0, 255, (4, 5, 3), np.uint8)})
    action_space = spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return {"goal": "go", "color": np.full((4, 5, 3), self.t, np.uint8)}

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, self.t == 3, False, {"success": self.t == 3, "score": 0.5,
                                                      "task": "count-to-three"}


def test_recorder_stores_images_in_npz(tmp_path):
    env = TrajectoryRecorder(_ImageEnv(), tmp_path)
    for seed in (0, 1):
        env.reset(seed=seed)
        for _ in range(3):
            env.step(np.array([0.5, -0.5], np.float32))
    env.close()
    _, episodes = load_demos(tmp_path, complete=False)
    assert [len(e) for e in episodes] == [3, 3]
    rec = episodes[1][2]
    assert rec["action"] == [0.5, -0.5] and rec["goal"] == "go" and rec["success"]
    assert rec["arrays"] == {"file": "episode_000001.npz", "index": {"color": 2}}
    arrays = np.load(tmp_path / rec["arrays"]["file"])
    assert arrays["color"].shape == (3, 4, 5, 3) and (arrays["color"][2] == 2).all()
    # the task the env names is recorded beside the step, not read back as an observation
    assert rec["task"] == "count-to-three"
    turn, _ = demo_turns(tmp_path, episodes)[-1]
    assert set(turn.observation) == {"goal", "color"} and (turn.observation["color"] == 2).all()


def test_short_imitation_lowers_val_loss_and_resumes(tmp_path, demos, tiny_encoder):
    args = ImitateArgs(demos=demos, out=tmp_path, model=tiny_encoder, epochs=6, policy_config=("hidden=32",),
                       batch_size=16, lr=3e-3, val_episodes=10)
    summary = imitate(args)
    hist = summary["history"]
    assert len(hist) == 6 and hist[-1]["val_loss"] < hist[0]["val_loss"] - 0.1
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert (tmp_path / "rlft_policy.json").exists() and (tmp_path / "head.safetensors").exists()
    assert list((tmp_path / "tb").iterdir())
    # resuming: the finished epochs are kept, two more are trained
    args.epochs = 8
    resumed = imitate(args)["history"]
    assert len(resumed) == 8 and resumed[:6] == hist


def test_imitate_rejects_a_tabletop_env(tmp_path, demos, tiny_encoder):
    with pytest.raises(ValueError, match="web env"):
        imitate(ImitateArgs(demos=demos, out=tmp_path, env="rlft/PutBlockInBowl-v0",
                            model=tiny_encoder))


def test_cli_collect_imitate_evaluate_benchmark(tmp_path, tiny_encoder, capsys):
    demos, model = tmp_path / "demos", tmp_path / "il"
    main(["collect", "--env", "rlft/Shop-v0", "--episodes", "8", "--out", str(demos)])
    assert "8 episodes" in capsys.readouterr().out
    main(["imitate", "--demos", str(demos), "--out", str(model), "--model", tiny_encoder,
          "--epochs", "2", "--val-episodes", "3", "--eval-episodes", "2"])
    assert "val success" in capsys.readouterr().out
    main(["evaluate", "--env", "rlft/Shop-v0", "--agent", str(model), "--episodes", "2",
          "--out", str(tmp_path / "eval.json")])
    assert json.loads((tmp_path / "eval.json").read_text())[0]["episodes"] == 2
    prefix = tmp_path / "bench" / "agents"
    main(["benchmark", "--envs", "rlft/Shop-v0", "--agents", "random", f"il={model}",
          "--episodes", "2", "--out", str(prefix)])
    table = capsys.readouterr().out
    assert "| rlft/Shop-v0 | il | 2 |" in table and "actions/s" in table
    rows = json.loads(prefix.with_suffix(".json").read_text())
    assert [r["name"] for r in rows] == ["random", "il"]
    assert all(r["actions_per_s"] > 0 for r in rows)
    assert prefix.with_suffix(".png").stat().st_size > 1000
    assert prefix.with_suffix(".md").read_text().startswith("| env | agent |")


def test_evaluate_missing_checkpoint_says_what_to_do(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:  # the CLI prints user errors as one line, exit 2
        main(["evaluate", "--agent", str(tmp_path / "missing"), "--episodes", "1"])
    assert e.value.code == 2
    assert "rlft imitate" in capsys.readouterr().err


def test_lm_sft_lowers_val_loss_and_saves(tmp_path, demos, tmp_path_factory):
    from tiny_models import make_tiny_llama

    from rlft.agents import LMPolicy, load_policy

    model = str(make_tiny_llama(tmp_path_factory.mktemp("tiny-llama")))
    summary = imitate(ImitateArgs(demos=demos, out=tmp_path, policy="lm", model=model,
                                  max_demos=10, epochs=3, batch_size=8, lr=3e-3,
                                  val_episodes=3))
    hist = summary["history"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"] - 0.2
    policy = load_policy(tmp_path)
    assert isinstance(policy, LMPolicy) and policy.config.model == model


def test_lm_policy_needs_a_model(tmp_path, demos):
    with pytest.raises(ValueError, match="--model"):
        imitate(ImitateArgs(demos=demos, out=tmp_path, policy="lm"))


def test_bar_chart_tolerates_wilson_rounding(tmp_path):
    from rlft.training.benchmark import bar_chart

    row = {"env": "e", "name": "expert", "success": 1.0, "success_ci": (0.9, 0.9999999999)}
    bar_chart([row, {**row, "name": "random", "success": 0.0, "success_ci": (1e-17, 0.1)}],
              tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_an_interrupted_collect_is_refused_then_redone(tmp_path, capsys):
    out = tmp_path / "demos"
    collect("rlft/Shop-v0", 2, out, seed=0)
    full = (out / "trajectories.jsonl").read_text()
    (out / "meta.json").unlink()  # killed before its last write
    with open(out / "trajectories.jsonl", "a") as f:
        f.write('{"episode": 2, "step": 0')  # and mid-record
    with pytest.raises(ValueError, match="interrupted collect"):
        load_demos(out)
    with pytest.raises(ValueError, match="interrupted collect"):
        imitate(ImitateArgs(demos=out, out=tmp_path / "il"))
    collect("rlft/Shop-v0", 2, out, seed=0)
    assert "interrupted collect" in capsys.readouterr().out
    assert (out / "trajectories.jsonl").read_text() == full
    assert load_demos(out)[0]["episodes"] == 2


def test_bad_training_settings_get_one_line(tmp_path, demos, capsys):
    for argv in (["imitate", "--demos", str(demos), "--out", str(tmp_path / "a"), "--epochs", "0"],
                 ["imitate", "--demos", str(demos), "--out", str(tmp_path / "b"),
                  "--policy-config", "nonsense=1"],
                 ["collect", "--episodes", "-3", "--out", str(tmp_path / "c")],
                 ["evaluate", "--env", "rlft/Nope-v0", "--episodes", "1"],
                 ["evaluate", "--episodes", "0"],
                 ["benchmark", "--episodes", "-3", "--out", str(tmp_path / "bench")],
                 ["collect", "--env", "rlft/Shop-v9", "--episodes", "1",
                  "--out", str(tmp_path / "c")],
                 ["imitate", "--env", "rlft/Nope-v0", "--demos", str(demos),
                  "--out", str(tmp_path / "e")],
                 ["play", "rlft/Nope-v0"],
                 ["train", "ppo", "--env", "rlft/Nope-v0", "--out", str(tmp_path / "f")],
                 ["train", "ppo", "--updates", "-3", "--out", str(tmp_path / "g")],
                 ["train", "ppo", "--minibatch-size", "0", "--out", str(tmp_path / "h")],
                 ["evaluate", "--agent", str(demos)],  # a folder that is no checkpoint
                 ["train", "ppo", "--num-envs", "0", "--out", str(tmp_path / "d")]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("rlft: error: ") and err.count("\n") == 1, (argv, err)
    for never_made in ("c", "bench.md", "g", "h"):
        assert not (tmp_path / never_made).exists()


def test_collect_binds_an_agent_factory_to_the_recording_env(tmp_path):
    """An expert reads privileged state, so it must act on the env being recorded: collect
    takes a function of that env (an expert bound to another env would wander)."""
    from rlft.envs.web.research.expert import ResearchExpert

    meta = collect("rlft/Research-v0", 5, tmp_path / "d", seed=0,
                   agent=lambda env: ResearchExpert(env))
    assert meta["agent"] == "ResearchExpert" and meta["success"] == 1.0


def test_env_kwargs_travel_from_collect_to_imitate_evaluate_benchmark(tmp_path, tiny_encoder,
                                                                      capsys, monkeypatch):
    """Another catalog (``--env-kwargs``): collect records it, imitate validates on it (the
    demos' env, not the registered default), evaluate and benchmark play it."""
    demos, model = tmp_path / "demos", tmp_path / "il"
    main(["collect", "--env", "rlft/Shop-v0", "--episodes", "4", "--out", str(demos),
          "--env-kwargs", "catalog_seed=5", "num_products=300"])
    meta, episodes = load_demos(demos)
    assert meta["env_kwargs"] == {"catalog_seed": 5, "num_products": 300}
    other = gym.make("rlft/Shop-v0", catalog_seed=5, num_products=300).reset(seed=0)[0]["goal"]
    default = gym.make("rlft/Shop-v0").reset(seed=0)[0]["goal"]
    assert episodes[0][0]["goal"] == other != default

    made: list[dict] = []
    real_make = gym.make

    def spy(env_id, *args, **kwargs):
        made.append(kwargs)
        return real_make(env_id, *args, **kwargs)

    monkeypatch.setattr(gym, "make", spy)
    main(["imitate", "--demos", str(demos), "--out", str(model), "--model", tiny_encoder,
          "--epochs", "1", "--val-episodes", "2", "--eval-episodes", "1",
          "--env-kwargs", "num_products=400"])  # added to (and overriding) the demos' own
    assert len(made) >= 3  # the probe, the val expert turns, the val evaluation
    assert all(k.get("catalog_seed") == 5 and k.get("num_products") == 400 for k in made)
    monkeypatch.undo()
    capsys.readouterr()

    prefix = tmp_path / "bench"
    main(["benchmark", "--envs", "rlft/Shop-v0", "--agents", "expert", "--episodes", "2",
          "--out", str(prefix), "--env-kwargs", "catalog_seed=5", "num_products=300"])
    rows = json.loads(prefix.with_suffix(".json").read_text())
    assert rows[0]["env_kwargs"] == {"catalog_seed": 5, "num_products": 300}
    assert rows[0]["success"] == 1.0
    assert 'Envs made with {"catalog_seed": 5, "num_products": 300}' in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--env-kwargs", "split=val"], "pass --split instead"),
    (["evaluate", "--env-kwargs", "catalog_seed"], "takes KEY=VALUE pairs"),
    (["evaluate", "--env-kwargs", "colour=1"], "unexpected keyword argument 'colour'"),
    (["evaluate", "--env-kwargs", 'catalog_seed="5"'], "catalog_seed must be an int"),
    (["play", "rlft/Shop-v0", "--env-kwargs", "reward_mode=sparse"], "--reward-mode"),
])
def test_bad_env_kwargs_get_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv[:1], *(["--episodes", "1"] if argv[0] == "evaluate" else []), *argv[1:]])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("rlft: error:") and message in err and "Traceback" not in err
