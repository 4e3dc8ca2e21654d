import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import robo_rl.envs  # noqa: F401  (registers robo_rl/ ids)
from robo_rl.envs import env_config, make_env

FAMILIES = [("mujoco", "HalfCheetah-v5"), ("mujoco", "Hopper-v5"), ("mujoco", "ArmReach-v0"), ("metaworld", "reach-v3"),
            ("dmc", "cartpole-swingup")]


def rollout(env, seed, steps=20):
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    trace = [obs]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        trace.append(obs)
        if terminated or truncated:
            break
    return np.stack(trace)


@pytest.mark.parametrize("family,env_id", FAMILIES)
def test_family_spaces_step_and_checker(family, env_id):
    env = make_env(env_config(family, env_id), seed=0)
    assert isinstance(env.observation_space, gym.spaces.Box) and env.observation_space.dtype == np.float32
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape and obs.dtype == np.float32
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert np.isfinite(obs).all() and isinstance(reward, float)
    assert isinstance(terminated, bool) and isinstance(truncated, bool)
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("family,env_id", FAMILIES)
def test_seeding_is_reproducible(family, env_id):
    a = rollout(make_env(env_config(family, env_id), seed=3), seed=3)
    b = rollout(make_env(env_config(family, env_id), seed=3), seed=3)
    c = rollout(make_env(env_config(family, env_id), seed=4), seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:len(c)], c[:len(a)])


@pytest.mark.parametrize("gym_id", ["robo_rl/Walker2d-v5", "robo_rl/metaworld-drawer-open-v3", "robo_rl/dmc-walker-walk-v0"])
def test_registered_ids(gym_id):
    env = gym.make(gym_id)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_truncation_kept_apart_from_termination():
    env = make_env(env_config("mujoco", "HalfCheetah-v5", max_episode_steps=5), seed=0)
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[2:4] for _ in range(5)]
    assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])


def test_action_repeat_steps_the_env_several_times_per_decision():
    from robo_rl.envs.decision import action_repeat
    from robo_rl.train import episode_limit

    env = make_env(env_config("mujoco", "Reacher-v5", max_episode_steps=11, action_repeat=2), seed=0)
    assert action_repeat(env) == 2 and episode_limit(env) == 6  # 11 primitive steps: 5 full decisions and one of 1
    env.reset(seed=0)
    steps = [env.step(env.action_space.sample()) for _ in range(6)]
    assert [s[4]["primitive_steps"] for s in steps] == [2, 2, 2, 2, 2, 1]
    assert steps[-1][3] and not any(s[3] for s in steps[:-1])
    once = make_env(env_config("mujoco", "Reacher-v5"), seed=0)
    assert action_repeat(once) == 1 and episode_limit(once) == 50
    with pytest.raises(ValueError, match="env.action_repeat must be an integer >= 1, got 0"):
        make_env(env_config("mujoco", "Reacher-v5", action_repeat=0))


def test_metaworld_success_and_goal_randomisation():
    from metaworld.policies import ENV_POLICY_MAP

    env = make_env(env_config("metaworld", "reach-v3", max_episode_steps=150), seed=0)
    expert = ENV_POLICY_MAP["reach-v3"]()
    goals = set()
    for episode in range(3):
        obs, info = env.reset(seed=episode)
        goals.add(tuple(np.round(obs[-3:], 4)))
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(expert.get_action(obs.astype(np.float64)))
            done = terminated or truncated
        assert info["episode_success"], "the scripted expert solves reach-v3; success must be reported"
    assert len(goals) > 1, "MT1-style episodes draw different goals"


def test_pixel_wrapper_shapes_and_frames_not_blank():
    cfg = env_config("mujoco", "HalfCheetah-v5", pixels={"enabled": True, "size": 64, "frame_stack": 2})
    env = make_env(cfg, seed=0)
    assert env.observation_space.shape == (6, 64, 64) and env.observation_space.dtype == np.uint8
    obs, info = env.reset(seed=0)
    assert obs.shape == (6, 64, 64) and info["state"].shape == (17,)
    for _ in range(5):
        obs, *_ = env.step(env.action_space.sample())
    frame = obs[-3:]
    assert frame.std() > 10, "a rendered frame must show the scene, not a flat colour"
    check_env(env, skip_render_check=True)


def test_two_cameras_give_two_different_views():
    cfg = env_config("metaworld", "reach-v3", pixels={"enabled": True, "frame_stack": 1, "cameras": ["corner", "topview"]})
    env = make_env(cfg, seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (6, 84, 84)
    corner, top = obs[:3].astype(float), obs[3:].astype(float)
    assert corner.std() > 10 and top.std() > 10
    assert np.abs(corner - top).mean() > 10


def test_unknown_camera_is_named():
    cfg = env_config("mujoco", "HalfCheetah-v5", pixels={"enabled": True, "cameras": ["nope"]})
    with pytest.raises(ValueError, match="camera 'nope'"):
        make_env(cfg)


def _pole_angle_after(context, steps=25):
    env = make_env(env_config("mujoco", "InvertedPendulum-v5", context=context), seed=0)
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape, dtype=np.float32)
    for _ in range(steps):
        obs, *_ = env.step(action)
    return abs(float(obs[1]))  # the pole tips over faster under stronger gravity


def test_context_changes_dynamics_and_resets_cleanly():
    nominal = _pole_angle_after({})
    heavy = _pole_angle_after({"gravity": -30.0})
    assert heavy > 2 * nominal
    env = make_env(env_config("mujoco", "HalfCheetah-v5", context={"mass_scale": 2.0, "friction_scale": 0.5}), seed=0)
    model = env.unwrapped.model
    mass0 = model.body_mass.copy()
    env.reset(seed=0)
    np.testing.assert_allclose(model.body_mass, mass0 * 2.0)
    env.reset(seed=1)  # applying twice must not compound
    np.testing.assert_allclose(model.body_mass, mass0 * 2.0)
    env.set_context({})
    env.reset(seed=2)
    np.testing.assert_allclose(model.body_mass, mass0)


def test_bad_env_config_is_named():
    with pytest.raises(ValueError, match="env.id 'Nope-v5'"):
        make_env(env_config("mujoco", "Nope-v5"))
    with pytest.raises(ValueError, match="unknown context key 'wind'"):
        make_env(env_config("mujoco", "Hopper-v5", context={"wind": 1.0}))


def test_arm_reach_action_meaning_and_success():
    """A proportional controller in the task's own action units reaches the goal; random actions do not."""
    env = make_env(env_config("mujoco", "ArmReach-v0"), seed=0)
    base = env.unwrapped
    obs, _ = env.reset(seed=3)
    q0 = obs[:7].copy()
    obs, *_ = env.step(np.r_[1.0, np.zeros(6)].astype(np.float32))
    # One period at full action moves joint 1 toward max_velocity * dt (the servo lags a little).
    assert 0.5 * base.max_velocity * base.control_dt < obs[0] - q0[0] <= base.max_velocity * base.control_dt + 1e-6
    assert np.allclose(obs[1:7], q0[1:7], atol=0.01)
    obs, _ = env.reset(seed=3)
    for _ in range(100):
        error = obs[14:] / base.error_scale
        obs, reward, terminated, truncated, info = env.step(np.clip(error / (base.max_velocity * base.control_dt), -1, 1))
    assert info["success"] == 1.0 and truncated and not terminated
    assert np.allclose(obs[14:], base.error_scale * (base.goal - obs[:7]), atol=1e-4)
    obs, _ = env.reset(seed=3)
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert info["success"] == 0.0
