"""`robo-rl bench mbtl`: MBTL against its baselines on measured transfer matrices.

For each family (configs/family/) and seed (a seed = a fresh set of N source trainings), every context
is trained once and every trained policy is run zero-shot on every context: the full transfer matrix,
as Ray jobs (robo_rl/jobs.py), written to benchmarks/results/mbtl/<family>__s<seed>.json with its
heatmap. The multi-task baseline trains one policy on contexts drawn per episode (the family's own
observe_context setting) at two budgets: the env steps of N/5 source trainings and of N. Everything is
one result file per finished (family, seed, piece); a rerun skips what is done, and interrupted
trainings continue from their checkpoints (runs/bench/mbtl/).

The report runs MBTL and every baseline on the same matrices (training source s reveals row s):
generalised performance (mean over targets of the best trained policy, normalised by the family's
bounds) against the number of trained sources k = 1..N, IQM and 95% CI over seeds, one plot per family,
and the paper's headline ratio N / k*, k* the first k at which MBTL reaches Independent training.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from robo_rl.bench import (SEEDS_NOTE, launcher_of, parse_args, per_seed, results_dir, run_bench, runner_options, seeds_of,
                           write_summary)
from robo_rl.jobs import Job

FAMILIES = ("pendulum_length", "inverted_pendulum_gain")
METHODS = ("MBTL", "Sequential oracle", "Random (mean of 100)", "Greedy interval splitting", "Equidistant")


def family_config(name: str, overrides: list[str]) -> dict[str, Any]:
    from robo_rl.config import ConfigError, compose, group_options, to_container

    if name not in group_options("family"):
        raise ConfigError(f"--families: unknown family '{name}' (valid: {', '.join(group_options('family'))})")
    return to_container(compose([f"family={name}", *overrides], "mbtl").family)


def transfer_piece(family: dict[str, Any], seed: int, launcher: dict[str, Any]) -> dict[str, Any]:
    """All N sources trained and evaluated on all N targets (skipping jobs already done)."""
    from robo_rl.jobs import run_jobs
    from robo_rl.mbtl import check_family, family_contexts, source_jobs, source_row

    contexts = family_contexts(family)
    check_family(family, contexts, seed)
    folder = (Path("runs") / "bench" / "mbtl" / family["name"] / f"s{seed}").resolve()  # workers may run elsewhere
    start = time.time()
    pairs = [source_jobs(family, contexts, s, seed, folder, 1) for s in range(len(contexts))]
    run_jobs([train for train, _ in pairs], launcher)
    evals = [job for _, jobs in pairs for job in jobs]
    results = run_jobs(evals, launcher)
    matrix = [source_row(jobs, results, len(contexts)) for _, jobs in pairs]
    return {"family": family["name"], "seed": seed, "contexts": contexts, "key": family["key"],
            "returns": matrix, "steps_per_source": int(family["steps"]), "observe_context": family["observe_context"],
            "bounds": family["bounds"], "slope": family["slope"], "agent": family["agent"], "env": family["env"],
            "overrides": family.get("overrides", []), "wall_s": round(time.time() - start, 1)}


def multitask_piece(family: dict[str, Any], seed: int, sources_worth: int, launcher: dict[str, Any]) -> dict[str, Any]:
    """One policy trained on contexts drawn per episode for `sources_worth` source trainings' steps."""
    from robo_rl.jobs import Job, run_jobs
    from robo_rl.mbtl import evaluate_source, family_contexts, source_overrides, train_source

    contexts = family_contexts(family)
    steps = sources_worth * int(family["steps"])
    run_dir = (Path("runs") / "bench" / "mbtl" / family["name"] / f"s{seed}" / f"multitask_{sources_worth}").resolve()
    overrides = source_overrides({**family, "steps": steps}, contexts[0], seed * 1000 + 999)
    overrides.append(f"env.context_draw={{{family['key']}:[{','.join(repr(c) for c in contexts)}]}}")
    run_jobs([Job(f"multitask {family['name']} x{sources_worth}", train_source,
                  {"overrides": overrides, "run_dir": str(run_dir)}, run_dir / "train_result.json")], launcher)
    result = run_jobs([Job(f"evaluate multitask x{sources_worth}", evaluate_source,
                           {"run_dir": str(run_dir), "key": family["key"], "targets": list(enumerate(contexts)),
                            "episodes": int(family["eval_episodes"]), "seed": 50_000 + seed})], launcher)
    returns = result[f"evaluate multitask x{sources_worth}"]["returns"]
    return {"family": family["name"], "seed": seed, "sources_worth": sources_worth, "steps": steps,
            "returns": [returns[str(i)] for i in range(len(contexts))]}


