"""The offline loop: batches from datasets -> model update -> evaluation -> checkpoint.

Pre-training and every fine-tuning method share it (the online loop is robo_rl/train.py). A phase is a
fixed number of updates on one sampler; the checkpoint (the run folder's checkpoint.safetensors, the
suite's format) holds the agent, the phase's name and position and the sampler's RNG, so a killed run
continues at its last checkpoint with the same batches it would have drawn. Ctrl-C or SIGTERM stop at the
next update with a checkpoint.
"""
from __future__ import annotations

import math
import signal
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from robo_rl.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from robo_rl.logger import ProgressBar, write_json
from robo_rl.train import TrainingInterrupted, catch_stop_signals


class WindowSampler:
    """Context windows of `context` timesteps from episodes of one or more tasks.

    A window ends at a uniformly drawn step of a uniformly drawn episode (tasks drawn uniformly first);
    steps before the episode's start are padding (valid = False). Returns-to-go and rewards are divided
    by `reward_scale`; states are zero-padded to `state_dim`."""

    def __init__(self, tasks_episodes: Sequence[Sequence[Any]], context: int, state_dim: int,
                 reward_scale: float, max_timestep: int, seed: int = 0) -> None:
        self.context, self.max_timestep = int(context), int(max_timestep)
        self.rng = np.random.default_rng(seed)
        self.tasks = []
        for episodes in tasks_episodes:
            states = np.stack([_pad(e.observations[:-1], state_dim) for e in episodes])        # [N, T, D]
            rewards = np.stack([e.rewards for e in episodes]).astype(np.float32)                # [N, T]
            returns = np.flip(np.cumsum(np.flip(rewards, 1), 1), 1).copy()                       # return-to-go
            actions = np.stack([e.actions for e in episodes]).astype(np.float32)                # [N, T, A]
            self.tasks.append((states, returns / reward_scale, actions, rewards / reward_scale))
        self.best_return = float(max(t[1][:, 0].max() for t in self.tasks) * reward_scale)

    def sample(self, batch: int) -> dict[str, torch.Tensor]:
        task = self.rng.integers(len(self.tasks), size=batch)
        out = {k: [] for k in ("states", "returns", "actions", "rewards", "timesteps", "valid")}
        for t in np.unique(task):
            states, returns, actions, rewards = self.tasks[t]
            n = int((task == t).sum())
            episode = self.rng.integers(states.shape[0], size=n)
            end = self.rng.integers(states.shape[1], size=n)
            steps = end[:, None] - np.arange(self.context - 1, -1, -1)[None]                     # [n, K]
            valid = steps >= 0
            clipped = np.clip(steps, 0, None)
            for key, source in (("states", states), ("returns", returns), ("actions", actions), ("rewards", rewards)):
                window = source[episode[:, None], clipped]
                out[key].append(np.where(valid.reshape(*valid.shape, *([1] * (window.ndim - 2))), window, 0))
            out["timesteps"].append(np.minimum(clipped, self.max_timestep - 1))
            out["valid"].append(valid)
        batch_arrays = {k: np.concatenate(v) for k, v in out.items()}
        dtypes = {"timesteps": torch.long, "valid": torch.bool}
        return {k: torch.as_tensor(v, dtype=dtypes.get(k, torch.float32)) for k, v in batch_arrays.items()}

    def state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def _pad(states: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros((states.shape[0], width), np.float32)
    out[:, :states.shape[1]] = states
    return out


def cosine_lr(update: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to `peak`, then cosine decay to 10% of it (pre-training's schedule)."""
    if update < warmup:
        return peak * (update + 1) / warmup
    progress = (update - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


class OfflineTrainer:
    """Runs one phase of `updates` updates of `agent` on `sampler`, resumable from the run folder."""

    def __init__(self, agent: Any, sampler: WindowSampler, updates: int, run_dir: str | Path, phase: str,
                 checkpoint_every: int = 500, progress: bool = True, lr_schedule: Callable[[int], float] | None = None,
                 run_info: Mapping[str, Any] | None = None) -> None:
        self.agent, self.sampler, self.updates = agent, sampler, int(updates)
        self.run_dir, self.phase = Path(run_dir), str(phase)
        self.checkpoint_every, self.progress = int(checkpoint_every), bool(progress)
        self.lr_schedule, self.run_info = lr_schedule, dict(run_info or {})
        self.done, self.losses = 0, []
        self._stop: int | None = None

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    def save(self) -> None:
        state = {"agent": self.agent.state_dict(), "offline": {"phase": self.phase, "done": self.done},
                 "sampler": self.sampler.state(), "torch_rng": torch.get_rng_state()}
        save_checkpoint(self.checkpoint_path, state, {"step": self.agent.updates, "agent": self.agent.describe(), **self.run_info})

    def resume(self) -> bool:
        """Continue this phase from the checkpoint if it was saved inside it."""
        if not self.checkpoint_path.exists():
            return False
        state, _ = load_checkpoint(self.checkpoint_path)
        if state.get("offline", {}).get("phase") != self.phase:
            return False
        self.agent.load_state_dict(state["agent"])
        self.sampler.load(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        self.done = int(state["offline"]["done"])
        return True

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop is not None:
            raise KeyboardInterrupt
        self._stop = signum

    def run(self) -> list[float]:
        """The phase's updates; returns the loss every 50 updates (for the log)."""
        previous = catch_stop_signals(self._on_signal)
        bar = ProgressBar(self.updates, start=self.done, enabled=self.progress, label=self.phase, plain_every=500)
        try:
            while self.done < self.updates:
                if self.lr_schedule is not None:
                    self.agent.set_learning_rate(self.lr_schedule(self.done))
                metrics = self.agent.update(self.sampler.sample(self.agent.batch_size))
                self.done += 1
                if self.done % 50 == 0:
                    self.losses.append(float(metrics["loss"]))
                    bar.update(self.done, None)
                if self.done % self.checkpoint_every == 0 or self.done == self.updates:
                    self.save()
                if self._stop is not None:
                    self.save()
                    raise TrainingInterrupted(f"stopped in {self.phase} at update {self.done} of {self.updates}; "
                                              f"checkpoint saved in {self.run_dir}")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            bar.update(self.done)
            bar.close()
        write_json(self.run_dir / f"losses_{self.phase}.json", self.losses)
        return self.losses
