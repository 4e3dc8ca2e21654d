"""`robo-rl bench throughput`: how fast the suite steps envs and trains, on this machine.

Measures, in one process:
  * env steps/s with random actions for each env family, state and pixel observations;
  * training env-steps/s of SB3 SAC on HalfCheetah-v5 (one update per step, batch 256, 256x256),
    both in SB3's own `learn` loop and through robo-rl's shared loop (the SB3 adapter).
Results go to benchmarks/results/throughput.json, one entry per measurement; entries already there
are skipped (use --force to measure again), so the file can grow over several sittings. Speed
comparisons are only meaningful as ratios between entries measured on the same machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any, Callable

import numpy as np
import torch

from robo_rl.bench import results_dir
from robo_rl.logger import write_json

ENV_CASES = {
    "env/mujoco/HalfCheetah-v5": ("mujoco", "HalfCheetah-v5", False),
    "env/mujoco/HalfCheetah-v5/pixels": ("mujoco", "HalfCheetah-v5", True),
    "env/metaworld/reach-v3": ("metaworld", "reach-v3", False),
    "env/metaworld/reach-v3/pixels": ("metaworld", "reach-v3", True),
    "env/dmc/cheetah-run": ("dmc", "cheetah-run", False),
    "env/dmc/cheetah-run/pixels": ("dmc", "cheetah-run", True),
}
SAC_HYPER = {"learning_rate": 3e-4, "batch_size": 256, "tau": 0.005, "gamma": 0.99, "train_freq": 1,
             "gradient_steps": 1, "ent_coef": "auto", "net_arch": [256, 256]}


def machine_info() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version()}


def env_steps_per_second(family: str, env_id: str, pixels: bool, steps: int) -> dict[str, Any]:
    from robo_rl.envs import env_config, make_env

    cfg = env_config(family, env_id, pixels={"enabled": pixels})
    env = make_env(cfg, seed=0)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(env.action_space.low, env.action_space.high,
                                               size=(steps, *env.action_space.shape)).astype(np.float32)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return {"steps": steps, "seconds": elapsed, "steps_per_second": steps / elapsed,
            "observation": "pixels 84x84x3, 3 frames" if pixels else "state"}


def _timed_after(warmup: int, run: Callable[[Callable[[int], None]], None]) -> float:
    """Run training; return seconds spent from env step `warmup` to the end."""
    marks: dict[str, float] = {}

    def mark(step: int) -> None:
        if step == warmup:
            marks["start"] = time.perf_counter()

    run(mark)
    return time.perf_counter() - marks["start"]


def sac_native(warmup: int, steps: int) -> dict[str, Any]:
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    class Mark(BaseCallback):
        def __init__(self, fn: Callable[[int], None]) -> None:
            super().__init__()
            self.fn = fn

        def _on_step(self) -> bool:
            self.fn(self.num_timesteps)
            return True

    hyper = {k: v for k, v in SAC_HYPER.items() if k != "net_arch"}
    model = SAC("MlpPolicy", gym.make("HalfCheetah-v5"), learning_starts=warmup, buffer_size=warmup + steps,
                policy_kwargs={"net_arch": SAC_HYPER["net_arch"]}, seed=0, device="cpu", **hyper)
    seconds = _timed_after(warmup, lambda fn: model.learn(warmup + steps, callback=Mark(fn)))
    return {"steps": steps, "seconds": seconds, "steps_per_second": steps / seconds}


def sac_robo_rl(warmup: int, steps: int) -> dict[str, Any]:
    from robo_rl.agents.sb3 import SB3Agent
    from robo_rl.callbacks import Callback
    from robo_rl.envs import env_config, make_env

    env = make_env(env_config("mujoco", "HalfCheetah-v5"), seed=0)
    agent = SB3Agent(env.observation_space, env.action_space,
                     {"algo": "SAC", "learning_starts": warmup, "replay_size": warmup + steps, "hyperparams": SAC_HYPER}, seed=0)

    class Mark(Callback):
        def __init__(self, fn: Callable[[int], None]) -> None:
            self.fn = fn

        def on_step(self, trainer: Any) -> bool:
            self.fn(trainer.step)
            return True

    seconds = _timed_after(warmup, lambda fn: agent.learn(warmup + steps, env, progress=False, callbacks=[Mark(fn)]))
    return {"steps": steps, "seconds": seconds, "steps_per_second": steps / seconds}


def cases(quick: bool) -> dict[str, Callable[[], dict[str, Any]]]:
    env_steps, px_steps = (500, 100) if quick else (10_000, 1_000)
    warmup, train_steps = (300, 200) if quick else (1_000, 3_000)
    table: dict[str, Callable[[], dict[str, Any]]] = {
        name: (lambda f=f, i=i, p=p: env_steps_per_second(f, i, p, px_steps if p else env_steps))
        for name, (f, i, p) in ENV_CASES.items()
    }
    table["train/sb3_sac/HalfCheetah-v5/sb3_learn"] = lambda: sac_native(warmup, train_steps)
    table["train/sb3_sac/HalfCheetah-v5/robo_rl_loop"] = lambda: sac_robo_rl(warmup, train_steps)
    return table


def report(results: dict[str, Any]) -> str:
    lines = ["| measurement | steps/s |", "|---|---:|"]
    for name, entry in results["entries"].items():
        lines.append(f"| {name} | {entry['steps_per_second']:.0f} |")
    entries = results["entries"]
    native = entries.get("train/sb3_sac/HalfCheetah-v5/sb3_learn")
    ours = entries.get("train/sb3_sac/HalfCheetah-v5/robo_rl_loop")
    if native and ours:
        lines.append(f"\nSB3 SAC through robo-rl's loop runs at {ours['steps_per_second'] / native['steps_per_second']:.2f}x "
                     "the speed of SB3's own `learn` loop.")
    return "\n".join(lines)


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="robo-rl bench throughput")
    parser.add_argument("--quick", action="store_true", help="tiny budgets (a smoke check, numbers not kept)")
    parser.add_argument("--force", action="store_true", help="measure again entries already in the result file")
    parser.add_argument("--only", default="", help="measure only entries whose name contains this text")
    parser.add_argument("--out", default=None, help="result file (default benchmarks/results/throughput.json)")
    opts = parser.parse_args(args)
    path = results_dir() / "throughput.json" if opts.out is None else opts.out
    results = json.loads(open(path).read()) if os.path.exists(path) and not opts.quick else {"entries": {}}
    results["machine"] = machine_info()
    for name, measure in cases(opts.quick).items():
        if opts.only not in name or (name in results["entries"] and not opts.force):
            continue
        print(f"bench throughput: {name} ...", flush=True)
        entry = measure()
        entry["measured"] = time.strftime("%Y-%m-%d %H:%M:%S")
        results["entries"][name] = entry
        print(f"bench throughput: {name}: {entry['steps_per_second']:.0f} steps/s", flush=True)
        write_json(path, results)
    write_json(path, results)
    print(report(results))
