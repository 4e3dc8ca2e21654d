"""MBTL (robo_rl/mbtl.py), classic-control contexts (envs/context.py) and the Ray job runner (robo_rl/jobs.py)."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robo_rl import mbtl
from conftest import assert_png_shows, run_cli_batch

N = 20
DISTANCE = np.abs(np.arange(N)[:, None] - np.arange(N)[None, :])
IDEAL = np.maximum(1 - 0.05 * DISTANCE, 0.0)  # flat diagonal, linear decay: the method's own model


def test_first_pick_is_the_middle_and_no_context_is_chosen_twice():
    order = mbtl.mbtl_order(IDEAL, N, slope=0.05, seed=0)
    assert order[0] == 9
    assert sorted(order) == list(range(N))  # all N, each once, although the acquisition is 0 once all is covered


def test_mbtl_spreads_its_picks_and_beats_the_endpoints_first_order():
    """With one trained point the GP's length scale is unidentified (the likelihood does not depend on
    it), so the second pick follows the optimiser's restarts (`random_state`): a neighbour of the middle
    in half the seeds. From two points on, the model spreads its picks to the uncovered side."""
    endpoints_first = mbtl.generalised_performance(IDEAL, [0, N - 1, 9, 14])  # 0.525, 0.775, 0.888, 0.92
    randoms = np.mean([mbtl.generalised_performance(IDEAL, o) for o in mbtl.random_orders(N, 100, 0)], axis=0)
    wins_at_3 = 0
    for seed in range(10):
        order = mbtl.mbtl_order(IDEAL, 4, slope=0.05, seed=seed)
        assert max(abs(s - 9) for s in order[:3]) >= 6, order  # one of the first three is far from the middle
        performance = mbtl.generalised_performance(IDEAL, order)
        wins_at_3 += performance[2] > endpoints_first[2]
        assert performance[3] > endpoints_first[3] and performance[3] > randoms[3] + 0.02, (seed, order, performance)
    assert wins_at_3 >= 5, wins_at_3
    for start, other_side in (([9, 16], range(0, 6)), ([9, 3], range(14, 20))):
        rows = {s: IDEAL[s] for s in start}
        assert {mbtl.next_source(start, rows, N, 0.05, "linear", seed)[0] for seed in range(5)} <= set(other_side)


def test_acquisition_is_the_papers_formula():
    mean, std = np.array([0.2, 0.9, 0.4]), np.array([0.1, 0.0, 0.3])
    best = np.array([0.5, 0.2, 0.0])
    beta = np.sqrt(np.log(3))  # step k = 2
    expected = [np.mean([max(mean[i] + beta * std[i] - 0.1 * abs(i - j) - best[j], 0) for j in range(3)]) for i in range(3)]
    np.testing.assert_allclose(mbtl.acquisition(mean, std, 2, 0.1, best), expected)


def test_gp_targets_are_the_best_performance_seen_there_so_far():
    rows = {2: np.array([0.1, 0.2, 0.3, 0.9]), 3: np.array([0.0, 0.1, 0.8, 0.4])}
    # source 2 trained first: its own 0.3; then source 3: best seen at 3 by then is max(0.9, 0.4)
    np.testing.assert_allclose(mbtl.gp_training_targets([2, 3], rows), [0.3, 0.9])


def test_fitted_slope_recovers_a_planted_one():
    planted = np.maximum(0.9 - 0.03 * DISTANCE, 0.0)
    slopes = mbtl.fitted_slopes({5: planted[5], 14: planted[14]}, N)
    np.testing.assert_allclose(slopes, 0.03, atol=1e-9)
    two = np.where(np.arange(N)[:, None] < 10, np.maximum(1 - 0.02 * DISTANCE, 0), np.maximum(1 - 0.08 * DISTANCE, 0))
    slopes = mbtl.fitted_slopes({3: two[3], 16: two[16]}, N)
    assert slopes[0] == pytest.approx(0.02) and slopes[-1] > 3 * slopes[0]  # each candidate: its nearest source's slope


def test_baselines_on_a_known_matrix():
    matrix = np.array([[0.9, 0.5, 0.1], [0.6, 0.7, 0.6], [0.0, 0.3, 0.8]])
    assert mbtl.independent(matrix) == pytest.approx(0.8)
    assert mbtl.oracle(matrix) == pytest.approx((0.9 + 0.7 + 0.8) / 3)
    assert mbtl.sequential_oracle(matrix, 2) == [1, 0]  # 0.633 alone, then 0 lifts to 0.733 (2 only to 0.7)
    np.testing.assert_allclose(mbtl.generalised_performance(matrix, [1, 0]), [1.9 / 3, 2.2 / 3])
    assert mbtl.greedy_interval_order(11, 4) == [5, 2, 8, 3]  # middle, a third into each end gap, then a midpoint
    assert mbtl.equidistant_placement(20, 2) == [14, 5] and mbtl.equidistant_placement(20, 1) == [9]
    np.testing.assert_allclose(mbtl.normalise([-1600, -800, 0], (-1500, -100)), [0, 0.5, 1])


def test_pendulum_length_changes_the_dynamics_and_resets_between_contexts():
    from robo_rl.envs.factory import env_config, make_env

    def rollout(l: float | None) -> np.ndarray:
        env = make_env(env_config("classic", "Pendulum-v1", context={"l": l} if l else {}), seed=0)
        obs, _ = env.reset(seed=3)
        states = [obs]
        for _ in range(30):
            obs, *_ = env.step(np.array([1.0], dtype=np.float32))
            states.append(obs)
        return np.array(states)

    short, default, long = rollout(0.5), rollout(None), rollout(1.5)
    np.testing.assert_allclose(short[0], default[0])  # the same start state
    assert np.abs(short - long).max() > 0.1 and np.abs(default - long).max() > 0.05
    np.testing.assert_allclose(rollout(1.0), default)  # l = 1.0 is Gymnasium's default


def test_cartpole_context_recomputes_the_derived_constants():
    from robo_rl.envs.context import ContextWrapper
    from robo_rl.envs.factory import env_config, make_env

    env = make_env(env_config("classic", "CartPole-v1", context={"length": 1.2, "masspole": 0.3}), seed=0)
    env.reset(seed=0)
    base = env.unwrapped
    assert base.length == 1.2 and base.masspole == 0.3
    assert base.total_mass == pytest.approx(1.3) and base.polemass_length == pytest.approx(0.36)
    wrapper = env
    while not isinstance(wrapper, ContextWrapper):
        wrapper = wrapper.env
    wrapper.set_context({"masscart": 2.0})  # keys not named return to the model's own values
    env.reset(seed=0)
    assert (base.length, base.masspole, base.masscart) == (0.5, 0.1, 2.0)
    assert base.total_mass == pytest.approx(2.1) and base.polemass_length == pytest.approx(0.05)


def test_observed_context_is_appended_to_the_observation():
    from robo_rl.envs.factory import env_config, make_env

    env = make_env(env_config("classic", "Pendulum-v1", context={"l": 1.3}, observe_context=True), seed=0)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (4,) and obs.shape == (4,) and obs[-1] == pytest.approx(1.3)
    obs, *_ = env.step(np.zeros(1, dtype=np.float32))
    assert obs[-1] == pytest.approx(1.3)


def test_bad_contexts_and_families_are_refused_with_one_line(tmp_path):
    cases = [
        ["mbtl", "family.low=-1.0"],
        ["mbtl", "family.high=50.0"],
        ["mbtl", "budget=0"],
        ["mbtl", "budget=21"],
        ["mbtl", "family=moon"],
        ["mbtl", "gap=quadratic"],
        ["mbtl", "family.agent=nope"],
        ["mbtl", "family=cartpole_length", "family.agent=sac"],
        ["train", "env=cartpole", "agent=sac", "train=smoke"],
        ["train", "env=pendulum", "env.context.l=-0.5"],
        ["train", "env=pendulum", "env.context.gravity=5.0"],
        ["options", "family"],
    ]
    results = run_cli_batch(cases, cwd=tmp_path)
    expected = ["family.low: l=-1 is outside the valid range [0.05, 10]", "family.high: l=50 is outside the valid range",
                "budget must be between 1 and the family's 20 contexts, got 0", "got 21", "unknown family 'moon'",
                "gap must be linear or linear_estimated, got 'quadratic'", "unknown agent 'nope'",
                "family cartpole_length: agent 'sac': SAC takes continuous (Box) actions, not Discrete(2)",
                "agent 'sac': SAC takes continuous (Box) actions, not Discrete(2) (an agent for discrete actions: sb3_ppo)",
                "context l=-0.5 for Pendulum-v1 must be a number > 0",
                "unknown context key 'gravity' for Pendulum-v1 (valid: g, m, l, dt, max_speed)"]
    for argv, result, text in zip(cases, results, expected):
        assert result.returncode == 2, (argv, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and text in lines[0], (argv, result.stderr)
    listing = results[-1]
    assert listing.returncode == 0 and {"pendulum_length", "cartpole_length", "inverted_pendulum_gain"} <= set(listing.stdout.split())


# --- Ray jobs ----------------------------------------------------------------------------------------

def _meet(mine: str, other: str, timeout: float = 120.0) -> dict:
    """Leave a mark, then wait for the other job's: only two jobs running at once both return."""
    Path(mine).write_text(str(os.getpid()))
    deadline = time.monotonic() + timeout
    while not Path(other).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never appeared: the jobs did not run at the same time")
        time.sleep(0.05)
    return {"pid": os.getpid()}


