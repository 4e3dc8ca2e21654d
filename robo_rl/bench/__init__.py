"""Benchmarks: heavy experiments that write JSON and PNG under benchmarks/results/ (not tests).

Each benchmark writes one result file per finished unit of work and skips units already done,
so a table can be completed over several sittings.
"""
from __future__ import annotations

import importlib
from pathlib import Path

BENCHMARKS = {"throughput": "robo_rl.bench.throughput", "learn": "robo_rl.bench.learn"}


def results_dir() -> Path:
    """benchmarks/results under the current directory (the repository root when run from it)."""
    path = Path("benchmarks") / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_benchmark(name: str, args: list[str]) -> None:
    importlib.import_module(BENCHMARKS[name]).main(args)
