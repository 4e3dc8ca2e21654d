"""MkDocs hook: the benchmark pages show the plots their reports write under benchmarks/results/.

The PNGs stay where the benchmarks write them (one copy, in the results folder beside the JSON files);
here they join the site at the same path, so a page at docs/benchmarks/<name>.md links them as
results/<name>/<plot>.png.
"""
from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

RESULTS = "benchmarks/results"


def on_files(files, config):
    root = Path(config.config_file_path).parent
    for plot in sorted((root / RESULTS).rglob("*.png")):
        files.append(File(plot.relative_to(root).as_posix(), src_dir=str(root), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files
