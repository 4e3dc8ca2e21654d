"""`robo-rl bench throughput`: how fast the suite steps envs and trains, on this machine.

Measures, in one process:
  * env steps/s with random actions for each env family, state and pixel observations;
  * training env-steps/s on HalfCheetah-v5 of
      (a) SB3 SAC (one update per step, batch 256, 256x256) in SB3's own `learn` loop, and through
          robo-rl's shared loop (the SB3 adapter);
      (b) SBX SAC, same hyperparameters (the optional `bench` extra: `pip install -e '.[bench]'`);
      (c') the suite's SAC (`agent=sac`, same hyperparameters) and SRL on it (`agent=srl`, J = 4);
      (c) Symphony with SAC's widths, batch and updates per step (`agent=symphony_cpu`);
      (d) Symphony with the paper's configuration (`agent=symphony`);
  * FLOPs per update (torch's FLOP counter) and the fraction of this machine's measured fp32
    matmul peak that each training loop achieves;
  * what each of Symphony's pieces costs at matched compute: the `symphony_cpu` update with one piece
    at a time swapped for a cheap stand-in of the same shapes, timed round-robin with the full update
    and with the suite's SAC update (same batch and widths).
Results go to benchmarks/results/throughput.json, one entry per measurement; entries already there
are skipped (use --force to measure again), so the file can grow over several sittings. Speed
comparisons are only meaningful as ratios between entries measured on the same machine.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from typing import Any, Callable, Iterator

import numpy as np
import torch

from robo_rl.bench import results_dir, update_page
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
    from robo_rl.jobs import cpu_model

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
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


def _sb3_style_learn(algo: Any, warmup: int, steps: int, **extra: Any) -> dict[str, Any]:
    """Env-steps/s of an SB3-API SAC (SB3 or SBX) in its own `learn` loop, timed after warm-up."""
    import gymnasium as gym
    from stable_baselines3.common.callbacks import BaseCallback

    class Mark(BaseCallback):
        def __init__(self, fn: Callable[[int], None]) -> None:
            super().__init__()
            self.fn = fn

        def _on_step(self) -> bool:
            self.fn(self.num_timesteps)
            return True

    hyper = {k: v for k, v in SAC_HYPER.items() if k != "net_arch"}
    model = algo("MlpPolicy", gym.make("HalfCheetah-v5"), learning_starts=warmup, buffer_size=warmup + steps + 50,
                 policy_kwargs={"net_arch": SAC_HYPER["net_arch"]}, seed=0, **hyper, **extra)
    # the first updates (and, for SBX, JIT compilation) happen before the clock starts
    seconds = _timed_after(warmup + 50, lambda fn: model.learn(warmup + 50 + steps, callback=Mark(fn)))
    return {"steps": steps, "seconds": seconds, "steps_per_second": steps / seconds}


def sac_native(warmup: int, steps: int) -> dict[str, Any]:
    from stable_baselines3 import SAC

    return _sb3_style_learn(SAC, warmup, steps, device="cpu")


def sac_sbx(warmup: int, steps: int) -> dict[str, Any]:
    try:
        from sbx import SAC as SBXSAC
    except ImportError:
        print("bench throughput: SBX is not installed; install the benchmark extra with: "
              ".venv/bin/pip install -e '.[bench]'  (skipping its row)", flush=True)
        return {"skipped": "sbx-rl is not installed (pip install -e '.[bench]')", "steps_per_second": 0.0}
    return _sb3_style_learn(SBXSAC, warmup, steps)


def matmul_peak(seconds: float = 2.0) -> dict[str, Any]:
    """Sustained fp32 GFLOP/s of a large square matmul with torch's current thread setting."""
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    for _ in range(3):
        torch.mm(a, b, out=out)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b, out=out)
        count += 1
    elapsed = time.perf_counter() - start
    return {"gflops": 2 * n**3 * count / elapsed / 1e9, "size": n, "threads": torch.get_num_threads(),
            "steps_per_second": 0.0}


