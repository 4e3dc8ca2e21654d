"""Imitation from observation with Automatic Discount Scheduling (ADS; Liu et al., ICLR 2024).

Observation-only: only the demos' observations are read (states, or frames through a frozen feature net),
never their actions.

- Proxy reward (optimal transport, as in ROT): at the end of every episode, cost C_ij between the
  agent's observation i and demo frame j (Euclidean on states, cosine on image features); Sinkhorn plan
  T (POT, uniform marginals, eps 0.01, 100 iterations); r_i = -scale * sum_j T_ij C_ij against the demo
  that gives the highest total. The reward of step i goes to the transition that led to observation i.
  After the first episode the scale is fixed at 10 / |sum_i r_i|.
- Progress recognizer: for observations a_1..a_k and demo frames d_1..d_k, the length of the longest
  increasing subsequence of argmin_j C(a_i, d_j), i <= k, says how many of the first k demo steps the
  trajectory follows in order. ref(k) = median over ordered pairs of distinct demos; at every
  evaluation the agent's score is the 90th percentile over (eval episode, demo) pairs, and while it is
  >= floor(0.9 ref(k)) and k < H, k grows by one (at most 5 times per evaluation). k starts at floor(0.2 H).
- Under an action repeat r (env.action_repeat; 2 in the paper) the demos are subsampled to every r-th
  frame and H counts decisions.
- Discount: gamma(k) = alpha^(1/k) with alpha = 0.2, handed to the agent at every change
  (`agent.set_discount`) and logged to TensorBoard as ads/gamma.

In the suite's loop a transition enters the replay store at once, while its OT reward is known only when
the episode ends: the env wrapper gives 0 until then and the callback rewrites the episode's rewards
(the slots it recorded) at the episode's end. Updates during the episode may sample its transitions
with reward 0; in the paper's episode-wise replay they are not sampled before the episode ends.
"""
from __future__ import annotations

import json
import math
import os
from bisect import bisect_left
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from robo_rl.callbacks import Callback
from robo_rl.config import ConfigError


class ImitationError(ConfigError):
    pass


# --- the discount schedule ------------------------------------------------------------------------
def discount_for(k: int, alpha: float = 0.2) -> float:
    """gamma with gamma^k = alpha: rewards k steps ahead count alpha as much as the next one."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return math.exp(math.log(alpha) / k)


def initial_k(horizon: int, fraction: float = 0.2) -> int:
    return max(1, int(math.floor(fraction * horizon)))


# --- optimal transport reward ---------------------------------------------------------------------
def cost_matrix(agent: np.ndarray, demo: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    import ot

    if metric == "cosine":
        a = agent / np.maximum(np.linalg.norm(agent, axis=1, keepdims=True), 1e-8)
        d = demo / np.maximum(np.linalg.norm(demo, axis=1, keepdims=True), 1e-8)
        return 1.0 - a @ d.T
    if metric == "euclidean":
        return ot.dist(agent.astype(np.float64), demo.astype(np.float64), metric="euclidean")
    raise ValueError(f"cost metric '{metric}' is unknown (euclidean, cosine)")


def ot_rewards(agent: np.ndarray, demos: Sequence[np.ndarray], metric: str = "euclidean", epsilon: float = 0.01,
               iterations: int = 100) -> tuple[np.ndarray, int]:
    """Per-observation OT reward of one trajectory against its closest demo (unit scale), and that demo's index."""
    import ot

    best, best_index = None, -1
    for index, demo in enumerate(demos):
        cost = cost_matrix(agent, demo, metric)
        a = np.full(len(agent), 1.0 / len(agent))
        b = np.full(len(demo), 1.0 / len(demo))
        # The Sinkhorn scaling is taken relative to the cost's size so that eps means the same for any units.
        scale = max(float(cost.max()), 1e-8)
        plan = ot.sinkhorn(a, b, cost / scale, epsilon, numItermax=iterations, warn=False)
        rewards = -(plan * cost).sum(axis=1)
        if best is None or rewards.sum() > best.sum():
            best, best_index = rewards, index
    return best, best_index


# --- progress recognizer --------------------------------------------------------------------------
def lis_length(sequence: Sequence[int]) -> int:
    """Length of the longest strictly increasing subsequence (patience sorting)."""
    tails: list[int] = []
    for x in sequence:
        i = bisect_left(tails, x)
        if i == len(tails):
            tails.append(x)
        else:
            tails[i] = x
    return len(tails)


def order_score(agent: np.ndarray, demo: np.ndarray, k: int, metric: str) -> int:
    """How many of the first k demo steps the first k agent observations follow in order."""
    cost = cost_matrix(agent[:k], demo[:k], metric)
    return lis_length(cost.argmin(axis=1).tolist())


