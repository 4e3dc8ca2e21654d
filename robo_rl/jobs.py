"""The one job runner: every benchmark's trainings and evaluations, and MBTL's, as jobs on Ray.

A job is a named call of a plain function that returns a JSON-able dict, with the file its result goes
to. `run_jobs` skips jobs whose result file is there and complete (a rerun does only what is missing),
runs the rest as Ray tasks (each on one CPU with torch at one thread, so parallel jobs do not oversubscribe
the cores; with `gpus_per_job` a fraction of a GPU each, so several runs share one), writes each result
atomically as it arrives, prints one progress line per finished job (done/total, ETA), retries a task that
dies or raises (a bounded number of times) and then reports every job still missing by name: `JobsFailed`,
never a silent gap. `inline=True` runs the same jobs one after another in this process instead (for jobs
that start Ray jobs of their own).

The launcher settings (`check_launcher`): `workers`, the CPUs of a local Ray (default: the machine's
cores); `address`, a running cluster's head (<host>:6379) to join instead; `gpus_per_job`, Ray's
fractional GPUs; `retries`; `no_ray`, the inline runner for every job (a debugger, a machine where Ray
cannot start). The same `launcher.address` key reaches the Hydra Ray launcher for
`robo-rl train -m`. On a cluster, jobs write their results where the driver reads them: run from a
folder every node shares.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
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
    # A result file counts as done when this holds for its content (None: when it exists), e.g. a run
    # finished with at least the steps now asked for.
    complete: Callable[[dict[str, Any]], bool] | None = None

    def done(self) -> bool:
        if self.result_path is None or not Path(self.result_path).is_file():
            return False
        return self.complete is None or bool(self.complete(self.read()))

    def read(self) -> dict[str, Any]:
        return json.loads(Path(self.result_path).read_text())


def cpu_model() -> str:
    """The CPU's model name (Linux), else what the platform says."""
    import platform

    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> str:
    """This machine in one line, recorded in every result a job writes (the benchmark pages' hardware line)."""
    import torch

    cpu = cpu_model()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} vCPUs, {cpu}, {gpu}, torch {torch.__version__.split('+')[0]}"


def _call(fn: Callable[..., dict[str, Any]], kwargs: dict[str, Any], result_path: str | None,
          cwd: str | None = None) -> dict[str, Any]:
    """Runs inside a Ray worker: the driver's folder (relative paths mean the same), one torch thread,
    the result written atomically where asked."""
    import torch

    if cwd is not None and os.path.isdir(cwd):
        os.chdir(cwd)
    torch.set_num_threads(1)
    result = fn(**kwargs)
    if isinstance(result, dict):
        result.setdefault("machine", machine())
    if result_path is not None:
        Path(result_path).parent.mkdir(parents=True, exist_ok=True)
        write_json(result_path, result, indent=1)
    return result


def _bad(message: str) -> Exception:
    from robo_rl.config import ConfigError

    return ConfigError(message)


def check_launcher(launcher: Mapping[str, Any] | None) -> dict[str, Any]:
    """The launcher settings, checked before any job starts; a bad value is one line naming it (ConfigError)."""
    launcher = dict(launcher or {})
    workers = launcher.get("workers")
    if workers is not None:
        try:
            launcher["workers"] = int(str(workers))
        except ValueError:
            raise _bad(f"--workers: expects a whole number of parallel jobs >= 1, got '{workers}'") from None
        if launcher["workers"] < 1:
            raise _bad(f"--workers: expects a whole number of parallel jobs >= 1, got '{workers}'")
    gpus = launcher.get("gpus_per_job") or 0
    try:
        gpus = float(str(gpus))
    except ValueError:
        raise _bad(f"--gpus-per-job: expects a fraction of a GPU (e.g. 0.25) or a whole number, got '{gpus}'") from None
    if gpus < 0 or (gpus > 1 and not gpus.is_integer()):
        raise _bad(f"--gpus-per-job: expects a fraction of a GPU in (0, 1] or a whole number, got '{launcher['gpus_per_job']}'")
    launcher["gpus_per_job"] = gpus
    if launcher.get("no_ray"):
        given = [option for option, key in (("--workers", "workers"), ("--address", "address"), ("--gpus-per-job", "gpus_per_job"))
                 if launcher.get(key)]
        if given:
            raise _bad(f"--no-ray runs the jobs one at a time in this process: {', '.join(given)} does not apply")
    address = launcher.get("address")
    if address:
        host, _, port = str(address).rpartition(":")
        if not host or not port.isdigit():
            raise _bad(f"--address: expects <host>:<port> of a Ray head (e.g. 10.0.0.5:6379), got '{address}'")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as exc:
            raise _bad(f"--address: no Ray head answers at {address} ({exc.strerror or exc})") from None
    return launcher