def flops_per_update(agent: Any) -> float:
    """FLOPs of one gradient update (forward + backward + optimiser), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    from robo_rl.replay import ReplayBuffer

    obs_dim, act_dim = agent.observation_space.shape[0], agent.action_dim
    replay = ReplayBuffer((obs_dim,), act_dim, capacity=1024)
    for _ in range(1024):
        replay.add(np.random.randn(obs_dim), np.random.uniform(-1, 1, act_dim), 1.0, np.random.randn(obs_dim), False)
    if hasattr(agent, "updates"):  # robo-rl agents: one train_step, divided by its updates
        agent.train_step(replay)  # first call may set up (Symphony fills its buffer)
        with FlopCounterMode(display=False) as counter:
            agent.train_step(replay)
        return float(counter.get_total_flops()) / int(getattr(agent, "updates_per_step", 1))
    # the SB3 adapter: one SB3 train() call with one gradient step
    agent.replay_view.store = replay
    with FlopCounterMode(display=False) as counter:
        agent.model.train(gradient_steps=1, batch_size=agent.batch_size)
    return float(counter.get_total_flops())


def agent_from_config(name: str, overrides: list[str], env: Any) -> Any:
    from robo_rl.config import compose, to_container
    from robo_rl.agents.base import agent_class

    cfg = to_container(compose([f"agent={name}", *overrides]).agent)
    return agent_class(cfg.pop("_target_"))(env.observation_space, env.action_space, cfg, 0)


def train_robo_rl(name: str, overrides: list[str], warmup: int, steps: int, env_id: str = "HalfCheetah-v5") -> dict[str, Any]:
    """Env-steps/s of an agent config trained through robo-rl's loop on a MuJoCo task, after warm-up."""
    from robo_rl.callbacks import Callback
    from robo_rl.envs import env_config, make_env

    env = make_env(env_config("mujoco", env_id), seed=0)
    agent = agent_from_config(name, [f"agent.learning_starts={warmup}", *overrides] if "symphony" not in name
                              else [f"agent.explore_steps={warmup}", *overrides], env)

    class Mark(Callback):
        def __init__(self, fn: Callable[[int], None]) -> None:
            self.fn = fn

        def on_step(self, trainer: Any) -> bool:
            self.fn(trainer.step)
            return True

    # a few updates before the clock starts, so one-off work (compiling, buffer fill) is not timed
    seconds = _timed_after(warmup + 20, lambda fn: agent.learn(warmup + 20 + steps, env, progress=False, callbacks=[Mark(fn)]))
    flops = flops_per_update(agent_from_config(name, [o for o in overrides if "compile" not in o], env))
    updates = getattr(agent, "updates_per_step", getattr(agent, "gradient_steps", 1))
    return {"steps": steps, "seconds": seconds, "steps_per_second": steps / seconds, "agent": name,
            "overrides": overrides, "updates_per_step": updates, "flops_per_update": flops,
            "gflops_per_second": flops * updates * steps / seconds / 1e9}


