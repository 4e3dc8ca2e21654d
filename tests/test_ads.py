"""ADS: discount schedule, progress recognizer, OT proxy reward, and the training path."""
import json
import warnings

import numpy as np
import pytest
from conftest import built_once

from robo_rl.rewards.ads import ProgressRecognizer, discount_for, initial_k, lis_length, ot_rewards
from robo_rl.rewards.demos import Demo, DemoError, collect_demos, load_demos, save_demos

warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")


def test_discount_matches_the_paper_values_and_is_bounded_and_monotone():
    assert initial_k(88) == 17 and discount_for(17) == pytest.approx(0.9097, abs=1e-4)
    assert discount_for(50) == pytest.approx(0.9683, abs=1e-4)
    assert discount_for(88) == pytest.approx(0.9819, abs=1e-4)
    assert initial_k(63) == 12 and discount_for(12) == pytest.approx(0.8745, abs=1e-4)
    gammas = [discount_for(k) for k in range(1, 500)]
    assert all(0 < g < 1 for g in gammas) and np.all(np.diff(gammas) > 0)
    assert discount_for(10) ** 10 == pytest.approx(0.2)


def test_lis_length():
    assert lis_length([3, 1, 2, 5, 4, 6]) == 4 and lis_length([]) == 0 and lis_length([2, 2, 2]) == 1


