"""`robo-rl bench fas`: Frequency-Averaged Score of SRL against SB3 SAC, under one protocol for every arm.

Every (task, arm, seed) is one ordinary training run under runs/bench/fas/ (interrupted runs continue
from their checkpoint), then an evaluation at the decision intervals `--intervals`. Every arm of a task
gets the same env-step budget (`--steps`, else the task's own in TASK_STEPS) and the same warm-up
`--warmup` (uniform random actions, or Symphony's exploration phase, before the first update); both are
recorded in each result file, and a file made under other settings is run again and replaced. Each
finished run writes benchmarks/results/fas/<task>__<arm>__s<seed>.json; finished runs are skipped. The
report compares arms only within one (task, budget, warm-up), each group with its own SAC reference.

Arms: an agent name (`sb3_sac`, `srl`, `symphony_cpu`, ...); `srl_j<J>` (or `srl_split_j<J>`, `srl_recall4_j<J>`),
SRL trained with J actions per decision; `<agent>_repeat<k>`, the agent trained with `env.action_repeat=k` (frame skip), which
decides every k primitive steps and is evaluated at multiples of its own interval. Agents that emit
action sequences play tau actions from one observation; the others repeat their action.

The report gives FAS in two normalisations: against SB3 SAC's mean return at tau = 1 on the task (one
scale for every arm: what each can do at each rate) and against each run's own return at tau = 1 (how
much of what it can do survives slower decisions; a frame-skip arm's own fastest rate is k), with per-seed values, IQM and 95% bootstrap CIs.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from robo_rl.bench import RUN_DEFAULTS, SEEDS_NOTE, grid_jobs, grid_parser, parse_args, results_dir, run_bench, write_summary

TASKS = {"InvertedPendulum-v5": "inverted_pendulum", "Hopper-v5": "hopper", "Reacher-v5": "reacher",
         "HalfCheetah-v5": "halfcheetah", "Walker2d-v5": "walker2d"}
# Each task's env-step budget when --steps is not given: the two quick tasks at 20k, the locomotion
# tasks (the paper's harder ones) at 50k, where SB3 SAC learns to move but has not converged.
TASK_STEPS = {"InvertedPendulum-v5": 20_000, "Reacher-v5": 20_000, "Hopper-v5": 50_000, "HalfCheetah-v5": 50_000,
              "Walker2d-v5": 50_000}
DEFAULT_INTERVALS = "1,2,3,4,6,8,12,16"
# The key that holds an agent's warm-up (random or untrained-actor steps before learning starts).
WARMUP_KEY = {"symphony": "explore_steps", "symphony_cpu": "explore_steps", "symphony_budget": "explore_steps"}
ARM = re.compile(r"^(?P<agent>[a-z0-9_]+?)(?:_j(?P<j>\d+)|_repeat(?P<k>\d+))?$")


def arm_spec(arm: str) -> tuple[str, list[str], int]:
    """(agent config name, its overrides, action repeat) of a benchmark arm."""
    from robo_rl.config import ConfigError, compose, group_options

    match = ARM.match(arm)
    agents = group_options("agent")
    if match is None or match["agent"] not in agents:
        raise ConfigError(f"--agents: unknown arm '{arm}' (an agent of {', '.join(agents)}, "
                          "optionally with _j<J> for SRL or _repeat<k>)")
    agent, overrides, repeat = match["agent"], [], 1
    if match["j"]:
        # _j<J> is for an agent that plays action sequences: one whose config has a sequence length
        if "sequence_length" not in compose([f"agent={agent}"]).agent:
            raise ConfigError(f"--agents: '{arm}': _j<J> sets agent.sequence_length, which {agent} does not have")
        overrides.append(f"agent.sequence_length={int(match['j'])}")
    if match["k"]:
        repeat = int(match["k"])
        if repeat < 2:
            raise ConfigError(f"--agents: '{arm}': the action repeat must be >= 2")
        overrides.append(f"env.action_repeat={repeat}")
    return agent, overrides, repeat


def run_one(task: str, arm: str, seed: int, steps: int, warmup: int, intervals: list[int], episodes: int,
            extra: list[str]) -> dict[str, Any]:
    from robo_rl.config import compose, to_container
    from robo_rl.envs.factory import make_env
    from robo_rl.fas import evaluate_at_interval
    from robo_rl.runs import RandomAgent, load_agent_and_env, load_run_config, train_run

    agent, arm_overrides, repeat = arm_spec(arm)
    run_dir = Path("runs") / "bench" / "fas" / f"{task}__{arm}__s{seed}__{steps}__w{warmup}"
    resume = (run_dir / "checkpoint.safetensors").exists()
    # A frame-skip run counts its decisions: the same env steps and warm-up are steps / k of them.
    decisions, warmup_decisions = steps // repeat, warmup // repeat
    overrides = [f"agent.{WARMUP_KEY.get(agent, 'learning_starts')}={warmup_decisions}", *arm_overrides, *extra]
    cfg = load_run_config(run_dir) if resume else compose(
        [f"agent={agent}", f"env={TASKS[task]}", f"seed={seed}", f"train.steps={decisions}",
         f"train.eval_every={max(decisions // 10, 1000)}", "train.eval_episodes=5",
         f"train.checkpoint_every={max(decisions // 5, 1000)}", *RUN_DEFAULTS, *overrides])
    train_run(cfg, run_dir, resume=resume)
    eval_seed = 30_000
    trained, info, env = load_agent_and_env(run_dir, eval_seed)
    own_rate = [tau for tau in intervals if tau % repeat == 0]   # a frame-skip arm decides every k steps at best
    per_interval = [{**evaluate_at_interval(trained, env, tau // repeat, episodes, eval_seed), "interval": tau}
                    for tau in own_rate]
    env.close()
    primitive = make_env({**info["env"], "action_repeat": 1}, seed=eval_seed)   # the random policy at every step
    random_agent = RandomAgent(primitive.observation_space, primitive.action_space, {}, eval_seed)
    random_return = evaluate_at_interval(random_agent, primitive, 1, episodes, eval_seed)["mean_return"]
    primitive.close()
    return {"task": task, "agent": arm, "base_agent": agent, "seed": seed, "steps": steps, "warmup": warmup,
            "action_repeat": repeat, "intervals": own_rate, "episodes": episodes,
            "mode": "sequence" if hasattr(trained, "act_sequence") else "repeat",
            "per_interval": per_interval, "random_return": random_return, "extra_overrides": overrides,
            "config": to_container(cfg.agent)}


def current(result: dict[str, Any], steps: int, warmup: int) -> bool:
    """A result file made under this protocol (older files lack the recorded warm-up)."""
    return result.get("warmup") == warmup and result.get("steps", 0) >= steps


def run_fas(run: dict[str, Any], random_return: float, reference: float) -> float | None:
    from robo_rl.fas import fas_score

    tau = [p["interval"] for p in run["per_interval"]]
    if len(tau) < 2:
        return None
    return fas_score(tau, [p["mean_return"] for p in run["per_interval"]], random_return, reference)


# A run's own normalisation divides by how far its fastest return rose above random; for a run that
# hardly learned that gap is near zero or negative and the ratio is noise (e.g. 2.6 for a run that
# failed everywhere), so it needs at least this share of SAC's gap above random to be scored.
OWN_MIN_SHARE = 0.05


def own_fas(run: dict[str, Any], random_return: float, sac_reference: float) -> float | None:
    """FAS against the run's own fastest return; None for a run that did not learn at that rate."""
    own = run["per_interval"][0]["mean_return"]
    if own - random_return < OWN_MIN_SHARE * (sac_reference - random_return):
        return None
    return run_fas(run, random_return, own)


