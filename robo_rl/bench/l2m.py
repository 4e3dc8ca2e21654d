"""`robo-rl bench l2m`: fine-tuning methods on a Continual World sequence from one pre-trained model.

Per seed: one `robo-rl pretrain` run (configs/pretrain.yaml, the 8 pre-training tasks), then each method
(full, lora, l2m, l2m_oracle) learns the sequence (configs/finetune.yaml, CW5 by default) from that model,
and each task of the sequence is also fine-tuned alone from it (full fine-tuning: the reference AUC of
forward transfer). Every finished piece is its own result file under benchmarks/results/l2m/
(pretrain__s<seed>.json, <method>__s<seed>.json, reference__<task>__s<seed>.json); a rerun skips them, and an
interrupted piece continues from its run folder (runs/bench/l2m/). The pre-trained models are kept beside the
results (models/pretrain_s<seed>/), so the pieces of a seed all start from one model wherever they run. The report gives Continual World's
metrics per method (IQM and 95% CI over seeds, per-seed values with fewer than 5) and a plot of each task's
success over the sequence, mean over seeds, one panel per method.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from robo_rl.bench import SEEDS_NOTE, parse_args, per_seed, results_dir, run_bench, runner_options, seeds_of, write_summary
from robo_rl.jobs import Job

METHODS = ("full", "lora", "l2m", "l2m_oracle")
# CPU scale, stated on the L2M benchmark page: 20k pre-training updates with the action dimensions in one token (about
# twice as fast), and 2k updates per task at lr 1e-3 for every method (the code: 100k at 1e-4).
PRETRAIN_DEFAULTS = ["updates=20000", "agent.merge_actions=true"]
FINETUNE_DEFAULTS = ["updates=2000", "agent.learning_rate=1e-3"]


def _folder() -> Path:
    folder = results_dir() / "l2m"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pretrained_model(seed: int) -> Path:
    """Seed's pre-trained model, kept with the results (about 2.3 MB): every piece of the seed fine-tunes
    this one model, also when the benchmark is continued on another machine."""
    return _folder() / "models" / f"pretrain_s{seed}"


def pretrain_piece(seed: int, overrides: list[str]) -> dict[str, Any]:
    from robo_rl.config import compose
    from robo_rl.continual import run_pretrain

    cfg = compose([f"seed={seed}", "progress=false", "threads=1", *overrides], "pretrain")
    return {**run_pretrain(cfg, pretrained_model(seed)), "overrides": overrides}


def finetune_piece(method: str, seed: int, overrides: list[str], tasks: list[str] | None = None,
                   name: str | None = None) -> dict[str, Any]:
    from robo_rl.config import compose
    from robo_rl.continual import run_finetune

    args = [f"method={method}", f"seed={seed}", f"pretrained={pretrained_model(seed)}",
            "progress=false", "threads=1", *overrides]
    if tasks is not None:
        args.append(f"sequence.tasks=[{','.join(tasks)}]")
    cfg = compose(args, "finetune")
    record = run_finetune(cfg, Path("runs") / "bench" / "l2m" / f"{name or method}_s{seed}")
    return {**record, "overrides": overrides, "sequence_name": str(cfg.sequence.name)}


def report() -> str:
    from robo_rl.continual import continual_metrics
    from robo_rl.evaluate import aggregate

    folder = _folder()
    runs: dict[str, list[dict[str, Any]]] = {}
    for method in METHODS:
        runs[method] = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{method}__s*.json"))]
    references = {}
    for path in folder.glob("reference__*.json"):
        ref = json.loads(path.read_text())
        references.setdefault(ref["seed"], {})[ref["sequence"][0]] = ref["metrics"]["auc"][ref["sequence"][0]]
    pretrains = {json.loads(p.read_text())["seed"]: json.loads(p.read_text()) for p in folder.glob("pretrain__s*.json")}
    lines = [SEEDS_NOTE, "",
             "| method | seeds | average success | forgetting | forward transfer | pre-training tasks: before -> after | per seed (average success) |",
             "|---|---:|---|---|---|---|---|"]

    def cell(values: list[float]) -> str:
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        agg = aggregate(values)
        ci = f" [{agg['iqm_ci'][0]:.2f}, {agg['iqm_ci'][1]:.2f}]" if "iqm_ci" in agg else ""
        return f"{agg['iqm']:.2f}{ci}"

    for method, records in runs.items():
        if not records:
            continue
        metrics = [continual_metrics(r, references.get(r["seed"])) for r in records]
        before = [m.get("pretrain_before_success") for m in metrics]
        after = [m.get("pretrain_after_success") for m in metrics]
        lines.append(f"| {method} | {len(records)} | {cell([m['average_success'] for m in metrics])} | "
                     f"{cell([m['average_forgetting'] for m in metrics])} | {cell([m.get('average_forward_transfer') for m in metrics])} | "
                     f"{cell(before)} -> {cell(after)} | {per_seed([m['average_success'] for m in metrics], '{:.2f}')} |")
    if pretrains:
        shown = ", ".join(f"seed {s}: {p['mean_success']:.2f}" for s, p in sorted(pretrains.items()))
        lines += ["", f"Pre-trained model, mean success over its {len(next(iter(pretrains.values()))['tasks'])} tasks: {shown}."]
    if any(runs.values()):
        plot_sequences(runs, folder / "success_over_sequence.png")
        lines += ["", "![success over the sequence](benchmarks/results/l2m/success_over_sequence.png)"]
    return write_summary("l2m", folder, lines)


def plot_sequences(runs: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Per method: each task's success after every phase, mean over seeds (Continual World's picture)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in METHODS if runs.get(m)]
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.2), sharey=True, squeeze=False)
    for ax, method in zip(axes[0], methods):
        records = runs[method]
        tasks = records[0]["sequence"]
        phases = min(len([p for p in r["phases"] if p.get("after")]) for r in records)
        for i, task in enumerate(tasks[:phases]):
            xs = list(range(i, phases))
            ys = [np.mean([r["phases"][x]["after"][task]["success"] for r in records]) for x in xs]
            ax.plot([x + 1 for x in xs], ys, marker="o", label=task)
        ax.set_title(f"{method} (n={len(records)})")
        ax.set_xlabel("after task")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("success rate")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The options of `robo-rl bench l2m` (the docs' commands are checked against them)."""
    parser = argparse.ArgumentParser(prog="robo-rl bench l2m")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--pretrain", action="append", default=[],
                        help=f"override for robo-rl pretrain, after the benchmark's own {' '.join(PRETRAIN_DEFAULTS)}")
    parser.add_argument("--finetune", action="append", default=[],
                        help=f"override for robo-rl finetune, after the benchmark's own {' '.join(FINETUNE_DEFAULTS)}")
    parser.add_argument("--no-reference", action="store_true", help="skip the single-task runs (no forward transfer)")
    parser.add_argument("--report", action="store_true", help="only aggregate the result files")
    return runner_options(parser)


