"""ClipPolicy: heatmaps, action <-> index mapping, save/load, imitation on tabletop demos."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlft.envs  # noqa: F401
from rlft.agents import ClipPolicy, ClipPolicyConfig, Turn, load_policy, make_agent
from rlft.agents.clip_policy import HeatmapOutput
from rlft.agents.tiny_models import make_tiny_clip
from rlft.training.configs import ImitateArgs
from rlft.training.demos import collect
from rlft.training.imitation import imitate


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return str(make_tiny_clip(tmp_path_factory.mktemp("tiny-clip")))


@pytest.fixture(scope="module")
def scene():
    env = gym.make("rlft/PutBlockInBowl-v0")
    obs, info = env.reset(seed=0)
    action = env.unwrapped.expert().act(obs, info)
    env.close()
    return obs, np.asarray(action, dtype=np.float32)


def test_heatmaps_are_distributions_and_indices_round_trip(tiny_clip, scene):
    obs, action = scene
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip)).eval()
    h, w = policy.grid
    assert (h, w) == (40, 80)
    pick, place = policy.action_to_indices(action)
    with torch.no_grad():  # the place heatmap is the one given this pick (transport)
        out = policy([obs["goal"]], obs["color"], obs["depth"], picks=torch.tensor([pick]))
    assert out.pick.shape == (1, h * w) and out.place.shape == (1, 8 * h * w)
    assert torch.isclose(out.pick.softmax(-1).sum(), torch.tensor(1.0))
    ent = out.entropy()
    assert 0 < float(ent) <= math.log(h * w) + math.log(8 * h * w) + 1e-3
    back = policy.indices_to_action(pick, place)
    cell = 0.5 / h  # metres per heatmap row (and column: 1.0 m / 80)
    assert np.allclose(back[:4], action[:4], atol=cell)
    assert abs((back[4] - action[4] + math.pi) % (2 * math.pi) - math.pi) <= math.pi / 8 + 1e-6
    ev = policy.rl_evaluate([policy.encode(Turn.from_env(obs, {}))], [(pick, place)])
    assert torch.allclose(ev.log_probs.sum(-1),
                          out.log_prob(torch.tensor([pick]), torch.tensor([place])))
    assert torch.allclose(ev.entropy, ent) and ev.values.shape == (1,)


def test_save_load_round_trip(tmp_path, tiny_clip, scene):
    obs, _ = scene
    torch.manual_seed(1)
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, rotations=4)).eval()
    policy.save_pretrained(tmp_path)
    loaded = load_policy(tmp_path)
    assert isinstance(loaded, ClipPolicy) and loaded.config == policy.config
    with torch.no_grad():
        a = policy([obs["goal"]], obs["color"], obs["depth"])
        b = loaded([obs["goal"]], obs["color"], obs["depth"])
    assert torch.allclose(a.pick, b.pick) and torch.allclose(a.place, b.place)
    assert np.array_equal(policy.act(obs, {}), loaded.act(obs, {}))


def test_clip_policy_on_a_web_env_says_what_to_do(tmp_path, tiny_clip):
    ClipPolicy(ClipPolicyConfig(clip=tiny_clip)).save_pretrained(tmp_path)
    env = gym.make("rlft/Shop-v0")
    with pytest.raises(ValueError, match="tabletop"):
        make_agent(str(tmp_path), env)
    env.close()


def test_imitation_on_tabletop_demos_lowers_val_loss(tmp_path, tiny_clip):
    demos = tmp_path / "demos"
    collect("rlft/PutBlockInBowl-v0", 4, demos)
    assert list(demos.glob("episode_*.npz"))
    summary = imitate(ImitateArgs(demos=demos, out=tmp_path / "il", env="rlft/PutBlockInBowl-v0",
                                  policy="clip", model=tiny_clip, epochs=4, batch_size=4,
                                  lr=1e-3, val_episodes=2))  # (3e-3 overfits 2 demos' pixels)
    hist = summary["history"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    policy = load_policy(tmp_path / "il")
    env = gym.make("rlft/PutBlockInBowl-v0")
    obs, _ = env.reset(seed=5)
    assert env.action_space.contains(policy.act(obs, {}))
    env.close()


def test_pretrain_clip_cli_learns_captions_and_feeds_the_policy(tmp_path, capsys):
    import json

    from rlft.training.cli import main

    out = tmp_path / "clip"
    main(["pretrain-clip", "--out", str(out), "--scenes", "3", "--eval-scenes", "1",
          "--steps", "25", "--hidden", "32", "--batch-size", "16"])
    assert "CLIP saved" in capsys.readouterr().out
    summary = json.loads((out / "pretrain_summary.json").read_text())
    assert summary["last_loss"] < summary["first_loss"]
    assert summary["last_dense_loss"] < summary["first_dense_loss"]
    assert summary["retrieval_train"] > 3 * summary["chance"]
    # broad pretraining paints the tasks' unseen colours and more, never the held-back ones
    assert {"orange", "purple", "teal"} <= set(summary["colors_trained"])
    assert not set(summary["colors_never_seen"]) & set(summary["colors_trained"])
    for split in ("test_seen", "unseen", "never"):
        assert 0.0 <= summary[f"grounding_{split}"] <= 1.0
    policy = ClipPolicy(ClipPolicyConfig(clip=str(out)))
    env = gym.make("rlft/PutBlockInBowl-v0")
    obs, _ = env.reset(seed=0)
    assert env.action_space.contains(policy.act(obs, {}))
    env.close()


def test_augment_moves_the_action_with_the_heightmap(tiny_clip, scene):
    obs, action = scene
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, max_shift=2))
    gen = torch.Generator().manual_seed(3)
    env = gym.make("rlft/PutBlockInBowl-v0")
    ws = env.unwrapped.workspace
    env.close()
    r0, c0 = ws.table_to_pixel(float(action[0]), float(action[1]))
    before = obs["color"][int(r0), int(c0)]
    for _ in range(8):
        color, depth, a, _, _ = policy.augment(obs["color"], obs["depth"], action, gen)
        assert color.shape == obs["color"].shape and depth.shape == obs["depth"].shape
        r, c = ws.table_to_pixel(float(a[0]), float(a[1]))
        # the picked pixel shows the same block colour after the transform
        assert np.array_equal(color[int(r), int(c)], before)
        assert abs(depth[int(r), int(c)] - obs["depth"][int(r0), int(c0)]) < 1e-6


def test_a_column_flip_mirrors_left_and_right_in_the_goal(tiny_clip):
    from rlft.agents.clip_policy import mirror_goal

    assert mirror_goal("move the red ring to the Left peg") == "move the red ring to the right peg"
    assert mirror_goal("move the tower from the right peg to the middle peg") == (
        "move the tower from the left peg to the middle peg")
    assert mirror_goal("put the bright blocks in a green bowl") == (
        "put the bright blocks in a green bowl")  # whole words only
    env = gym.make("rlft/TowersOfHanoi-v0")
    seed = 0
    while True:  # a scene whose first move names a side
        obs, _ = env.reset(seed=seed)
        goal = str(obs["goal"])
        if " left peg" in goal or " right peg" in goal:
            break
        seed += 1
    action = env.unwrapped.expert().act(obs, {})
    pegs_y = [float(p[1]) for p in env.unwrapped.task.pegs]
    env.close()
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, max_shift=0))
    (y0, y1), seen = policy.config.y_range, set()
    sides = ("left", "middle", "right")  # the pegs in +y order, left to right in the image
    for s in range(12):
        *_, a, _, g = policy.augment(obs["color"], obs["depth"], action,
                                     torch.Generator().manual_seed(s), goal=goal)
        flipped = abs(float(a[3]) - float(action[3])) > 1e-6
        seen.add(flipped)
        assert g == (mirror_goal(goal) if flipped else goal)
        # in the (possibly mirrored) image, the peg the goal names is where the action places
        ys = sorted(y0 + y1 - y for y in pegs_y) if flipped else sorted(pegs_y)
        named = next(k for k, side in enumerate(sides) if f" {side} peg" in g)
        assert min(range(3), key=lambda k: abs(ys[k] - float(a[3]))) == named
    assert seen == {True, False}


def test_soft_targets_peak_on_the_demonstrated_pixel(tiny_clip):
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, rotations=4, target_sigma=1.0))
    h, w = policy.grid
    pick, place = torch.tensor([5 * w + 7]), torch.tensor([2 * h * w + 10 * w + 3])
    pt, qt = policy.soft_targets(pick, place)
    assert torch.isclose(pt.sum(), torch.tensor(1.0)) and int(pt.argmax()) == int(pick)
    assert int(qt.argmax()) == int(place) and float(qt[0, : 2 * h * w].sum()) == 0.0
    assert 0.1 < float(pt.max()) < 0.3  # a sigma-1 Gaussian spreads over neighbours
    hard, _ = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, target_sigma=0.0)).soft_targets(
        pick, place)
    assert float(hard[0, int(pick)]) == 1.0


def test_critic_has_its_own_trunk(tiny_clip, scene, tmp_path):
    """Fitting the fresh critic in PPO must not move what the heatmaps read; a checkpoint
    that lacks the critic's trunk is refused with the file named."""
    obs, _ = scene
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip))
    out = policy([obs["goal"]], obs["color"], obs["depth"])
    (out.values - 1.0).square().sum().backward()
    grads = {n: p.grad for n, p in policy.named_parameters() if p.requires_grad}
    actor = [n for n in grads if not n.startswith(("value_fcn.", "value_head."))]
    assert actor and all(grads[n] is None or not grads[n].any() for n in actor)
    assert any(grads[n] is not None and grads[n].abs().sum() > 0 for n in grads
               if n.startswith("value_fcn."))
    policy.save_pretrained(tmp_path / "p")
    from safetensors.torch import load_file, save_file

    from rlft.agents.checkpoint import HEAD_NAME

    weights = load_file(str(tmp_path / "p" / HEAD_NAME))
    save_file({k: v for k, v in weights.items() if not k.startswith("value_fcn.")},
              str(tmp_path / "p" / HEAD_NAME))
    with pytest.raises(ValueError, match=r"head\.safetensors does not fit.*value_fcn"):
        ClipPolicy.from_pretrained(tmp_path / "p")


