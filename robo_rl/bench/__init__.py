"""Benchmarks: heavy experiments that write JSON and PNG under benchmarks/results/ (not tests).

Each benchmark builds its list of jobs, one per result file, and hands it to the one job runner
(robo_rl/jobs.py): jobs run in parallel on a local Ray (`--workers N`, by default the machine's cores) or
on a cluster (`--address <head>:6379`), sharing GPUs by fractions (`--gpus-per-job`); every result is
written atomically as it arrives, a rerun skips what is done, and the report (tables, plots, the
benchmark's page of the site) is built once, at the end of the grid, or alone with `--report`. `bench ros` and `bench
throughput` measure time itself and run their rows one at a time.
"""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from robo_rl.jobs import Job, run_jobs

BENCHMARKS = {"throughput": "robo_rl.bench.throughput", "learn": "robo_rl.bench.learn", "ros": "robo_rl.bench.ros",
              "fas": "robo_rl.bench.fas", "rewards": "robo_rl.bench.rewards", "ads": "robo_rl.bench.ads",
              "mbtl": "robo_rl.bench.mbtl", "l2m": "robo_rl.bench.l2m", "demos": "robo_rl.bench.demos"}


# One definition of a run's final result, used by every table.
FINAL_NOTE = ("Final: the deterministic evaluation at the last training step, i.e. the learning curve's last point "
              "(the same evaluation episodes and seeds at every point of a curve).")
SEEDS_NOTE = ("With fewer than 5 seeds the per-seed values are listed: an IQM over 3 or fewer seeds trims nothing (it "
              "equals the mean), and a bootstrap interval over 2-3 seeds spans little more than their range.")


# Overrides every benchmark training starts from (its own and the user's --override come after): no
# policy video, and one torch thread, so two benchmark processes share two cores (two Meta-World reward
# runs side by side at torch's default 2 threads each ran at 4 env steps/s, at one thread each at 38).
RUN_DEFAULTS = ("train.video_steps=0", "threads=1")


def final_point(result: Mapping[str, Any]) -> dict[str, Any]:
    """The final evaluation of a benchmark result (see FINAL_NOTE)."""
    if not result.get("curve"):
        raise ValueError(f"result of {result.get('task')} seed {result.get('seed')} has no learning curve")
    return result["curve"][-1]


def final_return(result: Mapping[str, Any]) -> float:
    point = final_point(result)
    return float(point["mean_return"] if "mean_return" in point else point["return"])


def per_seed(values: list[float], fmt: str = "{:.0f}") -> str:
    """Per-seed values for a table cell ('-' when there are 5 or more: the IQM and interval say enough)."""
    return ", ".join(fmt.format(v) for v in values) if len(values) < 5 else "-"


def results_dir() -> Path:
    """benchmarks/results under the current directory (the repository root when run from it)."""
    path = Path("benchmarks") / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def split_at_markers(content: str, section: str) -> tuple[str, str, str] | None:
    """(text before `<!-- section:start -->`, the text between it and `<!-- section:end -->`, the text after);
    None when the markers are missing."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    if start not in content or end not in content:
        return None
    head, rest = content.split(start, 1)
    block, tail = rest.split(end, 1)
    return head, block, tail


def replace_between_markers(path: str | Path, section: str, text: str) -> bool:
    """Replace the text between `<!-- section:start -->` and `<!-- section:end -->` in a Markdown file."""
    path = Path(path)
    parts = split_at_markers(path.read_text(), section) if path.is_file() else None
    if parts is None:
        return False
    head, _, tail = parts
    path.write_text(f"{head}<!-- {section}:start -->\n{text.strip()}\n<!-- {section}:end -->{tail}")
    return True


def outside_markers(content: str, section: str) -> str:
    """The page without its generated block (all of it when it has no markers)."""
    parts = split_at_markers(content, section)
    return content if parts is None else parts[0] + parts[2]


def page_path(section: str) -> Path:
    """The benchmark's page of the documentation site (when run from the repository root)."""
    return Path("docs") / "benchmarks" / f"{section}.md"


def hardware_line(folder: Path) -> str:
    """Where the result files were measured: each result records its machine (robo_rl.jobs.machine)."""
    import json

    counts: dict[str, int] = {}
    unrecorded = 0
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for entry in data if isinstance(data, list) else [data]:
            machine = entry.get("machine") if isinstance(entry, dict) else None
            if isinstance(machine, str):
                counts[machine] = counts.get(machine, 0) + 1
            else:
                unrecorded += 1
    parts = [f"{machine} ({n} result{'s' if n > 1 else ''})" for machine, n in counts.items()]
    if unrecorded:
        parts.append(f"{unrecorded} result{'s' if unrecorded > 1 else ''} from before result files recorded their machine "
                     "(2-vCPU x86-64 machines, no GPU, unless the notes on this page say otherwise)")
    return "; ".join(parts) or "no results yet"


