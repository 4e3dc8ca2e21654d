"""Meta-World's scripted experts, and the one collector of their episodes.

Both stores of expert data are written from these episodes: the HDF5 demo files of the learned-reward
pipeline (states, actions and camera frames; `robo_rl.rewards.demos`) and the Minari datasets of offline
learning (states, actions, rewards; `robo_rl.datasets`). The suite's Meta-World envs are MT1-style (the
goal is in the observation), which is what the experts need.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from robo_rl.config import ConfigError


class ExpertError(ConfigError):
    """No expert for a task, or an expert that does not succeed often enough."""


@dataclass
class ExpertEpisode:
    """One expert episode: T steps, T+1 observations (and frames per camera when rendered)."""

    states: np.ndarray          # float32 (T+1, state_dim)
    actions: np.ndarray         # float32 (T, action_dim), in [-1, 1]
    rewards: np.ndarray         # float32 (T,)
    success: np.ndarray         # bool (T,), the env's success flag after each step
    seed: int
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    truncated: bool = False     # the episode ended at the env's time limit

    @property
    def first_success(self) -> int:
        hits = np.flatnonzero(self.success)
        return int(hits[0]) if hits.size else -1


def expert_policy(task: str):
    """The scripted expert that ships with metaworld for `task`."""
    import warnings

    from metaworld.policies import ENV_POLICY_MAP

    # The experts' gains are deliberately high (the env clips actions); their warning says only that.
    warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
    if task not in ENV_POLICY_MAP:
        raise ExpertError(f"no scripted expert for Meta-World task '{task}'")
    return ENV_POLICY_MAP[task]()


def record_episode(env: Any, policy: Any, seed: int, max_steps: int, rng: np.random.Generator, action_noise: float = 0.0,
                   steps_after_success: int | None = None, render: Callable[[], Sequence[np.ndarray]] | None = None,
                   cameras: Sequence[str] = ()) -> ExpertEpisode:
    """Play one episode with the expert (plus Gaussian action noise); it ends at the time limit, or
    `steps_after_success` steps after the success flag first fires when that is given."""
    obs, _ = env.reset(seed=seed)
    states, actions, rewards, success = [obs], [], [], []
    views = {cam: [frame] for cam, frame in zip(cameras, render())} if render is not None else {}
    first_success, truncated = None, False
    for t in range(max_steps):
        action = np.clip(policy.get_action(obs) + action_noise * rng.standard_normal(env.action_space.shape), -1, 1)
        obs, reward, terminated, truncated, info = env.step(action.astype(np.float32))
        states.append(obs)
        actions.append(action)
        rewards.append(reward)
        success.append(info["success"] > 0)
        if render is not None:
            for cam, frame in zip(cameras, render()):
                views[cam].append(frame)
        if first_success is None and success[-1]:
            first_success = t
        after = steps_after_success is not None and first_success is not None and t - first_success >= steps_after_success
        if terminated or truncated or after:
            break
    return ExpertEpisode(states=np.asarray(states, np.float32), actions=np.asarray(actions, np.float32),
                         rewards=np.asarray(rewards, np.float32), success=np.asarray(success, bool), seed=int(seed),
                         frames={cam: np.stack(v) for cam, v in views.items()}, truncated=bool(truncated))


def collect_expert_episodes(task: str, episodes: int, seed: int = 0, max_steps: int = 500, action_noise: float = 0.0,
                            steps_after_success: int | None = 0, cameras: Sequence[str] = (), image_size: int = 84,
                            progress: bool = True, keep: str = "success") -> list[ExpertEpisode]:
    """`episodes` successful expert episodes of a Meta-World task (seeds seed, seed+1, ... until that
    many succeed; an expert that fails more than twice in three tries is refused in one line). With
    keep="failed", the episodes that never succeed instead (strong action noise makes them): near misses,
    the negatives a learned reward is fitted against."""
    if keep not in ("success", "failed"):
        raise ValueError(f"keep must be 'success' or 'failed', got '{keep}'")
    from robo_rl.envs.factory import env_config, make_env
    from robo_rl.logger import ProgressBar

    env = make_env(env_config("metaworld", task, max_episode_steps=max_steps), seed=seed)
    renderer = None
    if cameras:
        from robo_rl.envs.render import CameraRenderer

        renderer = CameraRenderer(env, list(cameras), image_size)
    policy = expert_policy(task)
    rng = np.random.default_rng(seed)
    kept: list[ExpertEpisode] = []
    attempt = 0
    bar = ProgressBar(episodes, enabled=progress, label=f"expert {task}")
    try:
        while len(kept) < episodes:
            if attempt >= 3 * episodes + 10:
                outcome = "succeeded" if keep == "success" else f"failed (action noise {action_noise})"
                raise ExpertError(f"expert for '{task}' {outcome} in only {len(kept)} of {attempt} episodes")
            episode = record_episode(env, policy, seed + attempt, max_steps, rng, action_noise, steps_after_success,
                                     renderer.render if renderer is not None else None, cameras)
            attempt += 1
            if (episode.first_success >= 0) == (keep == "success"):
                kept.append(episode)
                bar.update(len(kept))
    finally:
        bar.close()
        if renderer is not None:
            renderer.close()
        env.close()
    return kept