def protocols(results: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    """The (task, env steps, warm-up) groups among the results, tasks in TASKS' order: arms are compared
    only within one group, so every arm of a row block had the same budget and the same warm-up."""
    order = list(TASKS)
    return sorted({(r["task"], r["steps"], r["warmup"]) for r in results},
                  key=lambda g: (order.index(g[0]) if g[0] in order else len(order), g[0], g[1], g[2]))


def report() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robo_rl.evaluate import aggregate
    from robo_rl.fas import DEFINITION

    folder = results_dir() / "fas"
    every = [json.loads(p.read_text()) for p in sorted(folder.glob("*__s*.json"))]
    results = [r for r in every if "warmup" in r]   # files from before the warm-up was recorded are not shown
    stale = len(every) - len(results)
    groups = protocols(results)
    lines = ["Within a task every arm has the same env steps and the same warm-up (uniform random actions, Symphony: "
             "its exploration phase, before any update), both in the table; a task's rows under another budget form a "
             f"block of their own with its own SAC reference. {SEEDS_NOTE}", "",
             "| task | arm | seeds | env steps | warm-up | FAS vs SAC at tau=1: IQM | 95% CI | per seed | FAS vs own "
             "fastest: IQM | per seed |", "|---|---|---:|---:|---:|---:|---|---|---:|---|"]
    every_tau = sorted({p["interval"] for r in results for p in r["per_interval"]})
    returns_table = ["| task | arm | env steps | " + " | ".join(f"tau={t}" for t in every_tau) + " |",
                     "|---|---|---:|" + "---:|" * len(every_tau)]
    for task, steps, warmup in groups:
        runs = [r for r in results if (r["task"], r["steps"], r["warmup"]) == (task, steps, warmup)]
        sac = [r for r in runs if r["agent"] == "sb3_sac"]
        if not sac:
            lines.append(f"| {task} | (no SB3 SAC runs yet: no common reference) | | {steps} | {warmup} | | | | | |")
            continue
        reference = float(np.mean([p["mean_return"] for r in sac for p in r["per_interval"] if p["interval"] == 1]))
        random_return = float(np.mean([r["random_return"] for r in runs]))
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for arm in sorted({r["agent"] for r in runs}):
            mine = sorted((r for r in runs if r["agent"] == arm), key=lambda r: r["seed"])
            vs_sac = [run_fas(r, random_return, reference) for r in mine]
            vs_own = [own_fas(r, random_return, reference) for r in mine]
            (iqm_sac, ci_sac), (iqm_own, _) = _iqm_ci(vs_sac, aggregate), _iqm_ci(vs_own, aggregate)
            lines.append(f"| {task} | {_label(mine[0])} | {len(mine)} | {steps} | {warmup} | {iqm_sac} | {ci_sac} "
                         f"| {_seeds(vs_sac)} | {iqm_own} | {_seeds(vs_own)} |")
            returns_table.append(f"| {task} | {_label(mine[0])} | {steps} | " + " | ".join(
                _returns_at(mine, t) for t in every_tau) + " |")
            tau = mine[0]["intervals"]
            curves = np.array([[p["mean_return"] for p in r["per_interval"]] for r in mine])
            ax.plot(tau, curves.mean(0), marker="o", label=_label(mine[0]))
            ax.fill_between(tau, curves.min(0), curves.max(0), alpha=0.15)
        ax.axhline(random_return, color="gray", ls="--", lw=1, label="random")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("decision interval tau (primitive steps per decision)")
        ax.set_ylabel("episode return")
        ax.set_title(f"{task}, {steps} env steps: mean over seeds, band min-max")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / plot_name(task, steps, groups), dpi=120)
        plt.close(fig)
    lines += ["", "Return at each decision interval: mean over seeds (per seed in brackets).", "", *returns_table, "",
              f"FAS: {DEFINITION}. Headline: R_ref = SB3 SAC's mean return at tau = 1 on the task (one scale for "
              "every arm); beside it R_ref = the run's own return at its fastest rate (tau = 1; k for a frame-skip arm). A frame-skip arm (_repeat<k>) decides "
              "every k steps at best: its FAS is over its own intervals (tau >= k) and is not comparable to the others'. "
              f"A run whose own fastest return is less than {OWN_MIN_SHARE:.0%} of SAC's way above random has no "
              "own-normalised FAS (-): it did not learn, and the ratio would be noise."]
    if stale:
        lines += ["", f"({stale} result file(s) made before the warm-up was recorded are not shown; rerunning replaces them.)"]
    return write_summary("fas", folder, lines)


