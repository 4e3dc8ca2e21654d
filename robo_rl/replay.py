"""The replay store every off-policy agent shares: preallocated numpy arrays used as a ring.

No Python objects are created per transition: `add` writes into fixed slots, `sample` gathers a
batch with one fancy-index per field and hands torch tensors that share the gathered memory.
`terminated` is stored apart from time-limit truncation so agents bootstrap through truncation.

Samplers: uniform (`sample`), and fading (`FadingSampler`, Symphony's age-weighted sampling). Age
is derived from the ring position (oldest = 0), so no array is ever shifted.
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
        keep_terminals: bool = False,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        self.obs_shape, self.action_dim, self.obs_dtype = tuple(obs_shape), int(action_dim), obs_dtype
        self._allocate(int(capacity))
        self.pos = 0  # next slot to write
        self.size = 0  # filled slots
        self.added = 0  # transitions ever added (ages are derived from it)
        self.last_index = -1
        self.tiled = False  # copies of one transition in several slots (see `tile` and `origin`)
        self.rng = np.random.default_rng(seed)
        # Symphony's rule: when the oldest transition is terminal, it is moved to the newest end
        # instead of being overwritten next, so terminal transitions (rare, and the only ones that
        # teach falling) stay in memory.
        self.keep_terminals = bool(keep_terminals)

    def _allocate(self, capacity: int) -> None:
        self.capacity = capacity
        self.obs = np.zeros((capacity, *self.obs_shape), dtype=self.obs_dtype)
        self.next_obs = np.zeros((capacity, *self.obs_shape), dtype=self.obs_dtype)
        self.action = np.zeros((capacity, self.action_dim), dtype=np.float32)
        self.reward = np.zeros((capacity, 1), dtype=np.float32)
        self.terminated = np.zeros((capacity, 1), dtype=np.float32)
        # Which transition (its number in order of adding) each slot holds: after `tile` several slots
        # hold copies of one transition, and a reward relabeled later must reach every copy.
        self.origin = np.full(capacity, -1, dtype=np.int64)

    def grow(self, capacity: int) -> None:
        """Enlarge the store (a run resumed with a larger budget) keeping every transition, their order
        and so their ages: the ring is unrolled oldest-first into the new arrays."""
        if capacity <= self.capacity:
            return
        order = (self.oldest + np.arange(self.size)) % self.capacity  # slots, oldest to newest
        kept = {name: getattr(self, name)[order] for name in (*FIELDS, "origin")}
        old_capacity, oldest = self.capacity, self.oldest
        self._allocate(int(capacity))
        for name, values in kept.items():
            getattr(self, name)[: self.size] = values
        if self.last_index >= 0:
            self.last_index = int((self.last_index - oldest) % old_capacity)
        self.pos = self.size

    def __len__(self) -> int:
        return self.size

    @property
    def oldest(self) -> int:
        """Slot of the oldest transition (age index 0)."""
        return self.pos if self.size == self.capacity else 0

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminated: bool) -> None:
        i = self.pos
        self.obs[i] = obs
        self.action[i] = action
        self.reward[i, 0] = reward
        self.next_obs[i] = next_obs
        self.terminated[i, 0] = terminated
        self.origin[i] = self.added
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.added += 1
        self.last_index = i  # slot of the newest transition (a reward relabeler rewrites it later)
        if self.keep_terminals and self.size == self.capacity and self.terminated[self.pos, 0]:
            # The oldest transition is terminal: in a full ring, stepping past it makes it the newest.
            self.pos = (self.pos + 1) % self.capacity

    def tile(self, times: int) -> None:
        """Repeat the stored transitions `times` times, in order (Symphony fills its buffer this way
        after exploration). Needs size * times <= capacity."""
        n = self.size
        if n == 0 or times < 1 or n * times > self.capacity or self.added != n:
            raise ValueError(f"cannot tile {n} transitions {times} times into capacity {self.capacity}")
        if times == 1:
            return
        for name in (*FIELDS, "origin"):
            field = getattr(self, name)
            field[n : n * times] = np.concatenate([field[:n]] * (times - 1), axis=0)
        self.size = n * times
        self.tiled = True
        self.pos = self.size % self.capacity

    def set_rewards(self, slots: np.ndarray, rewards: np.ndarray) -> None:
        """Relabel the rewards of the transitions in `slots` (a reward known only at an episode's end),
        and of every tiled copy of them still in memory."""
        slots = np.asarray(slots, dtype=np.int64)
        rewards = np.asarray(rewards, dtype=np.float32).reshape(-1)
        if slots.shape != rewards.shape:
            raise ValueError(f"{len(slots)} slots but {len(rewards)} rewards")
        self.reward[slots, 0] = rewards
        if not self.tiled or len(slots) == 0:
            return
        ids = self.origin[slots]
        order = np.argsort(ids)
        ids, rewards = ids[order], rewards[order]
        held = self.origin[: self.size]
        where = np.minimum(np.searchsorted(ids, held), len(ids) - 1)
        copies = np.flatnonzero(ids[where] == held)
        self.reward[copies, 0] = rewards[where[copies]]

    def sample_indices(self, batch_size: int) -> np.ndarray:
        """Uniform indices over the filled slots."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        return self.rng.integers(0, self.size, size=batch_size)

    def gather(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(getattr(self, name)[idx]) for name in FIELDS}

    def batch_buffers(self, batch_size: int) -> dict[str, np.ndarray]:
        """Preallocated arrays for `gather_into`: one batch of every field."""
        return {name: np.empty((batch_size, *getattr(self, name).shape[1:]), dtype=getattr(self, name).dtype)
                for name in FIELDS}

    def gather_into(self, idx: np.ndarray, out: dict[str, np.ndarray]) -> None:
        """Copy the transitions at `idx` into preallocated arrays (no allocation per batch)."""
        for name in FIELDS:
            np.take(getattr(self, name), idx, axis=0, out=out[name])

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        return self.gather(self.sample_indices(batch_size))

    # Checkpointing: only the filled part is stored, plus the write position and the sampler's RNG.
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: getattr(self, name)[: self.size] for name in (*FIELDS, "origin")}
        state.update(pos=self.pos, size=self.size, added=self.added, capacity=self.capacity, tiled=int(self.tiled))
        state["rng"] = self.rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a stored store. A checkpoint of another capacity (a run resumed with another budget)
        is restored at its own capacity and then grown to the configured one; it is never shrunk, so no
        stored transition is lost."""
        configured = self.capacity
        if int(state["capacity"]) != self.capacity:
            self._allocate(int(state["capacity"]))
        size = state["size"]
        for name in FIELDS:
            stored = np.asarray(state[name])
            target = getattr(self, name)
            if stored.shape[1:] != target.shape[1:]:
                raise ValueError(f"replay field '{name}' has shape {stored.shape[1:]}, expected {target.shape[1:]}")
            target[:size] = stored
        if "origin" in state:  # checkpoints written before copies were tracked lack it (never tiled then)
            self.origin[:size] = np.asarray(state["origin"])
            self.tiled = bool(int(state.get("tiled", 0)))
        self.pos, self.size, self.added = state["pos"], size, state["added"]
        self.rng.bit_generator.state = state["rng"]
        self.grow(configured)


def fading_weights(n: int) -> np.ndarray:
    """Symphony S2's sampling weights over ages x = i/n (oldest i = 0):
    tanh((pi x)^pi) - 0.02 exp(-((x - 1)/0.02)^2), normalised. Recent memory dominates (the newest half
    gets about 67%) while a long-term trail remains (the oldest 25% still gets about 4%)."""
    x = np.arange(n, dtype=np.float64) / n
    w = np.tanh((np.pi * x) ** np.pi) - 0.02 * np.exp(-(((x - 1.0) / 0.02) ** 2))
    return w / w.sum()


class FadingSampler:
    """Fading replay: draws ages from `fading_weights` (with replacement) by inverse-CDF lookup,
    O(batch log n) per batch, and maps them to ring slots."""

    def __init__(self) -> None:
        self._n = -1
        self._cdf = np.zeros(0)

    def indices(self, replay: ReplayBuffer, batch_size: int) -> np.ndarray:
        n = replay.size
        if n == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        if n != self._n:  # only changes before the buffer is full
            self._cdf = np.cumsum(fading_weights(n))
            self._n = n
        ages = np.searchsorted(self._cdf, replay.rng.random(batch_size) * self._cdf[-1], side="right")
        np.minimum(ages, n - 1, out=ages)
        return (replay.oldest + ages) % replay.capacity
