"""Pixel observations for any env of the suite: RGB frames from one or more cameras, frame-stacked.

Observation layout is channel-first uint8, (3 * cameras * frame_stack, size, size), newest frame
last, as DrQ-style encoders expect. The state observation stays available in `info["state"]`.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from robo_rl.envs.render import CameraRenderer


class PixelObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    def __init__(self, env: gym.Env, size: int = 84, frame_stack: int = 3, cameras: Sequence[str] = ("default",)) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, size=size, frame_stack=frame_stack, cameras=list(cameras))
        gym.ObservationWrapper.__init__(self, env)
        if frame_stack < 1:
            raise ValueError(f"pixels.frame_stack must be >= 1, got {frame_stack}")
        self.renderer = CameraRenderer(env, list(cameras), size)
        self.frame_stack = int(frame_stack)
        self.frames: deque[np.ndarray] = deque(maxlen=self.frame_stack)
        channels = 3 * len(self.renderer.cameras) * self.frame_stack
        self.observation_space = gym.spaces.Box(0, 255, shape=(channels, size, size), dtype=np.uint8)

    def _frame(self) -> np.ndarray:
        views = self.renderer.render()
        return np.concatenate([v.transpose(2, 0, 1) for v in views], axis=0)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        state, info = self.env.reset(**kwargs)
        frame = self._frame()
        for _ in range(self.frame_stack):
            self.frames.append(frame)
        info["state"] = state
        return self.observation(state), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        state, reward, terminated, truncated, info = self.env.step(action)
        self.frames.append(self._frame())
        info["state"] = state
        return self.observation(state), reward, terminated, truncated, info

    def observation(self, observation: Any) -> np.ndarray:
        return np.concatenate(list(self.frames), axis=0)

    def close(self) -> None:
        self.renderer.close()
        super().close()