def plot_name(task: str, steps: int, groups: list[tuple[str, int, int]]) -> str:
    """<task>.png, or <task>__<steps>.png where the task has results under more than one budget."""
    return f"{task}.png" if len({g[1] for g in groups if g[0] == task}) == 1 else f"{task}__{steps}.png"


def _label(run: dict[str, Any]) -> str:
    return f"{run['agent']} ({run['mode']})"


def _iqm_ci(values: list[float | None], aggregate) -> tuple[str, str]:
    """IQM and its 95% bootstrap interval over the runs that have a score (one bootstrap)."""
    known = [v for v in values if v is not None]
    if not known:
        return "-", "-"
    agg = aggregate(known)
    return f"{agg['iqm']:.2f}", (f"[{agg['iqm_ci'][0]:.2f}, {agg['iqm_ci'][1]:.2f}]" if "iqm_ci" in agg else "-")


def _seeds(values: list[float | None]) -> str:
    return " / ".join("-" if v is None else f"{v:.2f}" for v in values)


def _returns_at(runs: list[dict[str, Any]], tau: int) -> str:
    values = [p["mean_return"] for r in runs for p in r["per_interval"] if p["interval"] == tau]
    if not values:
        return "-"
    return f"{np.mean(values):.0f} ({' / '.join(f'{v:.0f}' for v in values)})"


