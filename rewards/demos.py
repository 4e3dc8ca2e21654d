"""Demonstrations: record them from Meta-World's scripted experts, store, load and validate them.

File layout (HDF5, one file per task; `robo-rl demos collect` writes it, `load_demos` reads it):

    /                      attrs: format="robo-rl-demos", version=1, task, cameras (list), image_size, source
    /episode_0000/         attrs: seed, success (bool), length T
        states             float32 (T+1, state_dim)   state before each step and after the last
        actions            float32 (T, action_dim)    the expert's actions (observation-only methods never read them)
        rewards            float32 (T,)               the env's own reward
        success            bool    (T,)               the env's success flag after each step
        frames/<camera>    uint8   (T+1, H, W, 3)     RGB frame of each state, one dataset per camera
    /episode_0001/ ...

A folder of videos (`load_video_demos`) gives observation-only demos with the same `Demo` shape: frames
only, no states, actions or rewards, as a demonstration filmed by a person arrives. Either every file
in the folder is an MP4 (one episode each) or every subfolder holds PNG frames (one episode each).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from robo_rl.config import ConfigError
from robo_rl.envs.experts import collect_expert_episodes, expert_policy  # noqa: F401  (expert_policy: re-exported)

FORMAT = "robo-rl-demos"
VERSION = 1
DEFAULT_CAMERAS = ("corner", "corner2")


class DemoError(ConfigError):
    """A demo file or folder that cannot be used; the message names the file and the field."""


@dataclass
class Demo:
    """One demonstration. `frames[camera]` is (T+1, H, W, 3) uint8; the rest may be None (video demos)."""

    frames: dict[str, np.ndarray]
    states: np.ndarray | None = None
    actions: np.ndarray | None = None
    rewards: np.ndarray | None = None
    success: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def length(self) -> int:
        """Number of observations (T+1)."""
        return len(next(iter(self.frames.values()))) if self.frames else len(self.states)

    def observation_only(self) -> "Demo":
        """The same demo without actions or rewards: what observation-only methods may see."""
        return Demo(frames=self.frames, states=self.states, success=self.success, meta=dict(self.meta))


# --- collection -------------------------------------------------------------------------------
def collect_demos(task: str, episodes: int, cameras: Sequence[str] = DEFAULT_CAMERAS, image_size: int = 84,
                  seed: int = 0, max_steps: int = 500, steps_after_success: int = 0, action_noise: float = 0.0,
                  progress: bool = True, keep: str = "success") -> list[Demo]:
    """Run the scripted expert of a Meta-World task and record states, frames from every camera, actions.

    An episode ends `steps_after_success` steps after the success flag first fires (or at `max_steps`).
    Only successful episodes are kept (keep="failed": only those that never succeed, at `max_steps`);
    seeds continue until `episodes` of them are recorded.
    """
    recorded = collect_expert_episodes(task, episodes, seed, max_steps, action_noise, steps_after_success,
                                       list(cameras), image_size, progress, keep)
    return [Demo(frames=e.frames, states=e.states, actions=e.actions, rewards=e.rewards, success=e.success,
                 meta={"seed": e.seed, "success": e.first_success >= 0, "first_success": e.first_success}) for e in recorded]


# --- storage ----------------------------------------------------------------------------------
def save_demos(path: str | Path, demos: Sequence[Demo], task: str, source: str = "metaworld-expert") -> Path:
    """Write demos to one HDF5 file atomically (a crash leaves the old file or none, never half a file)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    cameras = list(demos[0].frames) if demos else []
    with h5py.File(tmp, "w") as f:
        f.attrs.update(format=FORMAT, version=VERSION, task=task, source=source, cameras=cameras,
                       image_size=int(demos[0].frames[cameras[0]].shape[1]) if cameras else 0)
        for i, demo in enumerate(demos):
            group = f.create_group(f"episode_{i:04d}")
            group.attrs.update(seed=int(demo.meta.get("seed", -1)), success=bool(demo.meta.get("success", False)),
                               first_success=int(demo.meta.get("first_success", -1)), length=demo.length - 1)
            for name in ("states", "actions", "rewards", "success"):
                value = getattr(demo, name)
                if value is not None:
                    group.create_dataset(name, data=value)
            for cam, frames in demo.frames.items():
                group.create_dataset(f"frames/{cam}", data=frames, compression="gzip", compression_opts=1, chunks=(1, *frames.shape[1:]))
    os.replace(tmp, path)
    return path


