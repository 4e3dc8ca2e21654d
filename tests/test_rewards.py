"""Learned rewards: demos, features, perceptual reward, process reward model, shaping, the reward wrapper."""
import json
from pathlib import Path
import warnings

import h5py
import numpy as np
import pytest
import torch
from conftest import assert_png_shows, built_once, run_cli_batch
from scipy.stats import spearmanr

from robo_rl.rewards.demos import DemoError, collect_demos, load_demos, load_video_demos, progress_labels, save_demos, write_video_demos
from robo_rl.rewards.features import FeatureError, ResNet, SmallConvNet, load_feature_net, pretrain_tcn, save_feature_net
from robo_rl.rewards.perceptual import fit_perceptual_reward, segment
from robo_rl.rewards.pipeline import demo_features
from robo_rl.rewards.process import N_BINS, ProcessRewardModel, hop_bin, hop_label, stage_samples
from robo_rl.rewards.shaping import shape_table, shaped_reward, value_iteration

warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
TASK = "drawer-open-v3"
CAMERAS = ["corner", "corner2"]


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    """Eight expert demos of a Meta-World task, two cameras at 64 px (about 25 s), made once per test
    run (the tests only read them)."""
    return built_once(tmp_path_factory, f"{TASK}_demos.h5", lambda path: save_demos(
        path, collect_demos(TASK, 8, CAMERAS, image_size=64, seed=0, progress=False), TASK))


@pytest.fixture(scope="module")
def feature_net():
    torch.manual_seed(0)
    return SmallConvNet(16).eval()  # untrained: the checks below must hold even on random features


# --- shaping ------------------------------------------------------------------------------------
def chain_mdp(n: int = 10):
    """States 0..n-1 on a line; actions 0 = left, 1 = stay, 2 = right; entering n-1 ends with reward 1."""
    transitions = np.array([[max(s - 1, 0), s, min(s + 1, n - 1)] for s in range(n)])
    rewards = (transitions == n - 1).astype(float)
    rewards[n - 1] = 0.0
    terminal = np.zeros(n, bool)
    terminal[n - 1] = True
    return transitions, rewards, terminal


def greedy_reaches_goal(policy, transitions, start=0, limit=100):
    state = start
    for _ in range(limit):
        state = transitions[state, policy[state]]
        if state == len(policy) - 1:
            return True
    return False


def test_potential_shaping_keeps_the_optimal_policy_and_naive_progress_does_not():
    transitions, rewards, terminal = chain_mdp()
    gamma = 0.99
    progress = np.arange(10) / 9.0
    q, policy = value_iteration(transitions, rewards, terminal, gamma)
    q_shaped, policy_shaped = value_iteration(transitions, shape_table(transitions, rewards, terminal, progress, gamma), terminal, gamma)
    _, policy_naive = value_iteration(transitions, shape_table(transitions, rewards, terminal, progress, gamma, naive=True), terminal, gamma)
    live = ~terminal
    assert np.array_equal(policy[live], policy_shaped[live])
    # Ng et al.: Q'(s, a) = Q(s, a) - Phi(s) exactly
    assert np.allclose(q_shaped[live], q[live] - progress[live, None], atol=1e-9)
    assert greedy_reaches_goal(policy_shaped, transitions)
    # the semantic trap: paid for sitting near the goal, the naive agent never finishes
    assert not np.array_equal(policy[live], policy_naive[live])
    assert not greedy_reaches_goal(policy_naive, transitions)


def test_shaping_zeroes_the_potential_of_terminal_states_only():
    assert shaped_reward(1.0, 0.5, 0.9, 0.9, terminated=True) == pytest.approx(0.5)
    assert shaped_reward(0.0, 0.5, 0.9, 0.9, terminated=False) == pytest.approx(0.9 * 0.9 - 0.5)


# --- process reward labels ----------------------------------------------------------------------
def test_incremental_progress_from_true_hops_reproduces_index_progress():
    last = 12
    phi = 0.0
    for k in range(1, last + 1):
        h = hop_label(k - 1, k, last)
        phi = phi + (1 - phi) * h if h >= 0 else phi + phi * h
        assert phi == pytest.approx(k / last, abs=1e-9)
    assert hop_label(8, 4, last) == pytest.approx(-0.5)
    assert hop_label(0, 6, last) == pytest.approx(0.5)
    assert hop_bin(-1.0) == 0 and hop_bin(1.0) == N_BINS - 1 and hop_bin(0.0) == N_BINS // 2