def test_rl_evaluate_scores_what_rl_act_sampled(tiny_clip):
    from rlft.agents.rl import RLPolicy

    torch.manual_seed(0)
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip)).eval()
    assert isinstance(policy, RLPolicy)
    env = gym.make("rlft/PutBlockInBowl-v0")
    feats = []
    for s in range(3):
        obs, info = env.reset(seed=s)
        feats.append(policy.encode(Turn.from_env(obs, info)))
    step = policy.rl_act(feats, torch.Generator().manual_seed(0))
    assert step.log_probs.shape == (3, 2) and step.mask.sum() == 6
    for a in step.env_actions:
        assert env.action_space.contains(a)
    env.close()
    ev = policy.rl_evaluate(feats, step.actions)
    torch.testing.assert_close(ev.log_probs.detach(), step.log_probs)
    torch.testing.assert_close(ev.values.detach(), step.values)
    torch.testing.assert_close(policy.rl_values(feats).detach(), step.values)
    assert ev.dist_log_probs is None and ev.log_probs.requires_grad
    # the cached features score like a fresh forward pass over the observation
    with torch.no_grad():
        out = policy([obs["goal"]], obs["color"], obs["depth"])
    p, q = step.actions[2]
    torch.testing.assert_close(out.log_prob(torch.tensor([p]), torch.tensor([q])),
                               step.log_probs[2:].sum(1, keepdim=True).view(1))


