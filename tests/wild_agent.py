"""A misbehaving policy for the deploy fault tests: huge, NaN or raising actions.

A user-defined agent: processes that load its checkpoints import this module first
(ROBO_RL_PLUGINS=wild_agent with tests/ on PYTHONPATH), which registers the class."""
from __future__ import annotations

from typing import Any

import numpy as np

from robo_rl.agents.base import Agent, register_agent


@register_agent
class WildAgent(Agent):
    """config mode: 'huge' (+-1e6 alternating), 'nan' (NaN every other call), 'raise' (error at call 5)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        self.calls += 1
        mode = self.config.get("mode", "huge")
        if mode == "raise" and self.calls > 5:
            raise RuntimeError("policy failure injected by the test")
        if mode == "nan" and self.calls % 2:
            return np.full(self.action_dim, np.nan, dtype=np.float32)
        sign = 1.0 if (self.calls // 10) % 2 == 0 else -1.0
        return np.full(self.action_dim, sign * 1e6, dtype=np.float32)

    def train_step(self, replay: Any) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Any) -> None:
        pass


def save_wild(path, mode: str, obs_dim: int = 21, act_dim: int = 7):
    import gymnasium as gym

    obs = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    act = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
    return WildAgent(obs, act, {"mode": mode}).save(path)
