"""Run logging: TensorBoard events, a JSON-lines metrics file, an episodes CSV, and a progress bar.

On resume, rows past the checkpoint's step are dropped (and TensorBoard purges them), so a run
killed and continued has one clean history.
"""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

EPISODE_FIELDS = ("step", "episode", "return", "length", "success")


def _truncate_rows(path: Path, max_step: int, is_csv: bool) -> None:
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    if is_csv:
        header, rows = lines[:1], [r for r in lines[1:] if r and int(r.split(",", 1)[0]) <= max_step]
        kept = header + rows
    else:
        kept = [line for line in lines if line and json.loads(line)["step"] <= max_step]
    path.write_text("".join(line + "\n" for line in kept))


class RunLogger:
    def __init__(self, run_dir: str | Path, resume_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.dir / "metrics.jsonl"
        self.episodes_path = self.dir / "episodes.csv"
        if resume_step is not None:
            _truncate_rows(self.metrics_path, resume_step, is_csv=False)
            _truncate_rows(self.episodes_path, resume_step, is_csv=True)
        self.tb = SummaryWriter(str(self.dir / "tb"), purge_step=resume_step)
        new_csv = not self.episodes_path.exists()
        self._episodes = open(self.episodes_path, "a", newline="")
        self._episode_writer = csv.writer(self._episodes)
        if new_csv:
            self._episode_writer.writerow(EPISODE_FIELDS)
        self._metrics = open(self.metrics_path, "a")

    def record(self, step: int, values: Mapping[str, float], prefix: str) -> None:
        row = {"step": step}
        for key, value in values.items():
            tag = f"{prefix}/{key.split('/')[-1]}"
            self.tb.add_scalar(tag, value, step)
            row[tag] = value
        self._metrics.write(json.dumps(row) + "\n")

    def episode(self, step: int, episode: int, ret: float, length: int, success: float | None) -> None:
        self._episode_writer.writerow([step, episode, f"{ret:.6g}", length, "" if success is None else int(success)])
        self.tb.add_scalar("rollout/episode_return", ret, step)
        self.tb.add_scalar("rollout/episode_length", length, step)
        if success is not None:
            self.tb.add_scalar("rollout/success", float(success), step)

    def flush(self) -> None:
        self._episodes.flush()
        self._metrics.flush()
        self.tb.flush()

    def close(self) -> None:
        self.flush()
        self._episodes.close()
        self._metrics.close()
        self.tb.close()


class ProgressBar:
    """Steps, steps/s, ETA and the last evaluation return: a live bar (rich) on a terminal; elsewhere
    (CI logs, `make demo > log`) a plain line every `plain_every` steps and at the end."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, label: str = "train",
                 plain_every: int = 2000, stream: Any = None) -> None:
        self.enabled = enabled
        self.total, self.label = total, label
        self._t0, self._s0 = time.perf_counter(), start
        self._t_line, self._s_line = self._t0, start
        self.last_eval = "-"
        self.stream = stream if stream is not None else sys.stdout
        self.plain = enabled and not (hasattr(self.stream, "isatty") and self.stream.isatty())
        self.plain_every, self._next_plain = int(plain_every), start + int(plain_every)
        self._last_step = start
        if not enabled or self.plain:
            return
        self.progress = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[sps]} steps/s"), TimeRemainingColumn(),
            TextColumn("eval {task.fields[eval]}"), transient=False,
        )
        self.task = self.progress.add_task(label, total=total, completed=start, sps="-", eval="-")
        self.progress.start()

    def steps_per_second(self, step: int) -> float:
        elapsed = time.perf_counter() - self._t0
        return (step - self._s0) / elapsed if elapsed > 0 else 0.0

    def line(self, step: int) -> str:
        sps = self.steps_per_second(step)
        # the ETA from the rate since the previous line: a run's rate changes (a fast random warm-up, then updates)
        now = time.perf_counter()
        recent = (step - self._s_line) / (now - self._t_line) if now > self._t_line and step > self._s_line else sps
        self._t_line, self._s_line = now, step
        eta = (self.total - step) / recent if recent > 0 else float("nan")
        eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta == eta else "-"
        return (f"{self.label}: step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%), {recent:.0f} steps/s, "
                f"ETA {eta_text}, last eval {self.last_eval}")

    def update(self, step: int, eval_return: float | None = None) -> None:
        if eval_return is not None:
            self.last_eval = f"{eval_return:.1f}"
        self._last_step = step
        if not self.enabled:
            return
        if self.plain:
            if step >= self._next_plain:
                print(self.line(step), file=self.stream, flush=True)
                while self._next_plain <= step:
                    self._next_plain += self.plain_every
            return
        self.progress.update(self.task, completed=step, sps=f"{self.steps_per_second(step):.0f}", eval=self.last_eval)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.plain:
            print(self.line(self._last_step), file=self.stream, flush=True)
        else:
            self.progress.stop()


def write_json(path: str | Path, data: Any, indent: int = 2) -> None:
    """Write JSON atomically (temp file + rename): a crash mid-write never leaves a truncated file that a
    rerun would take for a finished result."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent) + "\n")
    tmp.replace(path)