def path_demos(n: int = 5, length: int = 60, noise: float = 0.01, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    path = np.stack([np.cos(3 * t), np.sin(5 * t) + t], axis=1)
    return path, [path + noise * rng.standard_normal(path.shape) for _ in range(n)]


def test_recognizer_follows_how_far_the_agent_gets():
    path, demos = path_demos()
    recognizer = ProgressRecognizer(demos, horizon=60)
    assert recognizer.k == 12
    halfway = np.concatenate([path[:30], np.repeat(path[29:30], 30, axis=0)])
    for _ in range(20):
        recognizer.update([halfway + 0.01 * np.random.default_rng(1).standard_normal(halfway.shape)])
    assert 27 <= recognizer.k <= 36
    full = ProgressRecognizer(demos, horizon=60)
    for _ in range(20):
        full.update([path])
    assert full.k == 60


@pytest.fixture(scope="module")
def reach_demos(tmp_path_factory):
    """Four expert demos of reach-v3, made once per test run (the tests only read them)."""
    return built_once(tmp_path_factory, "reach_ads_demos.h5", lambda path: save_demos(
        path, collect_demos("reach-v3", 4, ["corner"], image_size=32, seed=0, steps_after_success=30, progress=False),
        "reach-v3"))


def random_states(steps: int, seed: int = 0) -> np.ndarray:
    from robo_rl.envs.factory import env_config, make_env

    env = make_env(env_config("metaworld", "reach-v3", max_episode_steps=steps), seed=seed)
    obs, _ = env.reset(seed=seed)
    states = [obs]
    for _ in range(steps):
        obs, *_ = env.step(env.action_space.sample())
        states.append(obs)
    env.close()
    return np.asarray(states)


def test_ot_reward_ranks_the_expert_above_a_random_policy(reach_demos):
    demos = [d.states for d in load_demos(reach_demos, need_frames=False)]
    expert, others = demos[0], demos[1:]
    random_run = random_states(len(expert) - 1)
    expert_reward, _ = ot_rewards(expert, others)
    random_reward, _ = ot_rewards(random_run, others)
    assert expert_reward.sum() > random_reward.sum()


def test_recognizer_gives_full_progress_to_an_expert_and_little_to_random(reach_demos):
    demos = [d.states for d in load_demos(reach_demos, need_frames=False)]
    horizon = min(len(d) for d in demos)
    expert = ProgressRecognizer(demos[1:], horizon)
    for _ in range(40):
        expert.update([demos[0]])
    assert expert.k == expert.horizon
    random_agent = ProgressRecognizer(demos[1:], horizon)
    start = random_agent.k
    for seed in range(5):
        random_agent.update([random_states(horizon, seed)])
    assert random_agent.k < start + 0.3 * (random_agent.horizon - start)


def test_pipeline_refuses_demos_without_observations(tmp_path, cli):
    frames_only = Demo(frames={"corner": np.zeros((5, 16, 16, 3), np.uint8)})
    path = save_demos(tmp_path / "frames_only.h5", [frames_only, frames_only], "reach-v3", source="video")
    from robo_rl.rewards.ads import demo_observations

    with pytest.raises(DemoError, match="field 'states' is missing"):
        demo_observations(path, None, None)
    result = cli("train", "agent=sb3_sac", "train=smoke", "env=metaworld", "env.id=reach-v3", "reward=ads", f"reward.demos={path}")
    assert result.returncode == 2 and "states" in result.stderr and "Traceback" not in result.stderr


def test_training_with_ads_relabels_rewards_and_schedules_gamma(tmp_path, cli, reach_demos):
    run = tmp_path / "run"
    result = cli("train", "agent=sb3_sac", "train=smoke", "train.steps=400", "train.eval_every=200", "agent.learning_starts=100",
                 "agent.hyperparams.batch_size=32", "env=metaworld", "env.id=reach-v3", "env.max_episode_steps=50",
                 "reward=ads", f"reward.demos={reach_demos}", "reward.eval_episodes=2", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    state = json.loads((run / "ads_state.json").read_text())
    assert state["k"] >= 10 and state["scale"] > 0 and len(state["history"]) == 2
    assert state["gamma"] == pytest.approx(discount_for(state["k"]))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("ads/gamma" in row for row in rows)
    episode_rewards = [row["ads/episode_reward"] for row in rows if "ads/episode_reward" in row]
    # 400 steps of 50-step episodes; the scale is set so that the first episode's OT return is -10
    assert len(episode_rewards) == 8 and episode_rewards[0] == pytest.approx(-10.0, rel=1e-4) and max(episode_rewards) <= 0
    from robo_rl.checkpoint import load_checkpoint

    saved, _ = load_checkpoint(run)
    rewards = saved["replay"]["reward"][:400]
    assert np.all(rewards <= 0) and rewards.min() < 0  # OT rewards (negative transport costs) replaced the zeros


def test_ads_on_frame_features_uses_the_cosine_cost(tmp_path, reach_demos):
    import torch

    from robo_rl.envs.factory import env_config, make_env
    from robo_rl.rewards.ads import ADSImitation
    from robo_rl.rewards.features import SmallConvNet, save_feature_net

    torch.manual_seed(0)
    net_path = save_feature_net(SmallConvNet(8), tmp_path / "net.safetensors", {})
    env = ADSImitation(make_env(env_config("metaworld", "reach-v3", max_episode_steps=20), seed=0), str(reach_demos),
                       features=str(net_path), camera="corner")
    assert env.metric == "cosine" and env.demos[0].shape[1] == env.net.dim
    env.reset(seed=0)
    for _ in range(5):
        _, reward, *_ = env.step(env.action_space.sample())
        assert reward == 0.0
    rewards, _ = ot_rewards(np.asarray(env.episode), env.demos, "cosine")
    assert len(rewards) == 6 and np.all(rewards <= 0) and np.all(rewards >= -2)
    env.close()


def test_action_repeat_subsamples_the_demos_and_shortens_the_horizon(reach_demos):
    from robo_rl.envs.factory import env_config, make_env
    from robo_rl.rewards.ads import ADSImitation, demo_observations

    full = demo_observations(reach_demos, None, None)
    env = ADSImitation(make_env(env_config("metaworld", "reach-v3", max_episode_steps=40, action_repeat=2), seed=0), str(reach_demos))
    assert env.demo_stride == 2 and [len(d) for d in env.demos] == [(len(d) + 1) // 2 for d in full]
    np.testing.assert_array_equal(env.demos[0][1], full[0][2])  # the agent's next observation is two frames on
    env.reset(seed=0)
    obs, *_ = env.step(np.zeros(4, np.float32))
    assert len(env.episode) == 2 and env.episode[1].shape == full[0][0].shape
    env.close()


def test_bench_ads_quick_writes_results_and_a_gamma_curve(cli, tmp_path):
    args = ["bench", "ads", "--tasks", "reach-v3", "--demos", "3", "--seeds", "0", "--steps", "1200", "--horizon", "50"]
    result = cli(*args, "--override", "agent.learning_starts=300", "--override", "train.eval_episodes=1",
                 "--no-ray", timeout=600)   # the job runner's Ray path: tests/test_jobs.py
    assert result.returncode == 0, result.stderr[-2000:]
    folder = tmp_path / "benchmarks" / "results" / "ads"
    for arm in ("ads", "fixed"):
        run = json.loads((folder / f"reach-v3__{arm}__s0.json").read_text())
        # 1200 env steps at action repeat 2: 600 decisions, an evaluation every 200 env steps
        assert run["action_repeat"] == 2 and [p["step"] for p in run["curve"]] == list(range(200, 1201, 200))
        assert all(0 < p["gamma"] < 1 for p in run["curve"])
        assert run["success"] == "held on more than 3 steps" and run["closing_eval"]["success_rate"] <= run["closing_eval"]["any_step_success_rate"]
        assert all(p["success_rate"] <= p["any_step_success_rate"] for p in run["curve"])
    assert json.loads((folder / "reach-v3__fixed__s0.json").read_text())["curve"][-1]["gamma"] == pytest.approx(0.99)
    summary = (folder / "summary.md").read_text()
    assert (folder / "reach-v3.png").exists() and "| reach-v3 | ads | sb3_td3 | 1 | 1200 | 2 |" in summary
    assert "| - | 0.9900 |" in summary.split("| reach-v3 | fixed |")[1].splitlines()[0]  # no k measured without the schedule


def test_ads_with_symphony_relabels_every_tiled_copy_of_the_exploration_data(tmp_path, cli, reach_demos):
    # Symphony tiles its exploration data 25x; exploration ends 20 steps into the third 50-step episode,
    # so that episode's OT rewards arrive after the tiling and must reach all copies.
    run = tmp_path / "run"
    result = cli("train", "agent=symphony_cpu", "agent.explore_steps=120", "agent.hidden=64", "agent.batch_size=48",
                 "train=smoke", "train.steps=300", "train.eval_every=150", "env=metaworld", "env.id=reach-v3",
                 "env.max_episode_steps=50", "reward=ads", f"reward.demos={reach_demos}", "reward.eval_episodes=2",
                 f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    from robo_rl.checkpoint import load_checkpoint

    saved, _ = load_checkpoint(run)
    rewards = saved["replay"]["reward"][:, 0]
    assert len(rewards) == 120 * 25 and np.all(rewards < 0)  # no copy kept the env's 0
    state = json.loads((run / "ads_state.json").read_text())
    assert state["gamma"] == pytest.approx(discount_for(state["k"])) and len(state["history"]) == 2
