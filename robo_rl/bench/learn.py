"""`robo-rl bench learn`: learning curves of agents against SB3 SAC, same seeds and env steps.

Every (task, agent, seed) is one run of the ordinary training command in its own run folder under
runs/bench/learn/; a run interrupted for any reason continues from its checkpoint when the command
is repeated. Each finished run writes benchmarks/results/learn/<task>__<agent>__s<seed>.json
(deterministic evaluations every `--eval-every` steps), and finished runs are skipped, so the table
can be completed over several sittings (or in parallel processes with disjoint --seeds).
`--report` aggregates what is there: mean, IQM and 95% bootstrap CI at the final step, and one
learning-curve PNG per task.

`--cost` measures, in one process and round-robin (the fastest of `--rounds` rounds kept, as the
throughput benchmark), each agent's training env steps/s on each task after its warm-up, and the GFLOP of
its updates per env step (torch's FLOP counter), into cost.json. The report then gives each agent's time
for a run of the table's length in those same conditions, and each agent's return at the other's
wall-clock where a curve reaches that far (an agent with half the cost per step gets twice the steps).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from robo_rl.bench import (FINAL_NOTE, RUN_DEFAULTS, SEEDS_NOTE, final_return, grid_jobs, grid_parser, parse_args, per_seed,
                           results_dir, run_bench, write_summary)

TASKS = {"HalfCheetah-v5": "halfcheetah", "Walker2d-v5": "walker2d", "Humanoid-v5": "humanoid", "Hopper-v5": "hopper"}
REFERENCE_100K = {"HalfCheetah-v5": ("MR.Q", 7872), "Walker2d-v5": ("MR.Q", 3127), "Hopper-v5": ("MR.Q", 2249),
                  "Humanoid-v5": ("MR.Q", 522)}


def result_path(task: str, agent: str, seed: int, steps: int, tag: str = "") -> Path:
    folder = results_dir() / "learn"
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ("" if steps == 100_000 else f"__{steps // 1000}k") + (f"__{tag}" if tag else "")
    return folder / f"{task}__{agent}__s{seed}{suffix}.json"


def run_one(task: str, agent: str, seed: int, steps: int, eval_every: int, episodes: int, extra: list[str],
            tag: str = "") -> dict[str, Any]:
    from robo_rl.config import compose, to_container
    from robo_rl.runs import load_run_config, train_run

    run_dir = Path("runs") / "bench" / "learn" / f"{task}__{agent}__s{seed}__{steps}{f'__{tag}' if tag else ''}"
    resume = (run_dir / "checkpoint.safetensors").exists()
    if resume:
        cfg = load_run_config(run_dir)
    else:
        cfg = compose([f"agent={agent}", f"env={TASKS[task]}", f"seed={seed}", f"train.steps={steps}",
                       f"train.eval_every={eval_every}", f"train.eval_episodes={episodes}",
                       f"train.checkpoint_every={max(eval_every, 10_000)}", *RUN_DEFAULTS, *extra])
    final = train_run(cfg, run_dir, resume=resume)
    evaluations = json.loads((run_dir / "evaluations.json").read_text())
    return {
        "task": task, "agent": agent, "seed": seed, "steps": steps, "extra_overrides": extra, "tag": tag,
        "curve": [{"step": e["step"], "mean_return": e["mean_return"], "std_return": e["std_return"]} for e in evaluations],
        "wall_s": evaluations[-1].get("wall_s") if evaluations else None,  # the whole run, evaluations included
        "closing_eval": {k: final[k] for k in ("mean_return", "std_return", "episodes")},  # eval.json, other seeds
        "config": to_container(cfg.agent),
    }


def cost_key(task: str, agent: str, tag: str = "") -> str:
    return f"{task}|{agent}" + (f"|{tag}" if tag else "")


def measure_costs(tasks: list[str], agents: list[str], overrides: list[str], tag: str, rounds: int, steps: int) -> None:
    """Training env steps/s and GFLOP per env step of every (task, agent), round-robin in one process."""
    import torch

    from robo_rl.bench.throughput import best_entry, train_robo_rl
    from robo_rl.logger import write_json

    torch.set_num_threads(1)   # as the benchmark's runs (threads=1)
    path = results_dir() / "learn" / "cost.json"
    costs = json.loads(path.read_text()) if path.is_file() else {}
    measured: dict[str, list[dict[str, Any]]] = {}
    for round_index in range(rounds):
        for task in tasks:
            for agent in agents:
                key = cost_key(task, agent, tag)
                print(f"bench learn: cost of {key} (round {round_index + 1}/{rounds})", flush=True)
                entry = train_robo_rl(agent, overrides, 1_000, steps, task)
                entry["gflop_per_env_step"] = entry["flops_per_update"] * entry["updates_per_step"] / 1e9
                measured.setdefault(key, []).append(entry)
                costs[key] = best_entry(measured[key])
                write_json(path, costs)


def _value_at(curves: list[list[tuple[int, float]]], step: float) -> float | None:
    """The mean over seeds of the curves' returns at `step` (linear between evaluations); None past their end."""
    if not curves or step > min(c[-1][0] for c in curves):
        return None
    return float(np.mean([np.interp(step, [p[0] for p in c], [p[1] for p in c]) for c in curves]))


