"""`robo-rl bench learn`: learning curves of agents against SB3 SAC, same seeds and env steps.

Every (task, agent, seed) is one run of the ordinary training command in its own run folder under
runs/bench/learn/; a run interrupted for any reason continues from its checkpoint when the command
is repeated. Each finished run writes benchmarks/results/learn/<task>__<agent>__s<seed>.json
(deterministic evaluations every `--eval-every` steps), and finished runs are skipped, so the table
can be completed over several sittings (or in parallel processes with disjoint --seeds).
`--report` aggregates what is there: mean, IQM and 95% bootstrap CI at the final step, and one
learning-curve PNG per task.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robo_rl.bench import FINAL_NOTE, SEEDS_NOTE, final_return, grid_parser, per_seed, results_dir, run_grid, write_summary

TASKS = {"HalfCheetah-v5": "halfcheetah", "Walker2d-v5": "walker2d", "Humanoid-v5": "humanoid", "Hopper-v5": "hopper"}
REFERENCE_100K = {"HalfCheetah-v5": ("MR.Q", 7872), "Walker2d-v5": ("MR.Q", 3127), "Humanoid-v5": ("MR.Q", 522)}


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
                       f"train.checkpoint_every={max(eval_every, 10_000)}", "train.video_steps=0", *extra])
    final = train_run(cfg, run_dir, resume=resume)
    evaluations = json.loads((run_dir / "evaluations.json").read_text())
    return {
        "task": task, "agent": agent, "seed": seed, "steps": steps, "extra_overrides": extra, "tag": tag,
        "curve": [{"step": e["step"], "mean_return": e["mean_return"], "std_return": e["std_return"]} for e in evaluations],
        "wall_s": evaluations[-1].get("wall_s") if evaluations else None,  # the whole run, evaluations included
        "closing_eval": {k: final[k] for k in ("mean_return", "std_return", "episodes")},  # eval.json, other seeds
        "config": to_container(cfg.agent),
    }


def report(steps: int) -> str:
    """Markdown table and learning-curve PNGs from the result files."""
    from robo_rl.evaluate import aggregate
    from robo_rl.report import plot_curves

    folder = results_dir() / "learn"
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
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
    return write_summary("learn", folder, lines)


def main(args: list[str]) -> None:
    parser = grid_parser("robo-rl bench learn", "HalfCheetah-v5,Walker2d-v5", "symphony_cpu,sb3_sac", 100_000)
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--tag", default="", help="name of a variant made by --override (kept apart in files and table)")
    opts = parser.parse_args(args)
    if opts.tag and not opts.tag.replace("-", "").replace("_", "").isalnum():
        from robo_rl.config import ConfigError

        raise ConfigError(f"--tag: '{opts.tag}' must be letters, digits, '-' or '_'")
    if not opts.report:
        run_grid("learn", opts, TASKS, lambda task, agent, seed: result_path(task, agent, seed, opts.steps, opts.tag),
                 lambda task, agent, seed: run_one(task, agent, seed, opts.steps, opts.eval_every, opts.episodes,
                                                   opts.override, opts.tag))
    print(report(opts.steps))
