"""One factory for every env family of the suite.

make_env(cfg) builds the base env of a family, then applies wrappers in a fixed order:
(Meta-World: hand frame ->) context -> action repeat -> pixels (frames are rendered once per decision). Observations are
float32 (state) or uint8 (pixels); terminated and truncated are kept apart; Meta-World's
`info["success"]` is kept and `info["episode_success"]` says whether it has fired at any step of
the episode so far.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

import gymnasium as gym
import numpy as np

import robo_rl  # noqa: F401  (sets MUJOCO_GL before mujoco is imported)
from robo_rl.envs.context import ContextWrapper, active_context, check_draw
from robo_rl.envs.decision import DecisionInterval
from robo_rl.envs.hand_frame import HandFrame
from robo_rl.envs.pixels import PixelObservation

FAMILIES = ("mujoco", "metaworld", "dmc", "classic")
CLASSIC_IDS = ("Pendulum-v1", "CartPole-v1")  # Gymnasium's classic control, with contexts (envs/context.py)
MUJOCO_IDS = (
    "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5",
    "InvertedPendulum-v5", "Pusher-v5", "Reacher-v5", "ArmReach-v0",
)
# The suite's own MuJoCo task (envs/arm.py), shared with the ROS deployment.
if "ArmReach-v0" not in gym.registry:
    gym.register("ArmReach-v0", entry_point="robo_rl.envs.arm:ArmReachEnv", max_episode_steps=100)


@lru_cache(maxsize=None)
def metaworld_tasks() -> tuple[str, ...]:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return tuple(ALL_V3_ENVIRONMENTS)


@lru_cache(maxsize=None)
def dmc_tasks() -> tuple[str, ...]:
    from dm_control import suite

    return tuple(f"{domain}-{task}" for domain, task in suite.ALL_TASKS)


def valid_ids(family: str) -> tuple[str, ...]:
    if family == "mujoco":
        return MUJOCO_IDS
    if family == "metaworld":
        return metaworld_tasks()
    if family == "dmc":
        return dmc_tasks()
    if family == "classic":
        return CLASSIC_IDS
    raise ValueError(f"env.family '{family}' is unknown (valid: {', '.join(FAMILIES)})")


def check_env_config(cfg: Mapping[str, Any]) -> None:
    """Fail fast, before any work, on a bad family, id, context key or pixel setting."""
    family, env_id = cfg.get("family"), cfg.get("id")
    ids = valid_ids(family)
    if env_id not in ids:
        shown = ", ".join(ids) if len(ids) <= 12 else ", ".join(ids[:12]) + f", ... ({len(ids)} in all)"
        raise ValueError(f"env.id '{env_id}' is not a {family} task (valid: {shown})")
    try:
        active_context(cfg.get("context"), env_id)
    except ValueError as exc:
        raise ValueError(f"env.context: {exc}") from None
    try:
        check_draw(cfg.get("context_draw"), env_id)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"env.context_draw: {exc}") from None
    if not isinstance(cfg.get("observe_context", False), bool):
        raise ValueError(f"env.observe_context must be true or false, got {cfg.get('observe_context')!r}")
    for key in ("start_curriculum", "hand_frame"):
        if not isinstance(cfg.get(key, False), bool):
            raise ValueError(f"env.{key} must be true or false, got {cfg.get(key)!r}")
        if cfg.get(key) and family != "metaworld":
            raise ValueError(f"env.{key} is for Meta-World tasks, not env.family={family}")
    repeat = cfg.get("action_repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"env.action_repeat must be an integer >= 1, got {repeat!r}")
    pixels = cfg.get("pixels") or {}
    if pixels.get("enabled") and (int(pixels.get("size", 0)) < 8 or not pixels.get("cameras")):
        raise ValueError(f"env.pixels needs size >= 8 and at least one camera, got {dict(pixels)}")


class Float32Observation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """State observations as float32 in an unbounded Box (Meta-World clips; dm_control is a dict)."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if isinstance(space, gym.spaces.Dict):
            size = sum(int(np.prod(s.shape)) for s in space.values())
        else:
            size = int(np.prod(space.shape))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        if isinstance(observation, dict):
            return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in observation.values()])
        return np.asarray(observation, dtype=np.float32).ravel()


