"""The start curriculum over Meta-World's start variants (envs/curriculum.py): its rule, its draws, its resume."""
import numpy as np
import pytest

from robo_rl.envs.curriculum import StartCurriculum, start_curriculum
from robo_rl.envs.factory import env_config, make_env
from robo_rl.train import env_rng_state, set_env_rng_state

TASK = "drawer-open-v3"


def curriculum_env(seed=0, **overrides):
    cfg = env_config("metaworld", TASK, max_episode_steps=50, start_curriculum=True, **overrides)
    return start_curriculum(make_env(cfg, seed=seed), cfg, seed)


def test_each_variant_start_is_read_once_and_reset_plays_the_chosen_variant():
    env = curriculum_env()
    assert isinstance(env, StartCurriculum) and env.starts.shape == (50, 39)
    drawers = env.starts[:, 4]
    assert np.ptp(drawers) > 0.15   # the drawer's x varies over about 20 cm between variants
    for _ in range(5):
        obs, info = env.reset()
        np.testing.assert_allclose(obs, env.starts[info["curriculum_variant"]], atol=1e-6)


def test_the_frontier_is_near_solved_starts_and_partly_solved_variants():
    env = curriculum_env()
    assert np.all(env.weights() == env.rest)   # no success yet: a uniform draw
    solved = 3
    env.outcomes[solved] = [1, 1, 1, 1]
    distance = np.linalg.norm(env.starts - env.starts[solved], axis=1)
    weights = env.weights()
    near = (distance <= env.radius) & (np.arange(50) != solved)
    assert near.sum() >= 2 and np.all(weights[near] == 1.0) and np.all(weights[~near] == env.rest)
    far = int(np.argmax(distance))
    env.outcomes[far] = [0, 1, 0, 0]   # partly solved: on the frontier wherever it lies
    assert env.weights()[far] == 1.0
    env.outcomes[far] = [0, 0, 0, 0, 1, 1, 1, 1]   # its last `window` episodes all succeed: solved, rehearsed
    assert env.weights()[far] == env.rest


def test_draws_follow_the_weights_and_episode_outcomes_are_recorded():
    env = curriculum_env()
    env.outcomes[3] = [1]
    frontier = set(np.flatnonzero(env.weights() == 1.0))
    picks = []
    for _ in range(300):
        picks.append(env.reset()[1]["curriculum_variant"])
        env.success = picks[-1] == 3   # variant 3 keeps succeeding, the others fail
    share = np.mean([p in frontier for p in picks])
    expected = len(frontier) / (len(frontier) + env.rest * (50 - len(frontier)))
    assert abs(share - expected) < 0.1, (share, expected)
    assert sum(len(o) for o in env.outcomes) == 1 + 299   # every ended episode counted once
    assert all(o == 0 for v, outs in enumerate(env.outcomes) if v != 3 for o in outs)


def test_the_curriculum_resumes_with_the_training_loop_state():
    """What the loop checkpoints (env_rng_state) carries the counts and the generator: a fresh env given that
    state draws the same variants, with the same starts, as the one that went on."""
    env = curriculum_env(seed=4)
    env.reset(seed=4)
    for k in range(12):
        env.success = k % 3 == 0
        env.reset()
    state = env_rng_state(env)
    resumed = curriculum_env(seed=4)
    set_env_rng_state(resumed, state)
    for _ in range(8):
        a, info_a = env.reset()
        b, info_b = resumed.reset()
        assert info_a["curriculum_variant"] == info_b["curriculum_variant"]
        np.testing.assert_array_equal(a, b)
    assert env.outcomes == resumed.outcomes


def test_only_meta_world_takes_a_start_curriculum():
    with pytest.raises(ValueError, match="start_curriculum is for Meta-World"):
        make_env(env_config("mujoco", "Hopper-v5", start_curriculum=True))
    with pytest.raises(ValueError, match="true or false"):
        make_env(env_config("metaworld", TASK, start_curriculum="yes"))