def test_ppo_smoke_run_on_tabletop(tmp_path, tiny_clip):
    import json

    from safetensors.torch import load_file

    from rlft.agents.rl import reference_weights
    from rlft.training.ppo import PPOArgs, train_ppo

    torch.manual_seed(0)
    start = tmp_path / "start"
    ClipPolicy(ClipPolicyConfig(clip=tiny_clip, channels=8, rotations=2)).save_pretrained(start)
    summary = train_ppo(PPOArgs(env="rlft/PutBlockInBowl-v0", policy=str(start),
                                out=str(tmp_path / "ppo"), reward_mode="dense", num_envs=2,
                                num_steps=2, updates=2, update_epochs=1, minibatch_size=4,
                                learning_rate=1e-2, eval_episodes=0, progress=False,
                                checkpoint_every=0))
    assert summary["global_step"] == 2 * 2 * 2
    assert json.loads((tmp_path / "ppo" / "summary.json").read_text())["updates"] == 2
    before = load_file(str(start / "head.safetensors"))
    after = load_file(str(tmp_path / "ppo" / "policy" / "head.safetensors"))
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # with the checkpoint's weights swapped in, the trained policy scores like the checkpoint
    trained, ref = load_policy(tmp_path / "ppo" / "policy"), load_policy(start)
    env = gym.make("rlft/PutBlockInBowl-v0")
    obs, info = env.reset(seed=1)
    env.close()
    feats = [trained.encode(Turn.from_env(obs, info))]
    with torch.no_grad():
        want = ref.rl_values(feats)
        moved = trained.rl_values(feats)
        with reference_weights(trained, {k: v for k, v in before.items()}):
            back = trained.rl_values(feats)
            back_lp = trained._rl_heads(feats).pick
    assert not torch.allclose(moved, want)
    torch.testing.assert_close(back, want)
    torch.testing.assert_close(back_lp, ref._rl_heads(feats).pick)


def test_goal_phrases_split_templated_goals_and_fall_back_to_the_whole_goal():
    from rlft.agents.clip_policy import goal_phrases

    assert goal_phrases("put the green blocks in a brown bowl") == ("a green block",
                                                                     "a brown bowl")
    assert goal_phrases("Put  the red blocks in a blue bowl") == ("a red block", "a blue bowl")
    assert goal_phrases("put all the gray blocks in the pink zone") == ("a gray block",
                                                                        "a pink zone")
    assert goal_phrases("stack the blocks") == ("stack the blocks", "stack the blocks")
    # every task's sub-goals have phrases (rlft/Tabletop-v0 plays them all)
    assert goal_phrases("pack the teddy bear in the brown box") == ("a teddy bear", "a brown box")
    assert goal_phrases("put the red block on the darkest brown square") == (
        "a red block", "a darkest brown square")
    assert goal_phrases("put the cyan block on the green and blue blocks") == (
        "a cyan block", "a green block|a blue block")
    assert goal_phrases("move the red ring to the left peg") == ("a red ring", "the left peg")


def test_a_place_of_two_phrases_is_grounded_with_their_mean_embedding(tiny_clip):
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip)).eval()
    pick, place = policy.embed_goals(["put the cyan block on the green and blue blocks"])[0]
    parts = policy.embed_texts(["a green block", "a blue block"])
    assert torch.allclose(place, torch.nn.functional.normalize(parts.mean(0), dim=-1))
    assert torch.allclose(pick, policy.embed_texts(["a cyan block"])[0])