def _die_once(marker: str) -> dict:
    """Killed (SIGKILL, as by the OOM killer) on its first attempt; succeeds when retried."""
    if not Path(marker).exists():
        Path(marker).write_text("first attempt")
        os.kill(os.getpid(), 9)
    return {"attempts": 2}


def _always_die() -> dict:
    os.kill(os.getpid(), 9)
    return {}


@pytest.mark.xdist_group("ray")
def test_two_jobs_run_at_once_and_results_are_written_atomically(local_ray, tmp_path):
    from robo_rl.jobs import Job, run_jobs

    a, b = str(tmp_path / "a.mark"), str(tmp_path / "b.mark")
    jobs = [Job("a", _meet, {"mine": a, "other": b}, tmp_path / "a.json"),
            Job("b", _meet, {"mine": b, "other": a}, tmp_path / "b.json")]
    results = run_jobs(jobs, retries=0)
    assert results["a"]["pid"] != results["b"]["pid"]
    assert json.loads((tmp_path / "a.json").read_text()) == results["a"]
    assert not list(tmp_path.glob("*.tmp"))
    # a rerun skips finished jobs: nothing runs (the marks are gone, so a rerun job would time out)
    for mark in (a, b):
        os.remove(mark)
    assert run_jobs(jobs, retries=0) == results


