"""The one training loop every agent uses.

    env.step -> replay.add -> agent.train_step(replay) -> eval / checkpoint / log

Stopping: SIGINT or SIGTERM (Ctrl-C, `kill`, a cluster's pre-emption notice) lets the current
episode finish, writes a checkpoint there and raises `TrainingInterrupted`; a second signal stops
at once and keeps the last checkpoint.

Resumability: a checkpoint is written at the first episode end after each `checkpoint_every`
steps (just before the next reset). It holds the agent, the replay store, the loop counters and
every RNG that the loop touches (torch, the warm-up sampler, the env's), so a run killed at any
moment and resumed continues exactly where the checkpoint left it: on CPU with a fixed seed it
reaches the same parameters as a run that was never interrupted.
"""
from __future__ import annotations

import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import gymnasium as gym
import numpy as np
import torch

from robo_rl.agents.base import Agent, to_env_action
from robo_rl.callbacks import Callback
from robo_rl.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from robo_rl.evaluate import evaluate
from robo_rl.logger import ProgressBar, RunLogger, write_json


class TrainingInterrupted(KeyboardInterrupt):
    """A stop signal arrived; the loop saved its checkpoint at the end of the episode it was in."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def env_rng_state(env: gym.Env) -> dict[str, Any]:
    """RNG states the env will draw from at its next reset (Gymnasium and dm_control)."""
    base = env.unwrapped
    state: dict[str, Any] = {}
    if getattr(base, "_np_random", None) is not None:
        state["np_random"] = base._np_random.bit_generator.state
    task = getattr(getattr(base, "_env", None), "task", None)
    if task is not None and hasattr(task, "random"):
        state["dm_random"] = list(task.random.get_state())
    from robo_rl.envs.decision import wrapper_layers

    # wrappers that choose what the env does next (a start curriculum) keep their counts with the loop's
    layers = [layer.loop_state() for layer in wrapper_layers(env) if hasattr(layer, "loop_state")]
    if layers:
        state["wrappers"] = layers
    return state


def set_env_rng_state(env: gym.Env, state: dict[str, Any]) -> None:
    base = env.unwrapped
    if "np_random" in state:
        base._np_random = np.random.Generator(getattr(np.random, state["np_random"]["bit_generator"])())
        base._np_random.bit_generator.state = state["np_random"]
    if "dm_random" in state:
        base._env.task.random.set_state(tuple(state["dm_random"]))
    from robo_rl.envs.decision import wrapper_layers

    layers = [layer for layer in wrapper_layers(env) if hasattr(layer, "loop_state")]
    for layer, layer_state in zip(layers, state.get("wrappers", [])):
        layer.load_loop_state(layer_state)


def episode_limit(env: gym.Env) -> int | None:
    """Decisions per episode under the outermost TimeLimit wrapper, if any (its primitive steps divided
    by the action repeat of the layers above it)."""
    from robo_rl.envs.decision import is_repeat, wrapper_layers

    repeat = 1
    for layer in wrapper_layers(env):
        if isinstance(layer, gym.wrappers.TimeLimit):
            return -(-int(layer._max_episode_steps) // repeat)
        if is_repeat(layer):
            repeat *= layer.interval
    return None


def catch_stop_signals(handler: Any) -> dict[int, Any]:
    """Route SIGINT and SIGTERM to `handler`; returns the previous handlers. Handlers can only be set
    from the main thread; elsewhere signals keep their old meaning."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