class MetaWorldTask(gym.Wrapper):
    """MT1-style single task: a new goal from the task's 50 seeded goals at every reset.

    Unlike metaworld's own wrapper, the goal is drawn after seeding, so reset(seed=s) is reproducible.
    """

    def __init__(self, env: gym.Env, tasks: list, max_episode_steps: int) -> None:
        super().__init__(env)
        self.tasks = tasks
        self.unwrapped.max_path_length = max_episode_steps
        self.episode_success = False

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        if seed is not None:
            self.unwrapped.seed(seed)
        task_rng = self.unwrapped.np_random
        drawn = int(task_rng.integers(len(self.tasks)))   # drawn always, so a chosen variant leaves the draws after it alone
        options = dict(options or {})
        variant = options.pop("variant", None)   # a start curriculum (envs/curriculum.py) chooses the variant
        self.unwrapped.set_task(self.tasks[drawn if variant is None else int(variant)])
        obs, info = self.env.reset(seed=seed, options=options or None)
        self.episode_success = False
        info["episode_success"] = False
        return obs, info

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["success"] = float(info.get("success", 0.0))
        self.episode_success = self.episode_success or info["success"] > 0
        info["episode_success"] = self.episode_success
        return obs, float(reward), bool(terminated), bool(truncated), info


def _make_gymnasium(env_id: str, max_steps: int | None, kwargs: dict) -> gym.Env:
    return gym.make(env_id, max_episode_steps=max_steps, disable_env_checker=True, **kwargs)


def _make_metaworld(task: str, max_steps: int | None, seed: int | None, kwargs: dict) -> gym.Env:
    import metaworld

    benchmark = metaworld.MT1(task, seed=seed)
    env = benchmark.train_classes[task](**kwargs)
    max_steps = int(max_steps or env.max_path_length)
    env = MetaWorldTask(env, list(benchmark.train_tasks), max_steps)
    return gym.wrappers.TimeLimit(env, max_steps)


def _make_dmc(task: str, max_steps: int | None, kwargs: dict) -> gym.Env:
    import shimmy  # noqa: F401  (registers the dm_control ids)

    env = gym.make(f"dm_control/{task}-v0", disable_env_checker=True, **kwargs)
    if max_steps:
        env = gym.wrappers.TimeLimit(env, max_steps)
    return env


def make_env(cfg: Mapping[str, Any], seed: int | None = None) -> gym.Env:
    """Build the env described by an `env` config node (see configs/env/_common.yaml)."""
    check_env_config(cfg)
    family, env_id = cfg["family"], cfg["id"]
    max_steps = cfg.get("max_episode_steps")
    kwargs = dict(cfg.get("kwargs") or {})
    if family in ("mujoco", "classic"):
        env = _make_gymnasium(env_id, max_steps, kwargs)
    elif family == "metaworld":
        env = _make_metaworld(env_id, max_steps, seed, kwargs)
    else:
        env = _make_dmc(env_id, max_steps, kwargs)
    env = Float32Observation(env)
    if cfg.get("hand_frame"):
        env = HandFrame(env)
    context, draw = active_context(cfg.get("context"), env_id), check_draw(cfg.get("context_draw"), env_id)
    if context or draw:
        env = ContextWrapper(env, context, observe=bool(cfg.get("observe_context", False)), draw=draw)
    if int(cfg.get("action_repeat", 1)) > 1:
        env = DecisionInterval(env, int(cfg["action_repeat"]), "repeat")
    pixels = cfg.get("pixels") or {}
    if pixels.get("enabled"):
        env = PixelObservation(env, int(pixels["size"]), int(pixels["frame_stack"]), list(pixels["cameras"]))
    if seed is not None:
        env.action_space.seed(seed)
    return env


def env_config(family: str, env_id: str, **overrides: Any) -> dict[str, Any]:
    """An env config dict with the suite's defaults, for use from Python."""
    cfg: dict[str, Any] = {
        "name": env_id, "family": family, "id": env_id, "max_episode_steps": None, "action_repeat": 1,
        "pixels": {"enabled": False, "size": 84, "frame_stack": 3, "cameras": ["default"]},
        "context": {}, "observe_context": False, "context_draw": {}, "kwargs": {},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def _registered_entry(family: str, id: str, **overrides: Any) -> gym.Env:
    return make_env(env_config(family, id, **overrides))


def register_envs() -> None:
    """Register every env of the suite as a Gymnasium id under the `robo_rl/` namespace."""
    entry = "robo_rl.envs.factory:_registered_entry"
    names = [("mujoco", i, f"robo_rl/{i}") for i in MUJOCO_IDS]
    names += [("metaworld", t, f"robo_rl/metaworld-{t}") for t in metaworld_tasks()]
    try:
        names += [("dmc", t, f"robo_rl/dmc-{t}-v0") for t in dmc_tasks()]
    except ImportError:  # an install without dm_control still registers the other families
        pass
    for family, env_id, gym_id in names:
        if gym_id not in gym.registry:
            gym.register(gym_id, entry_point=entry, kwargs={"family": family, "id": env_id}, disable_env_checker=True)
