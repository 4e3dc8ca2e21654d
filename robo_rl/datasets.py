"""Offline datasets in Farama's Minari format: one dataset per Meta-World task, played by its scripted expert.

`robo-rl datasets collect tasks=... episodes=...` writes `robo_rl/metaworld-<task>-expert-v0` under the
Minari root (MINARI_DATASETS_PATH, else ~/.minari/datasets, or `root=`), so `minari.load_dataset(<id>)`
reads it in any other tool. Each episode is a full 200-step episode (success counts at any step; only
episodes in which the expert succeeded are kept) with its observations, actions in [-1, 1], rewards and
the per-step success flag in `infos["success"]`. `load_task_dataset` reads one back for the offline loop
and refuses, in one line naming the dataset, one that is missing, unreadable or made for other spaces.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from robo_rl.config import ConfigError

EPISODE_STEPS = 200      # Continual World's and L2M's Meta-World episode length
ACTION_NOISE = 0.1       # Gaussian noise on the experts' actions, as the L2M data


class DatasetError(ConfigError):
    """A dataset that cannot be used; the message names it and what is wrong."""


@dataclass
class Episode:
    observations: np.ndarray   # (T+1, obs_dim)
    actions: np.ndarray        # (T, act_dim)
    rewards: np.ndarray        # (T,)
    success: np.ndarray        # (T,) bool


def dataset_id(task: str) -> str:
    """The Minari id of a task's expert dataset ('reach-v3' -> 'robo_rl/metaworld-reach-expert-v0')."""
    return f"robo_rl/metaworld-{task.removesuffix('-v3')}-expert-v0"


def default_root() -> Path:
    return Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")


@contextmanager
def minari_root(root: str | Path) -> Iterator[Path]:
    """Point Minari at `root` for the duration (Minari reads the location from the environment only)."""
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield Path(root)
    finally:
        if before is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = before


def dataset_path(task: str, root: str | Path | None = None) -> Path:
    return Path(root or default_root()) / dataset_id(task)


def collect_dataset(task: str, episodes: int, root: str | Path | None = None, seed: int = 0,
                    action_noise: float = ACTION_NOISE, progress: bool = True) -> Path:
    """Write the expert dataset of one task (atomically: built in a scratch root, then moved in place)."""
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    from robo_rl.envs.experts import collect_expert_episodes
    from robo_rl.envs.factory import metaworld_tasks, register_envs

    if task not in metaworld_tasks():
        raise DatasetError(f"task '{task}' is not a Meta-World v3 task")
    if episodes < 1:
        raise DatasetError(f"episodes must be >= 1, got {episodes}")
    recorded = collect_expert_episodes(task, episodes, seed, EPISODE_STEPS, action_noise, steps_after_success=None,
                                       progress=progress)
    buffers = [EpisodeBuffer(id=i, seed=e.seed, observations=e.states, actions=e.actions, rewards=list(e.rewards),
                             terminations=[False] * len(e.rewards), truncations=[False] * (len(e.rewards) - 1) + [True],
                             infos={"success": e.success}) for i, e in enumerate(recorded)]
    register_envs()
    env = gym.make(f"robo_rl/metaworld-{task}", max_episode_steps=EPISODE_STEPS)
    final = dataset_path(task, root)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".collect-", dir=final.parent.parent))
    try:
        with minari_root(scratch), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Minari's reminders to name an author and a code link
            minari.create_dataset_from_buffers(
                dataset_id(task), buffers, env=env, algorithm_name=f"metaworld scripted expert, action noise {action_noise}",
                code_permalink="https://github.com/Farama-Foundation/Metaworld (metaworld.policies)",
                description=f"{len(buffers)} successful {EPISODE_STEPS}-step episodes of Meta-World {task} played by "
                            f"its scripted expert with Gaussian action noise sigma {action_noise}; infos['success'] per step.")
        if final.exists():
            shutil.rmtree(final)
        os.replace(scratch / dataset_id(task), final)
    finally:
        env.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def load_task_dataset(task: str, root: str | Path | None = None) -> list[Episode]:
    """The episodes of a task's dataset, checked against the task's observation and action spaces."""
    import minari

    from robo_rl.envs.factory import env_config, make_env

    name, root = dataset_id(task), Path(root or default_root())
    if not (root / name).is_dir():
        raise DatasetError(f"dataset '{name}' not found under {root} (write it with: robo-rl datasets collect tasks={task})")
    try:
        with minari_root(root):
            dataset = minari.load_dataset(name)
            episodes = [Episode(np.asarray(e.observations, np.float32), np.asarray(e.actions, np.float32),
                                np.asarray(e.rewards, np.float32), np.asarray(e.infos["success"], bool))
                        for e in dataset.iterate_episodes()]
    except Exception as exc:  # Minari raises many kinds (OSError, KeyError, ValueError) for a damaged dataset
        raise DatasetError(f"dataset '{name}' under {root} cannot be read ({type(exc).__name__}: {exc})"[:300]) from None
    env = make_env(env_config("metaworld", task))
    obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
    env.close()
    if dataset.observation_space.shape != obs_shape or dataset.action_space.shape != act_shape:
        raise DatasetError(f"dataset '{name}' has observations {dataset.observation_space.shape} and actions "
                           f"{dataset.action_space.shape}, but task '{task}' has {obs_shape} and {act_shape}")
    if not episodes:
        raise DatasetError(f"dataset '{name}' holds no episodes")
    return episodes


def ensure_datasets(tasks: Sequence[str], episodes: int, root: str | Path | None = None, seed: int = 0,
                    progress: bool = True) -> None:
    """Collect the datasets that are missing (a rerun skips those already written)."""
    for task in tasks:
        if dataset_path(task, root).is_dir():
            continue
        print(f"robo-rl: collecting {episodes} expert episodes of {task} into {dataset_path(task, root)}", flush=True)
        collect_dataset(task, episodes, root, seed, progress=progress)
