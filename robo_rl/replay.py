"""The replay store every off-policy agent shares: preallocated numpy arrays used as a ring.

No Python objects are created per transition: `add` writes into fixed slots, `sample` gathers a
batch with one fancy-index per field and hands torch tensors that share the gathered memory.
`terminated` is stored apart from time-limit truncation so agents bootstrap through truncation.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


class ReplayBuffer:
    def __init__(
        self,
        obs_shape: tuple[int, ...],
        action_dim: int,
        capacity: int,
        obs_dtype: np.dtype | type = np.float32,
        seed: int = 0,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.action = np.zeros((capacity, action_dim), dtype=np.float32)
        self.reward = np.zeros((capacity, 1), dtype=np.float32)
        self.terminated = np.zeros((capacity, 1), dtype=np.float32)
        self.pos = 0  # next slot to write
        self.size = 0  # filled slots
        self.added = 0  # transitions ever added (ages are derived from it)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminated: bool) -> None:
        i = self.pos
        self.obs[i] = obs
        self.action[i] = action
        self.reward[i, 0] = reward
        self.next_obs[i] = next_obs
        self.terminated[i, 0] = terminated
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.added += 1

    def sample_indices(self, batch_size: int) -> np.ndarray:
        """Uniform indices over the filled slots."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        return self.rng.integers(0, self.size, size=batch_size)

    def gather(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(getattr(self, name)[idx]) for name in FIELDS}

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        return self.gather(self.sample_indices(batch_size))

    # Checkpointing: only the filled part is stored, plus the write position and the sampler's RNG.
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: getattr(self, name)[: self.size] for name in FIELDS}
        state.update(pos=self.pos, size=self.size, added=self.added, capacity=self.capacity)
        state["rng"] = self.rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"replay capacity {state['capacity']} in checkpoint, {self.capacity} configured")
        size = state["size"]
        for name in FIELDS:
            stored = np.asarray(state[name])
            target = getattr(self, name)
            if stored.shape[1:] != target.shape[1:]:
                raise ValueError(f"replay field '{name}' has shape {stored.shape[1:]}, expected {target.shape[1:]}")
            target[:size] = stored
        self.pos, self.size, self.added = state["pos"], size, state["added"]
        self.rng.bit_generator.state = state["rng"]
