"""Learned rewards as an env wrapper, and their files.

A reward file is `<name>.safetensors` (arrays) plus `<name>.json` (kind, cameras, image size, the feature
weights it was fitted on, settings); `robo-rl demos fit` writes both atomically. The wrapper renders the
reward's cameras after every step, embeds the frames with the frozen feature net and replaces the
reward the agent sees; `info["env_reward"]` keeps the env's own. Agents never know which reward they get.

Task reward under the learned term (`base`): `env` (the env's reward), `sparse` (1 on a step where the
task's success flag is on, else 0; with `terminate_on_success` the episode ends there), or `none`.
Each kind gives a potential Phi(s) in [0, 1]: a process model's progress, or the perceptual reward R_perceptual(s).
It is paid either plain or as potential-based shaping (Ng, Harada, Russell, ICML 1999), policy-invariant:
- plain:   r = base + scale * Phi(s')  (the perceptual reward's default; for a process model the semantic-trap
           control: it rewards sitting in high-progress states)
- shaping: r = base + scale * (gamma * Phi(s') - Phi(s)), Phi(s') = 0 when s' is terminal (a process model's default)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from robo_rl.config import ConfigError
from robo_rl.rewards.features import FeatureNet, load_feature_net
from robo_rl.rewards.perceptual import PerceptualReward
from robo_rl.rewards.process import ProcessRewardModel
from robo_rl.rewards.shaping import shaped_reward

KINDS = ("perceptual", "process")
BASES = ("env", "sparse", "none")


class RewardFileError(ConfigError):
    pass


def save_reward(path: str | Path, kind: str, tensors: dict[str, Any], manifest: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: torch.as_tensor(np.asarray(v)).contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)
    meta = path.with_suffix(".json")
    tmp = meta.with_name(meta.name + ".tmp")
    tmp.write_text(json.dumps({"kind": kind, **manifest}, indent=2))
    os.replace(tmp, meta)
    return path


def load_reward(path: str | Path) -> tuple[dict[str, Any], Any, FeatureNet]:
    """(manifest, reward object, feature net) of a reward file; errors name the file and the field."""
    from safetensors.torch import load_file

    path = Path(path).with_suffix(".safetensors")
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise RewardFileError(f"reward.model: '{path}' (and its .json) not found; fit one with `robo-rl demos fit`")
    manifest = json.loads(meta_path.read_text())
    kind = manifest.get("kind")
    if kind not in KINDS:
        raise RewardFileError(f"reward file '{meta_path}': field 'kind' is {kind!r} (valid: {', '.join(KINDS)})")
    for key in ("cameras", "image_size", "features"):
        if key not in manifest:
            raise RewardFileError(f"reward file '{meta_path}': field '{key}' is missing")
    features_path = Path(manifest["features"])
    if not features_path.is_absolute():
        features_path = meta_path.parent / features_path
    net = load_feature_net(features_path)
    tensors = {k: v.numpy() for k, v in load_file(str(path)).items()}
    if kind == "perceptual":
        reward: Any = PerceptualReward(**{k: tensors[k] for k in ("mean", "scale", "selected", "step_mean", "step_std", "weights")})
    else:
        reward = ProcessRewardModel.from_state({k: torch.as_tensor(v) for k, v in tensors.items() if k.startswith(("net.", "norm."))},
                                               manifest["cameras"], int(manifest.get("hidden", 256)))
        reward.goal = tensors["goal"]
    return manifest, reward, net


class LearnedReward(gym.Wrapper):
    """Replaces the env's reward with a learned one (see the module docstring for the formulas)."""

    def __init__(self, env: gym.Env, model: str, base: str = "sparse", scale: float = 1.0, gamma: float = 0.99,
                 terminate_on_success: bool = True, name: str = "learned", plain: bool | None = None) -> None:
        from robo_rl.envs.render import CameraRenderer

        super().__init__(env)
        if base not in BASES:
            raise ValueError(f"reward.base '{base}' is unknown (valid: {', '.join(BASES)})")
        self.manifest, self.reward_model, self.net = load_reward(model)
        self.kind = self.manifest["kind"]
        self.base, self.scale, self.gamma = base, float(scale), float(gamma)
        self.terminate_on_success = bool(terminate_on_success)
        # plain=None: the kind's own way of paying its potential (perceptual: plain, process: shaping)
        self.plain = self.kind == "perceptual" if plain is None else bool(plain)
        self.renderer = CameraRenderer(env, self.manifest["cameras"], int(self.manifest["image_size"]))
        self.start: np.ndarray | None = None
        self.phi = 0.0

    def _views(self) -> np.ndarray:
        """Current frame features, (V, D)."""
        return self.net.features(np.stack(self.renderer.render()))

    def _potentials(self, views: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Phi of each frame of (T, V, D) features: the process model's progress from the episode's start
        (`start`, (V, D)), or the perceptual reward of the first camera (it was fitted on one view)."""
        if self.kind == "process":
            return self.reward_model.progress(views, start, self.reward_model.goal)
        return np.asarray(self.reward_model(views[:, 0]), dtype=np.float64)

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        views = self._views()
        self.start = views
        self.phi = float(self._potentials(views[None], views)[0])
        return obs, info

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        success = float(info.get("success", 0.0)) > 0
        if self.terminate_on_success and success:
            terminated = True
        base = {"env": float(env_reward), "sparse": float(success), "none": 0.0}[self.base]
        next_phi = float(self._potentials(self._views()[None], self.start)[0])
        learned = next_phi if self.plain else float(shaped_reward(0.0, self.phi, next_phi, self.gamma, terminated))
        info["progress"] = next_phi
        self.phi = next_phi
        info["env_reward"] = float(env_reward)
        info["learned_reward"] = learned
        return obs, base + self.scale * learned, terminated, truncated, info

    @property
    def demo_cameras(self) -> list[str]:
        return list(self.manifest["cameras"])

    def relabel_demo(self, demo: Any) -> tuple[np.ndarray, np.ndarray]:
        """This wrapper's reward for each step of a recorded demo (its frames at the reward's cameras), and the
        terminated flags: what an agent trained on this reward would have seen playing the demo."""
        from robo_rl.rewards.demos import success_steps

        success, steps = success_steps(demo, self.terminate_on_success)
        size = int(self.manifest["image_size"])
        frames = [demo.frames[cam] for cam in self.demo_cameras]
        if frames[0].shape[1] != size:
            raise ValueError(f"demo frames are {frames[0].shape[1]} px, the reward model takes {size} px")
        views = np.stack([self.net.features(f[: steps + 1]) for f in frames], axis=1)   # (T+1, V, D)
        terminated = success & self.terminate_on_success
        env_reward = demo.rewards[:steps] if demo.rewards is not None else np.zeros(steps)
        base = {"env": env_reward, "sparse": success.astype(np.float64), "none": np.zeros(steps)}[self.base]
        phi = self._potentials(views, views[0])
        learned = phi[1:] if self.plain else shaped_reward(0.0, phi[:-1], phi[1:], self.gamma, terminated)
        return base + self.scale * learned, terminated

    def close(self) -> None:
        self.renderer.close()
        super().close()


class SparseSuccess(gym.Wrapper):
    """The task's success flag as the only reward (1 on success, else 0), optionally ending the episode."""

    def __init__(self, env: gym.Env, terminate_on_success: bool = True, name: str = "sparse") -> None:
        super().__init__(env)
        self.terminate_on_success = bool(terminate_on_success)

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        success = float(info.get("success", 0.0)) > 0
        info["env_reward"] = float(env_reward)
        return obs, float(success), terminated or (self.terminate_on_success and success), truncated, info

    def relabel_demo(self, demo: Any) -> tuple[np.ndarray, np.ndarray]:
        """The success reward of each step of a recorded demo, and its terminated flags."""
        from robo_rl.rewards.demos import success_steps

        success, _ = success_steps(demo, self.terminate_on_success)
        return success.astype(np.float64), success & self.terminate_on_success
