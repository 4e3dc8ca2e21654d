"""Pictures of a run: learning curves (mean and spread across seeds) and a video of the policy."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def plot_curves(
    curves: Mapping[str, Sequence[Sequence[tuple[float, float]]]],
    path: str | Path,
    title: str = "",
    ylabel: str = "eval return",
    ylim: tuple[float, float] | None = None,
) -> Path:
    """curves: label -> list of runs, each a list of (step, value). Plots mean and min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for label, runs in curves.items():
        runs = [r for r in runs if len(r)]
        if not runs:
            continue
        length = min(len(r) for r in runs)
        steps = np.array([p[0] for p in runs[0][:length]])
        values = np.array([[p[1] for p in r[:length]] for r in runs])
        mean = values.mean(axis=0)
        line, = ax.plot(steps, mean, label=f"{label} (n={len(runs)})", marker="o" if length < 20 else None)
        if len(runs) > 1:
            ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def learning_curve(evaluations: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    points = [(e["step"], e["mean_return"]) for e in evaluations]
    return plot_curves({"eval return": [points]}, path, title=title)


def record_video(agent: Any, env: Any, path: str | Path, steps: int = 1000, size: int = 256, fps: int = 30, seed: int = 0) -> Path:
    """MP4 of the deterministic policy, rendered headless from the env's default camera."""
    import imageio

    from robo_rl.agents.base import to_env_action
    from robo_rl.envs.render import CameraRenderer

    renderer = CameraRenderer(env, ["default"], size)
    path = Path(path)
    writer = imageio.get_writer(str(path), fps=fps, codec="libx264", quality=7, macro_block_size=1)
    try:
        obs, _ = env.reset(seed=seed)
        if hasattr(agent, "begin_episode"):
            agent.begin_episode()
        for _ in range(steps):
            writer.append_data(renderer.render()[0])
            obs, _, terminated, truncated, _ = env.step(to_env_action(agent.act(obs, deterministic=True), env.action_space))
            if terminated or truncated:
                obs, _ = env.reset()
                if hasattr(agent, "begin_episode"):
                    agent.begin_episode()
    finally:
        writer.close()
        renderer.close()
    return path