def test_grounding_maps_score_cells_by_phrase_similarity(tiny_clip, scene):
    obs, _ = scene
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip)).eval()
    _, _, grid = policy._images(obs["color"], obs["depth"])
    assert grid.shape[-2:] == policy.grid
    assert torch.allclose(grid.norm(dim=1), torch.ones(1, *policy.grid), atol=1e-4)
    goal = "put the red blocks in a blue bowl"
    ground = policy.grounding([goal], grid)
    text = policy.embed_texts(["a red block", "a blue bowl"])
    scale = float(policy.clip.logit_scale.exp())
    r, c = 7, 11
    assert torch.allclose(ground[0, :, r, c], scale * text @ grid[0, :, r, c], atol=1e-5)
    # without the phrase split both maps read the whole goal
    whole = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, phrases=False)).eval()
    g2 = whole.grounding([goal], grid)
    assert torch.allclose(g2[0, 0], g2[0, 1])


def test_augment_moves_the_embedding_grid_with_the_action(tiny_clip, scene):
    obs, action = scene
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, max_shift=2))
    h, w = policy.grid
    # a grid that names its own cell, so where a value lands shows how the grid moved
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                                torch.arange(w, dtype=torch.float32), indexing="ij")
    grid = torch.stack([rows, cols])
    pick0, _ = policy.action_to_indices(action)
    gen = torch.Generator().manual_seed(5)
    for _ in range(8):
        _, _, a, g, _ = policy.augment(obs["color"], obs["depth"], action, gen, grid=grid)
        pick, _ = policy.action_to_indices(a)
        r, c = divmod(pick, w)
        assert (int(g[0, r, c]), int(g[1, r, c])) == divmod(pick0, w)


def test_selection_key_prefers_success_then_score_then_loss():
    from rlft.training.imitation import selection_key

    rows = [{"train_loss": 1.0, "val_loss": 0.5},
            {"train_loss": 1.0, "val_loss": 0.9, "val_success": 0.4, "val_score": 0.5},
            {"train_loss": 1.0, "val_loss": 0.7, "val_success": 0.6, "val_score": 0.6},
            {"train_loss": 1.0, "val_loss": 0.6, "val_success": 0.6, "val_score": 0.6}]
    keys = [selection_key(r, "val_success") for r in rows]
    assert keys[0] is None
    assert min(k for k in keys if k is not None) == keys[3]
    assert min(selection_key(r, "val_loss") for r in rows) == (0.5,)


def test_imitation_selects_the_epoch_by_rollout_success(tmp_path, tiny_clip):
    from rlft.training.imitation import rollout_success

    demos = tmp_path / "demos"
    collect("rlft/PutBlockInBowl-v0", 2, demos)
    summary = imitate(ImitateArgs(demos=demos, out=tmp_path / "il", env="rlft/PutBlockInBowl-v0",
                                  policy="clip", model=tiny_clip, epochs=3, batch_size=4,
                                  lr=3e-2, val_episodes=1, select_by="val_success",
                                  select_episodes=1, select_every=2))
    hist = summary["history"]
    checked = [r for r in hist if "val_success" in r]
    assert [r["epoch"] for r in checked] == [1, 2]  # every 2 epochs and the last
    best = min(checked, key=lambda r: (-r["val_success"], -r["val_score"], r["val_loss"]))
    assert summary["best_epoch"] == best["epoch"]
    # the saved policy is that epoch's: its rollouts on the same episodes score the same
    again = rollout_success(load_policy(tmp_path / "il"), "rlft/PutBlockInBowl-v0", 1,
                            seed=10_000)
    assert again == {"success": best["val_success"], "score": best["val_score"]}


def test_dense_features_are_the_projected_patch_tokens_upsampled(tiny_clip, scene):
    from rlft.agents.clip_policy import dense_image_features, normalize_pixels

    obs, _ = scene
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip)).eval()
    assert policy.config.features == "dense"
    rgb, _, grid = policy._images(obs["color"], obs["depth"])
    assert grid.shape == (1, policy.clip.config.projection_dim, 40, 80)
    assert torch.allclose(grid.norm(dim=1), torch.ones(1, 40, 80), atol=1e-4)
    # by hand: one pass over the 160 x 320 heightmap = 20 x 40 patch tokens of 8 pixels,
    # each through the class token's path into the joint space
    with torch.no_grad():
        vision = policy.clip.vision_model
        hidden = vision(pixel_values=normalize_pixels(rgb),
                        interpolate_pos_encoding=True).last_hidden_state
        assert hidden.shape[1] == 1 + 20 * 40
        tokens = policy.clip.visual_projection(vision.post_layernorm(hidden[:, 1:]))
        patches = tokens[0].view(20, 40, -1)  # row-major: token 40 * r + c is patch (r, c)
        # a 2x bilinear upsample with cell centres aligned (a cell is a quarter of a patch)
        want = torch.nn.functional.interpolate(patches.permute(2, 0, 1)[None], size=(40, 80),
                                               mode="bilinear", align_corners=False)
    torch.testing.assert_close(grid, torch.nn.functional.normalize(want, dim=1))
    # far from the edges the mean of a patch's 4 cells points along the patch
    cells = grid[0, :, 20:22, 40:42].mean((1, 2))
    assert torch.nn.functional.cosine_similarity(cells, patches[10, 20], dim=0) > 0.95
    same = dense_image_features(policy.clip, rgb, policy.grid)
    assert torch.equal(same, grid)
    # the image size must be a multiple of the patch size
    with pytest.raises(ValueError, match="multiple of the CLIP's patch size"):
        dense_image_features(policy.clip, rgb[..., :-3], (40, 79))


