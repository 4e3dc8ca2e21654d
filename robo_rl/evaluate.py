"""The one evaluation path: deterministic episodes of any agent, and aggregation across seeds."""
from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from robo_rl.agents.base import to_env_action


HELD_SUCCESS_STEPS = 3  # Liu et al. (ADS) count a Meta-World episode as solved when success holds on > 3 steps


def evaluate(agent: Any, env: gym.Env, episodes: int = 10, seed: int = 0, deterministic: bool = True) -> dict[str, Any]:
    """Run `episodes` episodes with reset seeds seed, seed+1, ...; return mean/std return and success.

    Success (Meta-World) counts if `info["success"]` fires at any step of the episode; held success,
    the ADS paper's criterion, if it fires on more than HELD_SUCCESS_STEPS steps.
    """
    returns, lengths, successes, held = [], [], [], []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        if hasattr(agent, "begin_episode"):   # agents that plan ahead (action sequences) start afresh
            agent.begin_episode()
        done, ep_return, ep_len, success_steps, has_success = False, 0.0, 0, 0, False
        while not done:
            action = to_env_action(agent.act(obs, deterministic=deterministic), env.action_space)
            obs, reward, terminated, truncated, info = env.step(action)
            if hasattr(agent, "observe_reward"):   # return-conditioned agents (decision transformers) count down
                agent.observe_reward(reward)
            ep_return += float(reward)
            ep_len += 1
            if "success" in info:
                has_success = True
                success_steps += int(bool(info["success"]))
            done = terminated or truncated
        returns.append(ep_return)
        lengths.append(ep_len)
        if has_success:
            successes.append(float(success_steps > 0))
            held.append(float(success_steps > HELD_SUCCESS_STEPS))
    result: dict[str, Any] = {
        "episodes": episodes,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "returns": returns,
        "lengths": lengths,
    }
    if successes:
        result["success_rate"] = float(np.mean(successes))
        result["held_success_rate"] = float(np.mean(held))
    return result


def aggregate(scores: Sequence[float], reps: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean, IQM and 95% stratified-bootstrap confidence intervals (rliable) of per-seed scores."""
    from rliable import library as rly
    from rliable import metrics

    values = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    out = {"n": int(values.shape[0]), "mean": float(values.mean()), "iqm": float(metrics.aggregate_iqm(values))}
    if values.shape[0] < 2:
        return out
    np.random.seed(seed)  # rliable's bootstrap draws from numpy's global RNG
    point, interval = rly.get_interval_estimates(
        {"x": values},
        lambda v: np.array([metrics.aggregate_mean(v), metrics.aggregate_iqm(v)]),
        reps=reps,
    )
    out.update(mean_ci=[float(interval["x"][0, 0]), float(interval["x"][1, 0])],
               iqm_ci=[float(interval["x"][0, 1]), float(interval["x"][1, 1])])
    return out
