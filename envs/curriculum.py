"""A forward curriculum over a task's start variants, for the training env only.

Meta-World's single tasks draw each episode's object and goal positions from 50 seeded variants. From one
demonstration, behaviour cloning succeeds only near the demo's own start (`robo-rl bench demos
--coverage`: within about 5 cm), so uniform draws spend most episodes where a sparse reward never fires.
This wrapper chooses the next episode's variant instead, as the forward curriculum of RFCL (Tao et al.,
"Reverse Forward Curriculum Learning for Extreme Sample and Demonstration Efficiency", ICLR 2024) chooses
initial states by their recent success. The rule here is the suite's own:

  * each variant's start observation is read once, at construction (a reset into each variant);
  * p_i: the success rate of variant i over its last `window` episodes (none yet: unknown);
  * weight 1 for the frontier: variants partly solved (0 < p_i < `solved`), and variants not solved yet
    (unknown, or p_i = 0) whose start lies within `radius` of the start of a variant that has succeeded;
  * weight `rest` for everything else (solved variants are rehearsed, far ones still visited), so every
    variant keeps a chance and, before any success, the draw is uniform.

Evaluation envs are never wrapped: success is always measured over the task's own uniform draw. The
curriculum's counts and its generator travel with the training loop's checkpoint (`loop_state`), so a
resumed run draws what the uninterrupted one would.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class StartCurriculum(gym.Wrapper):
    def __init__(self, env: gym.Env, variants: int, seed: int = 0, window: int = 4, solved: float = 0.75,
                 radius: float = 0.05, rest: float = 0.1) -> None:
        super().__init__(env)
        if variants < 2:
            raise ValueError(f"a start curriculum needs at least 2 variants, got {variants}")
        self.variants, self.window, self.solved, self.radius, self.rest = variants, window, solved, radius, rest
        self.rng = np.random.default_rng(seed + 31)
        self.outcomes: list[list[int]] = [[] for _ in range(variants)]
        # each variant's start observation (the object and goal positions are what differ between them)
        self.starts = np.stack([np.asarray(env.reset(options={"variant": i})[0], dtype=np.float64) for i in range(variants)])
        self.current: int | None = None
        self.success = False

    def success_rates(self) -> list[float | None]:
        return [float(np.mean(o[-self.window:])) if o else None for o in self.outcomes]

    def weights(self) -> np.ndarray:
        rates = self.success_rates()
        reached = [i for i, o in enumerate(self.outcomes) if any(o)]
        weights = np.full(self.variants, self.rest)
        for i, rate in enumerate(rates):
            if rate is not None and 0.0 < rate < self.solved:
                weights[i] = 1.0
            elif (rate is None or rate == 0.0) and reached:
                nearest = np.min(np.linalg.norm(self.starts[reached] - self.starts[i], axis=1))
                weights[i] = 1.0 if nearest <= self.radius else self.rest
        return weights

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        if self.current is not None:   # the episode that just ended
            self.outcomes[self.current].append(int(self.success))
        weights = self.weights()
        self.current = int(self.rng.choice(self.variants, p=weights / weights.sum()))
        self.success = False
        obs, info = self.env.reset(seed=seed, options={**(options or {}), "variant": self.current})
        info["curriculum_variant"] = self.current
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.success = self.success or bool(info.get("success", False))
        return obs, reward, terminated, truncated, info

    # --- the training loop's checkpoint -------------------------------------------------------------
    def loop_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "outcomes": [list(o) for o in self.outcomes],
                "current": self.current, "success": self.success}

    def load_loop_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.outcomes = [list(map(int, o)) for o in state["outcomes"]]
        self.current = None if state["current"] is None else int(state["current"])
        self.success = bool(state["success"])


def start_curriculum(env: gym.Env, env_cfg: dict[str, Any], seed: int) -> gym.Env:
    """The training env, under a start curriculum when `env.start_curriculum` asks for one (Meta-World)."""
    if not env_cfg.get("start_curriculum"):
        return env
    from robo_rl.envs.decision import wrapper_layers
    from robo_rl.envs.factory import MetaWorldTask

    task = next((layer for layer in wrapper_layers(env) if isinstance(layer, MetaWorldTask)), None)
    if task is None:
        raise ValueError(f"env.start_curriculum is for Meta-World tasks (their start variants), not env.family={env_cfg.get('family')}")
    return StartCurriculum(env, len(task.tasks), seed)