def update_page(section: str, text: str, folder: Path | None = None, page: str | Path | None = None,
                hardware: str | None = None) -> bool:
    """The benchmark's page: its generated block (the command that regenerates it, the hardware line, the
    tables and every plot of its results folder) replaced between the page's markers, so the site's tables
    always come from the result files. Plots are linked as the site serves them (results/<name>/<plot>.png)."""
    path = Path(page) if page is not None else page_path(section)
    folder = folder if folder is not None else results_dir() / section
    if not path.is_file():
        return False
    text = text.replace("](benchmarks/results/", "](results/")
    prose = outside_markers(path.read_text(), section)   # the old block's plots do not count as linked
    plots = [p for p in sorted(folder.glob("*.png")) if f"results/{section}/{p.name}" not in text + prose]
    block = [f"Regenerate: `robo-rl bench {section}` runs what is missing and rebuilds this block; "
             f"`robo-rl bench {section} --report` rebuilds it from the result files in `benchmarks/results/{section}/` alone.",
             "", f"Hardware: {hardware or hardware_line(folder)}.", "", text.strip()]
    block += [f"\n![{p.stem}](results/{section}/{p.name})" for p in plots]
    return replace_between_markers(path, section, "\n".join(block))


def write_summary(section: str, folder: Path, lines: list[str]) -> str:
    """The benchmark's Markdown table: summary.md in its results folder, and its page of the site."""
    text = "\n".join(lines)
    (folder / "summary.md").write_text(text + "\n")
    update_page(section, text, folder)
    return text


def runner_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The job runner's options, the same for every benchmark grid (checked before any job starts)."""
    group = parser.add_argument_group("job runner (Ray)")
    group.add_argument("--workers", default=None, help="parallel one-thread jobs on a local Ray (default: the machine's cores)")
    group.add_argument("--address", default=None, help="join a Ray cluster at <head>:6379 instead of a local Ray")
    group.add_argument("--gpus-per-job", default=0, help="Ray's fractional GPUs per job (e.g. 0.25: four runs share a GPU, "
                       "with --override agent.device=cuda)")
    group.add_argument("--retries", type=int, default=2, help="tries again a job whose process dies or raises")
    group.add_argument("--no-ray", action="store_true", help="run the jobs one after another in this process, without "
                       "Ray (for a debugger, or a machine where Ray cannot start)")
    return parser


def launcher_of(opts: argparse.Namespace) -> dict[str, Any]:
    return {"workers": opts.workers, "address": opts.address, "gpus_per_job": opts.gpus_per_job, "retries": opts.retries,
            "no_ray": opts.no_ray}


def parse_args(parser: argparse.ArgumentParser, args: list[str]) -> argparse.Namespace:
    """The options, with the job runner's checked at once: a bad value is refused before any work starts."""
    from robo_rl.jobs import check_launcher

    opts = parser.parse_args(args)
    if not getattr(opts, "report", False):
        check_launcher(launcher_of(opts))
    return opts


def run_bench(name: str, opts: argparse.Namespace, jobs: Sequence[Job], inline: bool = False,
              on_result: Callable[[Job, dict[str, Any]], Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every job not done yet, through the job runner (JobsFailed names the ones that failed: exit 1)."""
    return run_jobs(jobs, launcher_of(opts), label=f"bench {name}", inline=inline, on_result=on_result)


def grid_parser(prog: str, tasks: str, agents: str, steps: int) -> argparse.ArgumentParser:
    """Options shared by the benchmarks that train one run per (task, agent, seed)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--tasks", default=tasks)
    parser.add_argument("--agents", default=agents)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--override", action="append", default=[], help="extra config override for every run")
    parser.add_argument("--report", action="store_true", help="only aggregate the result files")
    return runner_options(parser)


def seeds_of(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        from robo_rl.config import ConfigError

        raise ConfigError(f"--seeds: expected whole numbers separated by commas, got '{text}'") from None


def grid_jobs(opts: argparse.Namespace, tasks: Mapping[str, str], path_of: Callable[[str, str, int], Path],
              fn: Callable[..., dict[str, Any]], kwargs_of: Callable[[str, str, int], dict[str, Any]],
              complete: Callable[[dict[str, Any]], bool] | None = None) -> list[Job]:
    """One job per (task, agent, seed) of the options, each with its own result file."""
    from robo_rl.config import ConfigError

    for task in opts.tasks.split(","):
        if task not in tasks:
            raise ConfigError(f"--tasks: unknown task '{task}' (valid: {', '.join(tasks)})")
    return [Job(f"{task} {agent} seed {seed}", fn, kwargs_of(task, agent, seed), path_of(task, agent, seed), complete)
            for task in opts.tasks.split(",") for agent in opts.agents.split(",") for seed in seeds_of(opts.seeds)]


def has_steps(steps: int) -> Callable[[dict[str, Any]], bool]:
    """A result counts as done when it was trained for at least `steps` (a larger budget reruns it)."""
    return lambda result: result.get("steps", 0) >= steps


def run_benchmark(name: str, args: list[str]) -> None:
    importlib.import_module(BENCHMARKS[name]).main(args)