def _unsorted_target(agent: Any, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Symphony's target value without sorting the critic's outputs (the weights applied as they come)."""
    return agent.target_critic(torch.cat([obs, action], dim=-1)) @ agent.nets.q_weights.unsqueeze(-1)


def symphony_pieces() -> dict[str, tuple[list[str], tuple[Any, str, Any] | None]]:
    """Label -> (config overrides, (owner, attribute, stand-in) patched while that variant runs)."""
    from robo_rl.agents.symphony import ReSine, Symphony

    return {
        "full update": ([], None),
        "no sort of the target critic's outputs": ([], (Symphony, "_target_soft", _unsorted_target)),
        "ReLU in place of ReSine": ([], (ReSine, "forward", lambda self, x: torch.relu(x))),
        "no LayerNorm": ([], (torch.nn.functional, "layer_norm", lambda x, shape: x)),
        "no gradient dropout": (["agent.gradient_dropout=0"], None),
        "one critic head instead of three": (["agent.critic_heads=1"], None),
    }


@contextlib.contextmanager
def swapped(patch: tuple[Any, str, Any] | None) -> Iterator[None]:
    """Within the block, `owner.attribute` is the stand-in; restored afterwards, whatever happens."""
    if patch is None:
        yield
        return
    owner, name, stand_in = patch
    saved = getattr(owner, name)  # a typo in the name fails here instead of timing the full update
    setattr(owner, name, stand_in)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def _random_replay(agent: Any, size: int) -> Any:
    from robo_rl.replay import ReplayBuffer

    obs_dim = agent.observation_space.shape[0]
    replay = ReplayBuffer((obs_dim,), agent.action_dim, capacity=size, keep_terminals=True)
    for _ in range(size):
        replay.add(np.random.randn(obs_dim), np.random.uniform(-1, 1, agent.action_dim), 1.0, np.random.randn(obs_dim), False)
    return replay


def symphony_piece_costs(updates: int, rounds: int) -> dict[str, Any]:
    """ms per update of `symphony_cpu`, whole and with each piece swapped out, and of `sac`; all timed
    round-robin on one thread, the fastest round kept (the difference to the full update is the piece's cost)."""
    from robo_rl.envs import env_config, make_env

    env = make_env(env_config("mujoco", "HalfCheetah-v5"), seed=0)
    variants = {label: ("symphony_cpu", overrides, patch) for label, (overrides, patch) in symphony_pieces().items()}
    variants["sac (same batch and widths)"] = ("sac", [], None)

    def timed(agent: Any, replay: Any, patch: tuple[Any, str, Any] | None, n: int) -> float:
        with swapped(patch):
            start = time.perf_counter()
            for _ in range(n):
                agent.train_step(replay)
            return (time.perf_counter() - start) / n * 1e3

    built = {}
    for label, (name, overrides, patch) in variants.items():
        agent = agent_from_config(name, overrides, env)
        replay = _random_replay(agent, 4096)
        timed(agent, replay, patch, 10)  # first calls set up (Symphony tiles its buffer) and warm caches
        built[label] = (agent, replay, patch)
    ms: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(rounds):
        for label, (agent, replay, patch) in built.items():
            ms[label].append(timed(agent, replay, patch, updates))
    best = {label: min(values) for label, values in ms.items()}
    return {"ms_per_update": best, "rounds_ms": {k: [round(v, 2) for v in vs] for k, vs in ms.items()},
            "updates": updates, "threads": torch.get_num_threads(), "steps_per_second": 0.0}


def cases(quick: bool) -> dict[str, Callable[[], dict[str, Any]]]:
    env_steps, px_steps = (500, 100) if quick else (10_000, 1_000)
    warmup, train_steps = (300, 200) if quick else (1_000, 2_000)
    table: dict[str, Callable[[], dict[str, Any]]] = {
        name: (lambda f=f, i=i, p=p: env_steps_per_second(f, i, p, px_steps if p else env_steps))
        for name, (f, i, p) in ENV_CASES.items()
    }
    table["machine/matmul_peak_fp32"] = lambda: matmul_peak(0.5 if quick else 3.0)
    table["train/sb3_sac/HalfCheetah-v5/sb3_learn"] = lambda: sac_native(warmup, train_steps)
    table["train/sb3_sac/HalfCheetah-v5/robo_rl_loop"] = lambda: train_robo_rl("sb3_sac", [], warmup, train_steps)
    table["train/sbx_sac/HalfCheetah-v5/sbx_learn"] = lambda: sac_sbx(warmup, train_steps)
    table["train/sac/HalfCheetah-v5/robo_rl_loop"] = lambda: train_robo_rl("sac", [], warmup, train_steps)
    table["train/srl/HalfCheetah-v5/robo_rl_loop"] = lambda: train_robo_rl("srl", [], warmup, train_steps)
    # SRL's temporal recall on k of its J positions per update (agent.recall_positions): J = 4 and 16 ...
    for name, overrides in (("srl_recall1", ["agent.recall_positions=1"]),
                            ("srl_j16", ["agent.sequence_length=16"]),
                            ("srl_j16_recall4", ["agent.sequence_length=16", "agent.recall_positions=4"]),
                            ("srl_j16_recall1", ["agent.sequence_length=16", "agent.recall_positions=1"]),
                            # ... or each batch row scoring one position (agent.recall_split)
                            ("srl_split", ["agent.recall_split=true"]),
                            ("srl_j16_split", ["agent.sequence_length=16", "agent.recall_split=true"])):
        table[f"train/{name}/HalfCheetah-v5/robo_rl_loop"] = lambda o=overrides: train_robo_rl("srl", o, warmup, train_steps)
    # CrossQ at the critic widths of `bench learn`, and sb3-contrib's at 512 (agent=sb3_crossq); width 1024
    # costs ~11x SAC's FLOP per update, so it is timed over a quarter of the steps
    for width in (256, 512, 1024):
        table[f"train/crossq_w{width}/HalfCheetah-v5/robo_rl_loop"] = lambda w=width: train_robo_rl(
            "crossq", [f"agent.critic_width={w}"], warmup, train_steps if w < 1024 else max(50, train_steps // 4))
    table["train/sb3_crossq/HalfCheetah-v5/robo_rl_loop"] = lambda: train_robo_rl("sb3_crossq", [], warmup, train_steps)
    compile_flag = [] if quick else ["agent.compile=true"]
    table["train/symphony_cpu/HalfCheetah-v5/robo_rl_loop_eager"] = lambda: train_robo_rl(
        "symphony_cpu", [], warmup, train_steps)
    table["train/symphony_cpu/HalfCheetah-v5/robo_rl_loop"] = lambda: train_robo_rl(
        "symphony_cpu", compile_flag, warmup, train_steps)
    table["train/symphony/HalfCheetah-v5/robo_rl_loop"] = lambda: train_robo_rl(
        "symphony", compile_flag, warmup, max(50, train_steps // 10))
    table["pieces/symphony_cpu/HalfCheetah-v5"] = lambda: symphony_piece_costs(*((5, 1) if quick else (200, 5)))
    return table


def report(results: dict[str, Any]) -> str:
    """Markdown tables: env throughput, and training throughput as ratios to SB3 SAC."""
    entries = results["entries"]
    peak = entries.get("machine/matmul_peak_fp32", {}).get("gflops")
    base = entries.get("train/sb3_sac/HalfCheetah-v5/sb3_learn", {}).get("steps_per_second")
    lines = ["| env | observation | steps/s |", "|---|---|---:|"]
    for name, entry in entries.items():
        if name.startswith("env/"):
            lines.append(f"| {name.split('/', 1)[1].replace('/pixels', '')} | {entry['observation']} | {entry['steps_per_second']:.0f} |")
    lines += ["", "| training on HalfCheetah-v5 | env steps/s (best round) | vs SB3 SAC | rounds (steps/s) | GFLOP per update | updates/step | % of matmul peak |",
              "|---|---:|---:|---|---:|---:|---:|"]
    for name, entry in entries.items():
        if not name.startswith("train/"):
            continue
        if "skipped" in entry:
            lines.append(f"| {name.split('/')[1]} ({name.split('/')[-1]}) | skipped: {entry['skipped']} | | | | | |")
            continue
        sps = entry["steps_per_second"]
        ratio = f"{sps / base:.2f}x" if base else "-"
        flops = entry.get("flops_per_update")
        gflop = f"{flops / 1e9:.2f}" if flops else "-"
        share = f"{100 * entry['gflops_per_second'] / peak:.0f}%" if flops and peak else "-"
        rounds = ", ".join(f"{v:.0f}" for v in entry.get("rounds_steps_per_second", [sps]))
        lines.append(f"| {name.split('/')[1]} ({name.split('/')[-1]}) | {sps:.0f} | {ratio} | {rounds} | {gflop} | "
                     f"{entry.get('updates_per_step', 1)} | {share} |")
    pieces = entries.get("pieces/symphony_cpu/HalfCheetah-v5")
    if pieces:
        full = pieces["ms_per_update"]["full update"]
        lines += ["", f"| symphony_cpu update (torch threads: {pieces['threads']}; fastest of {len(next(iter(pieces['rounds_ms'].values())))} rounds) "
                  "| ms per update | vs full update | the piece costs |", "|---|---:|---:|---:|"]
        for label, value in pieces["ms_per_update"].items():
            cost = "-" if label == "full update" or label.startswith("sac") else f"{100 * (full - value) / full:.0f}%"
            lines.append(f"| {label} | {value:.1f} | {value / full:.2f}x | {cost} |")
    if peak:
        lines.append(f"\nMeasured fp32 matmul peak: {peak:.0f} GFLOP/s ({entries['machine/matmul_peak_fp32']['threads']} threads).")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The options of `robo-rl bench throughput` (the docs' commands are checked against them)."""
    parser = argparse.ArgumentParser(prog="robo-rl bench throughput")
    parser.add_argument("--quick", action="store_true", help="tiny budgets (a smoke check, numbers not kept)")
    parser.add_argument("--force", action="store_true", help="measure again entries already in the result file")
    parser.add_argument("--only", default="", help="measure only entries whose name contains one of these texts (comma-separated)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="training rows are measured this many times, round-robin, and the fastest round is kept "
                             "(a shared or virtual machine's speed drifts and only ever slows a run down; interleaving "
                             "spreads the drift over all rows)")
    parser.add_argument("--out", default=None, help="result file (default benchmarks/results/throughput.json)")
    return parser


def main(args: list[str]) -> None:
    opts = build_parser().parse_args(args)
    if opts.rounds < 1:
        from robo_rl.config import ConfigError

        raise ConfigError(f"--rounds must be >= 1, got {opts.rounds}")
    path = results_dir() / "throughput.json" if opts.out is None else opts.out
    results = json.loads(open(path).read()) if os.path.exists(path) and not opts.quick else {"entries": {}}
    # the file's machine line describes the sitting that started it; every entry also records its own
    results.setdefault("machine", machine_info())
    wanted = [w for w in opts.only.split(",") if w] or [""]
    pending = {name: measure for name, measure in cases(opts.quick).items()
            if any(w in name for w in wanted) and (name not in results["entries"] or opts.force)}
    measured: dict[str, list[dict[str, Any]]] = {}
    rounds = 1 if opts.quick else opts.rounds
    for round_index in range(rounds):
        for name, measure in pending.items():
            if measured.get(name) and not name.startswith("train/"):
                continue  # env rows, the matmul peak and the piece costs (rounds of their own) are measured once
            print(f"bench throughput: {name} (round {round_index + 1}/{rounds}) ...", flush=True)
            measured.setdefault(name, []).append(measure())
            entry = best_entry(measured[name])
            results["entries"][name] = entry
            shown = (f"{entry['gflops']:.0f} GFLOP/s" if "gflops" in entry else
                     f"{entry['ms_per_update']['full update']:.1f} ms per update" if "ms_per_update" in entry else
                     f"{entry['steps_per_second']:.0f} steps/s")
            print(f"bench throughput: {name}: {shown}", flush=True)
            write_json(path, results)
    write_json(path, results)
    table = report(results)
    if not opts.quick and opts.out is None:
        m = results["machine"]
        update_page("throughput", table, folder=path.parent / "throughput",
                    hardware=f"{m['cores']} vCPUs, {m['cpu']}, torch {m['torch']}, no GPU (the sitting that started this file; every entry records its own)")
    print(table)


def best_entry(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest round (the least disturbed by the machine's other load), plus every round's steps/s."""
    entry = dict(max(rounds, key=lambda e: e.get("steps_per_second", 0.0)))
    entry["rounds_steps_per_second"] = [round(e.get("steps_per_second", 0.0), 2) for e in rounds]
    entry["measured"] = time.strftime("%Y-%m-%d %H:%M:%S")
    entry["machine"] = machine_info()
    return entry
