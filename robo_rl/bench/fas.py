"""`robo-rl bench fas`: Frequency-Averaged Score of SRL against SB3 SAC (and Symphony).

Every (task, agent, seed) is one ordinary training run with the same env-step budget under
runs/bench/fas/ (interrupted runs continue from their checkpoint), then `robo-rl fas` on it at the
decision intervals `--intervals`. SAC and Symphony act at interval tau by repeating their action;
SRL plays tau actions from one observation. Each finished run writes its own file
benchmarks/results/fas/<task>__<agent>__s<seed>.json, finished runs are skipped.

Normalisation across agents: FAS per run is computed with R_ref = mean return at tau = 1 of SB3 SAC
on that task (over its seeds) and R_random = the random policy's return, so the agents of one task
share one scale; `--report` recomputes it from the files, with IQM and 95% bootstrap CIs over seeds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from robo_rl.bench import grid_parser, results_dir, run_grid, write_summary

TASKS = {"InvertedPendulum-v5": "inverted_pendulum", "Hopper-v5": "hopper", "Reacher-v5": "reacher",
         "HalfCheetah-v5": "halfcheetah", "Walker2d-v5": "walker2d"}
DEFAULT_INTERVALS = "1,2,3,4,6,8,12,16"
# Symphony's exploration phase (the paper's 20480 steps of the untrained actor) outlasts this benchmark's
# budget, so it would never update: here it explores for SRL's 5k warm-up steps instead.
SHORT_EXPLORATION = ["agent.explore_steps=5000"]
AGENT_OVERRIDES = {"symphony": SHORT_EXPLORATION, "symphony_cpu": SHORT_EXPLORATION}


def run_one(task: str, agent: str, seed: int, steps: int, intervals: list[int], episodes: int, extra: list[str]) -> dict[str, Any]:
    from robo_rl.config import compose, to_container
    from robo_rl.fas import evaluate_at_interval
    from robo_rl.runs import RandomAgent, load_agent_and_env, load_run_config, train_run

    run_dir = Path("runs") / "bench" / "fas" / f"{task}__{agent}__s{seed}__{steps}"
    resume = (run_dir / "checkpoint.safetensors").exists()
    overrides = [*AGENT_OVERRIDES.get(agent, []), *extra]
    cfg = load_run_config(run_dir) if resume else compose(
        [f"agent={agent}", f"env={TASKS[task]}", f"seed={seed}", f"train.steps={steps}", f"train.eval_every={max(steps // 10, 1000)}",
         "train.eval_episodes=5", f"train.checkpoint_every={max(steps // 5, 1000)}", "train.video_steps=0", *overrides])
    train_run(cfg, run_dir, resume=resume)
    eval_seed = 30_000
    trained, _, env = load_agent_and_env(run_dir, eval_seed)
    per_interval = [evaluate_at_interval(trained, env, k, episodes, eval_seed) for k in intervals]
    random_agent = RandomAgent(env.observation_space, env.action_space, {}, eval_seed)
    random_return = evaluate_at_interval(random_agent, env, 1, episodes, eval_seed)["mean_return"]
    env.close()
    return {"task": task, "agent": agent, "seed": seed, "steps": steps, "intervals": intervals, "episodes": episodes,
            "mode": "sequence" if hasattr(trained, "act_sequence") else "repeat",
            "per_interval": per_interval, "random_return": random_return, "extra_overrides": overrides,
            "config": to_container(cfg.agent)}


def report() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robo_rl.evaluate import aggregate
    from robo_rl.fas import DEFINITION, fas_score

    folder = results_dir() / "fas"
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*__s*.json"))]
    lines = ["| task | agent | seeds | env steps | FAS mean | FAS IQM | 95% CI (IQM) | FAS, own R_ref (mean) | return at tau=1 | return at tau=8 |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for task in sorted({r["task"] for r in results}):
        runs = [r for r in results if r["task"] == task]
        sac = [r for r in runs if r["agent"] == "sb3_sac"]
        if not sac:
            lines.append(f"| {task} | (no SB3 SAC runs yet: no reference) | | | | | | | | |")
            continue
        reference = float(np.mean([p["mean_return"] for r in sac for p in r["per_interval"] if p["interval"] == 1]))
        random_return = float(np.mean([r["random_return"] for r in runs]))
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for agent in sorted({r["agent"] for r in runs}):
            mine = [r for r in runs if r["agent"] == agent]
            scores = [fas_score(r["intervals"], [p["mean_return"] for p in r["per_interval"]], random_return, reference) for r in mine]
            agg = aggregate(scores)
            ci = f"[{agg['iqm_ci'][0]:.2f}, {agg['iqm_ci'][1]:.2f}]" if "iqm_ci" in agg else "-"
            # each run against its own return at tau = 1: how much of what it can do survives slower decisions
            own = np.mean([fas_score(r["intervals"], [p["mean_return"] for p in r["per_interval"]], random_return,
                                     r["per_interval"][0]["mean_return"]) for r in mine])

            def at(tau: int) -> str:
                vals = [p["mean_return"] for r in mine for p in r["per_interval"] if p["interval"] == tau]
                return f"{np.mean(vals):.0f}" if vals else "-"

            lines.append(f"| {task} | {agent} | {len(mine)} | {mine[0]['steps']} | {agg['mean']:.2f} | {agg['iqm']:.2f} | {ci} | {own:.2f} | {at(1)} | {at(8)} |")
            tau = mine[0]["intervals"]
            curves = np.array([[p["mean_return"] for p in r["per_interval"]] for r in mine])
            ax.plot(tau, curves.mean(0), marker="o", label=f"{agent} ({mine[0]['mode']})")
            ax.fill_between(tau, curves.min(0), curves.max(0), alpha=0.15)
        ax.axhline(random_return, color="gray", ls="--", lw=1, label="random")
        ax.set_xlabel("decision interval (primitive steps per decision)")
        ax.set_ylabel("episode return")
        ax.set_title(f"{task}: return vs decision interval (mean, band min-max over seeds)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / f"{task}.png", dpi=120)
        plt.close(fig)
    lines += ["", f"FAS here: {DEFINITION}; R_ref = SB3 SAC's mean return at tau = 1 on the task, R_random = random policy."]
    return write_summary("fas", folder, lines)


def main(args: list[str]) -> None:
    parser = grid_parser("robo-rl bench fas", "InvertedPendulum-v5,Reacher-v5", "srl,sb3_sac,symphony_cpu", 20_000)
    parser.add_argument("--intervals", default=DEFAULT_INTERVALS)
    parser.add_argument("--episodes", type=int, default=5)
    opts = parser.parse_args(args)
    folder = results_dir() / "fas"
    folder.mkdir(parents=True, exist_ok=True)
    intervals = [int(k) for k in opts.intervals.split(",")]
    if not opts.report:
        run_grid("fas", opts, TASKS, lambda task, agent, seed: folder / f"{task}__{agent}__s{seed}.json",
                 lambda task, agent, seed: run_one(task, agent, seed, opts.steps, intervals, opts.episodes, opts.override),
                 done=lambda path: path.exists() and json.loads(path.read_text())["steps"] >= opts.steps)
    print(report())