@pytest.mark.xdist_group("ray")
def test_a_killed_job_is_retried_and_one_that_keeps_dying_is_reported_by_name(local_ray, tmp_path):
    from robo_rl.jobs import Job, JobsFailed, machine, run_jobs

    jobs = [Job("flaky", _die_once, {"marker": str(tmp_path / "flaky.mark")}, tmp_path / "flaky.json"),
            Job("doomed", _always_die, {}, tmp_path / "doomed.json")]
    with pytest.raises(JobsFailed) as failure:
        run_jobs(jobs, retries=1)
    assert list(failure.value.failed) == ["doomed"] and "doomed" in str(failure.value)
    assert json.loads((tmp_path / "flaky.json").read_text()) == {"attempts": 2, "machine": machine()}  # kept, not lost with the failure
    assert not (tmp_path / "doomed.json").exists()


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_mbtl_runs_end_to_end_deploys_a_trained_policy_everywhere_and_resumes(local_ray, tmp_path):
    from robo_rl.config import compose
    from robo_rl.mbtl import run_mbtl
    from robo_rl.runs import eval_run

    def config(budget: int):
        cfg = compose(["family.n=3", "family.steps=600", "family.eval_episodes=1", f"budget={budget}"], "mbtl")
        cfg.family.overrides = ["agent.net_arch=[16,16]", "agent.learning_starts=200", "agent.batch_size=32",
                                "train.eval_every=0", "train.checkpoint_every=300"]
        return cfg

    out = tmp_path / "mbtl"
    summary = run_mbtl(config(1), out)
    assert summary["order"] == [1]
    first = out / "sources" / "001_l=1"
    stamp = (first / "checkpoint.safetensors").stat().st_mtime_ns
    summary = run_mbtl(config(2), out)  # continues: source 1 is not retrained
    assert (first / "checkpoint.safetensors").stat().st_mtime_ns == stamp
    assert summary["order"][0] == 1 and len(set(summary["order"])) == 2
    state = json.loads((out / "mbtl.json").read_text())
    assert len(state["predictions"]) == 2 and len(state["predictions"][1]["acquisition"]) == 3
    assert sorted(state["rows"]) == sorted(str(s) for s in summary["order"]) and all(len(r) == 3 for r in state["rows"].values())
    table = summary["deployment"]
    assert [r["target"] for r in table] == [0, 1, 2]
    for row in table:
        assert row["source"] in summary["order"]
        assert row["return"] == max(state["rows"][str(s)][row["target"]] for s in summary["order"])
        assert Path(row["run_dir"], "checkpoint.safetensors").is_file()
    assert len((out / "deployment.csv").read_text().splitlines()) == 4
    assert eval_run(table[0]["run_dir"], episodes=1)["episodes"] == 1  # each source is an ordinary run