def test_crop_features_remain_and_old_checkpoints_read_as_crops(tmp_path, tiny_clip, scene):
    import json

    obs, _ = scene
    crops = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, features="crops")).eval()
    _, _, grid = crops._images(obs["color"], obs["depth"])
    assert grid.shape[-2:] == (40, 80)
    dense = ClipPolicy(ClipPolicyConfig(clip=tiny_clip)).eval()
    assert not torch.allclose(grid, dense._images(obs["color"], obs["depth"])[2])
    with pytest.raises(ValueError, match="features must be one of"):
        ClipPolicyConfig(clip=tiny_clip, features="patches")
    # a checkpoint written before the field existed was trained on crop embeddings
    crops.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "rlft_policy.json").read_text())
    del meta["config"]["features"]
    (tmp_path / "rlft_policy.json").write_text(json.dumps(meta))
    assert load_policy(tmp_path).config.features == "crops"


def test_patch_labels_and_paint_follow_the_objects():
    import random

    from rlft.training.pretrain_clip import (
        TABLE_CAPTION,
        Scene,
        SceneObject,
        paint,
        patch_labels,
    )

    labels = np.full((16, 24), -1, dtype=np.int16)
    labels[0:8, 0:8] = 0          # object 0 fills patch (0, 0)
    labels[8:10, 8:16] = 1        # object 1 covers 2/8 = 0.25 of patch (1, 1): labelled
    labels[0:1, 16:24] = 1        # 1/8 of patch (0, 2): below MIN_COVER, the table
    index = {TABLE_CAPTION: 0, "a red block": 1, "a duck": 2}
    out = patch_labels(labels, ["a red block", "a duck"], 8, index)
    assert out.tolist() == [[1, 0, 0], [0, 2, 0]]
    image = np.zeros((16, 24, 3), dtype=np.uint8)
    image[labels == 0] = (225, 87, 89)
    image[0:2, 0:2] = (9, 9, 9)   # a part of object 0 in another colour stays
    image[labels == 1] = (255, 216, 51)
    scene = Scene(image, labels, [SceneObject("block", "red", (225, 87, 89), (4, 4)),
                                  SceneObject("duck", None, (255, 216, 51), (9, 12))], "goal")
    painted, caps = paint(scene, {"teal": (0.1, 0.5, 0.5)}, 1.0, random.Random(0))
    assert caps == ["a teal block", "a duck"]
    assert (painted[2:8, 2:8] == (26, 128, 128)).all()
    assert (painted[0:2, 0:2] == 9).all() and (painted[labels == 1] == (255, 216, 51)).all()
    kept, caps = paint(scene, {"teal": (0.1, 0.5, 0.5)}, 0.0, random.Random(0))
    assert caps == ["a red block", "a duck"] and np.array_equal(kept, image)


def test_object_labels_put_the_expert_pick_on_its_object():
    from rlft.training.pretrain_clip import object_labels

    env = gym.make("rlft/PutBlockInBowl-v0")
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        action = env.unwrapped.expert().act(obs, info)
        labels, objects = object_labels(env)
        body, _ = env.unwrapped.sim.body_under(float(action[0]), float(action[1]))
        r, c = env.unwrapped.workspace.table_to_pixel(float(action[0]), float(action[1]))
        assert objects[int(labels[int(r), int(c)])].body == body
        assert (labels == -1).mean() > 0.5  # most of the table is bare
    env.close()