def load_demos(path: str | Path, cameras: Sequence[str] | None = None, need_states: bool = False,
               need_frames: bool = True, limit: int | None = None) -> list[Demo]:
    """Read and validate a demo file; any problem raises DemoError naming the file and the field."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DemoError(f"demo file '{path}' does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DemoError(f"demo file '{path}' is not a readable HDF5 file ({exc.__class__.__name__})") from None
    with f:
        if f.attrs.get("format") != FORMAT:
            raise DemoError(f"demo file '{path}': attribute 'format' is {f.attrs.get('format')!r}, expected '{FORMAT}'")
        stored = [str(c) for c in f.attrs.get("cameras", [])]
        wanted = list(cameras) if cameras is not None else stored
        missing = [c for c in wanted if c not in stored]
        if need_frames and missing:
            raise DemoError(f"demo file '{path}': camera(s) {missing} not recorded (recorded: {stored})")
        names = sorted(k for k in f.keys() if k.startswith("episode_"))
        if not names:
            raise DemoError(f"demo file '{path}' holds no episodes")
        demos = [_read_episode(path, f[name], wanted if need_frames else [], need_states) for name in names[:limit]]
    return demos


def _read_episode(path: Path, group, cameras: Sequence[str], need_states: bool) -> Demo:
    where = f"demo file '{path}', {group.name}"
    try:
        frames = {cam: np.asarray(group[f"frames/{cam}"]) for cam in cameras}
        data = {k: np.asarray(group[k]) for k in ("states", "actions", "rewards", "success") if k in group}
    except (KeyError, OSError) as exc:
        raise DemoError(f"{where}: unreadable field ({exc})") from None
    if need_states and "states" not in data:
        raise DemoError(f"{where}: field 'states' is missing (this method needs state observations)")
    lengths = {f"frames/{cam}": len(v) for cam, v in frames.items()}
    if "states" in data:
        lengths["states"] = len(data["states"])
    if len(set(lengths.values())) > 1:
        raise DemoError(f"{where}: observation fields disagree in length {lengths}")
    for cam, v in frames.items():
        if v.ndim != 4 or v.shape[-1] != 3 or v.dtype != np.uint8:
            raise DemoError(f"{where}: field 'frames/{cam}' has shape {v.shape} {v.dtype}, expected (T+1, H, W, 3) uint8")
    steps = (next(iter(lengths.values())) - 1) if lengths else None
    for key in ("actions", "rewards", "success"):
        if key in data and steps is not None and len(data[key]) != steps:
            raise DemoError(f"{where}: field '{key}' has {len(data[key])} rows, expected {steps} (one per step)")
    if "states" in data and (data["states"].ndim != 2 or not np.all(np.isfinite(data["states"]))):
        raise DemoError(f"{where}: field 'states' must be a finite (T+1, state_dim) array, got shape {data['states'].shape}")
    meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in group.attrs.items()}
    return Demo(frames=frames, **data, meta=meta)


# --- video folders (observation-only demos) -----------------------------------------------------
def load_video_demos(folder: str | Path, image_size: int | None = None, camera: str = "video") -> list[Demo]:
    """Observation-only demos from a folder of MP4 files or of PNG-frame subfolders (read with OpenCV)."""
    import cv2

    folder = Path(folder)
    if not folder.is_dir():
        raise DemoError(f"video demo folder '{folder}' does not exist")
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".mp4", ".avi", ".mov"))
    frame_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and any(p.glob("*.png")))
    if not videos and not frame_dirs:
        raise DemoError(f"video demo folder '{folder}' has no .mp4 files and no subfolders of .png frames")
    demos = []
    for source in videos + frame_dirs:
        frames = _read_video(source) if source.is_file() else _read_png_frames(source)
        if len(frames) < 2:
            raise DemoError(f"video demo '{source}' has {len(frames)} readable frame(s); at least 2 are needed")
        if image_size:
            frames = [cv2.resize(f, (image_size, image_size), interpolation=cv2.INTER_AREA) for f in frames]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise DemoError(f"video demo '{source}' has frames of different sizes {sorted(shapes)}; pass image_size")
        demos.append(Demo(frames={camera: np.stack(frames)}, meta={"source": str(source)}))
    return demos


def _read_video(path: Path) -> list[np.ndarray]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def _read_png_frames(folder: Path) -> list[np.ndarray]:
    import cv2

    frames = []
    for png in sorted(folder.glob("*.png")):
        bgr = cv2.imread(str(png), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DemoError(f"frame '{png}' is not a readable PNG")
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames


def write_video_demos(folder: str | Path, demos: Iterable[Demo], camera: str, fps: int = 20) -> list[Path]:
    """Write one MP4 per demo from one camera (what a filmed demonstration looks like)."""
    import imageio.v2 as imageio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, demo in enumerate(demos):
        path = folder / f"demo_{i:03d}.mp4"
        imageio.mimwrite(path, list(demo.frames[camera]), fps=fps, macro_block_size=1)
        paths.append(path)
    return paths


def progress_labels(demo: Demo) -> np.ndarray:
    """True progress of each observation of an expert demo: 0 at the start, 1 at first success, time-linear."""
    end = int(demo.meta.get("first_success", -1))
    steps = demo.length - 1
    end = steps if end < 0 else end + 1  # first_success indexes the step; its observation is end
    return np.clip(np.arange(demo.length) / max(end, 1), 0.0, 1.0)


# --- demos as training data -----------------------------------------------------------------------
def wrappers_with(env, method: str) -> list:
    """The wrappers of `env` (outermost first) whose class defines `method`."""
    found, layer = [], env
    while layer is not None:
        if hasattr(type(layer), method):
            found.append(layer)
        layer = getattr(layer, "env", None)
    return found


def reward_relabeler(env) -> object | None:
    """The outermost wrapper of `env` that can give demo steps its reward (`relabel_demo`), if any."""
    return next(iter(wrappers_with(env, "relabel_demo")), None)


def observed_states(env, states: np.ndarray) -> np.ndarray:
    """Recorded states as the env observes them: each wrapper that maps states (`transform_states`, e.g. the
    hand frame of envs/hand_frame.py) applied from the innermost out."""
    for layer in reversed(wrappers_with(env, "transform_states")):
        states = layer.transform_states(states)
    return states


def demo_transitions(env, path: str | Path, limit: int | None = None) -> dict[str, np.ndarray]:
    """The demos of a file as (obs, action, reward, next_obs, terminated) transitions, rewarded as the training
    env rewards its own steps: its reward wrapper relabels them (the success flag, a shaped learned reward),
    else the env's own recorded reward. Actions are mapped to the normalised [-1, 1] the agents act in.
    A file without actions (observation-only demos) is refused: it can still fit a learned reward."""
    relabeler = reward_relabeler(env)
    cameras = list(getattr(relabeler, "demo_cameras", None) or [])
    demos = load_demos(path, cameras=cameras or None, need_states=True, need_frames=bool(cameras), limit=limit)
    space = env.action_space
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminated")}
    for i, demo in enumerate(demos):
        if demo.actions is None:
            raise DemoError(f"demo file '{path}', episode {i}: no 'actions' (observation-only demos cannot seed a "
                            "policy or be replayed as data; they can still fit a learned reward)")
        if demo.states.shape[1:] != env.observation_space.shape:
            raise DemoError(f"demo file '{path}': states have shape {demo.states.shape[1:]}, the env observes "
                            f"{env.observation_space.shape} (demos of another task?)")
        if relabeler is not None:
            reward, terminated = relabeler.relabel_demo(demo)
        elif demo.rewards is not None:
            reward, terminated = demo.rewards, np.zeros(len(demo.rewards), dtype=bool)
        else:
            raise DemoError(f"demo file '{path}', episode {i}: no 'rewards' for the env's own reward")
        steps = len(reward)
        states = observed_states(env, demo.states[: steps + 1])
        parts["obs"].append(states[:steps])
        parts["next_obs"].append(states[1 : steps + 1])
        parts["action"].append(2.0 * (demo.actions[:steps] - space.low) / (space.high - space.low) - 1.0)
        parts["reward"].append(np.asarray(reward, dtype=np.float32))
        parts["terminated"].append(np.asarray(terminated, dtype=np.float32))
    return {k: np.concatenate(v).astype(np.float32) for k, v in parts.items()}


def success_steps(demo: Demo, terminate_on_success: bool) -> tuple[np.ndarray, int]:
    """The demo's success flags, and how many of its steps an agent ending episodes at success would see."""
    if demo.success is None:
        raise DemoError("a demo without 'success' flags cannot be rewarded by the success reward")
    success = np.asarray(demo.success, dtype=bool)
    hits = np.flatnonzero(success)
    steps = int(hits[0]) + 1 if terminate_on_success and len(hits) else len(success)
    return success[:steps], steps
