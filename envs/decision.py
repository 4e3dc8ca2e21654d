"""Decision frequency as a setting: the policy decides every `interval` primitive env steps.

  DecisionInterval(env, interval, mode="repeat")    one action, repeated `interval` times
  DecisionInterval(env, interval, mode="sequence")  `interval` actions (shape (interval, *action)),
                                                     executed in order, open loop

Rewards of the primitive steps are summed (undiscounted). A termination or truncation inside the
interval ends it at once: the remaining actions are not executed, and the returned observation,
flags and info are those of the step that ended the episode. `info["primitive_steps"]` says how many
steps ran and `info["primitive_rewards"]` lists their rewards. Works for every env family.
"""
from __future__ import annotations

from typing import Any, Iterator

import gymnasium as gym
import numpy as np

MODES = ("repeat", "sequence")


class DecisionInterval(gym.Wrapper):
    def __init__(self, env: gym.Env, interval: int, mode: str = "repeat") -> None:
        super().__init__(env)
        if int(interval) < 1:
            raise ValueError(f"decision interval must be >= 1, got {interval}")
        if mode not in MODES:
            raise ValueError(f"decision mode must be one of {', '.join(MODES)}, got '{mode}'")
        self.interval = int(interval)
        self.mode = mode
        space = env.action_space
        if mode == "sequence":
            self.action_space = gym.spaces.Box(np.broadcast_to(space.low, (self.interval, *space.shape)).copy(),
                                               np.broadcast_to(space.high, (self.interval, *space.shape)).copy(),
                                               dtype=space.dtype)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        actions = np.asarray(action)
        if self.mode == "sequence" and actions.shape[0] != self.interval:
            raise ValueError(f"a sequence needs {self.interval} actions, got shape {actions.shape}")
        total, rewards = 0.0, []
        obs, terminated, truncated, info = None, False, False, {}
        for i in range(self.interval):
            obs, reward, terminated, truncated, info = self.env.step(actions[i] if self.mode == "sequence" else actions)
            total += float(reward)
            rewards.append(float(reward))
            if terminated or truncated:
                break
        info = dict(info)
        info["primitive_steps"] = len(rewards)
        info["primitive_rewards"] = rewards
        return obs, total, terminated, truncated, info


def wrapper_layers(env: gym.Env) -> Iterator[gym.Env]:
    """`env` and every env it wraps, outermost first."""
    layer = env
    while layer is not None:
        yield layer
        layer = getattr(layer, "env", None)


def is_repeat(layer: gym.Env) -> bool:
    return isinstance(layer, DecisionInterval) and layer.mode == "repeat"


def action_repeat(env: gym.Env) -> int:
    """Primitive steps per decision of `env`: the product of the repeat layers it is wrapped in."""
    return int(np.prod([layer.interval for layer in wrapper_layers(env) if is_repeat(layer)], dtype=np.int64))
