"""Callbacks for the training loop, SB3-style: hooks at start, every step, episode end, eval, end.

`on_step` returning False stops training (the loop then writes its final checkpoint).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


class Callback:
    def on_training_start(self, trainer: Any) -> None: ...

    def on_step(self, trainer: Any) -> bool | None:
        return True

    def on_episode_end(self, trainer: Any, episode_return: float, episode_length: int) -> None: ...

    def on_eval(self, trainer: Any, result: dict[str, Any]) -> None: ...

    def on_training_end(self, trainer: Any) -> None: ...


class StopOnReturn(Callback):
    """Stop once a deterministic evaluation reaches `threshold` mean return."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._reached = False

    def on_eval(self, trainer: Any, result: dict[str, Any]) -> None:
        self._reached = result["mean_return"] >= self.threshold

    def on_step(self, trainer: Any) -> bool:
        return not self._reached


class EveryNSteps(Callback):
    """Call `fn(trainer)` every `n` env steps (e.g. extra checkpoints, custom logging)."""

    def __init__(self, n: int, fn: Callable[[Any], Any]) -> None:
        self.n, self.fn = int(n), fn

    def on_step(self, trainer: Any) -> bool:
        if trainer.step % self.n == 0:
            self.fn(trainer)
        return True


class CheckpointCallback(Callback):
    """Save an agent snapshot (weights and optimiser state, no replay) every `every` steps, as
    `<folder>/<prefix>_<step>.safetensors`; the loop's own resumable checkpoint is separate. A snapshot
    carries the run's metadata (its env, its config), so `robo-rl eval run=<snapshot>` plays it."""

    def __init__(self, every: int, folder: str | Path, prefix: str = "agent") -> None:
        self.every, self.folder, self.prefix = int(every), Path(folder), prefix
        self.saved: list[Path] = []

    def on_step(self, trainer: Any) -> bool:
        if trainer.step % self.every == 0:
            info = {"step": trainer.step, **getattr(trainer, "run_info", {})}
            self.saved.append(trainer.agent.save(self.folder / f"{self.prefix}_{trainer.step}.safetensors", info))
        return True


class EvalCallback(Callback):
    """Evaluate on `eval_env` every `every` steps; keep the best agent as `<folder>/best.safetensors`
    and the history in `self.results`. Stops training once `stop_at` mean return is reached."""

    def __init__(self, eval_env: Any, every: int, episodes: int = 10, folder: str | Path | None = None,
                 stop_at: float | None = None, seed: int = 50_000) -> None:
        self.eval_env, self.every, self.episodes = eval_env, int(every), int(episodes)
        self.folder = Path(folder) if folder is not None else None
        self.stop_at, self.seed = stop_at, seed
        self.results: list[dict[str, Any]] = []
        self.best = float("-inf")

    def on_step(self, trainer: Any) -> bool:
        if trainer.step % self.every:
            return True
        from robo_rl.evaluate import evaluate

        result = {"step": trainer.step, **evaluate(trainer.agent, self.eval_env, self.episodes, seed=self.seed)}
        self.results.append(result)
        if result["mean_return"] > self.best:
            self.best = result["mean_return"]
            if self.folder is not None:
                trainer.agent.save(self.folder / "best.safetensors")
        return self.stop_at is None or result["mean_return"] < self.stop_at
