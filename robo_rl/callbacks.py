"""Callbacks for the training loop, SB3-style: hooks at start, every step, episode end, eval, end.

`on_step` returning False stops training (the loop then writes its final checkpoint).
"""
from __future__ import annotations

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
