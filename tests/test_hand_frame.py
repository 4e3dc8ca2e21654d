"""Meta-World observations in the hand's frame (envs/hand_frame.py, env.hand_frame=true)."""
import numpy as np
import pytest
from conftest import built_once

from robo_rl.agents.demo_sac import DemoSAC
from robo_rl.envs.factory import check_env_config, env_config, make_env
from robo_rl.envs.hand_frame import hand_frame
from robo_rl.evaluate import evaluate
from robo_rl.rewards.demos import collect_demos, demo_transitions, load_demos, save_demos
from robo_rl.rewards.learned import SparseSuccess

TASK = "button-press-topdown-v3"


def world_and_hand_obs(task, seed):
    world = make_env(env_config("metaworld", task, max_episode_steps=50), seed=seed)
    hand = make_env(env_config("metaworld", task, max_episode_steps=50, hand_frame=True), seed=seed)
    return world.reset(seed=seed)[0], hand.reset(seed=seed)[0], world, hand


def test_positions_are_relative_to_the_hand_in_a_real_env():
    for task in ("drawer-open-v3", "pick-place-v3"):
        world, hand, world_env, hand_env = world_and_hand_obs(task, 3)
        action = np.array([0.5, -0.3, 0.2, 0.1], dtype=np.float32)
        world, hand = world_env.step(action)[0], hand_env.step(action)[0]   # a step: the two frames differ
        h = world[0:3]
        np.testing.assert_allclose(hand[0:3], 0.0)
        np.testing.assert_allclose(hand[4:7], world[4:7] - h, atol=1e-6)           # object 1
        np.testing.assert_allclose(hand[18:21], world[18:21] - h, atol=1e-6)       # the hand's last displacement
        np.testing.assert_allclose(hand[22:25], world[22:25] - h, atol=1e-6)       # object 1 a step ago
        np.testing.assert_allclose(hand[[3, *range(7, 11)]], world[[3, *range(7, 11)]])   # gripper, quaternion
        assert np.any(hand[18:21] != 0.0)
        goal = world[36:39]
        np.testing.assert_allclose(hand[36:39], goal - h if np.any(goal != 0) else 0.0, atol=1e-6)
    # drawer-open has no second object: Meta-World's zeros stay zeros, not minus the hand
    world, hand, *_ = world_and_hand_obs("drawer-open-v3", 0)
    assert np.all(world[11:14] == 0) and np.all(hand[11:14] == 0)


def test_a_translated_scene_is_observed_the_same():
    """Hand, objects and goal moved together by any offset: the same observation in the hand's frame."""
    obs = make_env(env_config("metaworld", "pick-place-v3", max_episode_steps=50), seed=1).reset(seed=1)[0]
    rng = np.random.default_rng(0)
    for _ in range(5):
        offset = rng.uniform(-0.2, 0.2, 3).astype(np.float32)
        moved = obs.copy()
        for start in (0, 4, 11, 18, 22, 29, 36):
            if np.any(obs[start : start + 3] != 0):
                moved[start : start + 3] += offset
        np.testing.assert_allclose(hand_frame(moved), hand_frame(obs), atol=1e-5)
        assert not np.allclose(moved, obs)
    batch = np.stack([obs, obs + 0.01])
    np.testing.assert_allclose(hand_frame(batch)[0], hand_frame(obs))
    with pytest.raises(ValueError, match="39 observations, got 17"):
        hand_frame(np.zeros(17))


def test_only_meta_world_and_only_booleans_are_accepted():
    with pytest.raises(ValueError, match="env.hand_frame is for Meta-World"):
        check_env_config(env_config("mujoco", "HalfCheetah-v5", hand_frame=True))
    with pytest.raises(ValueError, match="env.hand_frame must be true or false, got 'yes'"):
        check_env_config(env_config("metaworld", TASK, hand_frame="yes"))


@pytest.fixture(scope="module")
def one_demo(tmp_path_factory):
    return built_once(tmp_path_factory, f"{TASK}_one_demo.h5", lambda path: save_demos(
        path, collect_demos(TASK, 1, cameras=(), seed=0, progress=False, max_steps=200), TASK))


def test_demo_states_are_mapped_into_the_frame_the_env_observes(one_demo):
    env = SparseSuccess(make_env(env_config("metaworld", TASK, max_episode_steps=200, hand_frame=True), seed=0))
    data = demo_transitions(env, one_demo)
    demo = load_demos(one_demo, need_frames=False, need_states=True)[0]
    steps = len(data["obs"])
    np.testing.assert_allclose(data["obs"], hand_frame(demo.states[:steps]), atol=1e-6)
    np.testing.assert_allclose(data["next_obs"], hand_frame(demo.states[1 : steps + 1]), atol=1e-6)


def bc_success(demo_path, hand, episodes=10):
    cfg = env_config("metaworld", TASK, max_episode_steps=200, hand_frame=hand)
    env, eval_env = SparseSuccess(make_env(cfg, seed=0)), make_env(cfg, seed=10_000)
    agent = DemoSAC(env.observation_space, env.action_space, {"demos": str(demo_path), "bc_updates": 1500}, seed=0)
    agent.prepare(env)
    return evaluate(agent, eval_env, episodes, seed=10_000)["success_rate"]


def test_one_demo_in_the_hand_frame_covers_starts_the_world_frame_does_not(one_demo):
    """BC from one demo of button-press-topdown: in the world's frame it presses the button only near the demo's
    start; in the hand's frame the demo holds for every translated start."""
    world, hand = bc_success(one_demo, False), bc_success(one_demo, True)
    assert hand >= 0.9 and hand >= world + 0.4, (world, hand)