class ProgressRecognizer:
    def __init__(self, demos: Sequence[np.ndarray], horizon: int, metric: str = "euclidean", k0_fraction: float = 0.2,
                 threshold: float = 0.9, max_increase: int = 5, ref_percentile: float = 50, agent_percentile: float = 90) -> None:
        if len(demos) < 2:
            raise ImitationError(f"the progress recognizer needs at least 2 demos, got {len(demos)}")
        self.demos = [np.asarray(d, np.float64) for d in demos]
        self.horizon = int(min(horizon, min(len(d) for d in self.demos)))
        self.metric = metric
        self.threshold, self.max_increase = threshold, int(max_increase)
        self.agent_percentile = agent_percentile
        self.k = initial_k(self.horizon, k0_fraction)
        pairs = [(i, j) for i in range(len(self.demos)) for j in range(len(self.demos)) if i != j]
        self.reference = np.zeros(self.horizon + 1)
        for k in range(1, self.horizon + 1):
            self.reference[k] = np.percentile([order_score(self.demos[i], self.demos[j], k, metric) for i, j in pairs], ref_percentile)

    def agent_score(self, trajectories: Sequence[np.ndarray], k: int) -> float:
        scores = [order_score(np.asarray(t, np.float64), d, k, self.metric) for t in trajectories for d in self.demos]
        return float(np.percentile(scores, self.agent_percentile))

    def update(self, trajectories: Sequence[np.ndarray]) -> int:
        """Advance k while the agent follows the first k demo steps about as well as demos follow each other."""
        for _ in range(self.max_increase):
            if self.k >= self.horizon:
                break
            if self.agent_score(trajectories, self.k) >= math.floor(self.threshold * self.reference[self.k]):
                self.k += 1
            else:
                break
        return self.k


# --- wiring into the loop -------------------------------------------------------------------------
def demo_observations(path: str | Path, features: str | None, camera: str | None, limit: int | None = None) -> list[np.ndarray]:
    """Observation sequences of the demos: states, or frame features of one camera. Actions are never read."""
    from robo_rl.rewards.demos import load_demos

    if features is None:
        return [d.states for d in load_demos(path, need_states=True, need_frames=False, limit=limit)]
    from robo_rl.rewards.features import load_feature_net

    net = load_feature_net(features)
    demos = load_demos(path, cameras=[camera] if camera else None, limit=limit)
    camera = camera or next(iter(demos[0].frames))
    return [net.features(d.frames[camera]) for d in demos]


class ADSImitation(gym.Wrapper):
    """The env side of ADS: reward 0 during an episode (the callback writes the OT rewards at its end),
    and the observation sequence of the current episode (states, or frame features)."""

    def __init__(self, env: gym.Env, demos: str, features: str | None = None, camera: str | None = None,
                 schedule: bool = True, gamma: float | None = 0.99, alpha: float = 0.2, reward_scale_target: float = 10.0,
                 eval_episodes: int = 10, max_demos: int | None = None, name: str = "ads") -> None:
        super().__init__(env)
        from robo_rl.envs.decision import action_repeat

        # The agent sees every r-th frame under an action repeat r; the demos are subsampled to match.
        self.demo_stride = action_repeat(env)
        self.demos = [d[::self.demo_stride] for d in demo_observations(demos, features, camera, max_demos)]
        self.camera = camera or "corner"
        self.metric = "euclidean" if features is None else "cosine"
        self.net, self.renderer = None, None
        if features is not None:
            from robo_rl.envs.render import CameraRenderer
            from robo_rl.rewards.features import load_feature_net

            self.net = load_feature_net(features)
            self.renderer = CameraRenderer(env, [self.camera], self._demo_frame_size(demos, camera))
        self.schedule, self.fixed_gamma, self.alpha = bool(schedule), gamma, float(alpha)
        self.scale_target, self.eval_episodes = float(reward_scale_target), int(eval_episodes)
        self.episode: list[np.ndarray] = []
        dim = self.demos[0].shape[1]
        probe = self.observe(None, {})  # checks that agent-side observations match the demos' shape
        if probe is not None and probe.shape[0] != dim:
            raise ImitationError(f"demo observations have {dim} values but the env gives {probe.shape[0]}; record demos on the same task")

    @staticmethod
    def _demo_frame_size(path: str, camera: str | None) -> int:
        from robo_rl.rewards.demos import load_demos

        demo = load_demos(path, cameras=[camera] if camera else None, limit=1)[0]
        return int(next(iter(demo.frames.values())).shape[1])

    def observe(self, obs: Any, info: dict, renderer: Any = None) -> np.ndarray | None:
        """What the OT cost compares: the state, or the frame features (from `renderer`, default this env's)."""
        if self.net is not None:
            return self.net.features(np.stack((renderer or self.renderer).render()))[0]
        if obs is None:
            return None
        return np.asarray(info.get("state", obs), np.float64).ravel()

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        self.episode = [self.observe(obs, info)]
        return obs, info

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episode.append(self.observe(obs, info))
        info["env_reward"] = float(reward)
        return obs, 0.0, terminated, truncated, info

    def trainer_callback(self) -> "ADSCallback":
        return ADSCallback(self)

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
        super().close()