class Trainer:
    def __init__(
        self,
        agent: Agent,
        env: gym.Env,
        *,
        total_steps: int,
        run_dir: str | Path | None = None,
        eval_env: gym.Env | None = None,
        eval_every: int = 5000,
        eval_episodes: int = 10,
        checkpoint_every: int = 10000,
        save_replay: bool = True,
        log_every: int = 1000,
        progress: bool = True,
        seed: int = 0,
        callbacks: Iterable[Callback] = (),
        run_info: dict[str, Any] | None = None,
    ) -> None:
        self.agent, self.env, self.eval_env = agent, env, eval_env
        self.total_steps = int(total_steps)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.eval_every, self.eval_episodes = int(eval_every), int(eval_episodes)
        self.checkpoint_every, self.save_replay = int(checkpoint_every), bool(save_replay)
        self.log_every, self.progress_enabled = int(log_every), bool(progress)
        self.seed = int(seed)
        self.callbacks = list(callbacks)
        self.run_info = run_info or {}
        self.replay = agent.make_replay(self.total_steps, self.seed)
        self.episode_limit = episode_limit(env)
        # Agents that act differently near the time limit (Symphony) are told where the episode is.
        self._clock = getattr(agent, "set_episode_clock", None)
        # Agents that plan ahead (SRL's action sequences) are told when a new episode begins.
        self._begin_episode = getattr(agent, "begin_episode", None)
        # Agents that learn from whole episodes (the demo-seeded learner keeps its successful ones) see each end.
        self._episode_hook = getattr(agent, "end_episode", None)
        self.rng = np.random.default_rng(self.seed)  # warm-up actions
        self.step = 0
        self.episodes = 0
        self.next_checkpoint = self.checkpoint_every
        self.evaluations: list[dict[str, Any]] = []
        # Wall-clock of the run so far, across resumes (time after the last checkpoint of a killed run is lost
        # with the work it did): what a user pays for a run, recorded at every evaluation.
        self.wall_s_before, self._run_started = 0.0, None
        self.resumed_from: int | None = None
        self.stop_requested = False
        self.stop_signal: int | None = None
        self.logger: RunLogger | None = None

    @property
    def wall_s(self) -> float:
        running = time.perf_counter() - self._run_started if self._run_started is not None else 0.0
        return self.wall_s_before + running

    # --- checkpoints --------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / CHECKPOINT_NAME if self.run_dir is not None else None

    def save(self) -> Path | None:
        if self.checkpoint_path is None:
            return None
        state = {
            "agent": self.agent.state_dict(),
            "loop": {"step": self.step, "episodes": self.episodes, "next_checkpoint": self.next_checkpoint,
                     "wall_s": self.wall_s},
            "rng": {"torch": torch.get_rng_state(), "warmup": self.rng.bit_generator.state, "env": env_rng_state(self.env)},
            "evaluations": self.evaluations,
        }
        if self.save_replay:
            state["replay"] = self.replay.state_dict()
        info = {"step": self.step, "agent": self.agent.describe(), "has_replay": self.save_replay, **self.run_info}
        return save_checkpoint(self.checkpoint_path, state, info)

    def resume(self) -> bool:
        """Continue from the run folder's checkpoint if there is one."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return False
        state, _ = load_checkpoint(self.checkpoint_path)
        self.agent.load_state_dict(state["agent"])
        loop = state["loop"]
        self.step, self.episodes, self.next_checkpoint = loop["step"], loop["episodes"], loop["next_checkpoint"]
        self.wall_s_before = float(loop.get("wall_s", 0.0))
        torch.set_rng_state(state["rng"]["torch"])
        self.rng.bit_generator.state = state["rng"]["warmup"]
        set_env_rng_state(self.env, state["rng"]["env"])
        self.evaluations = list(state.get("evaluations", []))
        if "replay" in state:
            self.replay.load_state_dict(state["replay"])
        self.resumed_from = self.step
        return True

    # --- the loop -----------------------------------------------------------------------------
    def _evaluate(self) -> dict[str, Any]:
        result = evaluate(self.agent, self.eval_env, self.eval_episodes, seed=10_000 + 100 * self.seed)
        result = {"step": self.step, **result, "wall_s": round(self.wall_s, 1)}
        self.evaluations.append(result)
        return result

    def _evaluate_and_report(self, logger: RunLogger | None, bar: ProgressBar) -> None:
        result = self._evaluate()
        bar.update(self.step, result["mean_return"])
        if logger is not None:
            scalars = {k: result[k] for k in ("mean_return", "std_return", "success_rate") if k in result}
            logger.record(self.step, scalars, "eval")
            write_json(self.run_dir / "evaluations.json", self.evaluations)
        for cb in self.callbacks:
            cb.on_eval(self, result)

    def _end_episode(self, logger: RunLogger | None, ep_return: float, ep_len: int, ep_success: bool | None) -> None:
        """Log the episode, then checkpoint if one is due: here, before the next reset, the loop's
        whole state is in the checkpoint, which is what makes resuming exact."""
        self.episodes += 1
        if self._episode_hook is not None:   # before the checkpoint below, which then holds what the agent kept
            self._episode_hook(self.replay, ep_len, ep_success)
        if logger is not None:
            logger.episode(self.step, self.episodes, ep_return, ep_len, ep_success)
        for cb in self.callbacks:
            cb.on_episode_end(self, ep_return, ep_len)
        if self.step >= self.next_checkpoint and self.run_dir is not None:
            while self.next_checkpoint <= self.step:
                self.next_checkpoint += self.checkpoint_every
            if logger is not None:
                logger.flush()
            self.save()

    # --- stop signals -------------------------------------------------------------------------
    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        if self.stop_signal is not None:
            raise KeyboardInterrupt  # asked twice: stop now, the last checkpoint stays
        self.stop_signal = signum
        print(f"robo-rl: {signal.Signals(signum).name}: stopping at the end of this episode "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def _catch_stop_signals(self) -> dict[int, Any]:
        return catch_stop_signals(self._on_stop_signal)

    def _stop_at_episode_end(self) -> None:
        where = "no run folder, nothing saved"
        if self.run_dir is not None:
            self.save()
            where = f"checkpoint saved in {self.run_dir}"
        raise TrainingInterrupted(f"stopped at step {self.step} of {self.total_steps}; {where}")

    def run(self) -> list[dict[str, Any]]:
        logger = RunLogger(self.run_dir, resume_step=self.resumed_from) if self.run_dir is not None else None
        self.logger = logger  # callbacks may log scalars through it (None without a run folder)
        bar = ProgressBar(self.total_steps, start=self.step, enabled=self.progress_enabled)
        self._run_started = time.perf_counter()
        if self.resumed_from is None and self.agent.learning_starts >= self.total_steps:
            # Legal (e.g. collecting data), but usually a budget shorter than the agent's warm-up by mistake.
            print(f"robo-rl: warning: the agent starts learning at step {self.agent.learning_starts} "
                  f"(its warm-up/exploration), at or after the last step {self.total_steps}: it will never update",
                  file=sys.stderr, flush=True)
        if self.resumed_from is None and hasattr(self.agent, "prepare"):
            # Agents that need the env before the first step (the demo-seeded learner: its demos' rewards
            # under this env's reward, then behaviour cloning). A resumed run has all that in its checkpoint.
            self.agent.prepare(self.env)
        for cb in self.callbacks:
            cb.on_training_start(self)
        obs, _ = self.env.reset(seed=self.seed) if self.resumed_from is None else self.env.reset()
        if self._begin_episode is not None:
            self._begin_episode()
        ep_return, ep_len, ep_success = 0.0, 0, None
        t_log, s_log = time.perf_counter(), self.step
        previous_handlers = self._catch_stop_signals()
        try:
            while self.step < self.total_steps and not self.stop_requested:
                if self.step < self.agent.learning_starts and self.agent.random_warmup:
                    action = self.rng.uniform(-1.0, 1.0, size=self.agent.action_dim).astype(np.float32)
                else:
                    if self._clock is not None:
                        self._clock(ep_len, self.episode_limit)
                    action = self.agent.act(obs, deterministic=False)
                next_obs, reward, terminated, truncated, info = self.env.step(to_env_action(action, self.env.action_space))
                self.replay.add(obs, action, reward, next_obs, terminated)
                obs = next_obs
                self.step += 1
                ep_return += float(reward)
                ep_len += 1
                if "success" in info:
                    ep_success = bool(ep_success) or bool(info["success"])
                metrics = self.agent.train_step(self.replay) if self.step >= self.agent.learning_starts else {}
                if logger is not None and metrics and self.step % self.log_every == 0:
                    now = time.perf_counter()
                    # agents may hand back tensors: they become numbers only here, once per log_every
                    logger.record(self.step, {k: float(v) for k, v in metrics.items()}, "train")
                    logger.record(self.step, {"steps_per_second": (self.step - s_log) / (now - t_log)}, "time")
                    t_log, s_log = now, self.step
                if self.eval_env is not None and self.eval_every > 0 and self.step % self.eval_every == 0:
                    self._evaluate_and_report(logger, bar)
                for cb in self.callbacks:
                    if cb.on_step(self) is False:
                        self.stop_requested = True
                if terminated or truncated:
                    self._end_episode(logger, ep_return, ep_len, ep_success)
                    if self.stop_signal is not None:
                        self._stop_at_episode_end()
                    obs, _ = self.env.reset()
                    if self._begin_episode is not None:
                        self._begin_episode()
                    ep_return, ep_len, ep_success = 0.0, 0, None
                if self.step % 100 == 0:
                    bar.update(self.step)
            bar.update(self.step)
            if self.run_dir is not None:
                self.save()
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            bar.close()
            for cb in self.callbacks:
                cb.on_training_end(self)
            if logger is not None:
                logger.close()
        return self.evaluations
