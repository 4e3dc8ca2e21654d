"""The one job runner under every benchmark: real Ray, real trainings, real files; and the Optuna sweep."""
import json
import os
import socket
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_process

from robo_rl.jobs import Job, JobsFailed, machine, run_jobs

GRID = ["bench", "learn", "--tasks", "Hopper-v5", "--agents", "sac", "--seeds", "0,1", "--steps", "400", "--eval-every", "200",
        "--episodes", "2", "--override", "agent.learning_starts=200", "--override", "agent.net_arch=[32,32]",
        "--override", "agent.batch_size=32"]


def robo_rl(*args, cwd, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    return run_process([sys.executable, "-m", "robo_rl.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)


def without_timings(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "wall_s"}


@pytest.mark.xdist_group("ray")
def test_a_grid_on_two_ray_workers_writes_the_same_results_as_one_job_at_a_time(tmp_path):
    """The same two trainings side by side on a local Ray of 2 workers, and one after the other in this
    process (--no-ray): the same result files (but for the timings), one progress line per job with
    done/total, and a rerun skips both."""
    files = {}
    for runner in (["--workers", "2"], ["--no-ray"]):
        folder = tmp_path / runner[0].strip("-")
        folder.mkdir()
        result = robo_rl(*GRID, *runner, cwd=folder)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "bench learn: [1/2]" in result.stdout and "bench learn: [2/2]" in result.stdout and "ETA" in result.stdout
        results = folder / "benchmarks" / "results" / "learn"
        files[runner[0]] = {p.name: without_timings(json.loads(p.read_text())) for p in sorted(results.glob("Hopper-v5__*.json"))}
        assert (results / "summary.md").is_file()
    on_ray = files["--workers"]
    assert list(on_ray) == ["Hopper-v5__sac__s0__0k.json", "Hopper-v5__sac__s1__0k.json"]
    assert on_ray == files["--no-ray"]
    assert on_ray["Hopper-v5__sac__s0__0k.json"]["curve"] != on_ray["Hopper-v5__sac__s1__0k.json"]["curve"]
    # each result names the machine it ran on (a worker's, on a cluster): the benchmark page's hardware line
    assert on_ray["Hopper-v5__sac__s0__0k.json"]["machine"].startswith(f"{os.cpu_count()} vCPUs, ")
    rerun = robo_rl(*GRID, "--workers", "2", cwd=tmp_path / "workers")
    assert rerun.returncode == 0 and "all 2 job(s) done already, skipped" in rerun.stdout


def _raise_twice(marker: str) -> dict:
    """Raises on its first two tries; each try leaves a line in the marker file."""
    with open(marker, "a") as f:
        f.write("try\n")
    if len(Path(marker).read_text().splitlines()) <= 2:
        raise RuntimeError("flaky failure")
    return {"tries": 3}


def _always_raise() -> dict:
    raise ValueError("this job cannot work")


@pytest.mark.parametrize("inline", [False, True])
@pytest.mark.xdist_group("ray")
def test_a_job_that_raises_is_retried_then_named(tmp_path, inline, local_ray):
    jobs = [Job("flaky", _raise_twice, {"marker": str(tmp_path / "flaky.txt")}, tmp_path / "flaky.json"),
            Job("broken", _always_raise, {}, tmp_path / "broken.json")]
    with pytest.raises(JobsFailed) as failure:
        run_jobs(jobs, {"retries": 2}, inline=inline)
    assert failure.value.failed == {"broken": "ValueError: this job cannot work"}
    assert json.loads((tmp_path / "flaky.json").read_text()) == {"tries": 3, "machine": machine()}   # retried twice, then it worked
    assert len((tmp_path / "flaky.txt").read_text().splitlines()) == 3
    assert not (tmp_path / "broken.json").exists()


def test_a_failing_benchmark_job_is_one_line_and_exit_1(tmp_path):
    result = robo_rl("bench", "learn", "--tasks", "Hopper-v5", "--agents", "sac", "--seeds", "0", "--steps", "100",
                     "--override", "agent.batch_size=0", "--no-ray", "--retries", "1", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("robo-rl: 1 job(s) failed: Hopper-v5 sac seed 0:") and "batch_size" in line
    assert "FAILED" in result.stdout   # the progress line says it too


def test_a_finished_result_is_skipped_and_an_incomplete_one_rerun(tmp_path):
    calls = []

    def train(steps):
        calls.append(steps)
        return {"steps": steps}

    path = tmp_path / "run.json"
    path.write_text(json.dumps({"steps": 200}))
    run_jobs([Job("run", train, {"steps": 200}, path, complete=lambda r: r["steps"] >= 200)], inline=True)
    assert calls == []   # done: not run again
    run_jobs([Job("run", train, {"steps": 400}, path, complete=lambda r: r["steps"] >= 400)], inline=True)
    assert calls == [400] and json.loads(path.read_text()) == {"steps": 400, "machine": machine()}   # a larger budget: run again


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("options,words", [
    (["--workers", "0"], "--workers: expects a whole number of parallel jobs >= 1, got '0'"),
    (["--workers", "many"], "--workers: expects a whole number of parallel jobs >= 1, got 'many'"),
    (["--gpus-per-job", "1.5"], "--gpus-per-job: expects a fraction of a GPU in (0, 1] or a whole number, got '1.5'"),
    (["--gpus-per-job", "half"], "--gpus-per-job: expects a fraction of a GPU (e.g. 0.25) or a whole number, got 'half'"),
    (["--address", "nowhere"], "--address: expects <host>:<port> of a Ray head"),
    (["--no-ray", "--workers", "2"], "--no-ray runs the jobs one at a time in this process: --workers does not apply"),
    (["--address", "127.0.0.1:{port}"], "--address: no Ray head answers at 127.0.0.1:{port}"),
])
def test_bad_runner_options_are_refused_before_any_job_starts(tmp_path, options, words):
    port = free_port()
    options = [o.format(port=port) for o in options]
    result = robo_rl(*GRID, *options, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"robo-rl: {words.format(port=port)}"] or \
        result.stderr.strip().startswith(f"robo-rl: {words.format(port=port)}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("*.json")) and not (tmp_path / "runs").exists()   # nothing ran


@pytest.mark.xdist_group("ray")
def test_a_two_trial_optuna_sweep_on_ray_writes_its_study(tmp_path):
    """Hydra's Optuna sweeper over `robo-rl train -m`, its trials on the Ray launcher: the study's best
    trial is the trial with the highest final evaluation, saved in the multirun folder."""
    sweep = tmp_path / "sweep"
    result = robo_rl("train", "-m", "hydra/sweeper=optuna", "hydra/launcher=ray", "hydra.sweeper.n_trials=2",
                     "hydra.sweeper.n_jobs=2", "hydra.sweeper.direction=maximize", "hydra.sweeper.sampler.seed=0",
                     "agent.learning_rate=tag(log,interval(1e-4,1e-3))", "agent.batch_size=choice(32,64)",
                     "env=inverted_pendulum", "train=smoke", "train.steps=400", "agent.learning_starts=200",
                     "agent.net_arch=[32,32]", "threads=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = [json.loads((run / "eval.json").read_text()) for run in sorted(sweep.glob("*_sac_inverted_pendulum_s0"))]
    assert len(trials) == 2
    assert study["best_value"] == max(t["mean_return"] for t in trials)
    assert set(study["best_params"]) == {"agent.learning_rate", "agent.batch_size"}
    assert 1e-4 <= study["best_params"]["agent.learning_rate"] <= 1e-3 and study["best_params"]["agent.batch_size"] in (32, 64)


@pytest.mark.xdist_group("ray")
def test_fractional_gpus_are_refused_where_the_cluster_has_none(tmp_path, local_ray):
    from robo_rl.config import ConfigError

    import ray

    have = int(ray.cluster_resources().get("GPU", 0))   # 0 on a CPU machine; one more than there is anywhere
    job = Job("gpu run", _always_raise, {}, tmp_path / "gpu.json")
    with pytest.raises(ConfigError, match=rf"--gpus-per-job {have + 1}: the Ray cluster has {have} GPU\(s\)"):
        run_jobs([job], {"gpus_per_job": have + 1})
    assert not (tmp_path / "gpu.json").exists()