def build_parser() -> argparse.ArgumentParser:
    """The options of `robo-rl bench fas` (the docs' commands are checked against them)."""
    parser = grid_parser("robo-rl bench fas", "InvertedPendulum-v5,Reacher-v5", "srl,sb3_sac", None)
    parser.set_defaults(seeds="0,1,2,3,4")
    parser.add_argument("--warmup", type=int, default=5_000,
                        help="env steps of random actions before learning, the same for every arm")
    parser.add_argument("--intervals", default=DEFAULT_INTERVALS)
    parser.add_argument("--episodes", type=int, default=5)
    return parser


def main(args: list[str]) -> None:
    from robo_rl.config import ConfigError

    opts = parse_args(build_parser(), args)
    try:
        intervals = [int(k) for k in opts.intervals.split(",")]
    except ValueError:
        raise ConfigError(f"--intervals: '{opts.intervals}' must be comma-separated integers") from None
    if 1 not in intervals or min(intervals) < 1:
        raise ConfigError(f"--intervals: '{opts.intervals}' must be >= 1 and include 1 (the reference rate)")
    tasks = opts.tasks.split(",")
    bad = [task for task in tasks if task not in TASKS]
    if bad:
        raise ConfigError(f"--tasks: unknown task '{bad[0]}' (valid: {', '.join(TASKS)})")
    if opts.steps is not None and opts.steps < 1:
        raise ConfigError(f"--steps: {opts.steps} must be a positive number of env steps")
    budget = {task: opts.steps or TASK_STEPS[task] for task in tasks}
    for task in tasks:
        if not 0 <= opts.warmup < budget[task]:
            raise ConfigError(f"--warmup: {opts.warmup} must be >= 0 and below {task}'s budget of {budget[task]} steps")
    for arm in opts.agents.split(","):
        arm_spec(arm)
    folder = results_dir() / "fas"
    folder.mkdir(parents=True, exist_ok=True)
    if not opts.report:
        jobs = []
        for task in tasks:
            steps = budget[task]
            task_opts = argparse.Namespace(**{**vars(opts), "tasks": task})
            jobs += grid_jobs(task_opts, TASKS, lambda task, arm, seed: folder / f"{task}__{arm}__s{seed}.json", run_one,
                              lambda task, arm, seed, steps=steps: dict(task=task, arm=arm, seed=seed, steps=steps, warmup=opts.warmup,
                                                                        intervals=intervals, episodes=opts.episodes, extra=opts.override),
                              complete=lambda result, steps=steps: current(result, steps, opts.warmup))
        run_bench("fas", opts, jobs)
    print(report())