def test_one_policy_learns_from_and_acts_in_all_six_tasks(tmp_path, tiny_clip):
    from rlft.agents.clip_policy import goal_phrases
    from rlft.envs.tabletop.tasks import TASKS
    from rlft.training.evaluate import evaluate

    demos = tmp_path / "demos"
    collect("rlft/Tabletop-v0", 6, demos)  # seeds 0..5: one demo of each task
    summary = imitate(ImitateArgs(demos=demos, out=tmp_path / "il", env="rlft/Tabletop-v0",
                                  policy="clip", model=tiny_clip, epochs=2, batch_size=8,
                                  lr=3e-3, val_episodes=0,
                                  policy_config=("text_gates=true", "rotations=36")))
    assert summary["demo_episodes"] == 6
    hist = summary["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    policy = load_policy(tmp_path / "il")
    assert policy.config.rotations == 36 and policy.config.text_gates
    # every task's (sub-)goal has its phrases, and the policy acts in all six
    env = gym.make("rlft/Tabletop-v0")
    played = set()
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        played.add(info["task"])
        pick, place = goal_phrases(str(obs["goal"]))
        assert pick != place and pick.startswith("a ")
        assert env.action_space.contains(policy.act(obs, info))
    assert played == set(TASKS)
    assert evaluate(env, policy, 6, seed=0).episodes == 6
    env.close()


def test_a_pick_that_changed_nothing_is_not_tried_again_on_the_same_scene(tiny_clip):
    env = gym.make("rlft/PutBlockInBowl-v0")
    obs, info = env.reset(seed=0)
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip)).eval()
    first = policy.act(obs, info)
    # pick the bare table: rejected, the scene unchanged
    table = np.array([0.26, -0.49, 0.5, 0.0, 0.0], dtype=np.float32)
    obs2, _, _, _, info2 = env.step(table)
    assert info2["action_error"]
    turn = Turn.from_env(obs2, info2, history=[table], history_observations=[obs])
    feats = policy.encode(turn)
    blocked = policy.action_to_indices(table)[0]
    assert feats.blocked == (blocked,)
    with torch.no_grad():
        out = policy._rl_heads([feats])
    assert out.pick[0, blocked] == float("-inf") and torch.isfinite(out.entropy()).all()
    # a greedy policy whose argmax was the rejected cell now takes another
    turn = Turn.from_env(obs2, info2, history=[first], history_observations=[obs])
    feats = policy.encode(turn)
    chosen = policy.action_to_indices(policy.choose(feats))[0]
    assert feats.blocked == (policy.action_to_indices(first)[0],) and chosen != feats.blocked[0]
    ev = policy.rl_evaluate([feats], [(chosen, 0)])
    assert torch.isfinite(ev.log_probs).all() and torch.isfinite(ev.entropy).all()
    # once the scene changes, nothing is masked; and the option turns it off
    moved = env.unwrapped.expert().act(obs2, info2)
    obs3, *_ = env.step(moved)
    later = Turn.from_env(obs3, {}, history=[table, moved], history_observations=[obs, obs2])
    assert policy.encode(later).blocked == ()
    off = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, avoid_rejected=False)).eval()
    assert off.encode(turn).blocked == ()
    env.close()


def test_an_object_put_back_where_it_was_counts_as_unchanged_and_is_not_picked_again(tiny_clip):
    env = gym.make("rlft/PutBlockInBowl-v0")
    obs, info = env.reset(seed=0)
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip)).eval()
    # pick the block and put it down on its own spot: accepted, and the physics leaves it
    # a little off, so the heightmap is not exactly the same
    expert = np.asarray(env.unwrapped.expert().act(obs, info), dtype=np.float32)
    back = expert.copy()
    back[2:4] = expert[0:2]
    back[4] = 0.0
    obs2, _, _, _, info2 = env.step(back)
    assert not info2["action_error"]
    assert not np.array_equal(obs2["depth"], obs["depth"])
    assert policy.scene_unchanged(obs["depth"], obs2["depth"])
    turn = Turn.from_env(obs2, info2, history=[back], history_observations=[obs])
    assert policy.encode(turn).blocked == (policy.action_to_indices(back)[0],)
    # the expert's real move is a change, so nothing is masked after it
    obs3, *_ = env.step(expert)
    assert not policy.scene_unchanged(obs2["depth"], obs3["depth"])
    later = Turn.from_env(obs3, {}, history=[back, expert], history_observations=[obs, obs2])
    assert policy.encode(later).blocked == ()
    env.close()


def test_scene_unchanged_counts_the_area_that_moved_more_than_the_height_tolerance(tiny_clip):
    config = ClipPolicyConfig(clip=tiny_clip)
    policy = ClipPolicy(config)
    rows, cols = config.heightmap
    pixel = (0.5 / rows) * (1.0 / cols)  # the default workspace: 0.5 m x 1 m
    limit = int(config.unchanged_area / pixel)  # pixels that make the area limit
    base = np.zeros(config.heightmap, dtype=np.float32)
    jitter = base + 0.9 * config.unchanged_height  # everywhere, but under the tolerance
    assert policy.scene_unchanged(base, jitter)
    moved = base.copy()
    moved.flat[:limit - 1] = 0.04  # a block's height, on just under the area
    assert policy.scene_unchanged(base, moved)
    moved.flat[:limit + 1] = 0.04
    assert not policy.scene_unchanged(base, moved)
    assert not policy.scene_unchanged(base, base[:10])  # another heightmap size
    with pytest.raises(ValueError, match="unchanged_area"):
        ClipPolicyConfig(clip=tiny_clip, unchanged_area=-1.0)


def test_sub_cell_offsets_are_learned_and_move_the_action(tiny_clip, scene, tmp_path):
    obs, action = scene
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, offsets=True))
    turn = policy.encode(Turn(str(obs["goal"]), obs))
    pick, place = policy.action_to_indices(action)
    want = np.array(policy.cell_offsets(action))
    assert np.all(np.abs(want) <= 0.5)
    # cell centre + offset is the demonstrated action again; with the transport (the
    # default) the place's offset is the pick's plus the correction read at the place cell
    assert policy.config.transport
    exact = torch.zeros(4, *policy.grid)
    h, w = policy.grid
    relative = np.concatenate([want[:2], want[2:] - want[:2]])
    for part, cell in ((0, pick), (1, place % (h * w))):
        exact[2 * part: 2 * part + 2, cell // w, cell % w] = torch.tensor(
            relative[2 * part:][:2], dtype=torch.float32)
    np.testing.assert_allclose(policy.indices_to_action(pick, place, exact)[:4], action[:4],
                               atol=1e-5)
    # behaviour cloning fits the offsets at the demonstrated cells
    optim = torch.optim.Adam(policy.parameters(), lr=3e-3)
    policy.train()
    for _ in range(60):
        loss, _ = policy.imitation_loss([turn], [action])
        optim.zero_grad()
        loss.backward()
        optim.step()
    policy.eval()
    with torch.no_grad():
        out = policy._rl_heads([turn], offsets=True)
        assert policy._rl_heads([turn]).offsets is None  # PPO's updates do not need them
    got = policy.indices_to_action(pick, place, out.offsets[0])
    centre = policy.indices_to_action(pick, place)
    assert np.abs(got[:4] - action[:4]).max() < 0.5 * np.abs(centre[:4] - action[:4]).max() + 1e-4
    # the setting is saved; a checkpoint written before it loads without offsets
    policy.save_pretrained(tmp_path)
    assert ClipPolicy.from_pretrained(tmp_path).config.offsets
    import json

    meta = json.loads((tmp_path / "rlft_policy.json").read_text())
    del meta["config"]["offsets"]
    (tmp_path / "rlft_policy.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not fit"):  # its heads say otherwise
        ClipPolicy.from_pretrained(tmp_path)


def test_transport_places_relative_to_the_pick_at_every_rotation(tiny_clip):
    """CLIPort's transport: a feature ``u0`` cells from the pick in the key map, matched with
    a target in the query map, puts the place where the turned object lands that feature on
    the target: ``target - Rz(theta) u0``; moving the pick moves the place with it."""
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, rotations=8,
                                         transport_channels=1)).eval()
    h, w = policy.grid
    target, feature = (10, 50), (22, 31)

    def best_places(pick: tuple[int, int]) -> list[tuple[int, int]]:
        key, query = torch.zeros(1, 1, h, w), torch.zeros(1, 1, h, w)
        key[0, 0, feature[0], feature[1]] = 1.0  # e.g. a ring's centre, off the rim picked
        query[0, 0, target[0], target[1]] = 1.0  # e.g. the peg
        out = HeatmapOutput(torch.zeros(1, h * w), torch.zeros(1, 8 * h * w), torch.zeros(1),
                            None, (key, query))
        with torch.no_grad():
            place = policy.condition_place(out, torch.tensor([pick[0] * w + pick[1]]))
        assert place.transport is None  # conditioned once
        assert float(place.place.max()) == pytest.approx(1 / 9)  # 1 / sqrt(t k^2)
        return [divmod(int(m.argmax()), w) for m in place.place.view(8, h, w)]

    got = best_places((20, 30))
    u0 = (2, 1)  # the feature, from the pick
    for r, cell in enumerate(got):
        theta = -math.pi + 2 * math.pi * r / 8
        turned = (math.cos(theta) * u0[0] - math.sin(theta) * u0[1],
                  math.sin(theta) * u0[0] + math.cos(theta) * u0[1])
        assert cell == (target[0] - round(turned[0]), target[1] - round(turned[1]))
    # the same object picked elsewhere (the feature keeps its place on the table): the place
    # shifts by the same amount, so the object lands on the target again
    shifted = best_places((21, 29))
    assert got[4] == (8, 49) and shifted[4] == (9, 48)  # theta = 0: moved as the pick moved


def test_transport_is_saved_and_old_checkpoints_load_without_it(tiny_clip, scene, tmp_path):
    import json

    obs, action = scene
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, rotations=4)).eval()
    assert policy.config.transport
    # the query starts at zero (the transport grows from the base place map): give it weights
    assert not policy.transport_query.weight.any()
    with torch.no_grad():
        policy.transport_query.weight.normal_(0, 0.5)
    pick, place = policy.action_to_indices(action)
    turn = policy.encode(Turn(str(obs["goal"]), obs))
    # the place distribution depends on the pick it is conditioned on
    a = policy._rl_heads([turn], picks=torch.tensor([pick])).place
    b = policy._rl_heads([turn], picks=torch.tensor([(pick + 7 * 80 + 5) % (40 * 80)])).place
    assert not torch.allclose(a, b)
    policy.save_pretrained(tmp_path)
    loaded = ClipPolicy.from_pretrained(tmp_path)
    assert loaded.config.transport
    torch.testing.assert_close(loaded._rl_heads([turn], picks=torch.tensor([pick])).place, a)
    meta = json.loads((tmp_path / "rlft_policy.json").read_text())
    del meta["config"]["transport"]
    (tmp_path / "rlft_policy.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not fit"):  # its heads carry a transport
        ClipPolicy.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="odd"):
        ClipPolicyConfig(clip=tiny_clip, transport_crop=4)