def test_stage_samples_give_every_stage_the_same_share():
    picks = stage_samples(100, [0, 10, 80], per_stage=5)
    assert len(picks) == 15 and picks[0] == 0 and picks[-1] == 99
    assert all(0 <= p < 10 for p in picks[:5]) and all(10 <= p < 80 for p in picks[5:10])


# --- demos ----------------------------------------------------------------------------------------
def test_two_cameras_render_different_non_blank_frames(demo_file):
    demo = load_demos(demo_file, limit=1)[0]
    a, b = demo.frames["corner"][0], demo.frames["corner2"][0]
    assert a.shape == b.shape == (64, 64, 3) and a.dtype == np.uint8
    assert a.std() > 10 and b.std() > 10
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 10


def test_demo_round_trip(tmp_path):
    demos = collect_demos("reach-v3", 2, CAMERAS, image_size=32, seed=3, progress=False)
    path = save_demos(tmp_path / "reach.h5", demos, "reach-v3")
    loaded = load_demos(path)
    assert len(loaded) == 2
    for a, b in zip(demos, loaded):
        for key in ("states", "actions", "rewards", "success"):
            assert np.array_equal(getattr(a, key), getattr(b, key))
        for cam in CAMERAS:
            assert np.array_equal(a.frames[cam], b.frames[cam])
        assert b.meta["success"] and b.success[-1]
        assert len(b.actions) == b.length - 1
    assert load_demos(path, cameras=["corner"])[0].frames.keys() == {"corner"}
    assert loaded[0].observation_only().actions is None


def test_corrupt_demo_files_name_the_file_and_field(tmp_path, demo_file, cli):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all")
    with pytest.raises(DemoError, match="garbage.h5.*not a readable HDF5"):
        load_demos(garbage)
    broken = tmp_path / "broken.h5"
    broken.write_bytes(demo_file.read_bytes())
    with h5py.File(broken, "a") as f:
        del f["episode_0001/actions"]
        f["episode_0001/actions"] = np.zeros((3, 4), np.float32)
    with pytest.raises(DemoError, match="episode_0001: field 'actions' has 3 rows"):
        load_demos(broken)
    broken.write_bytes(demo_file.read_bytes())
    with h5py.File(broken, "a") as f:
        del f["episode_0002/frames/corner2"]
        f["episode_0002/frames/corner2"] = np.zeros((5, 64, 64), np.uint8)
    with pytest.raises(DemoError, match="episode_0002"):
        load_demos(broken, cameras=["corner2"])
    with pytest.raises(DemoError, match="camera\\(s\\) \\['top'\\] not recorded"):
        load_demos(demo_file, cameras=["top"])
    result = cli("demos", "show", f"file={garbage}")
    assert result.returncode == 2 and "garbage.h5" in result.stderr and "Traceback" not in result.stderr


def test_failed_attempts_are_collected_and_fitted_against_through_the_cli(tmp_path, demo_file):
    """`demos collect keep=failed` records only episodes that never succeed; `demos fit failures=` adds
    the failure class to the perceptual reward; bad values get one line and exit 2."""
    from robo_rl.rewards.learned import load_reward

    torch.manual_seed(0)
    net = save_feature_net(SmallConvNet(16), tmp_path / "net.safetensors", {"steps": 0})
    common = [f"task={TASK}", "episodes=2", "cameras=corner", "noise=2.0", "keep=failed", "max_steps=40"]
    results = run_cli_batch([
        ["demos", "collect", *common, "size=64", f"out={tmp_path / 'failed.h5'}"],
        ["demos", "collect", *common, "size=32", f"out={tmp_path / 'small.h5'}"],
        ["demos", "fit", "kind=perceptual", f"demos={demo_file}", f"features={net}", f"out={tmp_path / 'plain'}"],
        ["demos", "fit", "kind=perceptual", f"demos={demo_file}", f"features={net}", f"out={tmp_path / 'hard'}",
         f"failures={tmp_path / 'failed.h5'}"],
        ["demos", "collect", f"task={TASK}", "keep=maybe", f"out={tmp_path / 'x.h5'}"],
        ["demos", "fit", "kind=process", f"demos={demo_file}", f"features={net}", f"out={tmp_path / 'p'}", f"failures={tmp_path / 'failed.h5'}"],
        ["demos", "fit", "kind=perceptual", f"demos={demo_file}", f"features={net}", f"out={tmp_path / 'q'}", f"failures={tmp_path / 'small.h5'}"],
    ], cwd=tmp_path)
    for result in results[:4]:
        assert result.returncode == 0, result.stderr[-2000:]
    failed = load_demos(tmp_path / "failed.h5")
    assert len(failed) == 2 and all(not d.success.any() and d.length - 1 == 40 for d in failed)
    (plain_info, plain, _), (hard_info, hard, _) = load_reward(tmp_path / "plain"), load_reward(tmp_path / "hard")
    assert len(plain.weights) == 5 and len(hard.weights) == 6 and hard.weights[-1] == 0.0
    assert plain_info["failures"] is None and hard_info["failures"].endswith("failed.h5")
    for result, message in zip(results[4:], ["argument 'keep' must be success or failed, got 'maybe'",
                                             "argument 'failures' is for kind=perceptual",
                                             "corner frames are 32 px, the demos' 64 px"]):
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr


def test_video_folders_load_as_observation_only_demos(tmp_path, demo_file):
    demos = load_demos(demo_file, limit=2)
    write_video_demos(tmp_path / "mp4", demos, "corner")
    videos = load_video_demos(tmp_path / "mp4")
    assert len(videos) == 2 and videos[0].actions is None and videos[0].states is None
    frames = videos[0].frames["video"]
    assert frames.shape == demos[0].frames["corner"].shape
    assert np.abs(frames.astype(int) - demos[0].frames["corner"].astype(int)).mean() < 12  # lossy codec
    import cv2

    png = tmp_path / "png" / "take1"
    png.mkdir(parents=True)
    for i, frame in enumerate(demos[0].frames["corner"][:5]):
        cv2.imwrite(str(png / f"{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    from_png = load_video_demos(tmp_path / "png", image_size=32)
    assert from_png[0].frames["video"].shape == (5, 32, 32, 3)
    with pytest.raises(DemoError, match="no .mp4 files"):
        load_video_demos(png)  # PNG files must sit in one subfolder per episode


# --- features -------------------------------------------------------------------------------------
TORCHVISION_LAYOUT = json.loads((Path(__file__).parent / "fixtures" / "torchvision_resnet.json").read_text())


@pytest.mark.parametrize("depth", [18, 34])
def test_a_state_dict_in_torchvisions_layout_loads_strictly(tmp_path, depth):
    """Names and shapes written down from torchvision's ResNet source (tests/fixtures), not from the
    suite's own net: a layout mismatch on either side fails here."""
    from safetensors.torch import save_file

    layout = TORCHVISION_LAYOUT[f"resnet{depth}"]
    generator = torch.Generator().manual_seed(depth)
    state = {name: (torch.tensor(7) if name.endswith("num_batches_tracked") else torch.randn(shape, generator=generator))
             for name, shape in layout}
    state = {k: (v.abs() + 0.5 if k.endswith("running_var") else v) for k, v in state.items()}
    ours = ResNet(depth).state_dict()
    assert {k: list(v.shape) for k, v in ours.items()} == {n: s for n, s in layout if not n.startswith("fc.")}
    save_file(state, str(tmp_path / "tv.safetensors"))
    torch.save(state, tmp_path / "tv.pth")
    for name in ("tv.safetensors", "tv.pth"):
        net = load_feature_net(tmp_path / name)
        assert torch.equal(net.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    renamed = {("layer2.0.shortcut.0.weight" if k == "layer2.0.downsample.0.weight" else k): v for k, v in state.items()}
    save_file(renamed, str(tmp_path / "renamed.safetensors"))
    with pytest.raises(FeatureError, match="missing"):
        load_feature_net(tmp_path / "renamed.safetensors")


def test_torchvision_resnet_weights_load_from_a_local_file(tmp_path):
    from safetensors.torch import save_file

    reference = ResNet(18).eval()
    state = {**reference.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(state, tmp_path / "resnet18.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "resnet18.safetensors"))
    images = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    expected = reference.features(images)
    for name in ("resnet18.pth", "resnet18.safetensors"):
        net = load_feature_net(tmp_path / name)
        assert np.allclose(net.features(images), expected, atol=1e-5)
    assert expected.shape == (2, 256 + 512)
    torch.save({"weights": object()}, tmp_path / "pickle.pth")  # not tensors only: must not be unpickled
    with pytest.raises(FeatureError, match="pickle.pth"):
        load_feature_net(tmp_path / "pickle.pth")
    with pytest.raises(FeatureError, match="do not exist"):
        load_feature_net(tmp_path / "missing.safetensors")


def test_time_contrastive_pretraining_lowers_the_triplet_loss(tmp_path, demo_file):
    episodes = [d.frames for d in load_demos(demo_file, limit=4)]
    net, losses = pretrain_tcn(episodes, steps=150, batch=16, width=8, lr=2e-3, progress=False)
    assert np.mean(losses[-15:]) < 0.7 * np.mean(losses[:15])
    path = save_feature_net(net, tmp_path / "tcn.safetensors", {"steps": 150})
    again = load_feature_net(path)
    frames = episodes[0]["corner"][:3]
    assert np.allclose(again.features(frames), net.features(frames), atol=1e-6)


# --- perceptual reward ------------------------------------------------------------------------------
def test_segmentation_finds_the_steps_of_a_piecewise_sequence():
    rng = np.random.default_rng(0)
    levels = np.repeat(np.array([[0.0, 5.0], [4.0, -3.0], [9.0, 1.0]]), [12, 20, 9], axis=0)
    assert segment(levels + 0.1 * rng.standard_normal(levels.shape), 3) == [0, 12, 32]


def test_segmentation_is_not_fooled_by_one_frame_steps():
    """Noisy stages in many dimensions: splitting off single frames (std 0) must not beat the true stages."""
    rng = np.random.default_rng(0)
    levels = np.repeat(2.0 * rng.standard_normal((3, 16)), [30, 40, 30], axis=0)
    starts = segment(levels + rng.standard_normal(levels.shape), 3)
    assert starts[0] == 0 and abs(starts[1] - 30) <= 2 and abs(starts[2] - 70) <= 2, starts


def test_perceptual_reward_rises_along_a_held_out_demo(demo_file, feature_net):
    demos = load_demos(demo_file)
    feats = [f[:, 0] for f in demo_features(demos, feature_net, ["corner"])]
    reward, splits = fit_perceptual_reward(feats[:6], n_steps=3, features_per_step=32, alpha=5.0)  # untrained features
    assert all(len(s) == 3 and s[0] == 0 for s in splits)
    rhos = [spearmanr(reward(f), progress_labels(d)).correlation for f, d in zip(feats[6:], demos[6:])]
    assert np.mean(rhos) > 0.5, rhos
    values = reward(feats[6])
    assert values.min() >= 0 and values.max() <= 1


def test_failure_negatives_pull_a_near_miss_down_and_keep_the_demos_order():
    """Features of two kinds: 4 that rise with time, 4 (noisy) that switch on only once the task is done.
    A near miss rises as far as the demos' end on the first kind and never switches the second on: fitted
    on demos alone the reward scores it done; with failures it scores it far below the demos' end."""
    rng = np.random.default_rng(0)
    t = np.arange(50)[:, None]

    def trajectory(rising, done):
        return np.hstack([np.repeat(rising, 4, 1) + 0.05 * rng.standard_normal((50, 4)),
                          np.repeat(done, 4, 1) + 0.5 * rng.standard_normal((50, 4))])

    demos = [trajectory(3 * t / 50, (t >= 40).astype(float)) for _ in range(6)]
    misses = [trajectory(np.minimum(t / 20, 1) * 2.9, 0 * t) for _ in range(4)]
    plain, _ = fit_perceptual_reward(demos[:5], n_steps=5, features_per_step=4)
    hardened, _ = fit_perceptual_reward(demos[:5], n_steps=5, features_per_step=4, failures=misses[:3])
    assert plain(misses[3])[-10:].mean() > 0.9                  # exploitable: a near miss looks done
    assert hardened(misses[3])[-10:].mean() < 0.6
    assert hardened(demos[5])[-5:].mean() > 0.8                  # the demos' end still scores high
    assert spearmanr(hardened(demos[5]), t[:, 0]).correlation > 0.95
    assert len(hardened.weights) == 6 and hardened.weights[-1] == 0.0


# --- process reward model ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def process_model(demo_file, feature_net):
    demos = load_demos(demo_file)
    feats = demo_features([d.observation_only() for d in demos], feature_net, CAMERAS)
    model = ProcessRewardModel(feats[0].shape[-1], CAMERAS, hidden=128, seed=0)
    losses = model.fit(feats[:6], steps=300, batch=64)
    return model, feats, [progress_labels(d) for d in demos], losses


def test_process_progress_increases_along_a_held_out_demo(process_model):
    model, feats, labels, losses = process_model
    assert np.mean(losses[-30:]) < 0.8 * np.mean(losses[:30])
    goal = feats[5][-1]
    for f, truth in zip(feats[6:], labels[6:]):
        phi = model.progress(f, f[0], goal)
        assert phi.min() >= 0 and phi.max() <= 1
        assert spearmanr(phi, truth).correlation > 0.8
        assert phi[-5:].mean() > phi[:5].mean() + 0.4


def test_fusion_copes_with_a_missing_view(process_model):
    model, feats, labels, _ = process_model
    f, goal = feats[6], feats[5][-1]
    for mask in ([1.0, 0.0], [0.0, 1.0]):
        corrupted = f.copy()
        corrupted[:, mask.index(0.0)] = 1e6  # whatever sits in the missing view must not matter
        phi = model.progress(corrupted, f[0], goal, mask=np.array(mask, np.float32))
        clean = model.progress(f, f[0], goal, mask=np.array(mask, np.float32))
        assert np.all(np.isfinite(phi)) and np.allclose(phi, clean)
        assert spearmanr(phi, labels[6]).correlation > 0.6


def test_one_shot_adaptation_fits_a_single_trajectory(process_model):
    model, feats, labels, _ = process_model
    adapted = model.adapt(feats[7], steps=50)
    assert adapted.net is not model.net
    before = [p.detach().clone() for p in model.net.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, model.net.parameters()))  # the original is untouched
    phi = adapted.progress(feats[7], feats[7][0], feats[7][-1])
    assert spearmanr(phi, labels[7]).correlation > 0.8


# --- the reward wrapper and the training path -------------------------------------------------------
@pytest.fixture(scope="module")
def reward_file(tmp_path_factory, demo_file):
    from robo_rl.rewards.pipeline import fit_process_file

    folder = tmp_path_factory.mktemp("reward")
    torch.manual_seed(0)
    features = save_feature_net(SmallConvNet(16), folder / "net.safetensors", {"steps": 0})
    return fit_process_file([demo_file], features, folder / "process", CAMERAS, steps=150)


def test_process_reward_wrapper_shapes_the_sparse_reward(reward_file):
    from robo_rl.envs.factory import env_config, make_env
    from robo_rl.rewards.demos import expert_policy
    from robo_rl.rewards.learned import LearnedReward

    env = LearnedReward(make_env(env_config("metaworld", TASK, max_episode_steps=200), seed=0), str(reward_file), base="sparse", gamma=0.9)
    policy = expert_policy(TASK)
    obs, _ = env.reset(seed=5)
    phi = env.phi
    assert 0.0 <= phi <= 1.0
    progress = [phi]
    for _ in range(200):
        obs, reward, terminated, truncated, info = env.step(policy.get_action(obs).astype(np.float32))
        success = float(info["success"] > 0)
        next_phi = 0.0 if terminated else info["progress"]
        assert reward == pytest.approx(success + 0.9 * next_phi - phi, abs=1e-6)
        assert info["env_reward"] != reward
        phi = info["progress"]
        progress.append(phi)
        if terminated or truncated:
            break
    assert terminated and success == 1.0  # the expert succeeds and the episode ends there
    assert spearmanr(progress, np.arange(len(progress))).correlation > 0.7
    env.close()


def test_perceptual_reward_as_a_potential_shapes_the_sparse_reward(tmp_path, demo_file, reward_file):
    """plain=false pays gamma * R(s') - R(s) with R the perceptual reward a plain wrapper pays on the same
    states, 0 after the terminal step, on top of the success reward; relabelled demos get the same rewards."""
    from robo_rl.envs.factory import env_config, make_env
    from robo_rl.rewards.demos import expert_policy
    from robo_rl.rewards.learned import LearnedReward
    from robo_rl.rewards.pipeline import fit_perceptual_file

    path = fit_perceptual_file(demo_file, reward_file.parent / "net.safetensors", tmp_path / "perceptual", "corner", limit=4)
    def wrapped(plain, base):
        env = make_env(env_config("metaworld", TASK, max_episode_steps=200), seed=0)
        return LearnedReward(env, str(path), base=base, gamma=0.9, terminate_on_success=True, plain=plain)
    shaped, plain = wrapped(False, "sparse"), wrapped(True, "none")
    assert LearnedReward.__init__.__defaults__[-1] is None and not shaped.plain and plain.plain
    policy = expert_policy(TASK)
    obs, _ = shaped.reset(seed=5)
    plain.reset(seed=5)
    phi, potentials = shaped.phi, []
    for _ in range(200):
        action = policy.get_action(obs).astype(np.float32)
        obs, reward, terminated, truncated, info = shaped.step(action)
        _, perceptual, *_ = plain.step(action)
        assert info["progress"] == pytest.approx(perceptual, abs=1e-9)   # the potential is the perceptual reward
        next_phi = 0.0 if terminated else perceptual
        assert reward == pytest.approx(float(info["success"] > 0) + 0.9 * next_phi - phi, abs=1e-6)
        phi = perceptual
        potentials.append(perceptual)
        if terminated or truncated:
            break
    assert terminated and np.ptp(potentials) > 0.1   # the expert succeeds; the potential moves along the way
    demo = load_demos(demo_file, limit=1)[0]
    shaped_rewards, ends = shaped.relabel_demo(demo)
    plain_rewards, _ = plain.relabel_demo(demo)
    start = float(shaped._potentials(shaped.net.features(demo.frames["corner"][:1])[:, None], None)[0])
    phis = np.r_[start, plain_rewards]
    success = shaped_rewards - (0.9 * np.where(ends, 0.0, phis[1:]) - phis[:-1])
    assert ends[-1] and np.allclose(success, ends.astype(float), atol=1e-6)
    shaped.close()
    plain.close()


def test_training_with_a_learned_reward_through_the_cli(cli, tmp_path, reward_file):
    run = tmp_path / "run"
    common = ["agent=sb3_sac", "train=smoke", "train.steps=200", "agent.learning_starts=100", "agent.hyperparams.batch_size=32",
              "env=metaworld", f"env.id={TASK}", "env.max_episode_steps=100", "reward=process", f"hydra.run.dir={run}"]
    result = cli("train", *common, f"reward.model={reward_file}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run / "checkpoint.safetensors").exists()
    bad, missing = run_cli_batch([["train", *common[:-1], f"hydra.run.dir={tmp_path / 'bad'}", f"reward.model={tmp_path / 'none'}"],
                                  ["train", *common]], cwd=tmp_path)
    assert bad.returncode == 2 and "reward.model" in bad.stderr and "Traceback" not in bad.stderr
    assert missing.returncode == 2 and "reward.model" in missing.stderr


def test_perceptual_reward_fits_on_a_folder_of_videos(tmp_path, demo_file, reward_file):
    from robo_rl.rewards.learned import load_reward
    from robo_rl.rewards.pipeline import fit_perceptual_file

    write_video_demos(tmp_path / "videos", load_demos(demo_file, limit=4), "corner")
    features = reward_file.parent / "net.safetensors"
    path = fit_perceptual_file(tmp_path / "videos", features, tmp_path / "perceptual", camera="corner", image_size=64)
    manifest, reward, _ = load_reward(path)
    assert manifest["kind"] == "perceptual" and manifest["cameras"] == ["corner"] and manifest["image_size"] == 64
    assert reward.n_steps == 5


def test_bench_rewards_quick_writes_results_and_skips_done(cli, tmp_path):
    args = ["bench", "rewards", "--tasks", "reach-v3", "--demos", "3", "--train-demos", "2", "--feature-steps", "5",
            "--model-steps", "20", "--rewards", "sparse,process", "--seeds", "0", "--steps", "300",
            "--override", "train.eval_episodes=2", "--no-ray"]   # the job runner's Ray path: tests/test_jobs.py
    first = cli(*args, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    folder = tmp_path / "benchmarks" / "results" / "rewards"
    quality = json.loads((folder / "quality__reach-v3.json").read_text())
    signal = quality["process, 2 views"]
    assert len(signal["per_demo"]) == 1 and signal["mean"] == pytest.approx(np.mean(signal["per_demo"]))
    assert np.isfinite(quality["perceptual (corner), failure negatives"]["mean"])   # fitted against 2 failed attempts
    summary = (folder / "summary.md").read_text()
    for reward in ("sparse", "process"):
        run = json.loads((folder / f"learn__reach-v3__{reward}__s0.json").read_text())
        assert run["steps"] == 300 and run["curve"][-1]["step"] == 300
        assert all(np.isfinite(p["return"]) for p in run["curve"])
        # the table's final success and return are the curve's last point (the one definition of "final")
        row = next(line for line in summary.splitlines() if line.startswith(f"| reach-v3 | {reward} | 1 | 300 |"))
        assert f"| {run['curve'][-1]['success_rate']:.2f} |" in row and row.endswith(f"| {run['curve'][-1]['return']:.0f} |")
    assert_png_shows(folder / "learn_return__reach-v3.png", "C0", "C1")
    again = cli(*args, timeout=600)
    assert again.returncode == 0 and "bench rewards: all 3 job(s) done already, skipped" in again.stdout