def test_context_draw_picks_a_listed_value_per_episode_reproducibly():
    from robo_rl.envs.factory import env_config, make_env

    def draws(seed: int) -> list[float]:
        env = make_env(env_config("classic", "Pendulum-v1", context_draw={"l": [0.5, 1.0, 1.5]}, observe_context=True), seed=0)
        first = [float(env.reset(seed=seed)[0][-1])]
        return first + [float(env.reset()[0][-1]) for _ in range(30)]

    values = draws(7)
    assert values == draws(7) and set(values) == {0.5, 1.0, 1.5}
    env = make_env(env_config("classic", "Pendulum-v1", context_draw={"l": [0.5, 1.5]}), seed=0)
    for _ in range(5):
        env.reset()
        assert env.unwrapped.l in (0.5, 1.5)  # the dynamics follow the drawn value, not only the observation


def test_launcher_address_reaches_hydras_ray_launcher():
    from robo_rl.cli import ray_launcher_args

    args = ["-m", "seed=1,2", "hydra/launcher=ray", "launcher.address=10.1.2.3:6379"]
    assert ray_launcher_args(args)[-1] == "hydra.launcher.ray.init.address=10.1.2.3:6379"
    assert ray_launcher_args(["-m", "seed=1,2", "launcher.address=10.1.2.3:6379"])[-1] == "launcher.address=10.1.2.3:6379"


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_bench_mbtl_quick_writes_the_matrix_and_the_curves_and_skips_done(local_ray, tmp_path, monkeypatch, capsys):
    from robo_rl.bench import mbtl as bench_mbtl

    monkeypatch.chdir(tmp_path)
    args = ["--families", "pendulum_length", "--seeds", "0", "--override", "family.n=3", "--override", "family.steps=600",
            "--override", "family.eval_episodes=1", "--multitask", "1"]
    bench_mbtl.main(args)
    folder = tmp_path / "benchmarks" / "results" / "mbtl"
    piece = json.loads((folder / "pendulum_length__s0.json").read_text())
    matrix = np.array(piece["returns"])
    assert matrix.shape == (3, 3) and np.isfinite(matrix).all() and piece["contexts"] == [0.5, 1.0, 1.5]
    assert len(list((tmp_path / "runs" / "bench" / "mbtl" / "pendulum_length" / "s0" / "sources").iterdir())) == 3
    summary = (folder / "summary.md").read_text()
    normalised = np.clip((matrix + 1500) / 1400, 0, 1)
    independent_row = next(line for line in summary.splitlines() if line.startswith("| Independent |"))
    assert independent_row.split("|")[2].strip().startswith(f"{np.diag(normalised).mean():.3f}")
    oracle_row = next(line for line in summary.splitlines() if line.startswith("| Oracle |"))
    assert oracle_row.split("|")[2].strip().startswith(f"{normalised.max(axis=0).mean():.3f}")
    multitask = json.loads((folder / "pendulum_length__multitask1__s0.json").read_text())
    assert multitask["steps"] == 600 and len(multitask["returns"]) == 3
    assert "Multi-task, 1 sources' env steps" in summary and "k*" in summary
    assert_png_shows(folder / "pendulum_length.png", "C0", "C1")
    capsys.readouterr()
    bench_mbtl.main(args)
    assert "bench mbtl: all 2 job(s) done already, skipped" in capsys.readouterr().out


def test_classic_envs_with_observed_and_drawn_contexts_pass_gymnasiums_checker():
    from gymnasium.utils.env_checker import check_env

    from robo_rl.envs.factory import env_config, make_env

    for env_id, draw in (("Pendulum-v1", {"l": [0.5, 1.5]}), ("CartPole-v1", {"length": [0.3, 0.9]})):
        env = make_env(env_config("classic", env_id, context_draw=draw, observe_context=True), seed=0)
        check_env(env, skip_render_check=True)
        obs, _ = env.reset(seed=1)
        assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape
