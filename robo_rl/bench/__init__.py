"""Benchmarks: heavy experiments that write JSON and PNG under benchmarks/results/ (not tests).

Each benchmark writes one result file per finished unit of work and skips units already done,
so a table can be completed over several sittings.
"""
from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping

from robo_rl.logger import write_json

BENCHMARKS = {"throughput": "robo_rl.bench.throughput", "learn": "robo_rl.bench.learn", "ros": "robo_rl.bench.ros",
              "fas": "robo_rl.bench.fas", "rewards": "robo_rl.bench.rewards", "ads": "robo_rl.bench.ads",
              "mbtl": "robo_rl.bench.mbtl", "l2m": "robo_rl.bench.l2m"}


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


def update_readme(section: str, text: str, readme: str | Path = "README.md") -> bool:
    """Replace the text between `<!-- section:start -->` and `<!-- section:end -->` in the README
    (when run from the repository root), so the README's tables always come from the result files."""
    path = Path(readme)
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    if not path.is_file():
        return False
    content = path.read_text()
    if start not in content or end not in content:
        return False
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text.strip()}\n{end}{tail}")
    return True


def write_summary(section: str, folder: Path, lines: list[str]) -> str:
    """The benchmark's Markdown table: summary.md in its results folder and its README section."""
    text = "\n".join(lines)
    (folder / "summary.md").write_text(text + "\n")
    update_readme(section, text)
    return text


def grid_parser(prog: str, tasks: str, agents: str, steps: int) -> argparse.ArgumentParser:
    """Options shared by the benchmarks that train one run per (task, agent, seed)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--tasks", default=tasks)
    parser.add_argument("--agents", default=agents)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--override", action="append", default=[], help="extra config override for every run")
    parser.add_argument("--report", action="store_true", help="only aggregate the result files")
    return parser


def run_grid(name: str, opts: argparse.Namespace, tasks: Mapping[str, str], path_of: Callable[[str, str, int], Path],
             run: Callable[[str, str, int], dict[str, Any]], done: Callable[[Path], bool] = Path.exists) -> None:
    """Every (task, agent, seed) not done yet: run it and write its own result file."""
    for task in opts.tasks.split(","):
        if task not in tasks:
            from robo_rl.config import ConfigError

            raise ConfigError(f"--tasks: unknown task '{task}' (valid: {', '.join(tasks)})")
        for agent in opts.agents.split(","):
            for seed in (int(s) for s in opts.seeds.split(",")):
                path = path_of(task, agent, seed)
                if done(path):
                    print(f"bench {name}: {path.name} done, skipped")
                    continue
                print(f"bench {name}: {task} {agent} seed {seed}, {opts.steps} steps", flush=True)
                write_json(path, run(task, agent, seed), indent=1)


def run_piece(name: str, path: Path, label: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """Run one piece of a benchmark and write its result file atomically, unless that file exists;
    returns the new result (None when skipped)."""
    if path.exists():
        print(f"bench {name}: {path.name} done, skipped")
        return None
    print(f"bench {name}: {label}", flush=True)
    result = run()
    write_json(path, result)
    return result


def run_unit(name: str, path: Path, label: str, steps: int, run: Callable[[], dict[str, Any]]) -> None:
    """Run one unit of a benchmark and write its result file atomically, unless that file holds >= `steps`."""
    if path.exists() and json.loads(path.read_text()).get("steps", 0) >= steps:
        print(f"bench {name}: {path.name} done, skipped")
        return
    print(f"bench {name}: {label}, {steps} steps", flush=True)
    write_json(path, run(), indent=1)


def run_benchmark(name: str, args: list[str]) -> None:
    importlib.import_module(BENCHMARKS[name]).main(args)
