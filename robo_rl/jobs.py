"""The one job runner: suite trainings and evaluations as Ray tasks, on a local Ray or a cluster.

A job is a named call of a plain function that returns a JSON-able dict, with the file its result goes
to. `run_jobs` skips jobs whose result file exists (a rerun does only what is missing), runs the rest
as Ray tasks (each on one CPU with torch at one thread, so parallel jobs do not oversubscribe the cores),
writes each result atomically as it arrives, retries a task that dies or raises (a bounded number of
times) and then reports every job still missing by name: `JobsFailed`, never a silent gap.

Ray is local by default (`launcher.address: null`, `launcher.workers` CPUs); `launcher.address=<head>:6379`
joins a running cluster instead, and the same key reaches the Hydra Ray launcher for `robo-rl train -m`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from robo_rl.logger import write_json


class JobsFailed(RuntimeError):
    """Jobs that did not produce a result after their retries, by name."""

    def __init__(self, failed: Mapping[str, str]) -> None:
        self.failed = dict(failed)
        shown = "; ".join(f"{name}: {reason}" for name, reason in self.failed.items())
        super().__init__(f"{len(self.failed)} job(s) failed: {shown}")


@dataclass
class Job:
    name: str
    fn: Callable[..., dict[str, Any]]
    kwargs: dict[str, Any] = field(default_factory=dict)
    result_path: Path | None = None  # None: the result is returned, not written

    def done(self) -> bool:
        return self.result_path is not None and self.result_path.is_file()

    def read(self) -> dict[str, Any]:
        return json.loads(Path(self.result_path).read_text())


def _call(fn: Callable[..., dict[str, Any]], kwargs: dict[str, Any], result_path: str | None) -> dict[str, Any]:
    """Runs inside a Ray worker: one torch thread, the result written atomically where asked."""
    import torch

    torch.set_num_threads(1)
    result = fn(**kwargs)
    if result_path is not None:
        Path(result_path).parent.mkdir(parents=True, exist_ok=True)
        write_json(result_path, result)
    return result


STARTS = 3   # tries at starting a local Ray (see ray_init)


def ray_init(launcher: Mapping[str, Any] | None = None) -> None:
    """Start (or join) Ray once per process. Workers run at normal priority: Ray's default niceness
    of 15 leaves a job a few percent of a core next to any other busy process."""
    import ray

    if ray.is_initialized():
        return
    launcher = dict(launcher or {})
    os.environ.setdefault("RAY_worker_niceness", "0")
    address = launcher.get("address")
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    else:
        # "local": a new instance of our own, even where another program's Ray runs on this machine
        # (without it, ray.init joins the newest cluster it finds there). Ray gives its raylet a fixed
        # 30 s to register; on a machine busy with other work that can pass, so the start is tried again.
        for attempt in range(STARTS):
            try:
                ray.init(address="local", num_cpus=int(launcher.get("workers") or os.cpu_count() or 1),
                         include_dashboard=False, log_to_driver=False)
                return
            except Exception as exc:  # Ray raises a bare Exception for this
                if "timed out during startup" not in str(exc) or attempt == STARTS - 1:
                    raise
                ray.shutdown()


def run_jobs(jobs: Sequence[Job], launcher: Mapping[str, Any] | None = None, retries: int | None = None,
             on_result: Callable[[Job, dict[str, Any]], None] | None = None) -> dict[str, dict[str, Any]]:
    """Run every job not done yet; return all results by job name (finished ones read from their files).

    Raises JobsFailed naming each job that still has no result once its retries are spent.
    """
    import ray

    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError("job names must be unique")
    results: dict[str, dict[str, Any]] = {job.name: job.read() for job in jobs if job.done()}
    missing = [job for job in jobs if job.name not in results]
    if not missing:
        return results
    ray_init(launcher)
    retries = int((launcher or {}).get("retries", 2) if retries is None else retries)
    # Ray retries a task whose worker died (killed, out of memory) and, with retry_exceptions, one that raised.
    task = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=True)(_call)
    pending = {task.remote(job.fn, job.kwargs, str(job.result_path) if job.result_path else None): job for job in missing}
    failed: dict[str, str] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready[0])
        try:
            results[job.name] = ray.get(ready[0])
        except Exception as exc:  # noqa: BLE001 (any failure of a task is reported by name)
            failed[job.name] = _reason(exc)
            continue
        if on_result is not None:
            on_result(job, results[job.name])
    if failed:
        raise JobsFailed(failed)
    return results


def _reason(exc: BaseException) -> str:
    """One line saying why a task failed (Ray wraps the task's own exception)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".strip()


__all__ = ["Job", "JobsFailed", "run_jobs", "ray_init"]