STARTS = 5   # tries at starting a local Ray (see ray_init)


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
        # sys.path reaches the workers (a source checkout run without installing works too)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [*sys.path, os.environ.get("PYTHONPATH", "")] if p)
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
             on_result: Callable[[Job, dict[str, Any]], None] | None = None, label: str = "jobs",
             inline: bool = False) -> dict[str, dict[str, Any]]:
    """Run every job not done yet; return all results by job name (finished ones read from their files).

    Raises JobsFailed naming each job that still has no result once its retries are spent.
    """
    launcher = check_launcher(launcher)
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError("job names must be unique")
    results: dict[str, dict[str, Any]] = {job.name: job.read() for job in jobs if job.done()}
    missing = [job for job in jobs if job.name not in results]
    if not missing:
        if jobs:
            print(f"{label}: all {len(jobs)} job(s) done already, skipped", flush=True)
        return results
    retries = int(launcher.get("retries", 2) if retries is None else retries)
    progress = Progress(label, len(jobs), len(results))
    finish = _run_inline if inline or launcher.get("no_ray") else _run_on_ray
    failed = finish(missing, launcher, retries, results, progress, on_result)
    if failed:
        raise JobsFailed(failed)
    return results


class Progress:
    """One plain line per finished job: done/total, its time, and an ETA from the jobs finished so far."""

    def __init__(self, label: str, total: int, done: int) -> None:
        self.label, self.total, self.done, self.started = label, total, done, time.monotonic()
        self.finished = 0
        print(f"{label}: {total} job(s), {done} done already, {total - done} to run", flush=True)

    def report(self, job: Job, ok: bool, reason: str = "") -> None:
        self.done += 1
        self.finished += 1
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.finished * (self.total - self.done)
        status = "done" if ok else f"FAILED ({reason})"
        print(f"{self.label}: [{self.done}/{self.total}] {job.name}: {status}; {_clock(elapsed)} elapsed, "
              f"ETA {_clock(eta)}", flush=True)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _run_on_ray(missing: list[Job], launcher: dict[str, Any], retries: int, results: dict, progress: Progress,
                on_result: Callable | None) -> dict[str, str]:
    import ray

    ray_init(launcher)
    gpus = launcher.get("gpus_per_job", 0.0)
    if gpus and ray.cluster_resources().get("GPU", 0) < gpus:
        raise _bad(f"--gpus-per-job {gpus:g}: the Ray cluster has {ray.cluster_resources().get('GPU', 0):g} GPU(s)")
    # Ray retries a task whose worker died (killed, out of memory) and, with retry_exceptions, one that raised.
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=retries, retry_exceptions=True)(_call)
    cwd = os.getcwd()
    pending = {task.remote(job.fn, job.kwargs, str(job.result_path) if job.result_path else None, cwd): job
               for job in missing}
    failed: dict[str, str] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready[0])
        try:
            results[job.name] = ray.get(ready[0])
        except Exception as exc:  # noqa: BLE001 (any failure of a task is reported by name)
            failed[job.name] = _reason(exc)
            progress.report(job, False, failed[job.name])
            continue
        progress.report(job, True)
        if on_result is not None:
            on_result(job, results[job.name])
    return failed


def _run_inline(missing: list[Job], launcher: dict[str, Any], retries: int, results: dict, progress: Progress,
                on_result: Callable | None) -> dict[str, str]:
    failed: dict[str, str] = {}
    for job in missing:
        for attempt in range(retries + 1):
            try:
                result = job.fn(**job.kwargs)
                if isinstance(result, dict):
                    result.setdefault("machine", machine())
                break
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 (retried, then reported by name)
                if attempt == retries:
                    failed[job.name] = _reason(exc)
        if job.name in failed:
            progress.report(job, False, failed[job.name])
            continue
        if job.result_path is not None:
            Path(job.result_path).parent.mkdir(parents=True, exist_ok=True)
            write_json(job.result_path, result, indent=1)
        results[job.name] = result
        progress.report(job, True)
        if on_result is not None:
            on_result(job, result)
    return failed


def _reason(exc: BaseException) -> str:
    """One line saying why a task failed (Ray wraps the task's own exception)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".strip()


__all__ = ["Job", "JobsFailed", "check_launcher", "run_jobs", "ray_init"]
