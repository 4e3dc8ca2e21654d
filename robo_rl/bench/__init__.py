"""Benchmarks: heavy experiments that write JSON and PNG under benchmarks/results/ (not tests).

Each benchmark writes one result file per finished unit of work and skips units already done,
so a table can be completed over several sittings.
"""
from __future__ import annotations

import importlib
from pathlib import Path

BENCHMARKS = {"throughput": "robo_rl.bench.throughput", "learn": "robo_rl.bench.learn", "ros": "robo_rl.bench.ros",
              "fas": "robo_rl.bench.fas"}


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


def run_benchmark(name: str, args: list[str]) -> None:
    importlib.import_module(BENCHMARKS[name]).main(args)