def cost_lines(by_task: dict[str, dict[str, list]], baseline: str = "sb3_sac") -> list[str]:
    """The cost table: GFLOP per env step, time per run in the same conditions, returns at equal wall-clock."""
    path = results_dir() / "learn" / "cost.json"
    if not path.is_file():
        return []
    costs = json.loads(path.read_text())
    lines = ["", "Cost in the same conditions (`--cost`: training env steps/s of each agent measured in one process, "
             "one thread, fastest of its rounds) and each agent's return at the other's wall-clock:", "",
             "| task | agent | GFLOP per env step | env steps/s | hours per run | env steps in SB3 SAC's run time | return there | "
             "SB3 SAC's env steps in this agent's run time | SB3 SAC's return there |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for task, groups in by_task.items():
        for label, runs in sorted(groups.items()):
            agent, tag, steps = runs[0]["agent"], runs[0].get("tag", ""), runs[0]["steps"]
            cost, base = costs.get(cost_key(task, agent, tag)), costs.get(cost_key(task, baseline))
            if cost is None:
                continue
            sps = cost["steps_per_second"]
            row = f"| {task} | {label.split('@')[0]} | {cost['gflop_per_env_step']:.2f} | {sps:.0f} | {steps / sps / 3600:.2f} |"
            base_runs = next((r for name, r in groups.items() if name.split("@")[0] == baseline), None)
            if base is None or agent == baseline or base_runs is None:
                lines.append(row + " - | - | - | - |")
                continue
            own_curves = [[(p["step"], p["mean_return"]) for p in r["curve"]] for r in runs]
            base_curves = [[(p["step"], p["mean_return"]) for p in r["curve"]] for r in base_runs]
            mine_in_base_time = steps * sps / base["steps_per_second"]
            base_in_my_time = steps * base["steps_per_second"] / sps
            here, there = _value_at(own_curves, mine_in_base_time), _value_at(base_curves, base_in_my_time)
            lines.append(row + f" {mine_in_base_time:.0f} | {'-' if here is None else f'{here:.0f}'} | {base_in_my_time:.0f} | "
                         f"{'beyond its runs' if there is None else f'{there:.0f}'} |")
    return lines


def throughput_row(result: dict[str, Any]) -> str:
    """The `bench throughput` row that times a learning run's configuration (CrossQ by its critic width)."""
    agent = result["agent"]
    if agent == "crossq":
        return f"crossq_w{result.get('config', {}).get('critic_width', '?')}"
    return agent


# the sitting sitting_lines reads: the learning table's configurations and the baselines, timed one after another
SITTING_ROWS = ("sb3_sac/HalfCheetah-v5/sb3_learn", "train/sac/", "crossq_w256", "crossq_w512", "crossq_w1024", "sb3_crossq")


def sitting_command(rows: Sequence[str], name: str = "throughput_learn.json") -> str:
    """The `bench throughput` command that times `rows` into benchmarks/results/`name`."""
    return f"robo-rl bench throughput --only {','.join(rows)} --force --rounds 1 --out benchmarks/results/{name}"


SITTING = sitting_command(SITTING_ROWS)


def same_sitting(entry: dict[str, Any], base: dict[str, Any] | None, within_s: float = 3600.0) -> bool:
    """Whether a throughput row was timed within an hour of the baseline's (rows of older sittings are not comparable)."""
    import datetime

    if base is None:
        return True
    try:
        times = [datetime.datetime.strptime(e["measured"], "%Y-%m-%d %H:%M:%S") for e in (entry, base)]
    except (KeyError, ValueError):
        return False
    return abs((times[0] - times[1]).total_seconds()) <= within_s


def sitting_lines(by_task: dict[str, dict[str, list]], task: str = "HalfCheetah-v5", baseline: str = "sac") -> list[str]:
    """Cost per env step beside the return, one table per kept `bench throughput` sitting
    (benchmarks/results/throughput_learn*.json, see SITTING; one file per machine it was timed on): GFLOP per env
    step and training env steps/s of every configuration in the table, timed side by side."""
    groups = by_task.get(task)
    if not groups:
        return []
    lines: list[str] = []
    for path in sorted(results_dir().glob("throughput_learn*.json")):
        lines += _one_sitting(json.loads(path.read_text()), path.name, groups, task, baseline)
    return lines


def _one_sitting(sitting: dict[str, Any], name: str, groups: dict[str, list], task: str, baseline: str) -> list[str]:
    """The cost table of one sitting's file (see sitting_lines)."""
    from scipy import stats

    entries = sitting["entries"]

    def entry(row: str) -> dict[str, Any] | None:
        # the learning runs' own loop when the sitting timed it; SB3 SAC's sitting row times SB3's own `learn`
        return entries.get(f"train/{row}/{task}/robo_rl_loop") or entries.get(f"train/{row}/{task}/sb3_learn")

    base = entry(baseline)
    machine = sitting.get("machine", {})
    where = (f"{machine.get('cores', '?')} vCPUs {machine.get('cpu', '?')}, {machine.get('torch_threads', '?')} torch threads"
             if machine else "machine not recorded")
    command = sitting_command([row for row in SITTING_ROWS if any(row in key for key in entries)], name)   # older sittings timed fewer
    lines = ["", f"Cost per env step on {task}, {where} (`{command}`: every row timed in one sitting, one after "
             f"another, fastest of its rounds; the learning runs' own configurations; rows timed more than an hour "
             f"from {baseline}'s are left out) beside the final return:", "",
             "| agent | GFLOP per env step | env steps/s | wall-clock per env step vs sac | final return (IQM) | seeds | measured |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for label, runs in sorted(groups.items()):
        timed = entry(throughput_row(runs[0]))
        if timed is None or runs[0]["steps"] != 100_000 or not same_sitting(timed, base):
            continue
        gflop = (f"{timed['flops_per_update'] * timed.get('updates_per_step', 1) / 1e9:.2f}"
                 if "flops_per_update" in timed else "-")
        ratio = f"{base['steps_per_second'] / timed['steps_per_second']:.2f}x" if base else "-"
        scores = [final_return(r) for r in runs]
        lines.append(f"| {label.split('@')[0]} | {gflop} | {timed['steps_per_second']:.0f} | {ratio} | "
                     f"{stats.trim_mean(scores, 0.25):.0f} | {len(scores)} | {timed.get('measured', '-')} |")
    return lines if len(lines) > 5 else []


def report(steps: int) -> str:
    """Markdown table and learning-curve PNGs from the result files."""
    from robo_rl.evaluate import aggregate
    from robo_rl.report import plot_curves

    folder = results_dir() / "learn"
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if p.name != "cost.json"]
    lines = [f"{FINAL_NOTE} {SEEDS_NOTE}", "",
             "| task | agent | seeds | final return: mean | IQM | 95% CI (IQM) | per seed | env steps |",
             "|---|---|---:|---:|---:|---|---|---:|"]
    by_task: dict[str, dict[str, list]] = {}
    for r in results:
        name = r["agent"] + (f" ({r['tag']})" if r.get("tag") else "")
        by_task.setdefault(r["task"], {}).setdefault(f"{name}@{r['steps'] // 1000}k", []).append(r)
    for task, groups in by_task.items():
        curves = {}
        for label, runs in sorted(groups.items()):
            scores = [final_return(r) for r in runs]
            agg = aggregate(scores)
            ci = f"[{agg['iqm_ci'][0]:.0f}, {agg['iqm_ci'][1]:.0f}]" if "iqm_ci" in agg else "-"
            lines.append(f"| {task} | {label.split('@')[0]} | {agg['n']} | {agg['mean']:.0f} | {agg['iqm']:.0f} | {ci} | {per_seed(scores)} | {runs[0]['steps']} |")
            curves[label] = [[(p["step"], p["mean_return"]) for p in r["curve"]] for r in runs]
        png = folder / f"{task}.png"
        plot_curves(curves, png, title=f"{task}: mean over seeds, band min-max", ylabel="deterministic eval return")
        lines.append("")
    for task, (name, value) in REFERENCE_100K.items():
        if task in by_task:
            lines.append(f"Reference at 100k on {task}: {name} {value}.")
    lines += sitting_lines(by_task)
    lines += cost_lines({t: {k: v for k, v in g.items() if v[0]["steps"] == steps} for t, g in by_task.items()})
    return write_summary("learn", folder, lines)


def build_parser() -> argparse.ArgumentParser:
    """The options of `robo-rl bench learn` (the docs' commands are checked against them)."""
    parser = grid_parser("robo-rl bench learn", "HalfCheetah-v5,Walker2d-v5", "symphony_cpu,sb3_sac", 100_000)
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--tag", default="", help="name of a variant made by --override (kept apart in files and table)")
    parser.add_argument("--cost", action="store_true", help="measure each agent's training speed and GFLOP per env step")
    parser.add_argument("--rounds", type=int, default=3, help="--cost: rounds (the fastest is kept)")
    return parser


def main(args: list[str]) -> None:
    opts = parse_args(build_parser(), args)
    if opts.tag and not opts.tag.replace("-", "").replace("_", "").isalnum():
        from robo_rl.config import ConfigError

        raise ConfigError(f"--tag: '{opts.tag}' must be letters, digits, '-' or '_'")
    if opts.cost:
        for task in opts.tasks.split(","):
            if task not in TASKS:
                from robo_rl.config import ConfigError

                raise ConfigError(f"--tasks: unknown task '{task}' (valid: {', '.join(TASKS)})")
        measure_costs(opts.tasks.split(","), opts.agents.split(","), opts.override, opts.tag, max(1, opts.rounds), 2_000)
    elif not opts.report:
        run_bench("learn", opts, grid_jobs(
            opts, TASKS, lambda task, agent, seed: result_path(task, agent, seed, opts.steps, opts.tag), run_one,
            lambda task, agent, seed: dict(task=task, agent=agent, seed=seed, steps=opts.steps, eval_every=opts.eval_every,
                                           episodes=opts.episodes, extra=opts.override, tag=opts.tag)))
    print(report(opts.steps))