def plot_transfer(job: Job, piece: dict[str, Any]) -> None:
    """The heat map beside a finished transfer matrix's result file (multi-task pieces have none)."""
    if "contexts" in piece:
        path = Path(job.result_path)
        plot_heatmap(piece, path.with_name(f"{path.stem}__transfer.png"))


def plot_heatmap(piece: dict[str, Any], path: Path) -> None:
    from robo_rl.mbtl import plot_transfer

    family = {"name": f"{piece['family']} seed {piece['seed']}", "key": piece["key"], "bounds": piece["bounds"]}
    plot_transfer(piece["contexts"], dict(enumerate(piece["returns"])), family, path)


def curves_of(piece: dict[str, Any]) -> dict[str, list[float]]:
    from robo_rl.mbtl import normalise, selection_curves

    matrix = normalise(np.array(piece["returns"]), piece["bounds"])
    return selection_curves(matrix, float(piece["slope"]), seed=int(piece["seed"]))


def report() -> str:
    """Tables and plots of every family with result files, whichever --families this process ran."""
    from robo_rl.evaluate import aggregate
    from robo_rl.mbtl import first_k_reaching, normalise

    folder = results_dir() / "mbtl"
    lines = ["Generalised performance: the mean over all N target contexts of the best trained policy's zero-shot "
             "return, normalised by the family's bounds to [0, 1]; k = trained sources. With 5 or more seeds a cell is "
             "the IQM over seeds with its 95% bootstrap CI; with fewer, the per-seed values (seed 0 / 1 / ...). "
             f"{SEEDS_NOTE}", ""]
    found = {path.name.split("__")[0] for path in folder.glob("*__s*.json")}
    for name in sorted(found, key=lambda f: (FAMILIES.index(f) if f in FAMILIES else len(FAMILIES), f)):
        pieces = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{name}__s*.json"))]
        if not pieces:
            continue
        n = len(pieces[0]["contexts"])
        curves = [curves_of(p) for p in pieces]
        shown_k = sorted(k for k in {1, 2, 3, 4, 5, max(1, n // 5), n // 2, n} if 1 <= k <= n)
        lines += [f"**{name}** ({pieces[0]['key']} over {pieces[0]['contexts'][0]:g}..{pieces[0]['contexts'][-1]:g}, "
                  f"N = {n}, {pieces[0]['steps_per_source']} env steps per source, agent {pieces[0]['agent']}, "
                  f"context {'observed' if pieces[0]['observe_context'] else 'not observed'}; seeds: {len(pieces)})", "",
                  "| method | " + " | ".join(f"k={k}" for k in shown_k) + " |", "|---|" + "---:|" * len(shown_k)]
        for method in (*METHODS, "Independent", "Oracle"):
            cells = []
            for k in shown_k:
                values = [c[method][k - 1] for c in curves]
                if len(values) < 5:  # per-seed values (see the note above the table)
                    cells.append(" / ".join(f"{v:.3f}" for v in values))
                    continue
                agg = aggregate(values)
                cells.append(f"{agg['iqm']:.3f} [{agg['iqm_ci'][0]:.2f}, {agg['iqm_ci'][1]:.2f}]")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        multitask = {}
        for path in sorted(folder.glob(f"{name}__multitask*__s*.json")):
            piece = json.loads(path.read_text())
            score = float(normalise(np.array(piece["returns"]), pieces[0]["bounds"]).mean())
            multitask.setdefault(piece["sources_worth"], []).append(score)
        for worth, scores in sorted(multitask.items()):
            lines.append(f"| Multi-task, {worth} sources' env steps | " + " | ".join(
                " / ".join(f"{v:.3f}" for v in scores) if k == worth else "" for k in shown_k) + " |")
        k_star = [first_k_reaching(c["MBTL"], c["Independent"][0]) for c in curves]
        k95 = [first_k_reaching(c["MBTL"], 0.95 * c["Independent"][0]) for c in curves]
        above_random = [all(c["MBTL"][k - 1] > c["Random (mean of 100)"][k - 1] for k in range(2, min(6, n + 1))) for c in curves]
        lines += ["", f"k* (first k at which MBTL reaches Independent training) per seed: "
                      f"{', '.join(str(k) if k else 'never' for k in k_star)}; N / k*: "
                      f"{', '.join(f'{n / k:.1f}x' if k else '-' for k in k_star)}. First k reaching 95% of Independent: "
                      f"{', '.join(str(k) if k else 'never' for k in k95)} (target <= {n // 5}). MBTL above Random's mean at "
                      f"every k = 2..5: {sum(above_random)} of {len(curves)} seeds. Independent per seed: "
                      f"{per_seed([c['Independent'][0] for c in curves], '{:.3f}')}.", ""]
        plot_family(name, curves, multitask, folder / f"{name}.png")
        lines += [f"![{name}: generalised performance against k](benchmarks/results/mbtl/{name}.png) "
                  f"![{name}: transfer matrix, seed {pieces[0]['seed']}](benchmarks/results/mbtl/{name}__s{pieces[0]['seed']}__transfer.png)", ""]
    return write_summary("mbtl", folder, lines)


def plot_family(name: str, curves: list[dict[str, list[float]]], multitask: dict[int, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    ks = np.arange(1, len(curves[0]["MBTL"]) + 1)
    for method in (*METHODS, "Independent", "Oracle"):
        values = np.array([c[method] for c in curves])
        style = "--" if method in ("Independent", "Oracle") else "-"
        line, = ax.plot(ks, values.mean(axis=0), style, label=method, marker="o" if method == "MBTL" else None, ms=3)
        if len(curves) > 1 and method not in ("Independent", "Oracle"):
            ax.fill_between(ks, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.15)
    for worth, scores in sorted(multitask.items()):
        ax.plot([worth], [np.mean(scores)], "k^", ms=7, label=f"multi-task ({worth} sources' steps)" if worth == min(multitask) else None)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trained source contexts k")
    ax.set_ylabel("generalised performance (normalised)")
    ax.set_title(f"{name}: mean over seeds, band min-max")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The options of `robo-rl bench mbtl` (the docs' commands are checked against them)."""
    parser = argparse.ArgumentParser(prog="robo-rl bench mbtl")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--multitask", default="auto", help="multi-task budgets in source trainings' steps "
                        "(auto: N/5 and N; none: skip)")
    parser.add_argument("--override", action="append", default=[], help="family override, e.g. family.n=10")
    parser.add_argument("--report", action="store_true", help="only aggregate the result files")
    return runner_options(parser)


def main(args: list[str]) -> None:
    opts = parse_args(build_parser(), args)
    families = opts.families.split(",")
    seeds = seeds_of(opts.seeds)
    configs = {name: family_config(name, opts.override) for name in families}
    launcher = launcher_of(opts)
    folder = results_dir() / "mbtl"
    folder.mkdir(parents=True, exist_ok=True)
    if not opts.report:
        for name, family in configs.items():
            n = int(family["n"])
            worths = [] if opts.multitask == "none" else sorted({max(1, n // 5), n}) if opts.multitask == "auto" \
                else [int(w) for w in opts.multitask.split(",")]
            # Each piece runs its trainings as parallel jobs itself, so the pieces go one after another (inline).
            jobs = []
            for seed in seeds:
                jobs.append(Job(f"{name} seed {seed}: {n} sources x {n} targets", transfer_piece,
                                dict(family=family, seed=seed, launcher=launcher), folder / f"{name}__s{seed}.json"))
                jobs += [Job(f"{name} seed {seed}: multi-task, {worth} sources' env steps", multitask_piece,
                             dict(family=family, seed=seed, sources_worth=worth, launcher=launcher),
                             folder / f"{name}__multitask{worth}__s{seed}.json") for worth in worths]
            run_bench("mbtl", opts, jobs, inline=True, on_result=plot_transfer)
    print(report())
