"""Frequency-Averaged Score (FAS): how well a policy holds up as its decision frequency drops.

The definition used here is the suite's own; the paper that introduced FAS (arXiv 2410.08979)
describes it as an average of performance over decision frequencies, but its exact normalisation
and frequency set could not be confirmed, so every result records what was used:

  intervals  tau in {1, 2, 3, ..., 16} primitive steps per decision (configurable)
  score      n(tau) = (R(tau) - R_random) / (R_ref - R_random), R_random the random policy's return
             and R_ref the reference return at tau = 1 (the agent's own unless one is given, e.g. SAC's)
  FAS        the area under n over the decision frequency f = 1/tau (trapezoids), divided by the
             range of f: 1 means as good as the reference at every frequency, 0 as good as random.

Ordinary agents act at interval tau by repeating their action tau times; agents with
`act_sequence(obs, length)` (sequence agents) play a sequence of tau actions instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from robo_rl.envs.decision import DecisionInterval, action_repeat

DEFAULT_INTERVALS = tuple(range(1, 17))
DEFINITION = ("n(tau) = (R(tau) - R_random) / (R_ref - R_random); FAS = trapezoid area of n over f = 1/tau "
              "divided by (max f - min f); R_ref = return at tau = 1 of the reference (own unless given)")


def fas_score(intervals: Sequence[int], returns: Sequence[float], random_return: float, reference_return: float) -> float:
    """FAS from returns at each decision interval (see the module text for the definition)."""
    tau = np.asarray(intervals, dtype=np.float64)
    if len(tau) < 2 or len(set(tau.tolist())) != len(tau):
        raise ValueError(f"FAS needs at least two distinct intervals, got {list(intervals)}")
    if reference_return == random_return:
        raise ValueError("FAS: the reference return equals the random return; the score is undefined")
    normalised = (np.asarray(returns, dtype=np.float64) - random_return) / (reference_return - random_return)
    freq = 1.0 / tau
    order = np.argsort(freq)
    f, n = freq[order], normalised[order]
    area = float(np.sum(np.diff(f) * (n[1:] + n[:-1]) / 2.0))
    return area / float(f[-1] - f[0])


def evaluate_at_interval(agent: Any, env: Any, interval: int, episodes: int, seed: int) -> dict[str, float]:
    """Deterministic episodes with one decision every `interval` primitive steps."""
    from robo_rl.agents.base import to_env_action

    sequence = hasattr(agent, "act_sequence")
    wrapped = DecisionInterval(env, interval, "sequence" if sequence else "repeat")
    space = env.action_space
    returns = []
    for episode in range(episodes):
        obs, _ = wrapped.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            if sequence:
                action = np.stack([to_env_action(a, space) for a in agent.act_sequence(obs, interval)])
            else:
                action = to_env_action(agent.act(obs, deterministic=True), space)
            obs, reward, terminated, truncated, _ = wrapped.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    return {"interval": int(interval), "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
            "returns": [float(r) for r in returns]}


def fas_run(run: str | Path, intervals: Sequence[int] = DEFAULT_INTERVALS, episodes: int = 5, seed: int = 30_000,
            reference: float | None = None) -> dict[str, Any]:
    """Evaluate a saved agent at every interval; write fas.json and fas.png next to its checkpoint."""
    from robo_rl.logger import write_json
    from robo_rl.runs import RandomAgent, load_agent_and_env

    run = Path(run)
    agent, info, env = load_agent_and_env(run, seed)
    per_interval = [evaluate_at_interval(agent, env, k, episodes, seed) for k in intervals]
    random_agent = RandomAgent(env.observation_space, env.action_space, {}, seed)
    random_return = evaluate_at_interval(random_agent, env, 1, episodes, seed)["mean_return"]
    own = next((p["mean_return"] for p in per_interval if p["interval"] == 1), None)
    ref = float(reference) if reference is not None else own
    if ref is None:
        raise ValueError("FAS needs interval 1 among the intervals, or an explicit reference return")
    result = {
        "run": str(run), "env": info["env"].get("id"), "agent": info["agent"]["config"].get("name"),
        "mode": "sequence" if hasattr(agent, "act_sequence") else "repeat",
        # With env.action_repeat r in the run's config, one interval step is one of its decisions (r env steps).
        "action_repeat": action_repeat(env),
        "intervals": list(map(int, intervals)), "episodes": episodes, "seed": seed,
        "per_interval": per_interval, "random_return": random_return,
        "reference_return": ref, "reference": "given" if reference is not None else "own return at interval 1",
        "fas": fas_score(intervals, [p["mean_return"] for p in per_interval], random_return, ref),
        "definition": DEFINITION,
    }
    env.close()
    folder = run if run.is_dir() else run.parent
    write_json(folder / "fas.json", result)
    plot_fas(result, folder / "fas.png")
    return result


def plot_fas(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tau = [p["interval"] for p in result["per_interval"]]
    mean = np.array([p["mean_return"] for p in result["per_interval"]])
    std = np.array([p["std_return"] for p in result["per_interval"]])
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(tau, mean, marker="o", label=f"{result['agent']} ({result['mode']})")
    ax.fill_between(tau, mean - std, mean + std, alpha=0.2)
    ax.axhline(result["random_return"], color="gray", ls="--", lw=1, label="random policy")
    ax.set_xlabel("decision interval (primitive steps per decision)")
    ax.set_ylabel("episode return")
    ax.set_title(f"{result['env']}: FAS {result['fas']:.3f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