def test_ppo_on_the_six_task_env_logs_success_per_task(tmp_path, tiny_clip):
    import json

    from rlft.envs.tabletop.tasks import TASKS
    from rlft.training.ppo import PPOArgs, _record_episode, success_by_task, train_ppo

    assert success_by_task({"task": ["a", "b", "a", ""], "success": [1.0, 0.0, 0.0, 1.0]}) == {
        "a": 0.5, "b": 0.0}
    # a finished episode is recorded with its own env's task, from the batched final_info
    episodes = {"return": [], "success": [], "score": [], "task": []}
    final = {"success": np.array([False, True]), "score": np.array([0.2, 1.0]),
             "task": np.array(["block-insertion", "towers-of-hanoi"])}
    _record_episode(episodes, 0.5, final, 1)
    _record_episode(episodes, -0.1, final, 0)
    assert episodes == {"return": [0.5, -0.1], "success": [1.0, 0.0], "score": [1.0, 0.2],
                        "task": ["towers-of-hanoi", "block-insertion"]}
    _record_episode(episodes, 0.0, {"success": np.array([True]), "score": np.array([1.0])}, 0)
    assert episodes["task"][-1] == ""  # an env that names no task
    assert success_by_task({"task": ["", ""], "success": [1.0, 0.0]}) == {}
    torch.manual_seed(0)
    start = tmp_path / "start"
    ClipPolicy(ClipPolicyConfig(clip=tiny_clip, channels=8, rotations=2)).save_pretrained(start)
    train_ppo(PPOArgs(env="rlft/Tabletop-v0", policy=str(start), out=str(tmp_path / "ppo"),
                      num_envs=2, num_steps=8, updates=2, update_epochs=1, minibatch_size=8,
                      eval_episodes=0, progress=False, checkpoint_every=0))
    history = json.loads((tmp_path / "ppo" / "summary.json").read_text())["history"]
    assert history
    for row in history:
        by_task = row["success_by_task"]
        assert by_task and set(by_task) <= set(TASKS) and all(0 <= v <= 1 for v in by_task.values())


def test_cell_pixels_feed_every_heightmap_pixel_and_old_checkpoints_average(tiny_clip, scene,
                                                                           tmp_path):
    import json

    obs, _ = scene
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, rotations=4)).eval()
    assert policy.config.cell_pixels
    turn = policy.encode(Turn(str(obs["goal"]), obs))
    d = policy.config.downsample
    assert turn.small.shape == (4 * d * d, *policy.grid)
    # channel k of cell (i, j) is pixel (d i + k // d, d j + k % d) of the heightmap
    color = obs["color"].astype(np.float32) / 255.0
    i, j = 17, 33
    for k in (0, 5, d * d - 1):  # red channel of three pixels of the cell
        r, c = d * i + k // d, d * j + k % d
        assert float(turn.small[k, i, j]) == pytest.approx(color[r, c, 0], abs=1e-3)
    depth = float(turn.small[3 * d * d, i, j])  # depth (x10) of the cell's first pixel
    assert depth == pytest.approx(10 * float(obs["depth"][d * i, d * j]), abs=1e-2)
    # the averaged input of checkpoints written before the field
    policy.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "rlft_policy.json").read_text())
    del meta["config"]["cell_pixels"]
    (tmp_path / "rlft_policy.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not fit"):  # its trunks read the cell embedding
        ClipPolicy.from_pretrained(tmp_path)
    averaged = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, rotations=4, cell_pixels=False))
    small = averaged.encode(Turn(str(obs["goal"]), obs)).small
    assert small.shape == (4, *policy.grid)
    assert float(small[0, i, j]) == pytest.approx(
        float(color[d * i: d * i + d, d * j: d * j + d, 0].mean()), abs=1e-5)


def test_unlikelihood_pushes_a_failed_pick_and_place_down(tiny_clip, scene):
    # the loss is -log(1 - p(pick) p(place | pick)) of the exact cells: its value is that
    # formula on the heads, and steps on it lower a pair that imitation had made likely
    obs, action = scene
    torch.manual_seed(0)
    policy = ClipPolicy(ClipPolicyConfig(clip=tiny_clip, rotations=4, augment=False,
                                         target_sigma=0.0))
    turn = policy.encode(Turn.from_env(obs, {}))
    pick, place = policy.action_to_indices(action)

    def prob() -> float:
        with torch.no_grad():
            return float(policy.rl_evaluate([turn], [(pick, place)]).log_probs.sum().exp())

    policy.train()
    optim = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-2)

    def steps(loss_fn, n: int) -> None:
        for _ in range(n):
            optim.zero_grad()
            loss_fn().backward()
            optim.step()

    steps(lambda: policy.imitation_loss([turn], [action])[0], 60)
    p0 = prob()
    assert p0 > 0.01, p0  # imitation made the pair likely (uniform: 2e-8)
    loss = policy.unlikelihood_loss([turn], [action])
    assert math.isclose(float(loss), -math.log1p(-p0), rel_tol=1e-4)
    steps(lambda: policy.unlikelihood_loss([turn], [action]), 10)
    assert prob() < 0.5 * p0, (p0, prob())