def main(args: list[str]) -> None:
    opts = parse_args(build_parser(), args)
    from robo_rl.config import ConfigError, compose

    opts.pretrain, opts.finetune = [*PRETRAIN_DEFAULTS, *opts.pretrain], [*FINETUNE_DEFAULTS, *opts.finetune]

    methods = opts.methods.split(",")
    for method in methods:
        if method not in METHODS:
            raise ConfigError(f"--methods: unknown method '{method}' (valid: {', '.join(METHODS)})")
    if not opts.report:
        folder = _folder()
        seeds = seeds_of(opts.seeds)
        # two phases: the pre-trained models first, then every fine-tuning that starts from one
        run_bench("l2m", opts, [Job(f"pre-training, seed {seed}", pretrain_piece, dict(seed=seed, overrides=opts.pretrain),
                                    folder / f"pretrain__s{seed}.json") for seed in seeds])
        jobs = [Job(f"{method}, seed {seed}", finetune_piece, dict(method=method, seed=seed, overrides=opts.finetune),
                    folder / f"{method}__s{seed}.json") for seed in seeds for method in methods]
        if not opts.no_reference:
            jobs += [Job(f"{task} alone, seed {seed}", finetune_piece,
                         dict(method="full", seed=seed, overrides=[*opts.finetune, "pretrain_eval=false"], tasks=[task],
                              name=f"reference_{task}"), folder / f"reference__{task}__s{seed}.json")
                     for seed in seeds for task in compose(opts.finetune, "finetune").sequence.tasks]
        run_bench("l2m", opts, jobs)
    print(report())