class ADSCallback(Callback):
    """The loop side: OT rewards into the replay store at episode end, recognizer and gamma at evaluation."""

    STATE_FILE = "ads_state.json"

    def __init__(self, wrapper: ADSImitation) -> None:
        self.wrapper = wrapper
        self.slots: list[int] = []
        self.scale: float | None = None
        self.recognizer: ProgressRecognizer | None = None
        self.history: list[dict[str, float]] = []

    @property
    def gamma(self) -> float:
        if not self.wrapper.schedule:
            return float(self.wrapper.fixed_gamma)
        return discount_for(self.recognizer.k, self.wrapper.alpha)

    def _state_path(self, trainer: Any) -> Path | None:
        return None if trainer.run_dir is None else Path(trainer.run_dir) / self.STATE_FILE

    def on_training_start(self, trainer: Any) -> None:
        from robo_rl.train import episode_limit

        horizon = episode_limit(trainer.env) or max(len(d) for d in self.wrapper.demos)
        self.recognizer = ProgressRecognizer(self.wrapper.demos, horizon, self.wrapper.metric)
        path = self._state_path(trainer)
        if path is not None and path.exists() and trainer.resumed_from is not None:
            saved = json.loads(path.read_text())
            self.recognizer.k, self.scale, self.history = int(saved["k"]), saved["scale"], saved["history"]
        self._apply(trainer)

    def _apply(self, trainer: Any) -> None:
        trainer.agent.set_discount(self.gamma)
        if trainer.logger is not None:
            trainer.logger.record(trainer.step, {"gamma": self.gamma, "k": float(self.recognizer.k)}, "ads")

    def _save(self, trainer: Any) -> None:
        path = self._state_path(trainer)
        if path is None:
            return
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"k": self.recognizer.k, "scale": self.scale, "gamma": self.gamma, "history": self.history}))
        os.replace(tmp, path)

    def on_step(self, trainer: Any) -> bool:
        self.slots.append(int(trainer.replay.last_index))
        return True

    def on_episode_end(self, trainer: Any, episode_return: float, episode_length: int) -> None:
        observations = np.asarray(self.wrapper.episode)
        rewards, _ = ot_rewards(observations, self.wrapper.demos, self.wrapper.metric)
        if self.scale is None:
            self.scale = self.wrapper.scale_target / max(abs(float(rewards[1:].sum())), 1e-8)
        # reward of observation i belongs to the transition that led to it: slot i-1 of the episode
        slots = self.slots[-(len(observations) - 1):]
        scaled = self.scale * rewards[1:len(slots) + 1]
        trainer.replay.set_rewards(slots, scaled)
        self.slots = []
        if trainer.logger is not None:  # episodes.csv shows the env's reward during the episode, 0 here
            trainer.logger.record(trainer.step, {"episode_reward": float(scaled.sum())}, "ads")
        self._save(trainer)

    def on_eval(self, trainer: Any, result: dict[str, Any]) -> None:
        if not self.wrapper.schedule:
            return
        trajectories = [self._rollout(trainer, episode) for episode in range(self.wrapper.eval_episodes)]
        before = self.recognizer.k
        self.recognizer.update(trajectories)
        self.history.append({"step": trainer.step, "k": self.recognizer.k, "gamma": self.gamma})
        if self.recognizer.k != before or trainer.logger is not None:
            self._apply(trainer)
        self._save(trainer)

    def _rollout(self, trainer: Any, episode: int) -> np.ndarray:
        """One deterministic episode on the evaluation env, as observation features."""
        env, agent = trainer.eval_env, trainer.agent
        observer = self.wrapper
        renderer = None
        if observer.net is not None:
            from robo_rl.envs.render import CameraRenderer

            renderer = CameraRenderer(env, [observer.camera], observer.renderer.size)
        obs, info = env.reset(seed=50_000 + 100 * trainer.seed + episode)
        begin = getattr(agent, "begin_episode", None)
        if begin is not None:
            begin()
        seen = [observer.observe(obs, info, renderer)]
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(agent.predict(obs, deterministic=True))
            seen.append(observer.observe(obs, info, renderer))
            done = terminated or truncated
        if renderer is not None:
            renderer.close()
        return np.asarray(seen)
